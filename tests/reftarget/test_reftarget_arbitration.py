"""StreamChannel arbitration, primary checks on mutating RPCs, capabilities and health."""
from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kubep4.p4 import p4r

from .p4rt_client import P4RTClient, basic_device_config, basic_p4info, insert, lpm_entry


def eid(msg) -> int:
    return (msg.election_id.high << 64) | msg.election_id.low


async def test_capabilities(client):
    resp = await client.capabilities()
    assert resp.p4runtime_api_version.startswith("1.")


async def test_first_client_is_primary(make_client):
    c = make_client()
    reply = await c.arbitrate(5)
    assert reply.status.code == code_pb2.OK
    assert reply.device_id == 1
    assert eid(reply) == 5


async def test_lower_election_id_is_backup(make_client):
    a, b = make_client(), make_client()
    assert (await a.arbitrate(20)).status.code == code_pb2.OK
    reply = await b.arbitrate(7)
    assert reply.status.code == code_pb2.ALREADY_EXISTS
    assert eid(reply) == 20  # the primary's election id


async def test_higher_election_id_takes_over_and_everyone_hears(make_client):
    a, b = make_client(), make_client()
    await a.arbitrate(20)
    reply = await b.arbitrate(30)
    assert reply.status.code == code_pb2.OK and eid(reply) == 30
    demoted = await a.next_arbitration()
    assert demoted.status.code == code_pb2.ALREADY_EXISTS and eid(demoted) == 30


async def test_election_id_uses_all_128_bits(make_client):
    a, b = make_client(), make_client()
    await a.arbitrate(2**64)          # high=1, low=0
    reply = await b.arbitrate(2**64 - 1)  # high=0, low=max
    assert reply.status.code == code_pb2.ALREADY_EXISTS
    assert reply.election_id.high == 1 and reply.election_id.low == 0


async def test_unknown_device_ends_stream_not_found(make_client):
    c = make_client(device_id=99)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await c.arbitrate(1)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_duplicate_election_id_is_invalid_argument(make_client):
    a, b = make_client(), make_client()
    await a.arbitrate(12)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await b.arbitrate(12)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # the original primary is untouched
    await a.set_pipeline(basic_p4info(), basic_device_config())


async def test_same_election_id_in_other_role_is_fine(make_client):
    a, b = make_client(), make_client(role="observer")
    assert (await a.arbitrate(12)).status.code == code_pb2.OK
    reply = await b.arbitrate(12)
    assert reply.status.code == code_pb2.OK
    assert reply.role.name == "observer"


async def test_primary_loss_is_announced_and_next_highest_takes_over(make_client):
    a, b, c = make_client(), make_client(), make_client()
    await a.arbitrate(30)
    await b.arbitrate(20)
    await c.arbitrate(10)
    await a.close_stream()
    b_update = await b.next_arbitration()
    c_update = await c.next_arbitration()
    assert b_update.status.code == code_pb2.OK and eid(b_update) == 20
    assert c_update.status.code == code_pb2.ALREADY_EXISTS and eid(c_update) == 20
    await b.set_pipeline(basic_p4info(), basic_device_config())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await a.set_pipeline(basic_p4info(), basic_device_config(), election_id=30)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_backup_loss_is_silent_for_primary(make_client, device):
    a, b = make_client(), make_client()
    await a.arbitrate(30)
    await b.arbitrate(20)
    await b.close_stream()
    # the next thing the primary hears is the reply to its own re-arbitration, not a loss notice
    reply = await a.arbitrate(31)
    assert reply.status.code == code_pb2.OK and eid(reply) == 31


async def test_rearbitration_on_same_stream(make_client):
    a, b = make_client(), make_client()
    await a.arbitrate(20)
    assert (await b.arbitrate(10)).status.code == code_pb2.ALREADY_EXISTS
    promoted = await b.arbitrate(25)
    assert promoted.status.code == code_pb2.OK and eid(promoted) == 25
    assert (await a.next_arbitration()).status.code == code_pb2.ALREADY_EXISTS
    await b.set_pipeline(basic_p4info(), basic_device_config())


async def test_first_message_must_be_arbitration(make_client):
    c = make_client()
    await c.send(p4r.StreamMessageRequest(packet=p4r.PacketOut(payload=b"x")))
    assert await c.stream_status() == grpc.StatusCode.FAILED_PRECONDITION


async def test_packet_out_is_accepted(client):
    await client.send(p4r.StreamMessageRequest(packet=p4r.PacketOut(payload=b"\x01\x02")))
    await client.send(p4r.StreamMessageRequest(digest_ack=p4r.DigestListAck(digest_id=1, list_id=1)))
    reply = await client.arbitrate(11)  # the stream is still alive and answers in order
    assert reply.status.code == code_pb2.OK and eid(reply) == 11


async def test_roles_are_arbitrated_separately(make_client):
    default, other = make_client(), make_client(role="sdn")
    await default.arbitrate(5)
    assert (await other.arbitrate(3)).status.code == code_pb2.OK
    # the default-role primary cannot act with the other role's identity
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await default.set_pipeline(basic_p4info(), basic_device_config(), election_id=3)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


# ------------------------------------------------------------------ primary-only RPCs


async def test_set_pipeline_without_stream_is_permission_denied(make_client):
    c = make_client()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await c.set_pipeline(basic_p4info(), basic_device_config(), election_id=1)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_backup_cannot_write_or_set_pipeline(loaded, make_client):
    backup = make_client()
    await backup.arbitrate(3)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await backup.set_pipeline(basic_p4info(), basic_device_config())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await backup.write([insert(lpm_entry(0x0A000000, 8))])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # reads are open to everyone
    assert await backup.read_table() == []


async def test_write_with_wrong_election_id_is_permission_denied(loaded):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await loaded.write([insert(lpm_entry(0x0A000000, 8))], election_id=9)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_write_without_any_stream_is_permission_denied(make_client):
    c = make_client()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await c.write([insert(lpm_entry(0x0A000000, 8))], election_id=1)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_unknown_device_on_unary_rpcs_is_not_found(client):
    calls = [
        client.set_pipeline(basic_p4info(), device_id=7),
        client.get_pipeline(device_id=7),
        client.write([insert(lpm_entry(0x0A000000, 8))], device_id=7),
        client.read([p4r.Entity(table_entry=p4r.TableEntry())], device_id=7),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_is_serving(address):
    async with grpc.aio.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "p4.v1.P4Runtime"):
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_several_devices_on_their_own_ports():
    from kubep4.reftarget import serve
    t = await serve([(1, "127.0.0.1", 0), (2, "127.0.0.1", 0)])
    try:
        assert set(t.ports) == {1, 2} and t.ports[1] != t.ports[2]
        async with P4RTClient(t.address(2), device_id=2) as c2:
            assert (await c2.arbitrate(1)).status.code == code_pb2.OK
            await c2.set_pipeline(basic_p4info(), basic_device_config())
        assert t.devices[2].pipeline is not None and t.devices[1].pipeline is None
        # each port serves only its own device
        async with P4RTClient(t.address(1), device_id=2) as wrong:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await wrong.arbitrate(1)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await t.stop()


async def test_busy_port_is_refused(target):
    from kubep4.reftarget import serve
    with pytest.raises(OSError):
        await serve([(5, "127.0.0.1", target.ports[1])])
