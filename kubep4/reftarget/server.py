"""gRPC front of the P4Runtime reference target (grpc.aio).

Each device gets its own gRPC server on its own port, serving ``p4.v1.P4Runtime``
and ``grpc.health.v1.Health``.  All device state mutations happen on the event
loop thread inside synchronous :class:`~kubep4.reftarget.device.Device` methods,
so no locking is needed.

Client input never earns a traceback: request bytes that do not decode get
INVALID_ARGUMENT (see :func:`kubep4.serving.add_servicer`), refused requests a
one-line log at INFO; messages are cut to :data:`MAX_STATUS_MESSAGE` characters.
A failed Write carries one per-update ``p4.v1.Error`` per update, in order (spec
§12.3), as PI does: past a few hundred updates that needs a client whose
``grpc.max_metadata_size`` is above gRPC's default 8 KiB.
The port is exclusive (no SO_REUSEPORT).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Iterable

import grpc
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from kubep4.p4 import p4r, p4r_grpc
from kubep4.reftarget.device import MAX_BATCH, Device, Notification, P4RuntimeError, Session, update_error
from kubep4.serving import ListenError, UndecodableRequest, add_servicer, bind

__all__ = ["P4RuntimeServicer", "ReferenceTarget", "serve", "P4RUNTIME_API_VERSION", "MAX_MESSAGE_BYTES",
           "MAX_STATUS_MESSAGE", "write_status"]

log = logging.getLogger("kubep4.reftarget")

P4RUNTIME_API_VERSION = "1.4.0"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# Entities per ReadResponse message: keeps each message far below the size limit.
READ_CHUNK = 1000
# Bytes (UTF-8) of a status message, and of each per-update error message; the rest becomes "...".
MAX_STATUS_MESSAGE = 1000
PER_UPDATE_MESSAGE = 200

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]

_GRPC_CODES = {c.value[0]: c for c in grpc.StatusCode}


def grpc_code(code: int) -> grpc.StatusCode:
    """``google.rpc.Code`` value -> ``grpc.StatusCode``."""
    return _GRPC_CODES.get(code, grpc.StatusCode.UNKNOWN)


def _cut(text: str, limit: int = MAX_STATUS_MESSAGE) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit - 3].decode(errors="ignore") + "..."


def _action_name(action: int) -> str:
    """The name of a SetForwardingPipelineConfig action, also for values the enum does not know."""
    try:
        return p4r.SetForwardingPipelineConfigRequest.Action.Name(action)
    except ValueError:
        return f"action {action}"


def write_status(results: list[P4RuntimeError | None]) -> status_pb2.Status:
    """The UNKNOWN status of a Write some of whose updates failed (spec §12.3): one ``p4.v1.Error``
    per update, in order, as PI sends it, each message cut to PER_UPDATE_MESSAGE bytes.

    For a large batch that is more than the 8 KiB of trailers a gRPC client accepts by default: a
    client raises ``grpc.max_metadata_size`` to read it (the node agent does), as it must with PI.
    The batch bound (MAX_BATCH updates) keeps it far below what such a client accepts.
    """
    failed = sum(r is not None for r in results)
    status = status_pb2.Status(code=code_pb2.UNKNOWN, message=f"{failed} of {len(results)} updates failed")
    for r in results:
        short = None if r is None else P4RuntimeError(r.code, _cut(r.message, PER_UPDATE_MESSAGE))
        status.details.add().Pack(update_error(short))
    return status


@dataclass
class _End:
    """Ends a StreamChannel: OK when ``error`` is None."""

    error: P4RuntimeError | None = None


@dataclass(eq=False)
class _Stream:
    session: Session
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    device: Device | None = None


class P4RuntimeServicer(p4r_grpc.P4RuntimeServicer):
    """P4Runtime v1 over a set of in-memory devices (normally one per server)."""

    def __init__(self, devices: Iterable[Device]):
        self.devices: dict[int, Device] = {d.device_id: d for d in devices}
        self._streams: dict[Session, _Stream] = {}

    # ----------------------------------------------------------------- helpers

    def _device(self, device_id: int) -> Device:
        device = self.devices.get(device_id)
        if device is None:
            raise P4RuntimeError(code_pb2.NOT_FOUND, f"unknown device_id {device_id}")
        return device

    def _deliver(self, notifications: list[Notification]) -> None:
        for session, msg in notifications:
            stream = self._streams.get(session)
            if stream is not None:
                stream.queue.put_nowait(p4r.StreamMessageResponse(arbitration=msg))

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, err: P4RuntimeError) -> None:
        await context.abort(grpc_code(err.code), _cut(err.message))

    # ----------------------------------------------------------------- RPCs

    async def Capabilities(self, request: p4r.CapabilitiesRequest, context) -> p4r.CapabilitiesResponse:
        return p4r.CapabilitiesResponse(p4runtime_api_version=P4RUNTIME_API_VERSION)

    async def SetForwardingPipelineConfig(self, request: p4r.SetForwardingPipelineConfigRequest, context):
        try:
            device = self._device(request.device_id)
            device.check_primary(request.role, request.election_id)
            device.set_pipeline(request.action, request.config)
        except P4RuntimeError as e:
            log.info("device %s: SetForwardingPipelineConfig %s refused: %s", request.device_id,
                     _action_name(request.action), _cut(e.message))
            await self._abort(context, e)
        log.info("device %s: SetForwardingPipelineConfig %s done", request.device_id,
                 _action_name(request.action))
        return p4r.SetForwardingPipelineConfigResponse()

    async def GetForwardingPipelineConfig(self, request: p4r.GetForwardingPipelineConfigRequest, context):
        try:
            config = self._device(request.device_id).get_pipeline(request.response_type)
        except P4RuntimeError as e:
            await self._abort(context, e)
        return p4r.GetForwardingPipelineConfigResponse(config=config)

    async def Write(self, request: p4r.WriteRequest, context) -> p4r.WriteResponse:
        try:
            device = self._device(request.device_id)
            device.check_primary(request.role, request.election_id)
            results = device.write(request.updates, request.atomicity)
        except P4RuntimeError as e:
            await self._abort(context, e)
        if any(r is not None for r in results):
            status = write_status(results)
            log.info("device %s: Write: %s", request.device_id, status.message)
            await context.abort_with_status(rpc_status.to_status(status))
        return p4r.WriteResponse()

    async def Read(self, request: p4r.ReadRequest, context) -> AsyncIterator[p4r.ReadResponse]:
        try:
            entities = list(self._device(request.device_id).read(request.entities))
        except P4RuntimeError as e:
            await self._abort(context, e)
        for start in range(0, len(entities), READ_CHUNK):
            yield p4r.ReadResponse(entities=entities[start:start + READ_CHUNK])
        if not entities:
            yield p4r.ReadResponse()

    async def StreamChannel(self, request_iterator, context) -> AsyncIterator[p4r.StreamMessageResponse]:
        stream = _Stream(Session())
        self._streams[stream.session] = stream
        reader = asyncio.create_task(self._read_stream(stream, request_iterator))
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        await self._abort(context, item.error)
                    return
                yield item
        finally:
            reader.cancel()
            self._streams.pop(stream.session, None)
            if stream.device is not None:
                self._deliver(stream.device.close_session(stream.session))

    async def _read_stream(self, stream: _Stream, request_iterator) -> None:
        end = _End()
        try:
            async for request in request_iterator:
                kind = request.WhichOneof("update")
                if kind == "arbitration":
                    update = request.arbitration
                    if stream.device is None:
                        stream.device = self._device(update.device_id)
                    elif update.device_id != stream.device.device_id:
                        raise P4RuntimeError(code_pb2.INVALID_ARGUMENT,
                                             f"this stream is bound to device {stream.device.device_id}")
                    self._deliver(stream.device.arbitrate(stream.session, update))
                elif not stream.session.arbitrated:
                    raise P4RuntimeError(code_pb2.FAILED_PRECONDITION,
                                         "the first StreamChannel message must be a MasterArbitrationUpdate")
                # packet out, digest acks and others are accepted and ignored: no data plane here
        except P4RuntimeError as e:
            end = _End(e)
        except UndecodableRequest as e:
            end = _End(P4RuntimeError(code_pb2.INVALID_ARGUMENT, str(e)))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the client went away mid-read, or a bug
            log.debug("stream %s ended: %r", stream.session.id, e)
        stream.queue.put_nowait(end)


class ReferenceTarget:
    """The running servers of :func:`serve`: one gRPC server per device."""

    def __init__(self) -> None:
        self.devices: dict[int, Device] = {}
        self.ports: dict[int, int] = {}
        self.hosts: dict[int, str] = {}
        self._servers: dict[int, grpc.aio.Server] = {}
        self._health: dict[int, health.aio.HealthServicer] = {}

    def address(self, device_id: int) -> str:
        """``host:port`` a client dials for ``device_id``."""
        return _join(self.hosts[device_id], self.ports[device_id])

    async def stop(self, grace: float | None = None) -> None:
        for hs in self._health.values():
            await hs.enter_graceful_shutdown()
        await asyncio.gather(*(s.stop(grace) for s in self._servers.values()))
        self._servers.clear()
        self._health.clear()

    async def wait_for_termination(self) -> None:
        await asyncio.gather(*(s.wait_for_termination() for s in self._servers.values()))

    async def __aenter__(self) -> "ReferenceTarget":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


def _join(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


async def serve(devices: list[tuple[int, str, int]], max_batch: int = MAX_BATCH,
                unimplemented: frozenset[str] = frozenset(), wedge_on_reconcile: bool = False,
                credentials: Callable[[], grpc.ServerCredentials] | None = None) -> ReferenceTarget:
    """Start one P4Runtime server per (device_id, host, port); port 0 picks a free port. A Write or
    Read of more than ``max_batch`` updates or entities is refused whole (RESOURCE_EXHAUSTED); the
    entity kinds in ``unimplemented`` are refused with UNIMPLEMENTED, and ``wedge_on_reconcile``
    wedges a device on RECONCILE_AND_COMMIT as BMv2 through PI does (to stand in for such switches).
    With ``credentials`` (a maker of ``kubep4.tls.server_credentials``: each port needs its own, since
    gRPC hands a reloading credentials' first certificate to one port only) every device serves TLS
    only."""
    ids = [d[0] for d in devices]
    if len(ids) != len(set(ids)):
        raise ValueError(f"device ids must be unique: {ids}")
    target = ReferenceTarget()
    try:
        for device_id, host, port in devices:
            device = Device(device_id, max_batch=max_batch, unimplemented=unimplemented,
                            wedge_on_reconcile=wedge_on_reconcile)
            server = grpc.aio.server(options=SERVER_OPTIONS)
            add_servicer(server, P4RuntimeServicer([device]), p4r.DESCRIPTOR.services_by_name["P4Runtime"])
            hs = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(hs, server)
            await hs.set("", health_pb2.HealthCheckResponse.SERVING)
            await hs.set("p4.v1.P4Runtime", health_pb2.HealthCheckResponse.SERVING)
            try:
                bound = bind(server, _join(host, port), credentials() if credentials else None)
            except ListenError as e:
                await server.stop(None)
                raise ListenError(f"device {device_id}: {e}") from None
            await server.start()
            target.devices[device_id] = device
            target.ports[device_id] = bound
            target.hosts[device_id] = host
            target._servers[device_id] = server
            target._health[device_id] = hs
    except BaseException:
        await target.stop()
        raise
    return target
