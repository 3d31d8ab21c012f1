"""The public KubeP4 API: authenticate, admit, write etcd, stream changes.

Nothing is written for a rejected request. Store errors map to status codes in
one table (_CODES); admission violations become INVALID_ARGUMENT with BadRequest.
A client never sees an internal endpoint, an exception class or a traceback: store
and admission failures are logged here and answered in words of their own
(docs/api-errors.md). Names and versions are checked before etcd sees them.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from kubep4 import conditions as cond
from kubep4 import labels
from kubep4 import store as st
from kubep4.entities import entity_count
from kubep4.errors import (
    MESSAGE_CHARS,
    Violation,
    count,
    plain_status,
    quoted,
    status_with_violations,
    truncate,
)
from kubep4.gen.kubep4.v1 import admission_pb2 as ka
from kubep4.gen.kubep4.v1 import admission_pb2_grpc as ka_grpc
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import digest_of
from kubep4.serving import open_channel, start_server
from kubep4.telemetry import Telemetry, stamp_write, tracer
from services.apiserver import auth
from services.apiserver.reads import DeploymentReads, request_problems
from services.apiserver.rollouts import RolloutsMixin
from services.apiserver.watch_cache import Subscriber, TooSlow, WatchCache

log = logging.getLogger(__name__)
_tracer = tracer("kubep4.apiserver")
SERVICE_NAME = api.DESCRIPTOR.services_by_name["KubeP4"].full_name
P4INFO_CACHE_SIZE = 256
MAX_NAME = 253       # characters of a name (a DNS-1123 subdomain at most), checked before etcd
MAX_NAMESPACE = 63   # a DNS-1123 label
MAX_RESOURCE_VERSION = 2**63 - 2  # an etcd revision is an int64 and a watch starts one past it
# A watch from a version etcd has not reached waits this long for it, then is answered like
# kube-apiserver's "Too large resource version" (504 Timeout, cause ResourceVersionTooLarge).
FUTURE_VERSION_WAIT = 3.0
FUTURE_VERSION_RETRY = 1  # seconds, the RetryInfo of that answer (kube's Retry-After)

_CODES = {
    st.NotFound: grpc.StatusCode.NOT_FOUND,
    st.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    st.Conflict: grpc.StatusCode.ABORTED,
    st.Unavailable: grpc.StatusCode.UNAVAILABLE,
    st.Compacted: grpc.StatusCode.OUT_OF_RANGE,
    st.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    st.Missing: grpc.StatusCode.FAILED_PRECONDITION,
    st.Rejected: grpc.StatusCode.INVALID_ARGUMENT,
    st.Crowded: grpc.StatusCode.ABORTED,
}
LIST_MAX_ITEMS = 500                  # objects per list page, at most (the client may ask for fewer)
LIST_MAX_BYTES = 16 << 20             # and about this many bytes: far below any message limit
WATCH_BUFFER = 1000  # events one watcher may fall behind before it is closed (it resumes)
WATCH_CACHE_EVENTS = 1000  # events of each kind the watch cache keeps for watchers resuming
QUOTA_ATTEMPTS = 5  # a create counted, reviewed and written again when the namespace grew meanwhile
QUOTA_EXCEEDED = "QuotaExceeded"  # admission's reason for a quota violation


class _Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, violations: list[Violation] | None = None):
        super().__init__(message)
        self.code, self.message, self.violations = code, message, violations or []


class _TooLargeVersion(Exception):
    def __init__(self, requested: int, current: int):
        super().__init__(f"Too large resource version: {requested}, current: {current}")


def _store_message(exc: st.StoreError) -> str:
    """What a client is told of a store error: the store's own words for outcomes about objects,
    words of our own for etcd's (whose text names its endpoint and gRPC internals)."""
    if isinstance(exc, st.Unavailable):
        return "storage is unavailable; retry later"
    if isinstance(exc, st.TooLarge):
        if "space" in str(exc).lower():  # etcd's "mvcc: database space exceeded" (NOSPACE alarm)
            return "storage is out of space (etcd quota exhausted): an operator must compact and defragment it"
        return "the request is too large for storage"
    if isinstance(exc, st.Rejected):
        return "storage refused the request"
    if isinstance(exc, st.Compacted):
        return (f"too old resource version: oldest available is {exc.compact_revision}; "
                "list again and watch from its resource_version")
    return str(exc)


async def _abort(context, exc: Exception):
    if isinstance(exc, _Rejected):
        if exc.violations:
            await context.abort_with_status(status_with_violations(exc.code, exc.message, exc.violations))
        await context.abort_with_status(plain_status(exc.code, exc.message))
    if isinstance(exc, _TooLargeVersion):
        await context.abort_with_status(_too_large_version(str(exc)))
    code = _CODES.get(type(exc))
    if code is None:
        log.error("internal error", exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error (the apiserver logged it)")
    message = _store_message(exc)
    if message != str(exc):
        log.warning("store error answered as %s: %s", code.name, exc)
    await context.abort_with_status(plain_status(code, message))


def _too_large_version(message: str) -> grpc.Status:
    info, retry = any_pb2.Any(), any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="ResourceVersionTooLarge", domain="kubep4.io"))
    retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=FUTURE_VERSION_RETRY)))
    return rpc_status.to_status(status_pb2.Status(code=grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
                                                  message=truncate(message, MESSAGE_CHARS),
                                                  details=[info, retry]))


def _guard(fn):
    """Turn store / rejection errors into gRPC statuses (unary methods); anything else is INTERNAL
    without its class or text (logged with its traceback)."""
    async def wrapper(self, request, context):
        try:
            return await fn(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001 - the boundary: nothing unexpected reaches a client raw
            await _abort(context, e)
    wrapper.__name__ = fn.__name__
    return wrapper


def _allocated(d: kr.Deployment) -> kr.Deployment:
    """What admission needs of the stored deployment on an update: its named members and groups."""
    old = kr.Deployment()
    old.spec.action_profile_members.extend(m for m in d.spec.action_profile_members if m.name)
    old.spec.action_profile_groups.extend(g for g in d.spec.action_profile_groups if g.name)
    return old


def _check_key(namespace: str, name: str | None = None, field: str = "name", prefix: str = "") -> None:
    """A namespace and name etcd could hold, checked before etcd is asked (sizes, no key separator).
    ``name`` None: a list (no name); "": a name is required."""
    out: list[Violation] = []
    for path, value, limit in ((prefix + "namespace", namespace, MAX_NAMESPACE), (field, name, MAX_NAME)):
        if value is None:
            continue
        if len(value) > limit:
            out.append(Violation(path, f"{quoted(value)} is longer than {limit} characters"))
        elif "/" in value or "\0" in value:
            out.append(Violation(path, f"{quoted(value)} contains '/' or NUL"))
    if name == "":
        out.append(Violation(field, "required"))
    if out:
        raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, "invalid request: " + "; ".join(map(str, out)), out)


def _check_version(value: int, field: str = "resource_version") -> None:
    if not 0 <= value <= MAX_RESOURCE_VERSION:
        v = Violation(field, f"{value} is out of range: a resource version is 0 (none) to {MAX_RESOURCE_VERSION}")
        raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {v}", [v])


@dataclass(frozen=True)
class Settings:
    listen: str
    etcd: str
    admission: str
    token: str = ""
    # writes (creates, updates) are refused while etcd's database is above this fraction of its
    # quota (etcd's --quota-backend-bytes): before etcd's own NOSPACE alarm stops every write
    etcd_quota_bytes: int = 2 << 30
    storage_guard: float = 0.8
    # identities and authorization (services/apiserver/auth.py, docs/security.md)
    token_auth_file: str = ""            # token,user,uid,"groups" lines
    authorization_policy_file: str = ""  # YAML role bindings
    tls_cert: str = ""                   # serve TLS with this certificate and key
    tls_key: str = ""
    client_ca: str = ""                  # require client certificates of this CA (CN user, O groups)
    tls_ca: str = ""                     # the CA of admission and the agents' read services (empty: plaintext)
    etcd_tls: object = None              # a kubep4.tls.ClientTLS for etcd, None for plaintext

    def peer_tls(self):
        """How the apiserver calls admission and the node agents: TLS with its own certificate when
        it is given their CA (--tls-ca), else plaintext."""
        if not self.tls_ca:
            return None
        from kubep4.tls import ClientTLS
        return ClientTLS(self.tls_ca, self.tls_cert, self.tls_key)


class KubeP4Servicer(RolloutsMixin, api_grpc.KubeP4Servicer):  # revisions and rollouts: rollouts.py
    def __init__(self, store: st.Store, admission: ka_grpc.AdmissionStub, etcd_quota_bytes: int = 2 << 30,
                 storage_guard: float = 0.8, reads: DeploymentReads | None = None):
        self.store = store
        self.reads = reads or DeploymentReads(store)
        self.admission = admission
        self.etcd_quota_bytes, self.storage_guard = etcd_quota_bytes, storage_guard
        # digest -> P4Info bytes: content-addressed, so never stale; bounded, oldest dropped first
        self._p4info_cache: dict[str, bytes] = {}
        # one etcd watch per watchable kind, shared by every client watch (started at the first)
        self._watch_caches = {k.name: WatchCache(store, k, WATCH_CACHE_EVENTS) for k in (st.PIPELINES, st.DEPLOYMENTS)}

    # ------------------------------------------------------------ admission
    async def _review(self, op, **kw) -> ka.AdmissionResponse:
        try:
            resp = await self.admission.Review(ka.AdmissionReview(operation=op, **kw), timeout=10)
        except grpc.aio.AioRpcError as e:  # its text may name the admission address: logged only
            log.warning("admission review failed: %s %s", e.code().name, e.details())
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise _Rejected(e.code(), "admission did not answer in time; retry later") from None
            raise _Rejected(grpc.StatusCode.UNAVAILABLE, "admission service is unavailable; retry later") from None
        if not resp.allowed:
            vs = [Violation(v.field, v.description) for v in resp.violations]
            if resp.violations[0].reason == QUOTA_EXCEEDED:  # kube's 403 Forbidden for a quota
                obj = getattr(kw.get("pipeline") or kw.get("deployment"), "metadata", None)
                what = f"{'pipelines' if 'pipeline' in kw else 'deployments'} {quoted(obj.name if obj else '')}"
                raise _Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{what} is forbidden: {resp.violations[0].description}", vs)
            shown = "; ".join(truncate(str(v), 80) for v in vs[:3])
            raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT,
                            f"rejected by admission: {count(vs)} violation(s): {shown}", vs)
        return resp

    async def _check_storage(self, incoming: int) -> None:
        """Refuse a write while etcd's database (with ``incoming`` bytes more) is above the guard
        fraction of its quota: etcd's own NOSPACE alarm would stop every write, deletes included."""
        if self.storage_guard <= 0 or self.etcd_quota_bytes <= 0:
            return
        size = await self.store.db_size()
        limit = int(self.etcd_quota_bytes * self.storage_guard)
        if size + incoming > limit:
            mib = 1 << 20
            raise _Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"storage is nearly full: etcd's database is {size / mib:.1f} MiB of its "
                            f"{self.etcd_quota_bytes / mib:.0f} MiB quota and writes stop at "
                            f"{self.storage_guard:.0%}; delete unused deployments and pipelines (deletes "
                            "still pass), then have an operator compact and defragment etcd, or raise its "
                            "--quota-backend-bytes and the apiserver's --etcd-quota-bytes")

    async def _counted_review(self, kind: st.Kind, namespace: str, review) -> tuple[ka.AdmissionResponse, int]:
        """``review(usage)``, first without counts; when admission says a namespace quota applies, the
        namespace is counted and reviewed again. Returns the answer and the revision counted at."""
        resp = await review(None)
        if not resp.usage_needed:
            return resp, 0
        usage, counted = await self._usage(kind, namespace)
        return await review(usage), counted

    async def _usage(self, kind: st.Kind, namespace: str, entries: int = 0
                     ) -> tuple[ka.NamespaceUsage | None, int]:
        """What the namespace holds of ``kind`` for admission's quotas, and the revision it was counted
        at; None for a namespace etcd could not hold (admission refuses it)."""
        try:
            _check_key(namespace)
        except _Rejected:
            return None, 0
        if kind is st.PIPELINES:
            items, rev = await self.store.list(st.PIPELINES, namespace)
            return ka.NamespaceUsage(pipelines=len(items), artifact_bytes=sum(
                p.spec.p4info_ref.size + p.spec.device_config_ref.size for p in items)), rev
        n, rev = await self.store.count(st.DEPLOYMENTS, namespace)
        return ka.NamespaceUsage(deployments=n, table_entries=entries), rev

    async def _pipeline_for_admission(self, namespace: str, name: str) -> kr.Pipeline | None:
        try:
            _check_key(namespace, name)  # else no such pipeline: admission says so, with the rest
        except _Rejected:
            return None
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
        await self._check_storage(request.ByteSize())
        ns = request.pipeline.metadata.namespace or "default"
        for _ in range(QUOTA_ATTEMPTS):
            resp, counted = await self._counted_review(st.PIPELINES, ns, lambda usage: self._review(
                ka.CREATE, pipeline=request.pipeline, usage=usage))
            p = resp.pipeline
            p.ClearField("status")
            _server_owned(p.metadata)
            p.spec.ClearField("p4info_ref")  # artifact refs are the store's: it writes the blobs they name
            p.spec.ClearField("device_config_ref")
            s = p.spec
            if s.HasField("artifacts"):
                p.status.digest = digest_of(s.artifacts.p4info, s.artifacts.device_config,
                                            s.arch.encode(), s.target.encode())
                p.status.phase = "Ready"
            else:
                src = s.source
                p.status.digest = digest_of(src.program.encode(), src.backend.encode(), s.arch.encode(),
                                            s.target.encode(), "\0".join(src.options).encode())
                p.status.phase = "Pending"  # Ready once the builder has compiled it (services/builder)
                cond.mark_unknown(p.status.conditions, "Compiled", "Pending", "waiting for the builder")
                cond.mark_unknown(p.status.conditions, cond.READY, "Pending", "waiting for the compile")
            p.status.observed_generation = 1
            stamp_write(p.metadata.trace_context)
            try:  # only while the namespace holds what the quota was decided on
                return await self.store.create_pipeline(p, no_new_since=(
                    st.PIPELINES.prefix(p.metadata.namespace), counted) if resp.quota_counted else None)
            except st.Crowded:
                continue
        raise st.Conflict(f"pipelines keep being created in {ns}; retry")

    @_guard
    async def GetPipeline(self, request, context):
        _check_key(request.namespace, request.name)
        p = await self.store.get(st.PIPELINES, request.namespace or "default", request.name)
        return await self.store.load_artifacts(p)

    @_guard
    async def ListPipelines(self, request, context):
        items, rev, token = await self._list(st.PIPELINES, request, request.namespace or None)
        return api.PipelineList(items=items, resource_version=rev, continue_token=token)

    @_guard
    async def DeletePipeline(self, request, context):
        _check_key(request.namespace, request.name)
        _check_version(request.resource_version)
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
        await self._check_storage(request.ByteSize())
        d = request.deployment
        ns = d.metadata.namespace or "default"
        pipeline = await self._pipeline_for_admission(ns, d.spec.pipeline) if d.spec.pipeline else None
        kw = {"referenced_pipeline": pipeline} if pipeline is not None else {}
        for _ in range(QUOTA_ATTEMPTS):
            resp, counted = await self._counted_review(st.DEPLOYMENTS, ns, lambda usage: self._review(
                ka.CREATE, deployment=request.deployment, usage=usage, **kw))
            d = resp.deployment
            d.ClearField("status")
            _server_owned(d.metadata)
            d.metadata.generation = 1
            cond.initial_deployment_status(d.status)
            d.status.pipeline_digest = pipeline.status.digest if pipeline is not None else ""
            stamp_write(d.metadata.trace_context)
            with _tracer.start_as_current_span("etcd create deployment"):
                # atomically with its pipeline still there (a concurrent DeletePipeline loses, or we do),
                # and with the namespace holding what the quota was decided on
                try:
                    return await self.store.create(st.DEPLOYMENTS, d, requires=st.PIPELINES.key_for(
                        d.metadata.namespace, d.spec.pipeline), no_new_since=(
                        st.DEPLOYMENTS.prefix(d.metadata.namespace), counted) if resp.quota_counted else None)
                except st.Crowded:
                    continue
        raise st.Conflict(f"deployments keep being created in {ns}; retry")

    @_guard
    async def GetDeployment(self, request, context):
        _check_key(request.namespace, request.name)
        return await self.store.get(st.DEPLOYMENTS, request.namespace or "default", request.name)

    @_guard
    async def ListDeployments(self, request, context):
        items, rev, token = await self._list(st.DEPLOYMENTS, request, request.namespace or None)
        return api.DeploymentList(items=items, resource_version=rev, continue_token=token)

    @_guard
    async def UpdateDeployment(self, request, context):
        d = request.deployment
        ns = d.metadata.namespace or "default"
        _check_key(d.metadata.namespace, d.metadata.name, "metadata.name", "metadata.")
        _check_version(d.metadata.resource_version, "metadata.resource_version")
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
        await self._check_storage(request.ByteSize())
        pipeline = await self._pipeline_for_admission(ns, d.spec.pipeline) if d.spec.pipeline else None
        kw = {"referenced_pipeline": pipeline} if pipeline is not None else {}
        usage = ka.NamespaceUsage(table_entries=entity_count(current.spec))  # every entity counts
        resp = await self._review(ka.UPDATE, deployment=d, usage=usage, old_deployment=_allocated(current), **kw)
        new = resp.deployment
        # the user owns spec, labels and annotations; identity, timestamps, versions and status are the server's
        labels, annotations = dict(new.metadata.labels), dict(new.metadata.annotations)
        new.metadata.CopyFrom(current.metadata)
        new.metadata.labels.clear()
        new.metadata.labels.update(labels)
        new.metadata.annotations.clear()
        new.metadata.annotations.update(annotations)
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
        _check_key(request.namespace, request.name)
        _check_version(request.resource_version)
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
        _check_key(request.namespace, request.name)
        return await self.store.get(st.NODES, "", request.name)

    @_guard
    async def ListNodes(self, request, context):
        items, rev, token = await self._list(st.NODES, request, None)
        return api.NodeList(items=items, resource_version=rev, continue_token=token)

    # ------------------------------------------------------------ who am I, may I (services/apiserver/auth.py)
    async def WhoAmI(self, request, context):
        return auth.who_am_i(api)

    async def CanI(self, request, context):
        return auth.can_i(api, request)

    # ------------------------------------------------------------ live values (services/apiserver/reads.py)
    @_guard
    async def ReadDeployment(self, request, context):
        _check_key(request.namespace, request.name)
        if bad := request_problems(request):
            raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, "invalid request: " + "; ".join(map(str, bad)), bad)
        return await self.reads.read(request, context.time_remaining())

    async def _list(self, kind: st.Kind, request: api.ListRequest, ns: str | None) -> tuple[list, int, str]:
        """One page of a list (Kubernetes' limit / continue), and the token for the next ("" when done)."""
        _check_key(request.namespace)
        if request.limit < 0:
            raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, "limit: must not be negative")
        if bad := [Violation(p.replace("match_labels", "label_selector", 1), problem)
                   for p, problem in labels.violations(labels.from_map(request.label_selector))]:
            raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, "invalid request: " + "; ".join(map(str, bad)), bad)
        after, revision = _parse_token(request.continue_token) if request.continue_token else (b"", 0)
        try:
            items, rev, last = await self.store.list_page(
                kind, ns, after, revision, min(request.limit or LIST_MAX_ITEMS, LIST_MAX_ITEMS), LIST_MAX_BYTES)
        except st.Rejected as e:
            if revision and "compacted" in str(e):
                raise _Rejected(grpc.StatusCode.OUT_OF_RANGE, "the continue token has expired (its resource "
                                f"version {revision} was compacted): list again from the start") from None
            raise
        return _select(items, request.label_selector), rev, _token(last, rev) if last else ""

    # ------------------------------------------------------------ watch
    async def _watch(self, kind: st.Kind, request: api.WatchRequest, context):
        """(type, object, resource_version) tuples: optional initial list, then changes in order."""
        ns = request.namespace or None
        name = request.name
        try:
            _check_key(request.namespace, name or None)  # no name: every object
            _check_version(request.resource_version)
            start = request.resource_version + 1
            if request.resource_version:
                await self._wait_for_version(request.resource_version)
            else:
                items, rev = await self.store.list(kind, ns)
                for obj in items:
                    if not name or obj.metadata.name == name:
                        yield api.ADDED, obj, obj.metadata.resource_version
                yield api.SYNCED, kind.message(), rev
                start = rev + 1
            async for ev in self._buffered(kind, ns, name, start):
                yield getattr(api, ev.type), ev.object, ev.revision
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001 - the boundary, as in _guard
            await _abort(context, e)

    async def _buffered(self, kind: st.Kind, ns: str | None, name: str, start: int):
        """The events of ``kind`` from revision ``start`` for one watcher, through a queue of at most
        WATCH_BUFFER events: from the kind's watch cache (one etcd watch for every watcher) when it
        covers ``start``, else from an etcd watch of the watcher's own. A watcher that falls that
        far behind (it does not read) gets what its queue holds, then RESOURCE_EXHAUSTED "watch too
        slow: resume from resource_version N", and is dropped at once, so nothing piles up for it
        (the SDK resumes from the last version it got)."""
        cache = self._watch_caches.get(kind.name)
        sub = None
        if cache is not None:
            cache.start()
            sub = cache.subscribe(ns, name, start, WATCH_BUFFER)
        pump = None
        if sub is None:  # further back than the cache holds: this watcher's own etcd watch
            sub = Subscriber(ns, name, WATCH_BUFFER, start)

            async def feed() -> None:
                try:
                    async for ev in self.store.watch(kind, ns, start_revision=start):
                        if not sub.offer(ev):
                            return
                    sub.end(st.Unavailable("watch ended"))
                except Exception as e:  # handed to the watcher, after what it has not read yet
                    sub.end(e)
            pump = asyncio.create_task(feed())
        last = start - 1
        try:
            while True:
                if sub.queue.empty():
                    if sub.ended.is_set():
                        if isinstance(sub.error, TooSlow):
                            raise _Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                            f"watch too slow: resume from resource_version {last}")
                        raise sub.error
                    getter = asyncio.ensure_future(sub.queue.get())
                    stop = asyncio.ensure_future(sub.ended.wait())
                    await asyncio.wait({getter, stop}, return_when=asyncio.FIRST_COMPLETED)
                    stop.cancel()
                    if not getter.done():
                        getter.cancel()
                        continue
                    ev = getter.result()
                else:
                    ev = sub.queue.get_nowait()
                last = ev.revision
                yield ev
        finally:
            if cache is not None:
                cache.unsubscribe(sub)
            if pump is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)

    async def stop_watch_caches(self) -> None:
        for cache in self._watch_caches.values():
            await cache.stop()

    async def _wait_for_version(self, version: int) -> None:
        """Return once etcd has reached ``version``; a version still in the future after
        FUTURE_VERSION_WAIT is refused the way kube-apiserver refuses it (_TooLargeVersion)."""
        deadline = time.monotonic() + FUTURE_VERSION_WAIT
        while (current := await self.store.revision()) < version:
            if time.monotonic() >= deadline:
                raise _TooLargeVersion(version, current)
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _token(after: bytes, revision: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(
        {"rv": revision, "after": base64.b64encode(after).decode()}).encode()).decode()


def _parse_token(token: str) -> tuple[bytes, int]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
        after, revision = base64.b64decode(doc["after"]), int(doc["rv"])
        if revision <= 0 or not after:
            raise ValueError
        return after, revision
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, "continue_token: not a token this apiserver gave") \
            from None


def _server_owned(md) -> None:
    """Forget what a client may not choose on create: the store sets uid and creation time, etcd the
    version, and only a delete request sets a deletion timestamp."""
    for f in ("uid", "creation_timestamp", "deletion_timestamp", "resource_version", "generation"):
        md.ClearField(f)


def _select(items: list, selector) -> list:
    if not selector:
        return items
    reqs = labels.compile(labels.from_map(selector))
    return [o for o in items if labels.match(reqs, o.metadata.labels)]


async def create_server(settings: Settings, telemetry: Telemetry | None = None
                        ) -> tuple[grpc.aio.Server, int, st.Store, grpc.aio.Channel]:
    """Start the apiserver; returns (server, port, store, admission channel) for shutdown."""
    checks, credentials = auth.from_settings(settings, SERVICE_NAME)  # files read before anything starts
    store = st.Store(settings.etcd, tls=settings.etcd_tls)
    interceptors = telemetry.client_interceptors() if telemetry else []
    peers = settings.peer_tls()
    channel = open_channel(settings.admission, peers, interceptors)
    servicer = KubeP4Servicer(store, ka_grpc.AdmissionStub(channel), settings.etcd_quota_bytes,
                              settings.storage_guard, DeploymentReads(store, interceptors, tls=peers))
    server_interceptors = list(telemetry.server_interceptors() if telemetry else [])
    if checks is not None:
        server_interceptors.append(checks)
    server, port, _ = await start_server(
        settings.listen, lambda s: api_grpc.add_KubeP4Servicer_to_server(servicer, s), [SERVICE_NAME],
        server_interceptors, credentials)
    server.kubep4_servicer = servicer  # for shutdown
    return server, port, store, channel


async def shutdown(server: grpc.aio.Server, store: st.Store, channel: grpc.aio.Channel, grace: float = 2) -> None:
    await server.stop(grace)
    servicer = getattr(server, "kubep4_servicer", None)
    if servicer is not None:
        await servicer.stop_watch_caches()
        await servicer.reads.close()
    await channel.close()
    await store.close()


