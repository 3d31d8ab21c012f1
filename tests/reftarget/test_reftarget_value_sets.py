"""Parser value sets (ValueSetEntry, spec §9.6), on examples/multipath's P4Info with two value sets
added: ``trill_types`` (exact 16 bits, size 2) and ``ranged`` (ternary 8 bits + exact 4 bits, size 4)."""
from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2

from kubep4.p4 import p4i, p4r

from .p4rt_client import (
    be,
    delete,
    entity,
    expect,
    insert,
    modify,
    multipath_device_config,
    multipath_p4info,
    write_fails,
)

INVALID = code_pb2.INVALID_ARGUMENT
TRILL, TERN = 50331649, 50331650


def info_with_value_sets() -> p4i.P4Info:
    info = multipath_p4info()
    vs = info.value_sets.add(size=2)
    vs.preamble.id, vs.preamble.name = TRILL, "MpParser.trill_types"
    vs.match.add(id=1, name="eth_type", bitwidth=16, match_type=p4i.MatchField.EXACT)
    vs2 = info.value_sets.add(size=4)
    vs2.preamble.id, vs2.preamble.name = TERN, "MpParser.ranged"
    vs2.match.add(id=1, name="a", bitwidth=8, match_type=p4i.MatchField.TERNARY)
    vs2.match.add(id=2, name="b", bitwidth=4, match_type=p4i.MatchField.EXACT)
    return info


@pytest.fixture
async def vs(client):
    await client.set_pipeline(info_with_value_sets(), multipath_device_config(), cookie=5)
    return client


def trill(*types: int, value_set_id: int = TRILL) -> p4r.Entity:
    e = p4r.ValueSetEntry(value_set_id=value_set_id)
    for t in types:
        e.members.add().match.add(field_id=1, exact=p4r.FieldMatch.Exact(value=be(t)))
    return entity(value_set_entry=e)


async def test_modify_replaces_the_members(vs):
    await vs.write([modify(trill(0x22F3, 0x893B))])
    [got] = await vs.read([trill(value_set_id=TRILL)])
    assert got == trill(0x22F3, 0x893B)
    await vs.write([modify(trill(0x8100))])
    [got] = await vs.read([trill()])
    assert got == trill(0x8100)
    await vs.write([modify(trill())])            # empty: the initial state
    [got] = await vs.read([trill()])
    assert list(got.value_set_entry.members) == []


async def test_value_set_rules(vs):
    codes = await write_fails(vs, [
        insert(trill(1)), delete(trill(1)),                    # MODIFY only
        modify(trill(1, 2, 3)),                                # size 2
        modify(trill(1, 1)),                                   # duplicate member
        modify(trill(0x10000)),                                # does not fit 16 bits
        modify(trill(1, value_set_id=0)), modify(trill(1, value_set_id=7)),
    ])
    assert codes == [INVALID, INVALID, code_pb2.RESOURCE_EXHAUSTED, code_pb2.ALREADY_EXISTS, INVALID,
                     INVALID, INVALID]


async def test_match_rules_follow_table_entries(vs):
    def member(a: tuple[int, int] | None, b: int | None) -> p4r.ValueSetMember:
        m = p4r.ValueSetMember()
        if a is not None:
            m.match.add(field_id=1, ternary=p4r.FieldMatch.Ternary(value=be(a[0]), mask=be(a[1])))
        if b is not None:
            m.match.add(field_id=2, exact=p4r.FieldMatch.Exact(value=be(b)))
        return m

    def entry(*members) -> p4r.Update:
        return modify(entity(value_set_entry=p4r.ValueSetEntry(value_set_id=TERN, members=members)))

    codes = await write_fails(vs, [
        entry(member((1, 0xFF), None)),        # the exact field is mandatory
        entry(member((1, 0), 2)),              # a mask-0 ternary must be omitted
        entry(member((3, 1), 2)),              # value bits outside the mask
        entry(member((1, 0xFF), 2), member(None, 2)),   # ternary omitted: fine, no priority needed
    ])
    assert codes == [INVALID, INVALID, INVALID, code_pb2.OK]


async def test_wildcard_read_and_unknown_id(vs):
    await vs.write([modify(trill(1))])
    got = await vs.read([trill(value_set_id=0)])
    assert [e.value_set_entry.value_set_id for e in got] == [TRILL, TERN]
    await expect(grpc.StatusCode.INVALID_ARGUMENT, vs.read([trill(value_set_id=7)]))


async def test_value_sets_are_cleared_by_verify_and_commit(vs):
    await vs.write([modify(trill(1))])
    await vs.set_pipeline(info_with_value_sets(), multipath_device_config(), cookie=6)
    [got] = await vs.read([trill()])
    assert list(got.value_set_entry.members) == []
