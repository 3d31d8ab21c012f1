"""The P4Runtime client of KubeP4: one device, one channel, at most one StreamChannel and one reader.

The node agent holds a DeviceConnection per device as primary; the benchmarks' direct-push floor
arbitrates with one of its own; a reader (``election_id=None``) only reads, which needs no
arbitration (P4Runtime spec §6.4), so it never disturbs the primary; tests of the reference
target use the same stream machinery and reach raw RPCs through ``stub``.

Works against any P4Runtime v1 server: the bundled reference target, BMv2's
simple_switch_grpc, Stratum.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
from google.rpc import code_pb2
from grpc_status import rpc_status
from opentelemetry import trace

from kubep4.config import GRPC_OPTIONS
from kubep4.p4 import NO_PIPELINE, p4r, p4r_grpc
from kubep4.tls import ClientTLS

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.p4runtime")


class P4RuntimeError(Exception):
    """A device refused a request; ``code`` is the gRPC status, ``errors`` the per-update p4.v1.Errors."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
                 errors: list[p4r.Error] | None = None):
        super().__init__(message)
        self.code = code
        self.errors = errors or []


def _error(prefix: str, e: grpc.aio.AioRpcError) -> P4RuntimeError:
    errors: list[p4r.Error] = []
    status = None
    try:
        status = rpc_status.from_call(e)
    except ValueError:
        pass
    if status is not None:
        for d in status.details:
            err = p4r.Error()
            if d.Unpack(err):
                errors.append(err)
    bad = [f"#{i}: {code_pb2.Code.Name(x.canonical_code)} {x.message}" for i, x in enumerate(errors)
           if x.canonical_code != code_pb2.OK]
    msg = f"{prefix}: {e.code().name}: {e.details()}" + (f" ({'; '.join(bad[:5])})" if bad else "")
    return P4RuntimeError(msg, e.code(), errors)


class NotPrimary(P4RuntimeError):
    """Another client holds primary for (device_id, role) with a higher election id."""

    def __init__(self, address: str, device_id: int, primary_election_id: int):
        super().__init__(f"{address}: another controller is primary for device {device_id} "
                         f"(election id {primary_election_id})", grpc.StatusCode.ALREADY_EXISTS)
        self.primary_election_id = primary_election_id


def _uint128(v: p4r.Uint128) -> int:
    return (v.high << 64) | v.low


def uint128(n: int) -> p4r.Uint128:
    """A P4Runtime Uint128 (an election id) of a non-negative integer below 2**128."""
    return p4r.Uint128(high=n >> 64, low=n & ((1 << 64) - 1))


# A silent peer (a hung switch, a dead link) is noticed by keepalive pings: unacknowledged for
# KEEPALIVE_TIMEOUT_MS, the transport closes and the stream fails. Pings stay within what a
# server's default policy accepts, because the periodic device checks send data between them.
KEEPALIVE_MS = (10_000, 5_000)
MAX_METADATA = 16 << 20  # ping after this long, give up on it after that long

# What the stream reports to ``on_event``
BROKEN, PRIMARY, NOT_PRIMARY, NO_PRIMARY = "broken", "primary", "not-primary", "no-primary"


def device_tls(device) -> ClientTLS | None:
    """How to reach a ``kubep4.v1.Device`` over TLS (its ``tls`` files), None for plaintext."""
    t = device.tls
    if not t.ca_file:
        return None
    return ClientTLS(t.ca_file, t.cert_file, t.key_file, t.server_name)


class DeviceConnection:
    """A channel to one device and at most one StreamChannel on it, read by exactly one task.

    The reader applies every arbitration update (the first one answers ``connect``) and tells
    ``on_event`` when the stream breaks (BROKEN) or mastership changes (PRIMARY, NOT_PRIMARY).
    A connection refused primary keeps its stream open: the device announces on it when the
    primary goes away, so the agent waits for that instead of retrying blindly.

    With ``election_id=None`` it is a reader: no stream, no arbitration; reads and
    GetForwardingPipelineConfig only. With ``keep_updates`` every arbitration update the device
    sends is also queued for ``next_arbitration`` (tests of a target's arbitration).
    The channel opens on first use; ``close`` ends stream and channel (``async with`` does too).
    """

    def __init__(self, address: str, device_id: int, election_id: int | None = None, role: str = "",
                 on_event: Callable[[str], None] | None = None, keepalive_ms: tuple[int, int] = KEEPALIVE_MS,
                 keep_updates: bool = False, tls: ClientTLS | None = None):
        self.address, self.device_id, self.role = address, device_id, role
        self.tls = tls  # the device's CA and our client certificate: None for plaintext
        self.keepalive_ms = keepalive_ms
        self.election_id = None if election_id is None else uint128(election_id)
        self.on_event = on_event
        self.keep_updates = keep_updates
        self._updates: asyncio.Queue | None = None  # arbitration updates, then how the stream ended
        self._channel: grpc.aio.Channel | None = None
        self._stub: p4r_grpc.P4RuntimeStub | None = None
        self._stream: grpc.aio.StreamStreamCall | None = None
        self._reader: asyncio.Task | None = None
        self._first: asyncio.Future | None = None
        self.is_primary = False
        self.primary_election_id: int | None = None  # the current primary's, as the device last said
        self.broken_reason = ""

    async def __aenter__(self) -> "DeviceConnection":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def stream_open(self) -> bool:
        return self._reader is not None and not self._reader.done()

    @property
    def connected(self) -> bool:
        return self.stream_open and self.is_primary

    @property
    def stub(self) -> p4r_grpc.P4RuntimeStub:
        """The generated stub on this connection's channel (opened if need be), for raw requests."""
        if self._stub is None:
            options = GRPC_OPTIONS + (self.tls.options() if self.tls else []) + [
                ("grpc.keepalive_time_ms", self.keepalive_ms[0]),
                ("grpc.keepalive_timeout_ms", self.keepalive_ms[1]),
                # gRPC core (1.6x+) times an unanswered ping out by this one (default 1 min), not the above
                ("grpc.http2.ping_timeout_ms", self.keepalive_ms[1]),
                # a failed Write carries one p4.v1.Error per update in its trailer: far over gRPC's
                # default 8 KiB for a large batch
                ("grpc.max_metadata_size", MAX_METADATA)]
            self._channel = grpc.aio.secure_channel(self.address, self.tls.credentials(), options=options) \
                if self.tls else grpc.aio.insecure_channel(self.address, options=options)
            self._stub = p4r_grpc.P4RuntimeStub(self._channel)
        return self._stub

    def raise_election_id(self, above: int) -> None:
        """Arbitrate next with an election id above ``above`` (taking a primary nobody holds)."""
        if above >= _uint128(self.election_id):
            self.election_id = uint128(above + 1)

    def arbitration_request(self) -> p4r.StreamMessageRequest:
        arb = p4r.MasterArbitrationUpdate(device_id=self.device_id, election_id=self.election_id)
        if self.role:
            arb.role.name = self.role
        return p4r.StreamMessageRequest(arbitration=arb)

    async def connect(self, timeout: float = 5.0, _retry: bool = True) -> None:
        """Open a new stream and become primary for (device_id, role).

        Raises NotPrimary (the stream stays open, waiting for a mastership change) or
        P4RuntimeError (UNAVAILABLE / DEADLINE_EXCEEDED: the device did not answer).
        """
        if self.election_id is None:
            raise ValueError(f"{self.address}: a reader (no election id) does not arbitrate")
        await self.close()
        self.broken_reason = ""
        with tracer.start_as_current_span("p4runtime arbitration", attributes={
                "p4rt.address": self.address, "p4rt.device_id": self.device_id,
                "p4rt.election_id": str(_uint128(self.election_id))}):
            self.open_stream()
            try:
                await asyncio.wait_for(self._stream.write(self.arbitration_request()), timeout)
                first = await asyncio.wait_for(asyncio.shield(self._first), timeout)
            except asyncio.TimeoutError:
                await self.close()
                raise P4RuntimeError(f"{self.address}: no arbitration reply in {timeout}s",
                                     grpc.StatusCode.DEADLINE_EXCEEDED) from None
            except grpc.aio.AioRpcError as e:
                await self.close()
                raise _error(f"{self.address} arbitration", e) from None
            except P4RuntimeError:
                await self.close()
                raise
            except Exception as e:  # the call ended under the write (grpc.aio raises a usage error)
                await self.close()
                raise P4RuntimeError(f"{self.address}: arbitration failed: {e!r}",
                                     grpc.StatusCode.UNAVAILABLE) from None
            if not self.is_primary:
                if first.status.code == code_pb2.NOT_FOUND and _retry:  # nobody is primary (Stratum):
                    self.raise_election_id(_uint128(first.election_id))  # claim it above the last one
                    return await self.connect(timeout, _retry=False)
                raise NotPrimary(self.address, self.device_id, _uint128(first.election_id))

    def open_stream(self) -> None:
        """Open a StreamChannel and start its reader, unless one is open; nothing is sent on it."""
        if self._stream is not None and self.stream_open:
            return
        self._stream = self.stub.StreamChannel()
        self._first = asyncio.get_running_loop().create_future()
        # a stream that ends before any arbitration reply, with nobody in connect() to hear it
        self._first.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._updates = asyncio.Queue() if self.keep_updates else None
        self._reader = asyncio.create_task(self._read(self._stream, self._first))

    async def send(self, request: p4r.StreamMessageRequest) -> None:
        """Write one message on the stream (opened if need be): an arbitration, a packet, anything."""
        self.open_stream()
        await self._stream.write(request)

    async def next_arbitration(self, timeout: float = 10.0) -> p4r.MasterArbitrationUpdate:
        """The next arbitration update the device sent (``keep_updates`` only). Raises how the stream
        ended (the AioRpcError, or EOFError) once it has."""
        if self._updates is None:
            raise RuntimeError("no stream, or a connection without keep_updates")
        got = await asyncio.wait_for(self._updates.get(), timeout)
        if isinstance(got, BaseException):
            self._updates.put_nowait(got)  # and on every later call
            raise got
        return got

    async def stream_ended(self, timeout: float | None = None) -> grpc.StatusCode:
        """Wait for the open stream to end; its status code."""
        if self._stream is None:
            raise RuntimeError("no stream")
        return await asyncio.wait_for(self._stream.code(), timeout)

    async def _read(self, stream: grpc.aio.StreamStreamCall, first: asyncio.Future) -> None:
        """The only reader of the stream: mastership updates until the stream ends."""
        code = grpc.StatusCode.UNAVAILABLE
        updates = self._updates
        try:
            while True:
                msg = await stream.read()
                if msg is grpc.aio.EOF:
                    self.broken_reason = "the device closed the stream"
                    if updates is not None:
                        updates.put_nowait(EOFError("the device closed the stream"))
                    break
                if msg.HasField("arbitration"):
                    self._arbitration(msg.arbitration, first)
                    if updates is not None:
                        updates.put_nowait(msg.arbitration)
        except asyncio.CancelledError:
            return  # closed by us: nothing to report
        except grpc.aio.AioRpcError as e:
            self.broken_reason = f"{e.code().name}: {e.details()}"
            code = e.code()
            if updates is not None:
                updates.put_nowait(e)
        except Exception as e:  # a reader that dies must still say the stream is gone
            log.exception("%s stream reader failed", self.address)
            self.broken_reason = repr(e)
            if updates is not None:
                updates.put_nowait(e)
        self.is_primary = False
        if not first.done():  # the device refused the arbitration (a wrong device id...) or went away
            first.set_exception(P4RuntimeError(f"{self.address}: stream ended during arbitration "
                                               f"({self.broken_reason})", code))
            return  # connect() reports it
        log.info("%s: stream broken: %s", self.address, self.broken_reason)
        self._notify(BROKEN)

    def _arbitration(self, arb: p4r.MasterArbitrationUpdate, first: asyncio.Future) -> None:
        was = self.is_primary
        self.is_primary = arb.status.code == code_pb2.OK
        self.primary_election_id = _uint128(arb.election_id) if arb.HasField("election_id") else None
        if not first.done():
            first.set_result(arb)
        elif self.is_primary != was:
            log.info("%s: %s (primary election id %s)", self.address,
                     "became primary" if self.is_primary else "lost primary", self.primary_election_id)
            self._notify(PRIMARY if self.is_primary else NOT_PRIMARY)
        elif not self.is_primary and arb.status.code == code_pb2.NOT_FOUND:
            # the primary left and the device elects nobody by itself (Stratum, P4Runtime >= 1.3): a
            # backup becomes primary by arbitrating again with an election id above the last one
            log.info("%s: no primary any more (last election id %s)", self.address, self.primary_election_id)
            self._notify(NO_PRIMARY)

    def _notify(self, event: str) -> None:
        if self.on_event is not None:
            self.on_event(event)

    async def close_stream(self) -> None:
        """End the stream (the device forgets this client's arbitration); the channel stays."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._stream is not None:
            self._stream.cancel()
        if self._first is not None and not self._first.done():
            self._first.cancel()
        self._stream = self._reader = self._first = self._updates = None
        self.is_primary = False

    async def close(self) -> None:
        await self.close_stream()
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None

    # ------------------------------------------------------------ RPCs

    async def get_pipeline(self, response_type=p4r.GetForwardingPipelineConfigRequest.ALL,
                           timeout: float = 10) -> p4r.ForwardingPipelineConfig | None:
        """The installed pipeline (as much of it as ``response_type`` asks), or None when there is none."""
        try:
            r = await self.stub.GetForwardingPipelineConfig(p4r.GetForwardingPipelineConfigRequest(
                device_id=self.device_id, response_type=response_type), timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() in NO_PIPELINE:
                return None
            raise _error(f"{self.address} GetForwardingPipelineConfig", e) from None
        return r.config

    async def get_cookie(self) -> int | None:
        """The installed pipeline's cookie, or None when the device has no pipeline."""
        config = await self.get_pipeline(p4r.GetForwardingPipelineConfigRequest.COOKIE_ONLY)
        if config is None or (not config.HasField("cookie") and not config.p4info.tables):
            return None
        return config.cookie.cookie

    async def set_pipeline(self, p4info: bytes, device_config: bytes, cookie: int,
                           action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT) -> None:
        req = p4r.SetForwardingPipelineConfigRequest(device_id=self.device_id, election_id=self.election_id,
                                                     action=action)
        if self.role:
            req.role = self.role
        req.config.p4info.ParseFromString(p4info)
        req.config.p4_device_config = device_config
        req.config.cookie.cookie = cookie
        with tracer.start_as_current_span("SetForwardingPipelineConfig", attributes={
                "p4rt.action": p4r.SetForwardingPipelineConfigRequest.Action.Name(action),
                "p4rt.bytes": req.ByteSize(), "p4rt.cookie": str(cookie)}):
            try:
                await self.stub.SetForwardingPipelineConfig(req, timeout=60)
            except grpc.aio.AioRpcError as e:
                raise _error(f"{self.address} SetForwardingPipelineConfig", e) from None

    async def write(self, updates: list[p4r.Update]) -> None:
        if not updates:
            return
        req = p4r.WriteRequest(device_id=self.device_id, election_id=self.election_id, updates=updates)
        if self.role:
            req.role = self.role
        with tracer.start_as_current_span("p4runtime write", attributes={"p4rt.updates": len(updates)}):
            try:
                await self.stub.Write(req, timeout=30)
            except grpc.aio.AioRpcError as e:
                raise _error(f"{self.address} Write", e) from None

    async def read(self, entities: list[p4r.Entity], timeout: float = 30) -> list[p4r.Entity]:
        """The entities one Read of ``entities`` returns; none when the device has no pipeline."""
        req = p4r.ReadRequest(device_id=self.device_id, entities=entities)
        if self.role:
            req.role = self.role
        out: list[p4r.Entity] = []
        try:
            async for resp in self.stub.Read(req, timeout=timeout):
                out.extend(resp.entities)
        except grpc.aio.AioRpcError as e:
            if e.code() in NO_PIPELINE:
                return []
            raise _error(f"{self.address} Read", e) from None
        return out

    async def read_entries(self, default_tables=(), timeout: float = 30) -> list[p4r.TableEntry]:
        """Every match entry of every table, and the default entry of each of ``default_tables``,
        in one Read. A device with no pipeline has none."""
        entities = [p4r.Entity(table_entry=p4r.TableEntry(table_id=0))]
        entities += [p4r.Entity(table_entry=p4r.TableEntry(table_id=t, is_default_action=True))
                     for t in sorted(set(default_tables))]
        return [e.table_entry for e in await self.read(entities, timeout) if e.HasField("table_entry")]

    async def default_entry(self, table_id: int, timeout: float = 30) -> p4r.TableEntry | None:
        """The table's default entry (None when no pipeline is installed)."""
        entity = p4r.Entity(table_entry=p4r.TableEntry(table_id=table_id, is_default_action=True))
        got = await self.read([entity], timeout)
        return next((e.table_entry for e in got if e.HasField("table_entry")), None)
