"""The Admission gRPC service: Review validates and defaults, it never writes anything."""
from __future__ import annotations

import asyncio

import grpc

from kubep4.errors import bounded
from kubep4.gen.kubep4.v1 import admission_pb2 as ka
from kubep4.gen.kubep4.v1 import admission_pb2_grpc as ka_grpc
from kubep4.serving import PeerCheck, start_server
from kubep4.telemetry import Telemetry, tracer
from services.admission.validation import (
    QUOTA_EXCEEDED,
    Policy,
    namespace_quota_applies,
    quota_violations,
    review_deployment,
    review_pipeline,
)

_tracer = tracer("kubep4.admission")
SERVICE_NAME = ka.DESCRIPTOR.services_by_name["Admission"].full_name
FIELD_CHARS, DESCRIPTION_CHARS = 200, 300  # a response is no trailer: a little roomier than a status


class AdmissionServicer(ka_grpc.AdmissionServicer):
    def __init__(self, policy: Policy):
        self.policy = policy

    async def Review(self, request: ka.AdmissionReview, context) -> ka.AdmissionResponse:
        which = request.WhichOneof("object")
        if which is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "review carries no object")
        if request.operation not in ka.Operation.values():  # an open enum: any int32 arrives
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"operation: unknown value {request.operation} "
                                f"(known: {', '.join(ka.Operation.keys())})")
        with _tracer.start_as_current_span("admission review") as span:
            span.set_attribute("kubep4.kind", which)
            span.set_attribute("kubep4.operation", ka.Operation.Name(request.operation))
            # in a worker thread: a long review (bounded by the policy) leaves the loop serving others
            if which == "pipeline":
                obj, violations = await asyncio.to_thread(review_pipeline, request.pipeline, self.policy)
            else:
                ref = request.referenced_pipeline if request.HasField("referenced_pipeline") else None
                old = request.old_deployment if request.HasField("old_deployment") else None
                obj, violations = await asyncio.to_thread(review_deployment, request.deployment, ref,
                                                          self.policy, old)
            reason = ""
            counted = needed = False
            if not violations:  # quotas, as kube's, for valid objects only
                creating = request.operation == ka.CREATE
                namespace_wide = namespace_quota_applies(obj, creating, self.policy)
                if request.HasField("usage") or not namespace_wide:  # per-object limits need no count
                    violations = quota_violations(obj, request.usage, creating, self.policy)
                    reason = QUOTA_EXCEEDED if violations else ""
                    counted = namespace_wide
                else:
                    needed = True  # the apiserver counts the namespace and asks again
            span.set_attribute("kubep4.allowed", not violations)
            span.set_attribute("kubep4.violations", len(violations))
            violations = bounded(violations, self.policy.max_violations, FIELD_CHARS, DESCRIPTION_CHARS)
        resp = ka.AdmissionResponse(
            allowed=not violations, quota_counted=counted, usage_needed=needed,
            violations=[ka.FieldViolation(field=v.field, description=v.description, reason=reason)
                        for v in violations])
        if not violations:
            getattr(resp, which).CopyFrom(obj)
        return resp


async def create_server(listen: str, policy: Policy, telemetry: Telemetry | None = None,
                        credentials: grpc.ServerCredentials | None = None,
                        allowed_clients: frozenset[str] | None = None) -> tuple[grpc.aio.Server, int]:
    """Serve admission on ``listen``; TLS with ``credentials``, and with ``allowed_clients`` (mTLS)
    only callers whose certificate CN is one of them (the apiserver)."""
    interceptors = list(telemetry.server_interceptors()) if telemetry else []
    if allowed_clients is not None:
        interceptors.append(PeerCheck(allowed_clients, "admission"))
    server, port, _ = await start_server(
        listen, lambda s: ka_grpc.add_AdmissionServicer_to_server(AdmissionServicer(policy), s),
        [SERVICE_NAME], interceptors, credentials)
    return server, port
