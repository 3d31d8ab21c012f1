"""Indexed meters (MeterEntry), direct meters (DirectMeterEntry) and TableEntry.meter_config, spec §9.4
and §9.1.x direct resources, on examples/multipath: meter ``port_policer`` (512 cells, two-rate
three-color), direct meter ``acl_meter`` on table ``acl``."""
from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2

from kubep4.p4 import p4i, p4r

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
OK = code_pb2.OK
Config = p4r.MeterConfig


def meter(index: int | None, config: Config | None = None, meter_id: int = MP.port_policer,
          colors: bool = False) -> p4r.Entity:
    m = p4r.MeterEntry(meter_id=meter_id)
    if index is not None:
        m.index.index = index
    if config is not None:
        m.config.CopyFrom(config)
    if colors:
        m.counter_data.SetInParent()
    return entity(meter_entry=m)


def acl(src: int, config: Config | None = None) -> p4r.TableEntry:
    e = p4r.TableEntry(table_id=MP.acl, priority=10)
    e.match.add(field_id=1, ternary=p4r.FieldMatch.Ternary(value=be(src), mask=be(0xFFFFFFFF)))
    e.action.action.action_id = MP.acl_allow
    if config is not None:
        e.meter_config.CopyFrom(config)
    return e


def direct(entry: p4r.TableEntry | None, config: Config | None = None, table_id: int = MP.acl) -> p4r.Entity:
    d = p4r.DirectMeterEntry()
    if entry is not None:
        d.table_entry.CopyFrom(entry)
        d.table_entry.ClearField("action")
        d.table_entry.ClearField("meter_config")
    else:
        d.table_entry.table_id = table_id
    if config is not None:
        d.config.CopyFrom(config)
    return entity(direct_meter_entry=d)


TR = Config(cir=100, cburst=10, pir=200, pburst=20)


async def test_meter_modify_read_and_reset(mp):
    await mp.write([modify(meter(5, TR))])
    [got] = await mp.read([meter(5)])
    assert got.meter_entry.config == TR and got.meter_entry.index.index == 5
    [untouched] = await mp.read([meter(6)])
    assert not untouched.meter_entry.HasField("config")   # the default config reads back unset
    await mp.write([modify(meter(5))])                      # no config: back to the default
    [reset] = await mp.read([meter(5)])
    assert not reset.meter_entry.HasField("config")


async def test_meter_insert_delete_and_bounds(mp):
    codes = await write_fails(mp, [insert(meter(1, TR)), delete(meter(1)), modify(meter(512, TR)),
                                   modify(meter(-1, TR)), modify(meter(1, TR, meter_id=0)),
                                   modify(meter(1, TR, meter_id=999))])
    assert codes == [INVALID, INVALID, code_pb2.OUT_OF_RANGE, INVALID, INVALID, INVALID]


@pytest.mark.parametrize("config,code", [
    (Config(cir=100, cburst=10, pir=200, pburst=20, eburst=5), INVALID),   # trTCM takes no eburst
    (Config(cir=300, cburst=10, pir=200, pburst=20), INVALID),             # cir above pir (BMv2)
    (Config(cir=-1, cburst=10, pir=200, pburst=20), INVALID),
    (Config(), OK),
])
async def test_two_rate_meter_config_validity(mp, config, code):
    if code == OK:
        await mp.write([modify(meter(1, config))])
    else:
        assert (await write_error(mp, modify(meter(1, config)))).canonical_code == code


@pytest.mark.parametrize("kind,config,code", [
    (p4i.MeterSpec.SINGLE_RATE_THREE_COLOR, Config(cir=100, cburst=10, pir=100, pburst=10, eburst=30), OK),
    (p4i.MeterSpec.SINGLE_RATE_THREE_COLOR, Config(cir=100, cburst=10, pir=200, pburst=10), INVALID),
    (p4i.MeterSpec.SINGLE_RATE_TWO_COLOR, Config(cir=100, cburst=10, pir=100, pburst=10), OK),
    (p4i.MeterSpec.SINGLE_RATE_TWO_COLOR, Config(cir=100, cburst=10, pir=100, pburst=10, eburst=1), INVALID),
    (p4i.MeterSpec.SINGLE_RATE_TWO_COLOR, Config(cir=100, cburst=10, pir=100, pburst=11), INVALID),
])
async def test_single_rate_meter_config_validity(client, kind, config, code):
    info = multipath_p4info()
    info.meters[0].spec.type = kind
    await client.set_pipeline(info, multipath_device_config(), cookie=3)
    if code == OK:
        await client.write([modify(meter(1, config))])
    else:
        assert (await write_error(client, modify(meter(1, config)))).canonical_code == code


async def test_meter_wildcards(mp):
    await mp.write([modify(meter(None, TR))])      # no index: every cell
    cells = await mp.read([meter(None)])
    assert len(cells) == 512 and all(c.meter_entry.config == TR for c in cells)
    assert len(await mp.read([meter(None, meter_id=0)])) == 512
    await expect(grpc.StatusCode.INVALID_ARGUMENT, mp.read([meter(1, meter_id=0)]))
    await expect(grpc.StatusCode.OUT_OF_RANGE, mp.read([meter(512)]))


async def test_meter_color_counters(mp):
    """Per-color counters: a write may only clear them; a read returns them when asked (0 here)."""
    [plain] = await mp.read([meter(1)])
    assert not plain.meter_entry.HasField("counter_data")
    [asked] = await mp.read([meter(1, colors=True)])
    assert asked.meter_entry.counter_data.green == p4r.CounterData()
    await mp.write([modify(meter(1, TR, colors=True))])
    bad = meter(1, TR)
    bad.meter_entry.counter_data.red.packet_count = 3
    assert (await write_error(mp, modify(bad))).canonical_code == INVALID


# ------------------------------------------------------------------ direct meters


async def test_meter_config_on_insert_modify_and_read(mp):
    await mp.write([insert(acl(1, TR))])
    [plain] = await mp.read_table(MP.acl)
    assert not plain.HasField("meter_config")
    [asked] = await mp.read_table(MP.acl, meter_config=Config())
    assert asked.meter_config == TR
    # MODIFY without meter_config resets the meter to the default (spec §9.1.x)
    await mp.write([modify(acl(1))])
    [reset] = await mp.read_table(MP.acl, meter_config=Config())
    assert not reset.HasField("meter_config")
    [d] = await mp.read([direct(acl(1))])
    assert not d.direct_meter_entry.HasField("config")


async def test_direct_meter_entry(mp):
    await mp.write([insert(acl(1))])
    await mp.write([modify(direct(acl(1), TR))])
    [d] = await mp.read([direct(acl(1))])
    assert d.direct_meter_entry.config == TR
    assert len(await mp.read([direct(None)])) == 1
    assert len(await mp.read([direct(None, table_id=0)])) == 1
    await mp.write([modify(direct(acl(1)))])        # no config: the default
    [d] = await mp.read([direct(acl(1))])
    assert not d.direct_meter_entry.HasField("config")
    codes = await write_fails(mp, [insert(direct(acl(1), TR)), delete(direct(acl(1))),
                                   modify(direct(acl(2), TR)),
                                   modify(direct(acl(1), Config(cir=5, pir=1)))])
    assert codes == [INVALID, INVALID, code_pb2.NOT_FOUND, INVALID]
    await expect(grpc.StatusCode.NOT_FOUND, mp.read([direct(acl(2))]))


async def test_meter_config_on_a_table_without_direct_meter_is_invalid(mp):
    e = p4r.TableEntry(table_id=MP.l2_flood)
    e.match.add(field_id=1, exact=p4r.FieldMatch.Exact(value=be(1)))
    e.action.action.action_id = MP.drop
    e.meter_config.CopyFrom(TR)
    assert (await write_error(mp, insert(e))).canonical_code == INVALID
    e.ClearField("meter_config")
    await mp.write([insert(e)])
    err = await write_error(mp, modify(direct(e, TR, table_id=MP.l2_flood)))
    assert err.canonical_code == INVALID


async def test_meters_are_cleared_by_verify_and_commit(mp):
    await mp.write([modify(meter(1, TR))])
    await mp.set_pipeline(multipath_p4info(), multipath_device_config(), cookie=8)
    [got] = await mp.read([meter(1)])
    assert not got.meter_entry.HasField("config")
