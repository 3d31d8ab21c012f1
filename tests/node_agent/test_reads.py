"""The node agent's read service (services/node_agent/reads.py) against a reference device in this
process: every kind reads back what a direct P4Runtime Read of the device returns, named from the
P4Info the device holds (again after its pipeline changed), and a read that cannot be answered
says why. The device is programmed by a primary client of its own (kubep4.entities converts the
example deployments' entities)."""
from __future__ import annotations

import grpc
import pytest

from kubep4 import manifest
from kubep4.entities import to_p4_entities, to_p4_entity
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import node_pb2 as node_api
from kubep4.gen.kubep4.v1 import node_pb2_grpc as node_grpc
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import P4InfoIndex, p4r, parse_p4info
from kubep4.p4runtime_client import DeviceConnection
from kubep4.reftarget import serve
from services.node_agent import reads

from ..conftest import ROOT

MULTIPATH = ROOT / "examples" / "multipath" / "deployment.yaml"
BASIC = ROOT / "examples" / "basic" / "deployment.yaml"
MODIFY_ONLY = ("meter_entry", "counter_entry", "register_entry")
# the values field of each kind, and the spec field its entries convert back through
FIELDS = {"counter": ("counters", "counter_entries"), "meter": ("meters", "meter_entries"),
          "register": ("registers", "register_entries"), "table": ("table_entries", "table_entries"),
          "multicast": ("multicast_groups", "multicast_groups"), "clone_session": ("clone_sessions", "clone_sessions")}


def example(path):
    pipeline, deployment = manifest.load(str(path))
    return pipeline, deployment, P4InfoIndex(parse_p4info(pipeline.spec.artifacts.p4info))


async def program(address: str, path, cookie: int) -> P4InfoIndex:
    """Install the example's pipeline and every entity of its deployment, as a primary client would."""
    pipeline, deployment, index = example(path)
    async with DeviceConnection(address, 1, election_id=10) as c:
        await c.connect()
        await c.set_pipeline(pipeline.spec.artifacts.p4info, pipeline.spec.artifacts.device_config, cookie)
        for _, e in to_p4_entities(deployment.spec, index):
            modify = e.WhichOneof("entity") in MODIFY_ONLY or e.table_entry.is_default_action
            await c.write([p4r.Update(type=p4r.Update.MODIFY if modify else p4r.Update.INSERT, entity=e)])
    return index


@pytest.fixture
async def device():
    target = await serve([(1, "127.0.0.1", 0)])
    yield target.address(1)
    await target.stop(0)


@pytest.fixture
async def service(device):
    server, port, device_reads = await reads.start("127.0.0.1:0", [kr.Device(name="dev0", p4rt_address=device,
                                                                              device_id=1)])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield node_grpc.NodeReadsStub(channel)
    await channel.close()
    await reads.stop(server, device_reads, 0)


async def direct(address: str, entities: list[p4r.Entity]) -> list[p4r.Entity]:
    async with DeviceConnection(address, 1) as r:
        return await r.read(entities)


def wire(messages) -> list[bytes]:
    return sorted(m.SerializeToString(deterministic=True) for m in messages)


@pytest.mark.parametrize("kind", reads.KINDS)
async def test_each_kind_reads_back_what_the_device_holds(device, service, kind):
    index = await program(device, MULTIPATH, cookie=7)
    if kind == "register":  # the example writes none (BMv2 cannot): a known value in one cell
        async with DeviceConnection(device, 1, election_id=10) as c:
            await c.connect()
            await c.write([p4r.Update(type=p4r.Update.MODIFY, entity=to_p4_entity("register_entries", kr.RegisterEntry(
                register="last_seen_src", index=3, value="167772161"), index))])
    got = (await service.ReadDevice(node_api.ReadDeviceRequest(device="dev0", kind=kind), timeout=10)).values
    assert got.cookie == 7
    names = reads._Names(index.info)
    held = await direct(device, reads.read_request(names, kind, ""))
    if kind == "action_profile":
        members = [e.action_profile_member for e in held if e.HasField("action_profile_member")]
        groups = [e.action_profile_group for e in held if e.HasField("action_profile_group")]
        assert wire(to_p4_entity("action_profile_members", m, index).action_profile_member
                    for m in got.action_profile_members) == wire(members) and members
        assert wire(to_p4_entity("action_profile_groups", g, index).action_profile_group
                    for g in got.action_profile_groups) == wire(groups) and groups
        return
    values, spec_field = FIELDS[kind]
    assert held, f"the device holds no {kind} entities"
    # every value, named from the P4Info, converts back to exactly the entity the device returned
    assert wire(to_p4_entity(spec_field, v, index) for v in getattr(got, values)) == wire(held)
    if kind == "register":
        assert [(r.register, r.index, r.value) for r in got.registers if r.value != "0"] == [
            ("MpIngress.last_seen_src", 3, "167772161")]
    if kind == "table":
        acl = [e for e in got.table_entries if e.table == "MpIngress.acl"]
        assert len(acl) == 1 and acl[0].HasField("counter_data") and acl[0].HasField("meter_config")


async def test_names_follow_the_devices_pipeline(device, service):
    await program(device, BASIC, cookie=1)
    got = (await service.ReadDevice(node_api.ReadDeviceRequest(device="dev0", kind="table"))).values
    assert got.cookie == 1 and {e.table for e in got.table_entries} == {"BasicIngress.ipv4_lpm", "BasicIngress.acl"}
    await program(device, MULTIPATH, cookie=2)  # another pipeline: the P4Info is fetched again
    got = (await service.ReadDevice(node_api.ReadDeviceRequest(device="dev0", kind="table"))).values
    assert got.cookie == 2 and "MpIngress.l2_flood" in {e.table for e in got.table_entries}
    one = (await service.ReadDevice(node_api.ReadDeviceRequest(device="dev0", kind="counter",
                                                               object_name="port_rx"))).values
    assert {c.counter for c in one.counters} == {"MpIngress.port_rx"} and len(one.counters) == 512


@pytest.mark.parametrize("request_, code, reason", [
    (node_api.ReadDeviceRequest(device="dev9", kind="table"), grpc.StatusCode.NOT_FOUND, "NotFound"),
    (node_api.ReadDeviceRequest(device="dev0", kind="tables"), grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument"),
    (node_api.ReadDeviceRequest(device="dev0", kind="counter", object_name="nope"), grpc.StatusCode.NOT_FOUND,
     "NotFound"),
], ids=["unknown device", "unknown kind", "unknown counter"])
async def test_refused_reads_say_why(device, service, request_, code, reason):
    await program(device, BASIC, cookie=1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await service.ReadDevice(request_, timeout=10)
    assert info.value.code() == code
    assert dict(info.value.trailing_metadata())[reads.REASON_KEY] == reason


async def test_a_device_without_pipeline_or_gone(device, service):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await service.ReadDevice(node_api.ReadDeviceRequest(device="dev0", kind="table"), timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(info.value.trailing_metadata())[reads.REASON_KEY] == "NoPipeline"
    gone = reads.DeviceReads([kr.Device(name="dev0", p4rt_address="127.0.0.1:1", device_id=1)], timeout=2)
    with pytest.raises(reads.ReadError) as err:
        await gone.read("dev0", "counter")
    assert err.value.code == grpc.StatusCode.UNAVAILABLE and err.value.reason == "DeviceUnreachable"
    await gone.close()


def test_values_hold_every_kind_a_read_decodes():
    assert {f for f, _ in FIELDS.values()} | {"action_profile_members", "action_profile_groups"} == \
        set(reads._VALUES_FIELD.values()) <= {f.name for f in api.DeviceValues.DESCRIPTOR.fields}
