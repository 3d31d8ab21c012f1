"""RECONCILE_AND_COMMIT with every entity kind (spec §7.3 / §10): the state of each kind whose object
keeps its id and shape in the new P4Info is kept; anything that does not fit fails the whole change
with INVALID_ARGUMENT and leaves the device as it was.  Also default entries (spec §9.1.4)."""
from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2

from kubep4.p4 import p4i, p4r

from .p4rt_client import (
    MP,
    ResponseType,
    SetAction,
    be,
    entity,
    expect,
    insert,
    modify,
    multipath_device_config,
    write_error,
)
from .test_reftarget_counters import acl, cell, direct
from .test_reftarget_meters import TR, meter
from .test_reftarget_pre import clone, mcast
from .test_reftarget_profiles import group, hop, member, route
from .test_reftarget_registers import reg
from .test_reftarget_value_sets import TRILL, info_with_value_sets, trill

CounterData = p4r.CounterData


async def program(c) -> None:
    await c.write([insert(member(1, hop(1))), insert(member(2, hop(2))),
                   insert(acl(0x0A000001, counter=CounterData(packet_count=4))),
                   insert(mcast(1, (1, 1))), insert(clone(7, (2, 1))),
                   modify(cell(3, packets=9)), modify(meter(4, TR)), modify(reg(5, be(6))),
                   modify(trill(0x22F3))])
    await c.write([insert(group(10, [1, 2]))])
    await c.write([insert(route(0x0A000001, group_id=10)), insert(route(0x0A000002, member_id=1))])


async def snapshot(c) -> list[p4r.Entity]:
    queries = [entity(table_entry=p4r.TableEntry(counter_data=CounterData())), member(0, profile=0),
               group(0, profile=0), mcast(0), clone(0), cell(3), meter(4), reg(5), trill(value_set_id=0),
               direct(acl(0x0A000001))]
    return await c.read(queries)


async def reconcile(c, info: p4i.P4Info, cookie: int = 11) -> None:
    await c.set_pipeline(info, multipath_device_config(), cookie=cookie, action=SetAction.RECONCILE_AND_COMMIT)


@pytest.fixture
async def programmed(client):
    await client.set_pipeline(info_with_value_sets(), multipath_device_config(), cookie=5)
    await program(client)
    return client


async def test_reconcile_with_the_same_p4info_keeps_every_kind(programmed):
    before = await snapshot(programmed)
    assert len(before) > 10
    await reconcile(programmed, info_with_value_sets())
    assert await snapshot(programmed) == before
    assert (await programmed.get_pipeline(ResponseType.COOKIE_ONLY)).cookie.cookie == 11


async def test_reconcile_keeps_what_changed_around_it(programmed):
    """Objects holding no state may change; a new object starts empty."""
    before = await snapshot(programmed)
    info = info_with_value_sets()
    info.direct_meters[0].spec.type = p4i.MeterSpec.SINGLE_RATE_TWO_COLOR   # acl_meter holds nothing
    info.registers[0].preamble.name = "MpIngress.renamed"                    # names are not shape
    extra = info.counters.add(size=8)     # a new counter
    extra.preamble.id, extra.preamble.name = 308926999, "MpIngress.extra"
    extra.spec.unit = p4i.CounterSpec.PACKETS
    await reconcile(programmed, info)
    assert await snapshot(programmed) == before
    assert len(await programmed.read([cell(None, counter_id=308926999)])) == 8


def _drop_counter(info):
    del info.counters[:]


def _resize_register(info):
    info.registers[0].type_spec.bitstring.bit.bitwidth = 16


def _resize_meter(info):
    info.meters[0].size = 100


def _meter_type(info):
    info.meters[0].spec.type = p4i.MeterSpec.SINGLE_RATE_TWO_COLOR


def _no_selector(info):
    info.action_profiles[0].with_selector = False


def _drop_action_param(info):
    hop_action = next(a for a in info.actions if a.preamble.id == MP.set_next_hop)
    del hop_action.params[1]


def _value_set_width(info):
    next(v for v in info.value_sets if v.preamble.id == TRILL).match[0].bitwidth = 8


def _drop_direct_counter(info):
    del info.direct_counters[:]
    acl_table = next(t for t in info.tables if t.preamble.id == MP.acl)
    acl_table.direct_resource_ids.remove(MP.acl_counter)


@pytest.mark.parametrize("change", [_drop_counter, _resize_register, _resize_meter, _meter_type, _no_selector,
                                    _drop_action_param, _value_set_width, _drop_direct_counter])
async def test_reconcile_that_does_not_fit_changes_nothing(programmed, change):
    before = await snapshot(programmed)
    info = info_with_value_sets()
    change(info)
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, reconcile(programmed, info))
    assert "RECONCILE_AND_COMMIT" in err.details()
    assert await snapshot(programmed) == before
    assert (await programmed.get_pipeline(ResponseType.COOKIE_ONLY)).cookie.cookie == 5


async def test_verify_and_commit_clears_every_kind(programmed):
    await programmed.set_pipeline(info_with_value_sets(), multipath_device_config(), cookie=6)
    assert await programmed.read_table() == []
    for wildcard in (member(0, profile=0), group(0, profile=0), mcast(0), clone(0)):
        assert await programmed.read([wildcard]) == []
    [c], [m], [r], [v] = [await programmed.read([q]) for q in (cell(3), meter(4), reg(5), trill())]
    assert c.counter_entry.data == CounterData()
    assert not m.meter_entry.HasField("config")
    assert r.register_entry.data.bitstring == b"\x00"
    assert list(v.value_set_entry.members) == []


# ------------------------------------------------------------------ default entries


async def test_default_entry_modify_and_reset_on_every_table(programmed):
    """Spec §9.1.4: MODIFY with no action resets the default entry to the P4Info's initial default;
    the default entry reads on every table, indirect ones included."""
    for table in (MP.ipv4_route, MP.l2_flood, MP.acl):
        [d] = await programmed.read_table(table, is_default_action=True)
        assert d.is_default_action and d.action.action.action_id
    flood = p4r.TableEntry(table_id=MP.l2_flood, is_default_action=True)
    flood.action.action.action_id = MP.flood
    flood.action.action.params.add(param_id=1, value=be(3))
    await programmed.write([modify(flood)])
    [d] = await programmed.read_table(MP.l2_flood, is_default_action=True)
    assert d == flood
    await programmed.write([modify(p4r.TableEntry(table_id=MP.l2_flood, is_default_action=True))])
    [d] = await programmed.read_table(MP.l2_flood, is_default_action=True)
    assert d.action.action.action_id == MP.to_cpu and not d.action.action.params
    # an indirect table's default entry takes its P4Info default action kind, a direct action
    bad = p4r.TableEntry(table_id=MP.ipv4_route, is_default_action=True)
    bad.action.action_profile_member_id = 1
    assert (await write_error(programmed, modify(bad))).canonical_code == code_pb2.INVALID_ARGUMENT
