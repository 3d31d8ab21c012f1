"""The node agent's read service (NodeReads, protos/kubep4/v1/node.proto): live values of this
node's devices, read over P4Runtime when asked and never stored anywhere.

The apiserver's ReadDeployment forwards here, as KubeVirt's virt-api forwards a subresource to
virt-handler. Reads need no arbitration (P4Runtime spec §6.4), so this service has a reader
connection of its own per device (no election id, no stream: ``DeviceConnection`` with
``election_id=None``), opened on first use and closed on shutdown; the agent's write path is not
touched. Values are named from the P4Info the device itself holds (GetForwardingPipelineConfig
P4INFO_AND_COOKIE), fetched again only when the device's cookie changes.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from opentelemetry import trace

from kubep4.entities import from_p4_entity
from kubep4.errors import MESSAGE_CHARS, quoted, truncate
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import node_pb2 as node_api
from kubep4.gen.kubep4.v1 import node_pb2_grpc as node_grpc
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import EntryError, P4InfoIndex, p4i, p4r
from kubep4.p4runtime_client import DeviceConnection, P4RuntimeError, device_tls
from kubep4.serving import PeerCheck, add_servicer, start_server

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.node_agent.reads")
SERVICE = node_api.DESCRIPTOR.services_by_name["NodeReads"]
KINDS = ("counter", "meter", "register", "table", "action_profile", "multicast", "clone_session")
READ_TIMEOUT = 10.0  # seconds a device has to answer one read (less when the caller's deadline is nearer)
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
REASON_KEY = "kubep4-reason"  # trailing metadata of a refused read: why, in CamelCase (ReplicaValues.reason)
_REASONS = {grpc.StatusCode.NOT_FOUND: "NotFound", grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
            grpc.StatusCode.FAILED_PRECONDITION: "NoPipeline", grpc.StatusCode.UNAVAILABLE: "DeviceUnreachable",
            grpc.StatusCode.UNIMPLEMENTED: "Unimplemented"}


class ReadError(Exception):
    """A read that cannot be answered: ``code`` is the gRPC status the caller gets, ``reason`` why."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = ""):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or _REASONS.get(code, "ReadFailed")


class _Names:
    """The P4Info lookups of one device's pipeline, and which objects of a kind to read."""

    def __init__(self, info: p4i.P4Info):
        self.index = P4InfoIndex(info)
        ix = self.index
        self.by_kind = {"counter": ix.counters_by_name, "meter": ix.meters_by_name,
                        "register": ix.registers_by_name, "action_profile": ix.action_profiles_by_name,
                        "table": {name: t.info for name, t in ix.tables_by_name.items()}}

    def select(self, kind: str, name: str) -> list:
        """The P4Info objects of ``kind`` to read: the one named ``name``, or all of them."""
        objects = self.by_kind[kind]
        if not name:
            return list({o.preamble.id: o for o in objects.values()}.values())
        found = objects.get(name)
        if found is None:
            have = sorted({o.preamble.name for o in objects.values()})
            listing = ", ".join(have[:20]) + (", ..." if len(have) > 20 else "") if have else "none"
            raise ReadError(grpc.StatusCode.NOT_FOUND, f"no {kind.replace('_', ' ')} {quoted(name)} in the "
                            f"device's P4Info (it has: {listing})")
        return [found]


def read_request(names: _Names, kind: str, name: str) -> list[p4r.Entity]:
    """The entities of one P4Runtime Read for ``kind`` (and ``name``): one per selected object, so a
    server that does not take id-0 wildcards answers too."""
    if kind == "counter":
        return [p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=c.preamble.id)) for c in names.select(kind, name)]
    if kind == "meter":
        return [p4r.Entity(meter_entry=p4r.MeterEntry(meter_id=m.preamble.id)) for m in names.select(kind, name)]
    if kind == "register":
        return [p4r.Entity(register_entry=p4r.RegisterEntry(register_id=r.preamble.id))
                for r in names.select(kind, name)]
    if kind == "table":
        out = []
        for t in names.select(kind, name):
            q = p4r.TableEntry(table_id=t.preamble.id)
            if names.index.direct_counter(t) is not None:  # asks for the direct counter's data too
                q.counter_data.SetInParent()
            if names.index.direct_meter(t) is not None:
                q.meter_config.SetInParent()
            out.append(p4r.Entity(table_entry=q))
        return out
    if kind == "action_profile":
        out = []
        for ap in names.select(kind, name):
            out.append(p4r.Entity(action_profile_member=p4r.ActionProfileMember(action_profile_id=ap.preamble.id)))
            out.append(p4r.Entity(action_profile_group=p4r.ActionProfileGroup(action_profile_id=ap.preamble.id)))
        return out
    if name:
        raise ReadError(grpc.StatusCode.INVALID_ARGUMENT, f"{kind} entries have no name: read them all")
    pre = p4r.PacketReplicationEngineEntry()
    if kind == "multicast":
        pre.multicast_group_entry.SetInParent()  # group id 0: every group
    else:
        pre.clone_session_entry.SetInParent()
    return [p4r.Entity(packet_replication_engine_entry=pre)]


_VALUES_FIELD = {kr.CounterEntry: "counters", kr.MeterEntry: "meters", kr.RegisterEntry: "registers",
                 kr.TableEntry: "table_entries", kr.ProfileMember: "action_profile_members",
                 kr.ProfileGroup: "action_profile_groups", kr.MulticastGroup: "multicast_groups",
                 kr.CloneSession: "clone_sessions"}


def decode(names: _Names, entities: Sequence[p4r.Entity]) -> api.DeviceValues:
    """P4Runtime entities as KubeP4 values (kubep4.entities.from_p4_entity: P4Info names, text values)."""
    out = api.DeviceValues()
    for entity in entities:
        try:
            msg = from_p4_entity(entity, names.index)
        except EntryError:  # a kind no values field holds (not asked for): left out
            continue
        field = _VALUES_FIELD.get(type(msg))
        if field is not None:
            getattr(out, field).append(msg)
    return out


# ---------------------------------------------------------------- the devices

@dataclass
class _Reader:
    device: kr.Device
    conn: DeviceConnection
    lock: asyncio.Lock
    cookie: int | None = None
    names: _Names | None = None


class DeviceReads:
    """Reads of this node's devices: a reader connection and the P4Info (by cookie) per device."""

    def __init__(self, devices: Sequence[kr.Device], timeout: float = READ_TIMEOUT):
        self.timeout = timeout
        self._readers = {d.name: _Reader(d, DeviceConnection(d.p4rt_address, d.device_id, tls=device_tls(d)), asyncio.Lock())
                         for d in devices}

    async def close(self) -> None:
        await asyncio.gather(*(r.conn.close() for r in self._readers.values()), return_exceptions=True)

    async def _names(self, r: _Reader, timeout: float) -> tuple[int, _Names]:
        """The device's P4Info lookups, fetched again when its cookie is not the one they came with."""
        async with r.lock:
            cookie = None
            if r.names is not None:  # one small answer: is it still the pipeline the names came from?
                now = await r.conn.get_pipeline(p4r.GetForwardingPipelineConfigRequest.COOKIE_ONLY, timeout=timeout)
                cookie = None if now is None else now.cookie.cookie
            if r.names is None or cookie != r.cookie:
                config = await r.conn.get_pipeline(p4r.GetForwardingPipelineConfigRequest.P4INFO_AND_COOKIE,
                                                   timeout=timeout)
                if config is None or not config.p4info.ByteSize():
                    r.cookie = r.names = None
                    raise ReadError(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"device {quoted(r.device.name)} has no pipeline")
                r.cookie, r.names = config.cookie.cookie, _Names(config.p4info)
            return r.cookie, r.names

    async def read(self, device: str, kind: str, name: str = "", timeout: float | None = None) -> api.DeviceValues:
        """The values of ``kind`` (one object when ``name`` is given) on ``device``; raises ReadError."""
        if kind not in KINDS:
            raise ReadError(grpc.StatusCode.INVALID_ARGUMENT,
                            f"kind: {quoted(kind)} is not one of {', '.join(KINDS)}")
        r = self._readers.get(device)
        if r is None:
            raise ReadError(grpc.StatusCode.NOT_FOUND, f"no device {quoted(device)} on this node "
                            f"(it has {', '.join(sorted(self._readers)) or 'none'})")
        timeout = min(self.timeout, timeout) if timeout else self.timeout
        with tracer.start_as_current_span("node-agent read device", attributes={
                "kubep4.device": device, "kubep4.read.kind": kind, "kubep4.read.name": name}) as span:
            try:
                cookie, names = await self._names(r, timeout)
                entities = read_request(names, kind, name)
                with tracer.start_as_current_span("p4runtime read", attributes={
                        "p4rt.address": r.device.p4rt_address, "p4rt.entities": len(entities)}):
                    got = await r.conn.read(entities, timeout) if entities else []
            except P4RuntimeError as e:
                span.set_attribute("kubep4.read.error", e.code.name)
                said = str(e).removeprefix(f"{r.device.p4rt_address} ")  # the device by its name, not its address
                if e.code in _UNREACHABLE:  # gRPC's words name addresses and its internals: logged only
                    log.warning("read of device %s: %s", device, e)
                    raise ReadError(grpc.StatusCode.UNAVAILABLE,
                                    f"device {quoted(device)} does not answer ({e.code.name})") from None
                raise ReadError(e.code, f"device {quoted(device)} refused the read: {said}",
                                "Unimplemented" if e.code == grpc.StatusCode.UNIMPLEMENTED else "DeviceRefused") \
                    from None
            values = decode(names, got)
            values.cookie = cookie
            span.set_attribute("kubep4.read.entities", len(got))
            return values


class NodeReadsServicer(node_grpc.NodeReadsServicer):
    def __init__(self, reads: DeviceReads):
        self.reads = reads

    async def ReadDevice(self, request, context):
        remaining = context.time_remaining()
        try:
            values = await self.reads.read(request.device, request.kind, request.object_name, remaining)
        except ReadError as e:
            context.set_trailing_metadata(((REASON_KEY, e.reason),))
            await context.abort(e.code, truncate(e.message, MESSAGE_CHARS))
        return node_api.ReadDeviceResponse(values=values)


async def start(listen: str, devices: Sequence[kr.Device], interceptors: list | None = None,
                credentials: grpc.ServerCredentials | None = None, allowed_clients: frozenset[str] | None = None
                ) -> tuple[grpc.aio.Server, int, DeviceReads]:
    """Serve NodeReads on ``listen`` (port 0 picks one); returns (server, port, reads) for ``stop``.
    TLS with ``credentials``; with ``allowed_clients`` (mTLS) only to those certificate CNs (the
    apiserver)."""
    reads = DeviceReads(devices)
    interceptors = list(interceptors or [])
    if allowed_clients is not None:
        interceptors.append(PeerCheck(allowed_clients, "the node's read service"))
    server, port, _ = await start_server(listen, lambda s: add_servicer(s, NodeReadsServicer(reads), SERVICE),
                                         [SERVICE.full_name], interceptors, credentials)
    return server, port, reads


async def stop(server: grpc.aio.Server, reads: DeviceReads, grace: float = 1) -> None:
    await server.stop(grace)
    await reads.close()
