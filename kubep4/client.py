"""The KubeP4 client SDK: asyncio (AsyncClient) and blocking (Client).

    from kubep4.client import Client
    with Client("127.0.0.1:50051") as c:
        for obj in kubep4.manifest.load("examples/basic/deployment.yaml"):
            c.apply(obj)
        c.wait_ready("basic", timeout=30)

Errors are typed (kubep4.errors): InvalidArgument carries ``violations``
(field path + reason), NotFound, AlreadyExists, Conflict (ABORTED), Unavailable...
"""
from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import Message

from kubep4 import conditions as cond
from kubep4 import errors
from kubep4.config import GRPC_OPTIONS
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

KIND_ALIASES = {
    "pipeline": "pipeline", "pipelines": "pipeline", "pl": "pipeline",
    "deployment": "deployment", "deployments": "deployment", "deploy": "deployment",
    "node": "node", "nodes": "node", "no": "node",
}
NAMESPACE_HEADER = "kubep4-namespace"  # metadata: the namespace a request names (docs/security.md)
EVENT_NAMES = {api.ADDED: "ADDED", api.MODIFIED: "MODIFIED", api.DELETED: "DELETED", api.SYNCED: "SYNCED"}


def kind_of(name: str) -> str:
    try:
        return KIND_ALIASES[name.lower()]
    except KeyError:
        raise errors.InvalidArgument(f"unknown kind {name!r} (pipelines, deployments, nodes)") from None


class AsyncClient:
    """A client of the apiserver at ``address`` with ``token`` and, for TLS, ``ca`` (and a client
    certificate ``cert`` + ``key``; ``server_name``: the name the server's certificate is checked
    for, when not the host dialled). ``https://host:port`` is TLS with the system's roots.

    Without an address, the client config decides (kubep4.clientconfig: $KUBEP4_CONFIG, default
    ~/.kubep4/config, its ``context`` or current context; KUBEP4_API, KUBEP4_TOKEN... override),
    and the context's namespace is the default of every call. With an address, only the
    arguments count.
    """

    def __init__(self, address: str | None = None, token: str | None = None, timeout: float = 30.0,
                 interceptors: list | None = None, *, ca: str = "", cert: str = "", key: str = "",
                 server_name: str = "", context: str | None = None, namespace: str = ""):
        # the default namespace of calls (the context's without an address): "" is "default", and a
        # list or watch of every namespace
        self.namespace = namespace
        if address is None:
            from kubep4 import clientconfig
            conn = clientconfig.connection(token=token, context=context, ca=ca or None, cert=cert or None,
                                           key=key or None, server_name=server_name or None)
            address, token, ca, cert, key, server_name = (conn.server, conn.token, conn.ca, conn.cert, conn.key,
                                                          conn.server_name)
            self.namespace = namespace or conn.namespace
        self.address = address
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = _channel(address, ca, cert, key, server_name, interceptors)
        self._stub = api_grpc.KubeP4Stub(self._channel)

    def _ns(self, namespace: str | None) -> str:
        return namespace if namespace is not None else (self.namespace or "default")

    def _ns_or_all(self, namespace: str | None) -> str:
        return namespace if namespace is not None else self.namespace

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _md(self, namespace: str) -> tuple:
        """The call's metadata: the token, and the namespace the request names (``kubep4-namespace``),
        so that the apiserver can refuse a call that namespace does not allow before reading it."""
        if not namespace or len(namespace) > 253 or not (namespace.isascii() and namespace.isprintable()):
            return self._metadata  # none, or one the apiserver refuses anyway: the request says it
        return (*self._metadata, (NAMESPACE_HEADER, namespace))

    async def _call(self, method: str, request: Message, namespace: str = "") -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._md(namespace))
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e) from None

    # -------------------------------------------------------------- CRUD
    async def create(self, obj: Message) -> Message:
        if isinstance(obj, (kr.Pipeline, kr.Deployment)) and not obj.metadata.namespace and self.namespace:
            obj = type(obj).FromString(obj.SerializeToString())  # into the context's namespace, a copy
            obj.metadata.namespace = self.namespace
        if isinstance(obj, kr.Pipeline):
            return await self._call("CreatePipeline", api.CreatePipelineRequest(pipeline=obj),
                                    obj.metadata.namespace or "default")
        if isinstance(obj, kr.Deployment):
            return await self._call("CreateDeployment", api.CreateDeploymentRequest(deployment=obj),
                                    obj.metadata.namespace or "default")
        raise TypeError(f"cannot create a {type(obj).__name__}")

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Message:
        k = kind_of(kind)
        namespace = self._ns(namespace)
        method = {"pipeline": "GetPipeline", "deployment": "GetDeployment", "node": "GetNode"}[k]
        ns = namespace if k != "node" else ""
        return await self._call(method, api.GetRequest(namespace=ns, name=name), ns or ("default" if k != "node" else ""))

    async def list(self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
                   ) -> list[Message]:
        """Every object of ``kind`` in ``namespace`` ("": all namespaces; None: the context's, else all)."""
        k = kind_of(kind)
        namespace = self._ns_or_all(namespace)
        method = {"pipeline": "ListPipelines", "deployment": "ListDeployments", "node": "ListNodes"}[k]
        items, token = [], ""
        while True:  # every page, following the continue tokens
            resp = await self._call(method, api.ListRequest(namespace=namespace, label_selector=labels or {},
                                                            continue_token=token), namespace)
            items += resp.items
            token = resp.continue_token
            if not token:
                return items

    async def update(self, deployment: kr.Deployment) -> kr.Deployment:
        return await self._call("UpdateDeployment", api.UpdateDeploymentRequest(deployment=deployment),
                                deployment.metadata.namespace or "default")

    async def delete(self, kind: str, name: str, namespace: str | None = None, resource_version: int = 0) -> None:
        k = kind_of(kind)
        namespace = self._ns(namespace)
        if k == "node":
            raise errors.InvalidArgument("nodes are registered by their agents and cannot be deleted")
        method = {"pipeline": "DeletePipeline", "deployment": "DeleteDeployment"}[k]
        await self._call(method, api.DeleteRequest(namespace=namespace, name=name,
                                                   resource_version=resource_version), namespace or "default")

    async def apply(self, obj: Message) -> tuple[Message, str]:
        """Create, or update the spec of an existing object. Returns (object, created|configured|unchanged)."""
        md = obj.metadata
        ns = md.namespace or self._ns(None)
        try:
            return await self.create(obj), "created"
        except errors.AlreadyExists:
            pass
        if isinstance(obj, kr.Pipeline):
            current = await self.get("pipeline", md.name, ns)
            fresh = kr.Pipeline()
            fresh.CopyFrom(obj)
            fresh.spec.ClearField("p4info_ref")
            fresh.spec.ClearField("device_config_ref")
            if _pipeline_inputs(current) == _pipeline_inputs(fresh):
                return current, "unchanged"
            raise errors.FailedPrecondition(f"pipeline {ns}/{md.name} exists with other inputs: pipelines are "
                                            "immutable revisions, give the new one another name")
        was: dict[str, Any] = {}

        def take_spec_and_labels(current: kr.Deployment) -> None:
            was.update(generation=current.metadata.generation, labels=dict(current.metadata.labels))
            current.spec.CopyFrom(obj.spec)
            current.metadata.labels.clear()
            current.metadata.labels.update(obj.metadata.labels)
        updated = await self.edit(md.name, take_spec_and_labels, ns)
        return updated, ("configured" if updated.metadata.generation != was["generation"]
                         or dict(updated.metadata.labels) != was["labels"] else "unchanged")

    async def edit(self, name: str, change: Callable[[kr.Deployment], Awaitable[None] | None],
                   namespace: str | None = None, attempts: int = 10) -> kr.Deployment:
        """Read deployment ``name``, ``change`` it in place (a function or a coroutine function),
        update it; on a Conflict (someone wrote in between, the controller's status writes
        included) read it again and change it again, as client-go's RetryOnConflict. Returns the
        updated deployment."""
        ns = self._ns(namespace)
        for _ in range(attempts):
            current = await self.get("deployment", name, ns)
            if inspect.isawaitable(changing := change(current)):
                await changing
            try:
                return await self.update(current)
            except errors.Conflict:
                continue
        raise errors.Conflict(f"deployment {ns}/{name} keeps changing; try again")

    # -------------------------------------------------------------- live values
    async def read_deployment(self, name: str, kind: str, object_name: str | None = None,
                              namespace: str | None = None) -> api.ReadDeploymentResponse:
        """Live values of a deployment's replicas, read from their devices now (nothing is stored).

        ``kind``: counter, meter, register, table, action_profile, multicast or clone_session;
        ``object_name``: one of them by its P4Info name (None: all). One ``ReplicaValues`` per
        replica in ``.replicas``: its node, device and ``values``, or its ``error`` and ``reason``
        when its node or device did not answer (the others still do).
        """
        namespace = self._ns(namespace)
        return await self._call("ReadDeployment", api.ReadDeploymentRequest(
            namespace=namespace, name=name, kind=kind, object_name=object_name or ""), namespace or "default")

    async def counters(self, name: str, counter: str | None = None, namespace: str | None = None
                       ) -> api.ReadDeploymentResponse:
        """The deployment's indexed counters (one by name, or all), per replica: ``values.counters``."""
        return await self.read_deployment(name, "counter", counter, namespace)

    # -------------------------------------------------------------- identity
    async def whoami(self) -> api.WhoAmIResponse:
        """Who the apiserver takes this client for: user, uid, groups, authenticated_by."""
        return await self._call("WhoAmI", api.WhoAmIRequest())

    async def can_i(self, verb: str, kind: str, namespace: str | None = None) -> api.CanIResponse:
        """May this client ``verb`` ``kind`` in ``namespace`` ("": every namespace; None: the
        context's, else "default")? ``.allowed``, ``.reason``."""
        namespace = self._ns(namespace)
        return await self._call("CanI", api.CanIRequest(verb=verb, kind=kind, namespace=namespace))

    # -------------------------------------------------------------- revisions and rollouts
    async def revisions(self, deployment: str, namespace: str | None = None) -> list[kr.Revision]:
        """The deployment's revisions (docs/rollouts.md), oldest first."""
        namespace = self._ns(namespace)
        items, token = [], ""
        while True:
            resp = await self._call("ListRevisions", api.ListRequest(
                namespace=namespace, label_selector={"kubep4.io/deployment": deployment}, continue_token=token),
                namespace)
            items += [r for r in resp.items if r.spec.deployment == deployment]
            token = resp.continue_token
            if not token:
                return sorted(items, key=lambda r: r.spec.revision)

    async def _rollout(self, method: str, name: str, namespace: str | None, to_revision: int = 0) -> kr.Deployment:
        namespace = self._ns(namespace)
        for attempt in range(5):  # an undo is an update: it may meet a concurrent writer
            try:
                return await self._call(method, api.RolloutRequest(namespace=namespace, name=name,
                                                                   to_revision=to_revision), namespace)
            except errors.Conflict:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def rollout_undo(self, name: str, to_revision: int = 0, namespace: str | None = None) -> kr.Deployment:
        """`kubectl rollout undo`: the spec gets revision ``to_revision``'s pipeline and entities
        (0: the revision before the target one)."""
        return await self._rollout("RolloutUndo", name, namespace, to_revision)

    async def rollout_pause(self, name: str, namespace: str | None = None) -> kr.Deployment:
        return await self._rollout("RolloutPause", name, namespace)

    async def rollout_resume(self, name: str, namespace: str | None = None) -> kr.Deployment:
        return await self._rollout("RolloutResume", name, namespace)

    async def rollout_promote(self, name: str, namespace: str | None = None) -> kr.Deployment:
        """Let a canary past the step it waits at (a ``pause: true`` step)."""
        return await self._rollout("RolloutPromote", name, namespace)

    async def wait_rollout(self, name: str, namespace: str | None = None, timeout: float = 60.0,
                           progress=None) -> kr.Deployment:
        """Wait until the deployment's rollout is complete (``kubectl rollout status``): returns
        the deployment, raises FailedPrecondition when it stopped or rolled back, DeadlineExceeded
        after ``timeout``. ``progress(message)`` is called with each new progress message."""
        namespace = self._ns(namespace)
        last = [""]

        async def wait() -> kr.Deployment:
            async for etype, d, _ in self.watch("deployment", namespace, name):
                if etype == "DELETED":
                    raise errors.NotFound(f"deployment {namespace}/{name} was deleted")
                if etype == "SYNCED":
                    continue
                done, failed, message = rollout_state(d)
                if progress is not None and message != last[0]:
                    progress(message)
                last[0] = message
                if failed:
                    raise errors.FailedPrecondition(message)
                if done:
                    return d
            raise errors.Unavailable("watch ended")
        await self.get("deployment", name, namespace)  # NotFound early
        try:
            return await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            raise errors.DeadlineExceeded(f"deployment {namespace}/{name}: rollout not complete after "
                                          f"{timeout}s ({last[0]})") from None

    # -------------------------------------------------------------- watch
    async def watch(self, kind: str, namespace: str | None = None, name: str = "", resource_version: int = 0
                    ) -> AsyncIterator[tuple[str, Message, int]]:
        """(event type, object, resource_version); resume by passing the last version seen.
        ``namespace`` "": all; None: the context's, else all."""
        k = kind_of(kind)
        namespace = self._ns_or_all(namespace)
        method = {"pipeline": "WatchPipelines", "deployment": "WatchDeployments"}.get(k)
        if method is None:
            raise errors.InvalidArgument("nodes cannot be watched yet; list them")
        while True:
            call = getattr(self._stub, method)(api.WatchRequest(namespace=namespace, name=name,
                                                                resource_version=resource_version),
                                               metadata=self._md(namespace))
            try:
                async for ev in call:
                    resource_version = ev.resource_version
                    yield EVENT_NAMES.get(ev.type, "UNKNOWN"), ev.object, ev.resource_version
            except grpc.aio.AioRpcError as e:
                # a watcher that fell behind is closed by the apiserver: go on from what it got
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "watch too slow" in (e.details() or "") \
                        and resource_version:
                    continue
                raise errors.from_rpc_error(e) from None
            finally:
                call.cancel()
            return

    async def wait_ready(self, name: str, namespace: str | None = None, timeout: float = 30.0,
                         condition: str = cond.READY) -> kr.Deployment:
        """Wait until the deployment's condition is True for its current generation.

        Like `kubectl wait`, Failed and Unschedulable are not final (the controller and the node
        agents keep retrying, and a node may join): on timeout, DeadlineExceeded says the last
        phase and the reason.
        """
        last: list[kr.Deployment] = []
        namespace = self._ns(namespace)

        async def wait() -> kr.Deployment:
            async for etype, d, _ in self.watch("deployment", namespace, name):
                if etype == "DELETED":
                    raise errors.NotFound(f"deployment {namespace}/{name} was deleted")
                if etype == "SYNCED":
                    continue
                last[:] = [d]
                c = cond.get(d.status.conditions, condition)
                if c is not None and c.status == cond.TRUE and \
                        d.status.observed_generation >= d.metadata.generation:
                    return d
            raise errors.Unavailable("watch ended")
        await self.get("deployment", name, namespace)  # NotFound early
        try:
            return await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            d = last[0] if last else await self.get("deployment", name, namespace)
            c = cond.get(d.status.conditions, cond.READY)
            why = f": {c.reason}: {c.message}" if c is not None and c.message else ""
            raise errors.DeadlineExceeded(f"deployment {namespace}/{name} not {condition} after {timeout}s "
                                          f"(phase {d.status.phase}{why})") from None


def rollout_state(d: kr.Deployment) -> tuple[bool, bool, str]:
    """(complete, stopped, message) of a deployment's rollout, from its status: complete when its
    generation was observed and every replica runs the target revision (Progressing Complete);
    stopped when Progressing is False (ProgressDeadlineExceeded, ReplicaFailed, RolledBack)."""
    s, n = d.status, d.spec.replicas
    c = cond.get(s.conditions, "Progressing")
    if s.observed_generation < d.metadata.generation or c is None:
        return False, False, f"waiting for deployment {d.metadata.name}'s generation {d.metadata.generation} to be observed"
    if c.status == cond.FALSE:
        return False, True, f"deployment {d.metadata.name}: {c.reason}: {c.message}"
    if c.reason == "Complete" and s.updated_replicas == n and s.ready_replicas == n:
        return True, False, f"deployment {d.metadata.name} successfully rolled out (revision {s.target_revision})"
    if c.reason == "Paused":
        return False, False, f"deployment {d.metadata.name}: {c.message}"
    return False, False, (f"Waiting for deployment {d.metadata.name} rollout to finish: {s.updated_replicas} of "
                          f"{n} replicas run revision {s.target_revision}, {s.ready_replicas} ready")


def _pipeline_inputs(p: kr.Pipeline) -> bytes:
    spec = kr.PipelineSpec()
    spec.CopyFrom(p.spec)
    if spec.HasField("artifacts") or spec.p4info_ref.digest:
        spec.ClearField("p4info_ref")
        spec.ClearField("device_config_ref")
    return spec.SerializeToString(deterministic=True)


class Client:
    """Blocking client: the AsyncClient run on a private event loop thread."""

    def __init__(self, address: str | None = None, token: str | None = None, timeout: float = 30.0, **tls):
        """As AsyncClient: ``ca``, ``cert``, ``key``, ``server_name``, ``context``, ``namespace``."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kubep4-client", daemon=True)
        self._thread.start()
        try:
            self._async: AsyncClient = self._run(_make(address, token, timeout, tls))
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            raise
        self.namespace = self._async.namespace

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def create(self, obj):
        return self._run(self._async.create(obj))

    def get(self, kind, name, namespace=None):
        return self._run(self._async.get(kind, name, namespace))

    def list(self, kind, namespace=None, labels=None):
        return self._run(self._async.list(kind, namespace, labels))

    def update(self, deployment):
        return self._run(self._async.update(deployment))

    def edit(self, name, change, namespace=None, attempts=10):
        async def in_a_thread(d):  # off the client's loop: ``change`` may call this client
            if inspect.isawaitable(changing := await asyncio.to_thread(change, d)):
                await changing
        return self._run(self._async.edit(name, in_a_thread, namespace, attempts))

    def delete(self, kind, name, namespace=None, resource_version=0):
        return self._run(self._async.delete(kind, name, namespace, resource_version))

    def apply(self, obj):
        return self._run(self._async.apply(obj))

    def read_deployment(self, name, kind, object_name=None, namespace=None):
        return self._run(self._async.read_deployment(name, kind, object_name, namespace))

    def counters(self, name, counter=None, namespace=None):
        return self._run(self._async.counters(name, counter, namespace))

    def whoami(self):
        return self._run(self._async.whoami())

    def can_i(self, verb, kind, namespace=None):
        return self._run(self._async.can_i(verb, kind, namespace))

    def revisions(self, deployment, namespace=None):
        return self._run(self._async.revisions(deployment, namespace))

    def rollout_undo(self, name, to_revision=0, namespace=None):
        return self._run(self._async.rollout_undo(name, to_revision, namespace))

    def rollout_pause(self, name, namespace=None):
        return self._run(self._async.rollout_pause(name, namespace))

    def rollout_resume(self, name, namespace=None):
        return self._run(self._async.rollout_resume(name, namespace))

    def rollout_promote(self, name, namespace=None):
        return self._run(self._async.rollout_promote(name, namespace))

    def wait_rollout(self, name, namespace=None, timeout=60.0, progress=None):
        return self._run(self._async.wait_rollout(name, namespace, timeout, progress))

    def wait_ready(self, name, namespace=None, timeout=30.0, condition=cond.READY):
        return self._run(self._async.wait_ready(name, namespace, timeout, condition))

    def watch(self, kind, namespace=None, name="", resource_version=0, timeout: float | None = None
              ) -> Iterator[tuple[str, Message, int]]:
        """Blocking iterator over watch events; stops after ``timeout`` seconds without an event."""
        agen = self._async.watch(kind, namespace, name, resource_version)
        try:
            while True:
                fut = asyncio.run_coroutine_threadsafe(agen.__anext__(), self._loop)
                try:
                    yield fut.result(timeout)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    fut.cancel()
                    return
        finally:
            asyncio.run_coroutine_threadsafe(agen.aclose(), self._loop).result()


async def _make(address: str | None, token: str | None, timeout: float, tls: dict) -> AsyncClient:
    return AsyncClient(address, token, timeout, **tls)


def _channel(address: str, ca: str, cert: str, key: str, server_name: str, interceptors) -> grpc.aio.Channel:
    """A plaintext channel, or TLS with ``ca`` (``https://`` without one: the system's roots)."""
    target = address.split("://", 1)[1] if address.startswith(("http://", "https://")) else address
    if not (ca or cert or address.startswith("https://")):
        return grpc.aio.insecure_channel(target, options=GRPC_OPTIONS, interceptors=interceptors)
    from kubep4 import tls
    options = [*GRPC_OPTIONS, *(tls.ClientTLS(ca, cert, key, server_name).options())]
    return grpc.aio.secure_channel(target, tls.channel_credentials(ca or None, cert or None, key or None),
                                   options=options, interceptors=interceptors)


