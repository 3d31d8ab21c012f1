"""A P4Runtime test client (kubep4.p4runtime_client underneath, raw unary RPCs) plus entry builders.

Usable against the reference target or any P4Runtime server:

    async with P4RTClient(address, device_id=1) as c:
        await c.arbitrate(election_id=10)          # opens the stream, returns the first update
        await c.set_pipeline(p4info, device_config, cookie=7)
        await c.write([insert(entry)])
        entries = await c.read_table()
"""
from __future__ import annotations

from pathlib import Path

import grpc
from google.rpc import code_pb2
from grpc_status import rpc_status

from kubep4.p4 import P4InfoIndex, canonical, p4i, p4r, p4r_grpc, parse_p4info
from kubep4.p4runtime_client import DeviceConnection, uint128

__all__ = ["P4RTClient", "basic_p4info", "basic_device_config", "insert", "modify", "delete",
           "write_errors", "be", "lpm_entry", "acl_entry", "BASIC", "MP", "multipath_p4info",
           "multipath_device_config"]

REPO = Path(__file__).resolve().parents[2]
BASIC_DIR = REPO / "examples" / "basic"
STEP_TIMEOUT = 10.0
SetAction = p4r.SetForwardingPipelineConfigRequest.Action
ResponseType = p4r.GetForwardingPipelineConfigRequest.ResponseType


def basic_p4info() -> p4i.P4Info:
    return parse_p4info((BASIC_DIR / "basic.p4info.txtpb").read_text())


def basic_device_config() -> bytes:
    return (BASIC_DIR / "basic.json").read_bytes()


class _Basic:
    """Ids of the basic program, looked up by name."""

    def __init__(self) -> None:
        idx = P4InfoIndex(basic_p4info())
        self.ipv4_lpm = idx.table("BasicIngress.ipv4_lpm").info.preamble.id
        self.acl = idx.table("BasicIngress.acl").info.preamble.id
        self.forward = idx.actions_by_name["BasicIngress.forward"].preamble.id
        self.drop = idx.actions_by_name["BasicIngress.drop"].preamble.id
        self.deny = idx.actions_by_name["BasicIngress.deny"].preamble.id
        self.allow = idx.actions_by_name["BasicIngress.allow"].preamble.id


BASIC = _Basic()

MULTIPATH_DIR = REPO / "examples" / "multipath"


def multipath_p4info() -> p4i.P4Info:
    return parse_p4info((MULTIPATH_DIR / "multipath.p4info.txtpb").read_text())


def multipath_device_config() -> bytes:
    return (MULTIPATH_DIR / "multipath.json").read_bytes()


class _Multipath:
    """Ids of the multipath program (action selector, PRE, counters, meters, register), by name."""

    def __init__(self) -> None:
        info = multipath_p4info()
        idx = P4InfoIndex(info)
        self.info = info
        self.ipv4_route = idx.table("MpIngress.ipv4_route").info.preamble.id
        self.l2_flood = idx.table("MpIngress.l2_flood").info.preamble.id
        self.acl = idx.table("MpIngress.acl").info.preamble.id
        act = idx.actions_by_name
        self.set_next_hop = act["MpIngress.set_next_hop"].preamble.id
        self.drop = act["MpIngress.drop"].preamble.id
        self.to_cpu = act["MpIngress.to_cpu"].preamble.id
        self.flood = act["MpIngress.flood"].preamble.id
        self.mirror = act["MpIngress.mirror"].preamble.id
        self.acl_allow = act["MpIngress.acl_allow"].preamble.id
        self.acl_deny = act["MpIngress.acl_deny"].preamble.id
        self.no_action = act["NoAction"].preamble.id

        def by_name(items, name):
            return next(o.preamble.id for o in items if o.preamble.name == name)

        self.ecmp_selector = by_name(info.action_profiles, "MpIngress.ecmp_selector")
        self.port_rx = by_name(info.counters, "MpIngress.port_rx")
        self.acl_counter = by_name(info.direct_counters, "MpIngress.acl_counter")
        self.port_policer = by_name(info.meters, "MpIngress.port_policer")
        self.acl_meter = by_name(info.direct_meters, "MpIngress.acl_meter")
        self.last_seen_src = by_name(info.registers, "MpIngress.last_seen_src")


MP = _Multipath()


def be(number: int) -> bytes:
    """Canonical P4Runtime bytestring of a non-negative integer."""
    return canonical(number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big"))


def lpm_entry(dst: int, prefix_len: int, mac: int = 0x0A0B0C0D0E0F, port: int = 1) -> p4r.TableEntry:
    e = p4r.TableEntry(table_id=BASIC.ipv4_lpm)
    e.match.add(field_id=1, lpm=p4r.FieldMatch.LPM(value=be(dst), prefix_len=prefix_len))
    e.action.action.action_id = BASIC.forward
    e.action.action.params.add(param_id=1, value=be(mac))
    e.action.action.params.add(param_id=2, value=be(port))
    return e


def acl_entry(src: int | None, src_mask: int | None, ingress_port: int, priority: int = 10,
              proto: tuple[int, int] | None = None, deny_rule: int | None = None) -> p4r.TableEntry:
    e = p4r.TableEntry(table_id=BASIC.acl, priority=priority)
    if src is not None:
        e.match.add(field_id=1, ternary=p4r.FieldMatch.Ternary(value=be(src), mask=be(src_mask)))
    if proto is not None:
        e.match.add(field_id=2, ternary=p4r.FieldMatch.Ternary(value=be(proto[0]), mask=be(proto[1])))
    e.match.add(field_id=3, exact=p4r.FieldMatch.Exact(value=be(ingress_port)))
    if deny_rule is None:
        e.action.action.action_id = BASIC.allow
    else:
        e.action.action.action_id = BASIC.deny
        e.action.action.params.add(param_id=1, value=be(deny_rule))
    return e


def _update(kind: int, entry: p4r.TableEntry | p4r.Entity) -> p4r.Update:
    entity = entry if isinstance(entry, p4r.Entity) else p4r.Entity(table_entry=entry)
    return p4r.Update(type=kind, entity=entity)


def insert(entry) -> p4r.Update:
    return _update(p4r.Update.INSERT, entry)


def modify(entry) -> p4r.Update:
    return _update(p4r.Update.MODIFY, entry)


def delete(entry) -> p4r.Update:
    return _update(p4r.Update.DELETE, entry)


def write_errors(err: grpc.aio.AioRpcError) -> list[p4r.Error]:
    """The per-update ``p4.v1.Error`` details of a failed Write (spec §12.3)."""
    status = rpc_status.from_call(err)
    assert status is not None, f"no grpc-status-details-bin trailer on {err.code()}: {err.details()}"
    out = []
    for detail in status.details:
        e = p4r.Error()
        assert detail.Unpack(e), f"detail is not a p4.v1.Error: {detail.type_url}"
        out.append(e)
    return out


def error_codes(err: grpc.aio.AioRpcError) -> list[int]:
    return [e.canonical_code for e in write_errors(err)]


OK = code_pb2.OK


class P4RTClient:
    """A test client: kubep4.p4runtime_client's DeviceConnection (channel, the one StreamChannel and its
    reader) with every arbitration update kept, and unary RPCs sent raw through its stub, so a test
    sees the target's own gRPC errors and can send any election id or device id."""

    def __init__(self, address: str, device_id: int = 1, role: str = "", tls=None):
        self.address = address
        self.device_id = device_id
        self.role = role
        self.election_id = 0
        self.conn = DeviceConnection(address, device_id, 0, role=role, keep_updates=True, tls=tls)

    @property
    def stub(self) -> p4r_grpc.P4RuntimeStub:
        return self.conn.stub

    async def __aenter__(self) -> "P4RTClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.conn.close()

    # ----------------------------------------------------------------- stream

    async def arbitrate(self, election_id: int) -> p4r.MasterArbitrationUpdate:
        """Send an arbitration update (opening the stream if needed); return the reply to it.

        Raises AioRpcError when the server ends the stream instead.
        """
        self.election_id = election_id
        self.conn.election_id = uint128(election_id)
        await self.conn.send(self.conn.arbitration_request())
        return await self.next_arbitration()

    async def next_arbitration(self, timeout: float = STEP_TIMEOUT) -> p4r.MasterArbitrationUpdate:
        """The next arbitration update pushed on the stream."""
        return await self.conn.next_arbitration(timeout)

    async def send(self, request: p4r.StreamMessageRequest) -> None:
        await self.conn.send(request)

    async def stream_status(self, timeout: float = STEP_TIMEOUT) -> grpc.StatusCode:
        """Wait for the stream to end; return its status code."""
        return await self.conn.stream_ended(timeout)

    async def close_stream(self) -> None:
        await self.conn.close_stream()

    # ----------------------------------------------------------------- unary (raw)

    def _eid(self, election_id: int | None) -> p4r.Uint128:
        return uint128(self.election_id if election_id is None else election_id)

    async def capabilities(self) -> p4r.CapabilitiesResponse:
        return await self.stub.Capabilities(p4r.CapabilitiesRequest(device_id=self.device_id),
                                            timeout=STEP_TIMEOUT)

    async def set_pipeline(self, p4info: p4i.P4Info | None = None, device_config: bytes = b"",
                           cookie: int | None = None, action: int = SetAction.VERIFY_AND_COMMIT,
                           election_id: int | None = None, device_id: int | None = None) -> None:
        req = p4r.SetForwardingPipelineConfigRequest(
            device_id=self.device_id if device_id is None else device_id, role=self.role,
            election_id=self._eid(election_id), action=action)
        if p4info is not None:
            req.config.p4info.CopyFrom(p4info)
        if device_config:
            req.config.p4_device_config = device_config
        if cookie is not None:
            req.config.cookie.cookie = cookie
        await self.stub.SetForwardingPipelineConfig(req, timeout=STEP_TIMEOUT)

    async def get_pipeline(self, response_type: int = ResponseType.ALL,
                           device_id: int | None = None) -> p4r.ForwardingPipelineConfig:
        req = p4r.GetForwardingPipelineConfigRequest(
            device_id=self.device_id if device_id is None else device_id, response_type=response_type)
        return (await self.stub.GetForwardingPipelineConfig(req, timeout=STEP_TIMEOUT)).config

    async def write(self, updates: list[p4r.Update], election_id: int | None = None,
                    atomicity: int = p4r.WriteRequest.CONTINUE_ON_ERROR,
                    device_id: int | None = None) -> None:
        req = p4r.WriteRequest(device_id=self.device_id if device_id is None else device_id,
                               role=self.role, election_id=self._eid(election_id),
                               updates=updates, atomicity=atomicity)
        await self.stub.Write(req, timeout=STEP_TIMEOUT)

    async def read(self, entities: list[p4r.Entity], device_id: int | None = None) -> list[p4r.Entity]:
        req = p4r.ReadRequest(device_id=self.device_id if device_id is None else device_id,
                              role=self.role, entities=entities)
        out: list[p4r.Entity] = []
        async for resp in self.stub.Read(req, timeout=STEP_TIMEOUT):
            out.extend(resp.entities)
        return out

    async def read_table(self, table_id: int = 0, **fields) -> list[p4r.TableEntry]:
        entity = p4r.Entity(table_entry=p4r.TableEntry(table_id=table_id, **fields))
        return [e.table_entry for e in await self.read([entity])]


async def expect(code: grpc.StatusCode, coro):
    """Await ``coro`` expecting an RPC error of ``code``; return the error."""
    import pytest
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    assert err.value.code() == code, err.value.details()
    return err.value


async def write_fails(client: "P4RTClient", updates: list[p4r.Update], **kw) -> list[int]:
    """Write expecting the per-update failure report (spec §12.3); return the canonical codes in order."""
    err = await expect(grpc.StatusCode.UNKNOWN, client.write(updates, **kw))
    codes = error_codes(err)
    assert len(codes) == len(updates)
    return codes


async def write_error(client: "P4RTClient", update: p4r.Update) -> p4r.Error:
    """Write one update expecting it refused; return its ``p4.v1.Error``."""
    err = await expect(grpc.StatusCode.UNKNOWN, client.write([update]))
    errors = write_errors(err)
    assert len(errors) == 1
    return errors[0]


def entity(**kw) -> p4r.Entity:
    return p4r.Entity(**kw)
