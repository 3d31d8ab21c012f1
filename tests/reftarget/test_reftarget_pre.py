"""The packet replication engine (spec §9.5): multicast groups and clone sessions."""
from __future__ import annotations

import grpc
from google.rpc import code_pb2

from kubep4.p4 import p4r

from .p4rt_client import (
    be,
    delete,
    entity,
    expect,
    insert,
    modify,
    multipath_device_config,
    multipath_p4info,
    write_error,
    write_fails,
)

INVALID = code_pb2.INVALID_ARGUMENT
OK = code_pb2.OK
NOT_FOUND = code_pb2.NOT_FOUND


def mcast(group_id: int, *replicas, metadata: bytes = b"") -> p4r.Entity:
    """``replicas``: (port, instance) with an int port in the deprecated egress_port form, bytes in
    the port form, or (port, instance, [(backup port bytes, instance)])."""
    g = p4r.MulticastGroupEntry(multicast_group_id=group_id, metadata=metadata)
    for r in replicas:
        port, instance = r[0], r[1]
        rep = g.replicas.add(instance=instance)
        if isinstance(port, int):
            rep.egress_port = port
        else:
            rep.port = port
        for bport, binst in (r[2] if len(r) > 2 else ()):
            rep.backup_replicas.add(port=bport, instance=binst)
    return entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(multicast_group_entry=g))


def clone(session_id: int, *replicas, cos: int = 0, length: int = 0) -> p4r.Entity:
    c = p4r.CloneSessionEntry(session_id=session_id, class_of_service=cos, packet_length_bytes=length)
    for port, instance in replicas:
        rep = c.replicas.add(instance=instance)
        if isinstance(port, int):
            rep.egress_port = port
        else:
            rep.port = port
    return entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(clone_session_entry=c))


async def test_multicast_group_insert_read_modify_delete(mp):
    written = mcast(1, (1, 1), (be(2), 1), (be(3), 2, [(be(4), 5)]), metadata=b"meta")
    await mp.write([insert(written), insert(mcast(2, (5, 0)))])
    [got] = await mp.read([mcast(1)])
    assert got == written        # both port forms read back as written
    assert [e.packet_replication_engine_entry.multicast_group_entry.multicast_group_id
            for e in await mp.read([mcast(0)])] == [1, 2]
    await mp.write([modify(mcast(1, (9, 1)))])
    [got] = await mp.read([mcast(1)])
    assert got == mcast(1, (9, 1))
    await mp.write([delete(mcast(1))])
    assert await mp.read([mcast(1)]) == []


async def test_multicast_group_errors(mp):
    await mp.write([insert(mcast(1, (1, 1)))])
    codes = await write_fails(mp, [
        insert(mcast(0, (1, 1))),                      # id 0
        insert(mcast(1, (1, 1))),                      # in use
        modify(mcast(2, (1, 1))),                      # no such group
        delete(mcast(3)),
        insert(mcast(4, (1, 1), (1, 1))),              # duplicate (port, instance)
        insert(mcast(5, (1, 1), (be(1), 1))),          # the same port in both forms
        insert(mcast(6, (be(1), 1, [(be(1), 2)]))),    # backup on its replica's port
        insert(mcast(7, (be(1), 1, [(be(2), 3)]), (be(2), 3))),   # backup pair duplicates a replica
        insert(mcast(8, (1, 0x10000))),                # instance too wide
        insert(mcast(9, (b"\x00\x01", 1))),            # non-canonical port bytes
        insert(mcast(10, (1, 1), (1, 2))),             # same port, other instance: fine
    ])
    assert codes == [INVALID, code_pb2.ALREADY_EXISTS, NOT_FOUND, NOT_FOUND, INVALID, INVALID, INVALID,
                     INVALID, INVALID, INVALID, OK]


async def test_clone_sessions(mp):
    written = clone(100, (be(0xFFFFFFFD), 1), cos=2, length=4096)
    await mp.write([insert(written)])
    [got] = await mp.read([clone(100)])
    assert got == written
    assert len(await mp.read([clone(0)])) == 1
    assert await mp.read([mcast(0)]) == []
    codes = await write_fails(mp, [
        insert(clone(0, (1, 1))),
        insert(clone(100, (1, 1))),
        modify(clone(101, (1, 1))),
        delete(clone(102)),
        insert(clone(103, (1, 1), (1, 1))),
        insert(clone(104, (1, 1), cos=256)),
        insert(clone(105, (1, 1), length=-1)),
        modify(clone(100, (2, 1))),
    ])
    assert codes == [INVALID, code_pb2.ALREADY_EXISTS, NOT_FOUND, NOT_FOUND, INVALID, INVALID, INVALID, OK]
    await mp.write([delete(clone(100))])
    assert await mp.read([clone(0)]) == []


async def test_multicast_and_clone_ids_are_separate(mp):
    await mp.write([insert(mcast(5, (1, 1))), insert(clone(5, (1, 1)))])
    assert len(await mp.read([mcast(0)])) == 1 and len(await mp.read([clone(0)])) == 1


async def test_pre_entry_naming_no_kind_is_invalid(mp):
    empty = entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry())
    assert (await write_error(mp, insert(empty))).canonical_code == INVALID
    await expect(grpc.StatusCode.INVALID_ARGUMENT, mp.read([empty]))


async def test_pre_rolls_back_and_is_cleared_by_verify_and_commit(mp):
    codes = await write_fails(mp, [insert(mcast(1, (1, 1))), insert(mcast(0, (1, 1)))],
                              atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)
    assert codes == [code_pb2.ABORTED, INVALID]
    assert await mp.read([mcast(0)]) == []
    await mp.write([insert(mcast(1, (1, 1))), insert(clone(1, (1, 1)))])
    await mp.set_pipeline(multipath_p4info(), multipath_device_config(), cookie=8)
    assert await mp.read([mcast(0)]) == [] and await mp.read([clone(0)]) == []
