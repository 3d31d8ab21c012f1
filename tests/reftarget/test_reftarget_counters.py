"""Indexed counters (CounterEntry), direct counters (DirectCounterEntry) and TableEntry.counter_data,
spec §9.3 and §9.1.x (direct resources), on examples/multipath: counter ``port_rx`` (512 cells),
direct counter ``acl_counter`` on table ``acl``."""
from __future__ import annotations

import grpc
from google.rpc import code_pb2

from kubep4.p4 import p4r
from kubep4.reftarget.device import Device

from .p4rt_client import (
    MP,
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
CounterData = p4r.CounterData


def cell(index: int | None, packets: int | None = None, octets: int = 0,
         counter_id: int = MP.port_rx) -> p4r.Entity:
    c = p4r.CounterEntry(counter_id=counter_id)
    if index is not None:
        c.index.index = index
    if packets is not None:
        c.data.CopyFrom(CounterData(packet_count=packets, byte_count=octets))
    return entity(counter_entry=c)


def acl(src: int, priority: int = 10, counter: CounterData | None = None) -> p4r.TableEntry:
    e = p4r.TableEntry(table_id=MP.acl, priority=priority)
    e.match.add(field_id=1, ternary=p4r.FieldMatch.Ternary(value=be(src), mask=be(0xFFFFFFFF)))
    e.action.action.action_id = MP.acl_allow
    if counter is not None:
        e.counter_data.CopyFrom(counter)
    return e


def direct(entry: p4r.TableEntry | None, data: CounterData | None = None, table_id: int = MP.acl) -> p4r.Entity:
    d = p4r.DirectCounterEntry()
    if entry is not None:
        d.table_entry.CopyFrom(entry)
        d.table_entry.ClearField("action")
        d.table_entry.ClearField("counter_data")
    else:
        d.table_entry.table_id = table_id
    if data is not None:
        d.data.CopyFrom(data)
    return entity(direct_counter_entry=d)


# ------------------------------------------------------------------ CounterEntry


async def test_counter_modify_and_read_one_cell(mp):
    await mp.write([modify(cell(7, packets=5, octets=640))])
    [got] = await mp.read([cell(7)])
    assert got.counter_entry.counter_id == MP.port_rx
    assert got.counter_entry.index.index == 7
    assert got.counter_entry.data == CounterData(packet_count=5, byte_count=640)
    [other] = await mp.read([cell(8)])
    assert other.counter_entry.data == CounterData()


async def test_counter_modify_without_data_changes_nothing(mp):
    await mp.write([modify(cell(3, packets=9))])
    await mp.write([modify(cell(3))])
    [got] = await mp.read([cell(3)])
    assert got.counter_entry.data.packet_count == 9


async def test_counter_insert_and_delete_are_invalid(mp):
    assert await write_fails(mp, [insert(cell(1, packets=1)), delete(cell(1))]) == [INVALID, INVALID]


async def test_counter_index_bounds(mp):
    """Spec §9.3.2: a negative index is INVALID_ARGUMENT, one past the array OUT_OF_RANGE."""
    assert await write_fails(mp, [modify(cell(512, packets=1)), modify(cell(-1, packets=1)),
                                  modify(cell(511, packets=1))]) == [code_pb2.OUT_OF_RANGE, INVALID, code_pb2.OK]
    await expect(grpc.StatusCode.OUT_OF_RANGE, mp.read([cell(512)]))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, mp.read([cell(-3)]))


async def test_counter_id_zero_and_unknown_are_invalid_for_writes(mp):
    assert await write_fails(mp, [modify(cell(0, packets=1, counter_id=0)),
                                  modify(cell(0, packets=1, counter_id=12345))]) == [INVALID, INVALID]


async def test_counter_read_without_index_is_every_cell(mp):
    await mp.write([modify(cell(0, packets=1)), modify(cell(511, packets=2))])
    cells = [e.counter_entry for e in await mp.read([cell(None)])]
    assert [c.index.index for c in cells] == list(range(512))
    assert cells[0].data.packet_count == 1 and cells[511].data.packet_count == 2
    assert all(c.data == CounterData() for c in cells[1:511])


async def test_counter_id_zero_reads_every_counter(mp):
    cells = await mp.read([cell(None, counter_id=0)])
    assert len(cells) == 512 and {c.counter_entry.counter_id for c in cells} == {MP.port_rx}
    await expect(grpc.StatusCode.INVALID_ARGUMENT, mp.read([cell(1, counter_id=0)]))


async def test_counter_modify_without_index_sets_every_cell(mp):
    await mp.write([modify(cell(4, packets=1))])
    await mp.write([modify(cell(None, packets=0, octets=0))])
    assert all(c.counter_entry.data == CounterData() for c in await mp.read([cell(None)]))
    await mp.write([modify(cell(None, packets=3))])
    assert {c.counter_entry.data.packet_count for c in await mp.read([cell(None)])} == {3}


async def test_negative_counts_are_invalid(mp):
    err = await write_error(mp, modify(cell(1, packets=-1)))
    assert err.canonical_code == INVALID


async def test_counters_are_cleared_by_verify_and_commit(mp):
    await mp.write([modify(cell(2, packets=4))])
    await mp.set_pipeline(multipath_p4info(), multipath_device_config(), cookie=8)
    [got] = await mp.read([cell(2)])
    assert got.counter_entry.data == CounterData()


async def test_counter_writes_roll_back_with_the_batch(mp):
    bad = modify(cell(999, packets=1))
    codes = await write_fails(mp, [modify(cell(1, packets=7)), bad], atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)
    assert codes == [code_pb2.ABORTED, code_pb2.OUT_OF_RANGE]
    [got] = await mp.read([cell(1)])
    assert got.counter_entry.data == CounterData()


# ------------------------------------------------------------------ TableEntry.counter_data


async def test_counter_data_initialises_the_direct_counter_on_insert(mp):
    await mp.write([insert(acl(0x0A000001, counter=CounterData(packet_count=3, byte_count=300)))])
    [got] = await mp.read([direct(acl(0x0A000001))])
    assert got.direct_counter_entry.data == CounterData(packet_count=3, byte_count=300)


async def test_table_read_returns_counter_data_only_when_asked(mp):
    """Spec §9.1.x: ``counter_data`` set in the read request (to anything) asks for the counter."""
    await mp.write([insert(acl(0x0A000001, counter=CounterData(packet_count=3)))])
    [plain] = await mp.read_table(MP.acl)
    assert not plain.HasField("counter_data")
    [asked] = await mp.read_table(MP.acl, counter_data=CounterData())
    assert asked.HasField("counter_data") and asked.counter_data.packet_count == 3
    [wild] = await mp.read_table(0, counter_data=CounterData())
    assert wild.counter_data.packet_count == 3
    # an entry inserted without counter_data reads back 0, set
    await mp.write([insert(acl(0x0A000002))])
    by_src = {e.match[0].ternary.value: e for e in await mp.read_table(MP.acl, counter_data=CounterData())}
    assert by_src[be(0x0A000002)].HasField("counter_data")
    assert by_src[be(0x0A000002)].counter_data == CounterData()


async def test_modify_with_counter_data_sets_it_without_keeps_it(mp):
    await mp.write([insert(acl(0x0A000001, counter=CounterData(packet_count=3)))])
    await mp.write([modify(acl(0x0A000001))])
    [kept] = await mp.read([direct(acl(0x0A000001))])
    assert kept.direct_counter_entry.data.packet_count == 3
    await mp.write([modify(acl(0x0A000001, counter=CounterData(packet_count=10)))])
    [changed] = await mp.read([direct(acl(0x0A000001))])
    assert changed.direct_counter_entry.data.packet_count == 10


async def test_counter_data_on_a_table_without_direct_counter_is_invalid(mp):
    e = p4r.TableEntry(table_id=MP.l2_flood)
    e.match.add(field_id=1, exact=p4r.FieldMatch.Exact(value=be(0x0A0B0C0D0E0F)))
    e.action.action.action_id = MP.drop
    e.counter_data.packet_count = 1
    err = await write_error(mp, insert(e))
    assert err.canonical_code == INVALID
    assert await mp.read_table(MP.l2_flood) == []


async def test_deleted_entry_takes_its_counter_with_it(mp):
    await mp.write([insert(acl(0x0A000001, counter=CounterData(packet_count=3)))])
    await mp.write([delete(acl(0x0A000001))])
    await mp.write([insert(acl(0x0A000001))])
    [got] = await mp.read([direct(acl(0x0A000001))])
    assert got.direct_counter_entry.data == CounterData()


# ------------------------------------------------------------------ DirectCounterEntry


async def test_direct_counter_modify_and_read(mp):
    await mp.write([insert(acl(0x0A000001))])
    await mp.write([modify(direct(acl(0x0A000001), CounterData(packet_count=8, byte_count=80)))])
    [got] = await mp.read([direct(acl(0x0A000001))])
    d = got.direct_counter_entry
    assert d.data == CounterData(packet_count=8, byte_count=80)
    assert d.table_entry.table_id == MP.acl and d.table_entry.priority == 10
    assert list(d.table_entry.match) == list(acl(0x0A000001).match)
    # no data: the counter is not modified
    await mp.write([modify(direct(acl(0x0A000001)))])
    [same] = await mp.read([direct(acl(0x0A000001))])
    assert same.direct_counter_entry.data.packet_count == 8


async def test_direct_counter_needs_an_installed_entry(mp):
    """Spec §9.3.1: no matching table entry is NOT_FOUND, for writes and reads."""
    err = await write_error(mp, modify(direct(acl(0x0A000009), CounterData(packet_count=1))))
    assert err.canonical_code == code_pb2.NOT_FOUND
    await expect(grpc.StatusCode.NOT_FOUND, mp.read([direct(acl(0x0A000009))]))


async def test_direct_counter_insert_and_delete_are_invalid(mp):
    await mp.write([insert(acl(0x0A000001))])
    codes = await write_fails(mp, [insert(direct(acl(0x0A000001), CounterData(packet_count=1))),
                                   delete(direct(acl(0x0A000001)))])
    assert codes == [INVALID, INVALID]


async def test_direct_counter_on_a_table_without_one_is_invalid(mp):
    entry = p4r.TableEntry(table_id=MP.l2_flood)
    entry.match.add(field_id=1, exact=p4r.FieldMatch.Exact(value=be(1)))
    err = await write_error(mp, modify(direct(entry, CounterData(packet_count=1))))
    assert err.canonical_code == INVALID
    await expect(grpc.StatusCode.INVALID_ARGUMENT, mp.read([direct(None, table_id=MP.l2_flood)]))


async def test_direct_counter_wildcard_reads(mp):
    """A table with no match reads every entry's counter; table_id 0 every table's.  (A real BMv2
    refuses wildcard direct-counter reads; the spec allows them.)"""
    await mp.write([insert(acl(0x0A000001, counter=CounterData(packet_count=1))),
                    insert(acl(0x0A000002, counter=CounterData(packet_count=2)))])
    by_table = await mp.read([direct(None)])
    assert sorted(e.direct_counter_entry.data.packet_count for e in by_table) == [1, 2]
    everywhere = await mp.read([direct(None, table_id=0)])
    assert sorted(e.direct_counter_entry.data.packet_count for e in everywhere) == [1, 2]


async def test_default_entry_has_a_direct_counter(mp):
    default = p4r.TableEntry(table_id=MP.acl, is_default_action=True)
    await mp.write([modify(direct(default, CounterData(packet_count=4)))])
    [got] = await mp.read([direct(default)])
    assert got.direct_counter_entry.data.packet_count == 4
    assert got.direct_counter_entry.table_entry.is_default_action
    [entry] = await mp.read_table(MP.acl, is_default_action=True, counter_data=CounterData())
    assert entry.counter_data.packet_count == 4 and entry.action.action.action_id == MP.acl_allow


def test_direct_counters_in_a_pure_device():
    d = Device(1)
    cfg = p4r.ForwardingPipelineConfig(p4info=multipath_p4info())
    d.set_pipeline(p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT, cfg)
    assert d.write([insert(acl(1, counter=CounterData(packet_count=2)))]) == [None]
    assert not d.entries[MP.acl][next(iter(d.entries[MP.acl]))].HasField("counter_data")
    [got] = list(d.read([direct(acl(1))]))
    assert got.direct_counter_entry.data.packet_count == 2
