"""A P4Runtime client for one device: arbitration as primary, pipeline, writes, reads.

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
from kubep4.p4 import p4r, p4r_grpc

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.node_agent.p4runtime")


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


def entry_key(e: p4r.TableEntry) -> tuple:
    """Identity of a table entry: table, priority and match (canonical, order-independent)."""
    return (e.table_id, e.priority, tuple(sorted((m.field_id, m.SerializeToString(deterministic=True))
                                                 for m in e.match)))


class DeviceConnection:
    def __init__(self, address: str, device_id: int, election_id: int, role: str = "",
                 on_broken: Callable[[], None] | None = None):
        self.address, self.device_id, self.role = address, device_id, role
        self.election_id = p4r.Uint128(high=election_id >> 64, low=election_id & ((1 << 64) - 1))
        self.on_broken = on_broken
        self._channel: grpc.aio.Channel | None = None
        self._stub: p4r_grpc.P4RuntimeStub | None = None
        self._requests: asyncio.Queue | None = None
        self._reader: asyncio.Task | None = None
        self.is_primary = False
        self.broken = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._stub is not None and self.is_primary and not self.broken.is_set()

    async def connect(self, timeout: float = 5.0) -> None:
        """Open the stream and become primary for (device_id, role)."""
        await self.close()
        self.broken.clear()
        with tracer.start_as_current_span("p4runtime arbitration", attributes={
                "p4rt.address": self.address, "p4rt.device_id": self.device_id,
                "p4rt.election_id": self.election_id.low}):
            self._channel = grpc.aio.insecure_channel(self.address, options=GRPC_OPTIONS)
            self._stub = p4r_grpc.P4RuntimeStub(self._channel)
            self._requests = asyncio.Queue()
            arb = p4r.MasterArbitrationUpdate(device_id=self.device_id, election_id=self.election_id)
            if self.role:
                arb.role.name = self.role
            await self._requests.put(p4r.StreamMessageRequest(arbitration=arb))
            requests = self._requests

            async def request_iter():
                while True:
                    msg = await requests.get()
                    if msg is None:
                        return
                    yield msg

            stream = self._stub.StreamChannel(request_iter())
            try:
                first = await asyncio.wait_for(stream.read(), timeout)
            except asyncio.TimeoutError:
                stream.cancel()
                raise P4RuntimeError(f"{self.address}: no arbitration reply in {timeout}s",
                                     grpc.StatusCode.DEADLINE_EXCEEDED) from None
            except grpc.aio.AioRpcError as e:
                raise _error(f"{self.address} arbitration", e) from None
            if first is grpc.aio.EOF or not first.HasField("arbitration"):
                raise P4RuntimeError(f"{self.address}: stream closed during arbitration",
                                     grpc.StatusCode.UNAVAILABLE)
            self.is_primary = first.arbitration.status.code == code_pb2.OK
            if not self.is_primary:
                stream.cancel()
                raise P4RuntimeError(f"{self.address}: another controller is primary for device "
                                     f"{self.device_id} (election id {first.arbitration.election_id.low})",
                                     grpc.StatusCode.ALREADY_EXISTS)
            self._reader = asyncio.create_task(self._read(stream))

    async def _read(self, stream) -> None:
        try:
            async for msg in stream:
                if msg.HasField("arbitration"):
                    self.is_primary = msg.arbitration.status.code == code_pb2.OK
                    if not self.is_primary:
                        break
        except grpc.aio.AioRpcError as e:
            log.info("%s stream ended: %s", self.address, e.code().name)
        except asyncio.CancelledError:
            return
        self.is_primary = False
        self.broken.set()
        if self.on_broken is not None:
            self.on_broken()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._requests is not None:
            self._requests.put_nowait(None)
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = self._requests = None
        self.is_primary = False

    async def get_cookie(self) -> int | None:
        """The installed pipeline's cookie, or None when the device has no pipeline."""
        try:
            r = await self._stub.GetForwardingPipelineConfig(p4r.GetForwardingPipelineConfigRequest(
                device_id=self.device_id,
                response_type=p4r.GetForwardingPipelineConfigRequest.COOKIE_ONLY), timeout=10)
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                return None
            raise _error(f"{self.address} GetForwardingPipelineConfig", e) from None
        if not r.config.HasField("cookie") and not r.config.p4info.tables:
            return None
        return r.config.cookie.cookie

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
                await self._stub.SetForwardingPipelineConfig(req, timeout=60)
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
                await self._stub.Write(req, timeout=30)
            except grpc.aio.AioRpcError as e:
                raise _error(f"{self.address} Write", e) from None

    async def read_table_entries(self, table_id: int = 0) -> list[p4r.TableEntry]:
        req = p4r.ReadRequest(device_id=self.device_id)
        req.entities.add().table_entry.table_id = table_id
        if self.role:
            req.role = self.role
        out: list[p4r.TableEntry] = []
        try:
            async for resp in self._stub.Read(req, timeout=30):
                out += [e.table_entry for e in resp.entities if e.HasField("table_entry")]
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return []
            raise _error(f"{self.address} Read", e) from None
        return out

    async def sync_entries(self, desired: list[p4r.TableEntry], known_empty: bool = False) -> int:
        """Make the device's table entries exactly ``desired``; returns the number of updates sent.

        ``known_empty``: the tables were just emptied (VERIFY_AND_COMMIT), so they need not be read.
        """
        current = {} if known_empty else {entry_key(e): e for e in await self.read_table_entries()}
        want = {entry_key(e): e for e in desired if not e.is_default_action}
        updates: list[p4r.Update] = []
        for k, e in current.items():
            if k not in want:
                updates.append(p4r.Update(type=p4r.Update.DELETE, entity=p4r.Entity(table_entry=e)))
        for k, e in want.items():
            cur = current.get(k)
            if cur is None:
                updates.append(p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=e)))
            elif cur.action.SerializeToString(deterministic=True) != e.action.SerializeToString(deterministic=True):
                updates.append(p4r.Update(type=p4r.Update.MODIFY, entity=p4r.Entity(table_entry=e)))
        for e in desired:
            if e.is_default_action:
                updates.append(p4r.Update(type=p4r.Update.MODIFY, entity=p4r.Entity(table_entry=e)))
        await self.write(updates)
        return len(updates)
