"""The public KubeP4 API: authenticate, admit, write etcd, stream changes.

Nothing is written for a rejected request. Store errors map to status codes in
one table (_CODES); admission violations become INVALID_ARGUMENT with BadRequest.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from kubep4 import conditions as cond
from kubep4 import store as st
from kubep4.config import GRPC_OPTIONS
from kubep4.errors import Violation, plain_status, status_with_violations
from kubep4.gen.kubep4.v1 import admission_pb2 as ka
from kubep4.gen.kubep4.v1 import admission_pb2_grpc as ka_grpc
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import digest_of
from kubep4.serving import start_server
from kubep4.telemetry import Telemetry, stamp_write, tracer
from services.apiserver.auth import TokenAuthInterceptor

log = logging.getLogger(__name__)
_tracer = tracer("kubep4.apiserver")
SERVICE_NAME = api.DESCRIPTOR.services_by_name["KubeP4"].full_name
P4INFO_CACHE_SIZE = 256

_CODES = {
    st.NotFound: grpc.StatusCode.NOT_FOUND,
    st.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    st.Conflict: grpc.StatusCode.ABORTED,
    st.Unavailable: grpc.StatusCode.UNAVAILABLE,
    st.Compacted: grpc.StatusCode.OUT_OF_RANGE,
    st.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    st.Missing: grpc.StatusCode.FAILED_PRECONDITION,
    st.Rejected: grpc.StatusCode.INVALID_ARGUMENT,
}


class _Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, violations: list[Violation] | None = None):
        super().__init__(message)
        self.code, self.message, self.violations = code, message, violations or []


async def _abort(context, exc: Exception):
    if isinstance(exc, _Rejected):
        if exc.violations:
            await context.abort_with_status(status_with_violations(exc.code, exc.message, exc.violations))
        await context.abort_with_status(plain_status(exc.code, exc.message))
    code = _CODES.get(type(exc))
    if code is None:
        log.exception("internal error", exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
    await context.abort_with_status(plain_status(code, str(exc)))


def _guard(fn):
    """Turn store / rejection errors into gRPC statuses (unary methods)."""
    async def wrapper(self, request, context):
        try:
            return await fn(self, request, context)
        except (st.StoreError, _Rejected) as e:
            await _abort(context, e)
    wrapper.__name__ = fn.__name__
    return wrapper


@dataclass(frozen=True)
class Settings:
    listen: str
    etcd: str
    admission: str
    token: str = ""


class KubeP4Servicer(api_grpc.KubeP4Servicer):
    def __init__(self, store: st.Store, admission: ka_grpc.AdmissionStub):
        self.store = store
        self.admission = admission
        # digest -> P4Info bytes: content-addressed, so never stale; bounded, oldest dropped first
        self._p4info_cache: dict[str, bytes] = {}

    # ------------------------------------------------------------ admission
    async def _review(self, op, **kw) -> ka.AdmissionResponse:
        try:
            resp = await self.admission.Review(ka.AdmissionReview(operation=op, **kw), timeout=10)
        except grpc.aio.AioRpcError as e:
            raise _Rejected(grpc.StatusCode.UNAVAILABLE, f"admission service: {e.code().name} {e.details()}")
        if not resp.allowed:
            vs = [Violation(v.field, v.description) for v in resp.violations]
            raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT,
                            f"rejected by admission: {len(vs)} violation(s): " + "; ".join(map(str, vs[:5])), vs)
        return resp

    async def _pipeline_for_admission(self, namespace: str, name: str) -> kr.Pipeline | None:
        try:
            p = await self.store.get(st.PIPELINES, namespace or "default", name)
        except st.NotFound:
            return None
        ref = p.spec.p4info_ref
        if ref.digest:
            data = self._p4info_cache.get(ref.digest)
            if data is None:
                data = await self.store.get_blob(ref)
                self._p4info_cache[ref.digest] = data
                if len(self._p4info_cache) > P4INFO_CACHE_SIZE:
                    del self._p4info_cache[next(iter(self._p4info_cache))]
            p.spec.artifacts.p4info = data
        return p

    # ------------------------------------------------------------ pipelines
    @_guard
    async def CreatePipeline(self, request, context):
        resp = await self._review(ka.CREATE, pipeline=request.pipeline)
        p = resp.pipeline
        p.ClearField("status")
        s = p.spec
        if s.HasField("artifacts"):
            p.status.digest = digest_of(s.artifacts.p4info, s.artifacts.device_config,
                                        s.arch.encode(), s.target.encode())
            p.status.phase = "Ready"
        else:
            src = s.source
            p.status.digest = digest_of(src.program.encode(), src.backend.encode(), s.arch.encode(),
                                        s.target.encode(), "\0".join(src.options).encode())
            p.status.phase = "Ready"
        p.status.observed_generation = 1
        stamp_write(p.metadata.trace_context)
        stored = await self.store.create_pipeline(p)
        return stored

    @_guard
    async def GetPipeline(self, request, context):
        p = await self.store.get(st.PIPELINES, request.namespace or "default", request.name)
        return await self.store.load_artifacts(p)

    @_guard
    async def ListPipelines(self, request, context):
        items, rev = await self.store.list(st.PIPELINES, request.namespace or None)
        return api.PipelineList(items=_select(items, request.label_selector), resource_version=rev)

    @_guard
    async def DeletePipeline(self, request, context):
        ns = request.namespace or "default"
        await self.store.get(st.PIPELINES, ns, request.name)
        for _ in range(10):
            deps, rev = await self.store.list(st.DEPLOYMENTS, ns)
            users = [d.metadata.name for d in deps if d.spec.pipeline == request.name]
            if users:
                raise _Rejected(grpc.StatusCode.FAILED_PRECONDITION,
                                f"pipeline {ns}/{request.name} is used by deployments: {', '.join(users)}")
            try:  # only if no deployment of the namespace changed since the check
                await self.store.delete(st.PIPELINES, ns, request.name, request.resource_version,
                                        quiet_prefix=(st.DEPLOYMENTS.prefix(ns), rev))
                return api.DeleteResponse()
            except st.Conflict:
                if request.resource_version:
                    current = await self.store.get(st.PIPELINES, ns, request.name)
                    if current.metadata.resource_version != request.resource_version:
                        raise
        raise st.Conflict(f"deployments in {ns} keep changing; retry the delete")

    async def WatchPipelines(self, request, context):
        async for ev in self._watch(st.PIPELINES, request, context):
            yield api.PipelineEvent(type=ev[0], object=ev[1], resource_version=ev[2])

    # ------------------------------------------------------------ deployments
    @_guard
    async def CreateDeployment(self, request, context):
        d = request.deployment
        ns = d.metadata.namespace or "default"
        pipeline = await self._pipeline_for_admission(ns, d.spec.pipeline) if d.spec.pipeline else None
        kw = {"referenced_pipeline": pipeline} if pipeline is not None else {}
        resp = await self._review(ka.CREATE, deployment=d, **kw)
        d = resp.deployment
        d.ClearField("status")
        d.metadata.ClearField("deletion_timestamp")
        d.metadata.generation = 1
        cond.initial_deployment_status(d.status)
        d.status.pipeline_digest = pipeline.status.digest if pipeline is not None else ""
        stamp_write(d.metadata.trace_context)
        with _tracer.start_as_current_span("etcd create deployment"):
            # atomically with its pipeline still there (a concurrent DeletePipeline loses, or we do)
            return await self.store.create(st.DEPLOYMENTS, d, requires=st.PIPELINES.key_for(
                d.metadata.namespace, d.spec.pipeline))

    @_guard
    async def GetDeployment(self, request, context):
        return await self.store.get(st.DEPLOYMENTS, request.namespace or "default", request.name)

    @_guard
    async def ListDeployments(self, request, context):
        items, rev = await self.store.list(st.DEPLOYMENTS, request.namespace or None)
        return api.DeploymentList(items=_select(items, request.label_selector), resource_version=rev)

    @_guard
    async def UpdateDeployment(self, request, context):
        d = request.deployment
        ns = d.metadata.namespace or "default"
        if not d.metadata.resource_version:
            raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, "metadata.resource_version is required",
                            [Violation("metadata.resource_version", "required: the version you read")])
        current = await self.store.get(st.DEPLOYMENTS, ns, d.metadata.name)
        if current.metadata.resource_version != d.metadata.resource_version:
            raise st.Conflict(f"deployment {ns}/{d.metadata.name} was modified "
                              f"(resource_version {d.metadata.resource_version} is stale, "
                              f"current is {current.metadata.resource_version})")
        if current.metadata.HasField("deletion_timestamp"):
            raise _Rejected(grpc.StatusCode.FAILED_PRECONDITION, "deployment is being deleted")
        pipeline = await self._pipeline_for_admission(ns, d.spec.pipeline) if d.spec.pipeline else None
        kw = {"referenced_pipeline": pipeline} if pipeline is not None else {}
        resp = await self._review(ka.UPDATE, deployment=d, **kw)
        new = resp.deployment
        # identity and status are the server's; the user owns spec and labels
        md = new.metadata
        md.uid, md.namespace, md.generation = current.metadata.uid, ns, current.metadata.generation
        md.creation_timestamp.CopyFrom(current.metadata.creation_timestamp)
        new.status.CopyFrom(current.status)
        if new.spec != current.spec:
            new.metadata.generation = current.metadata.generation + 1
            new.status.pipeline_digest = pipeline.status.digest if pipeline is not None else ""
            new.metadata.trace_context.clear()
            stamp_write(new.metadata.trace_context)
        else:
            new.metadata.trace_context.clear()
            new.metadata.trace_context.update(current.metadata.trace_context)
        new.metadata.resource_version = current.metadata.resource_version
        if new == current:
            return current  # nothing changed: no write, no new version
        return await self.store.update(st.DEPLOYMENTS, new)

    @_guard
    async def DeleteDeployment(self, request, context):
        ns = request.namespace or "default"
        d = await self.store.get(st.DEPLOYMENTS, ns, request.name)
        if request.resource_version and request.resource_version != d.metadata.resource_version:
            raise st.Conflict(f"deployment {ns}/{request.name} was modified "
                              f"(resource_version {request.resource_version} is stale)")
        if not d.metadata.HasField("deletion_timestamp"):
            d.metadata.deletion_timestamp.GetCurrentTime()
            d.status.phase = cond.TERMINATING
            d.metadata.trace_context.clear()
            stamp_write(d.metadata.trace_context)
            await self.store.update(st.DEPLOYMENTS, d)
        return api.DeleteResponse()

    async def WatchDeployments(self, request, context):
        async for ev in self._watch(st.DEPLOYMENTS, request, context):
            yield api.DeploymentEvent(type=ev[0], object=ev[1], resource_version=ev[2])

    # ------------------------------------------------------------ nodes
    @_guard
    async def GetNode(self, request, context):
        return await self.store.get(st.NODES, "", request.name)

    @_guard
    async def ListNodes(self, request, context):
        items, rev = await self.store.list(st.NODES)
        return api.NodeList(items=_select(items, request.label_selector), resource_version=rev)

    # ------------------------------------------------------------ watch
    async def _watch(self, kind: st.Kind, request: api.WatchRequest, context):
        """(type, object, resource_version) tuples: optional initial list, then changes in order."""
        ns = request.namespace or None
        name = request.name
        try:
            start = request.resource_version + 1
            if request.resource_version == 0:
                items, rev = await self.store.list(kind, ns)
                for obj in items:
                    if not name or obj.metadata.name == name:
                        yield api.ADDED, obj, obj.metadata.resource_version
                yield api.SYNCED, kind.message(), rev
                start = rev + 1
            async for ev in self.store.watch(kind, ns, start_revision=start):
                if name and ev.object.metadata.name != name:
                    continue
                yield getattr(api, ev.type), ev.object, ev.revision
        except (st.StoreError, _Rejected) as e:
            await _abort(context, e)


def _select(items: list, selector) -> list:
    if not selector:
        return items
    return [o for o in items if all(o.metadata.labels.get(k) == v for k, v in selector.items())]


async def create_server(settings: Settings, telemetry: Telemetry | None = None
                        ) -> tuple[grpc.aio.Server, int, st.Store, grpc.aio.Channel]:
    """Start the apiserver; returns (server, port, store, admission channel) for shutdown."""
    store = st.Store(settings.etcd)
    interceptors = telemetry.client_interceptors() if telemetry else []
    channel = grpc.aio.insecure_channel(settings.admission, options=GRPC_OPTIONS, interceptors=interceptors)
    servicer = KubeP4Servicer(store, ka_grpc.AdmissionStub(channel))
    server_interceptors = list(telemetry.server_interceptors() if telemetry else [])
    if settings.token:
        server_interceptors.append(TokenAuthInterceptor(settings.token))
    server, port, _ = await start_server(
        settings.listen, lambda s: api_grpc.add_KubeP4Servicer_to_server(servicer, s), [SERVICE_NAME],
        server_interceptors)
    return server, port, store, channel


async def shutdown(server: grpc.aio.Server, store: st.Store, channel: grpc.aio.Channel, grace: float = 2) -> None:
    await server.stop(grace)
    await channel.close()
    await store.close()


