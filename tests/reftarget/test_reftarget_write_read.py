"""Write (INSERT/MODIFY/DELETE, validation, per-update errors) and Read of table entries."""
from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2

from kubep4.p4 import p4i, p4r

from .p4rt_client import BASIC, acl_entry, be, delete, error_codes, insert, lpm_entry, modify, write_errors

INVALID = code_pb2.INVALID_ARGUMENT
OK = code_pb2.OK


async def expect(code: grpc.StatusCode, coro):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    assert err.value.code() == code, err.value.details()
    return err.value


async def write_fails(client, updates, **kw) -> list[int]:
    """Write expecting the per-update failure report; return the canonical codes in order."""
    err = await expect(grpc.StatusCode.UNKNOWN, client.write(updates, **kw))
    codes = error_codes(err)
    assert len(codes) == len(updates)
    return codes


def key(entry: p4r.TableEntry) -> bytes:
    return entry.SerializeToString(deterministic=True)


# ------------------------------------------------------------------ a synthetic program with range/optional

RT, XT = 40000001, 40000002          # tables
SET, NOP, ONLY_DEFAULT = 20000001, 20000002, 20000003   # actions


def synthetic_p4info() -> p4i.P4Info:
    info = p4i.P4Info()
    t = info.tables.add()
    t.preamble.id, t.preamble.name = RT, "Syn.ranged"
    t.match_fields.add(id=1, name="f.port", bitwidth=16, match_type=p4i.MatchField.RANGE)
    t.match_fields.add(id=2, name="f.vlan", bitwidth=12, match_type=p4i.MatchField.OPTIONAL)
    t.action_refs.add(id=SET)
    t.action_refs.add(id=NOP)
    t.action_refs.add(id=ONLY_DEFAULT, scope=p4i.ActionRef.DEFAULT_ONLY)
    t.initial_default_action.action_id = NOP
    t.size = 16
    x = info.tables.add()
    x.preamble.id, x.preamble.name = XT, "Syn.exact"
    x.match_fields.add(id=1, name="f.a", bitwidth=8, match_type=p4i.MatchField.EXACT)
    x.action_refs.add(id=NOP)
    x.const_default_action_id = NOP
    for aid, name in ((SET, "Syn.set"), (NOP, "Syn.nop"), (ONLY_DEFAULT, "Syn.only_default")):
        a = info.actions.add()
        a.preamble.id, a.preamble.name = aid, name
    info.actions[0].params.add(id=1, name="v", bitwidth=4)
    return info


def ranged(low: int | None, high: int | None, vlan: int | None, priority: int = 1,
           action: int = NOP) -> p4r.TableEntry:
    e = p4r.TableEntry(table_id=RT, priority=priority)
    if low is not None:
        e.match.add(field_id=1, range=p4r.FieldMatch.Range(low=be(low), high=be(high)))
    if vlan is not None:
        e.match.add(field_id=2, optional=p4r.FieldMatch.Optional(value=be(vlan)))
    e.action.action.action_id = action
    if action == SET:
        e.action.action.params.add(param_id=1, value=b"\x03")
    return e


@pytest.fixture
async def synthetic(client):
    await client.set_pipeline(synthetic_p4info(), b"{}", cookie=1)
    return client


# ------------------------------------------------------------------ preconditions


async def test_write_without_pipeline_is_failed_precondition(client):
    await expect(grpc.StatusCode.FAILED_PRECONDITION, client.write([insert(lpm_entry(0x0A000000, 8))]))


async def test_read_without_pipeline_is_failed_precondition(client):
    await expect(grpc.StatusCode.FAILED_PRECONDITION, client.read_table())


async def test_empty_write_is_ok(loaded):
    await loaded.write([])


# ------------------------------------------------------------------ LPM


async def test_lpm_insert_modify_delete(loaded, device):
    e = lpm_entry(0x0A000000, 8, port=1)
    await loaded.write([insert(e)])
    assert await loaded.read_table(BASIC.ipv4_lpm) == [e]
    assert await write_fails(loaded, [insert(e)]) == [code_pb2.ALREADY_EXISTS]
    e2 = lpm_entry(0x0A000000, 8, port=2)
    await loaded.write([modify(e2)])
    assert await loaded.read_table(BASIC.ipv4_lpm) == [e2]
    # DELETE needs only the key
    key_only = p4r.TableEntry(table_id=BASIC.ipv4_lpm, match=e.match)
    await loaded.write([delete(key_only)])
    assert await loaded.read_table() == []
    assert await write_fails(loaded, [delete(key_only)]) == [code_pb2.NOT_FOUND]
    assert await write_fails(loaded, [modify(e)]) == [code_pb2.NOT_FOUND]
    assert device.stats.inserts == 1 and device.stats.modifies == 1 and device.stats.deletes == 1
    assert device.stats.writes_applied == 3 and device.stats.writes_failed == 3


async def test_lpm_prefix_lengths_are_distinct_keys(loaded):
    await loaded.write([insert(lpm_entry(0x0A000000, 8)), insert(lpm_entry(0x0A000000, 16))])
    assert len(await loaded.read_table(BASIC.ipv4_lpm)) == 2


@pytest.mark.parametrize("value,prefix_len", [
    (0x0A000001, 8),     # bits set past the prefix
    (0x0A000000, 33),    # prefix longer than the field
    (0x0A000000, 0),     # don't-care must be omitted
    (0x1_0000_0000, 32),  # wider than 32 bits
])
async def test_lpm_bad_values(loaded, value, prefix_len):
    assert await write_fails(loaded, [insert(lpm_entry(value, prefix_len))]) == [INVALID]


async def test_lpm_table_takes_no_priority(loaded):
    e = lpm_entry(0x0A000000, 8)
    e.priority = 3
    assert await write_fails(loaded, [insert(e)]) == [INVALID]


# ------------------------------------------------------------------ ternary + exact


async def test_ternary_insert_read_delete(loaded):
    a = acl_entry(0x0A000000, 0xFF000000, 1, priority=10, deny_rule=1)
    b = acl_entry(0x0A000000, 0xFF000000, 1, priority=20)  # same match, other priority: other key
    c = acl_entry(None, None, 2, priority=5, proto=(6, 0xFF))
    await loaded.write([insert(a), insert(b), insert(c)])
    assert sorted(map(key, await loaded.read_table(BASIC.acl))) == sorted(map(key, [a, b, c]))
    await loaded.write([delete(a)])
    assert sorted(map(key, await loaded.read_table(BASIC.acl))) == sorted(map(key, [b, c]))


async def test_ternary_rules(loaded):
    outside_mask = acl_entry(0x0A000001, 0xFF000000, 1)
    zero_mask = acl_entry(0, 0, 1)
    no_priority = acl_entry(0x0A000000, 0xFF000000, 1, priority=0)
    missing_exact = acl_entry(0x0A000000, 0xFF000000, 1)
    del missing_exact.match[-1]
    assert await write_fails(loaded, [insert(outside_mask), insert(zero_mask), insert(no_priority),
                                      insert(missing_exact)]) == [INVALID] * 4


async def test_exact_rules(loaded):
    too_wide = acl_entry(None, None, 0x200)  # ingress_port is 9 bits
    padded = acl_entry(None, None, 1)
    padded.match[0].exact.value = b"\x00\x01"  # not canonical
    empty = acl_entry(None, None, 1)
    empty.match[0].exact.value = b""
    wrong_kind = acl_entry(None, None, 1)
    wrong_kind.match[0].ClearField("exact")
    wrong_kind.match[0].lpm.value, wrong_kind.match[0].lpm.prefix_len = b"\x01", 9
    unknown_field = acl_entry(None, None, 1)
    unknown_field.match.add(field_id=9, exact=p4r.FieldMatch.Exact(value=b"\x01"))
    twice = acl_entry(None, None, 1)
    twice.match.add().CopyFrom(twice.match[0])
    assert await write_fails(loaded, [insert(e) for e in (too_wide, padded, empty, wrong_kind,
                                                          unknown_field, twice)]) == [INVALID] * 6


async def test_zero_is_one_byte(loaded):
    e = acl_entry(None, None, 0)
    assert e.match[0].exact.value == b"\x00"
    await loaded.write([insert(e)])
    assert await loaded.read_table(BASIC.acl) == [e]


# ------------------------------------------------------------------ actions


async def test_action_rules(loaded):
    not_in_table = lpm_entry(0x0A000000, 8)
    not_in_table.action.action.action_id = BASIC.deny
    missing_param = lpm_entry(0x0B000000, 8)
    del missing_param.action.action.params[1]
    unknown_param = lpm_entry(0x0C000000, 8)
    unknown_param.action.action.params.add(param_id=3, value=b"\x01")
    wide_param = lpm_entry(0x0D000000, 8, port=0x200)
    no_action = lpm_entry(0x0E000000, 8)
    no_action.ClearField("action")
    unknown_table = lpm_entry(0x0F000000, 8)
    unknown_table.table_id = 1234
    profile = lpm_entry(0x10000000, 8)
    profile.action.action_profile_member_id = 1
    codes = await write_fails(loaded, [insert(e) for e in (not_in_table, missing_param, unknown_param,
                                                           wide_param, no_action, unknown_table, profile)])
    # a member id on a table without an action profile (implementation_id) is INVALID_ARGUMENT
    assert codes == [INVALID] * 7
    assert await loaded.read_table() == []


async def test_partial_failure_reports_every_update_in_order(loaded):
    good1, good2 = lpm_entry(0x0A000000, 8), lpm_entry(0x0B000000, 8)
    bad = lpm_entry(0x0C000001, 8)
    err = await expect(grpc.StatusCode.UNKNOWN, loaded.write([insert(good1), insert(bad), insert(good2)]))
    errors = write_errors(err)
    assert [e.canonical_code for e in errors] == [OK, INVALID, OK]
    assert errors[1].message  # a human-readable reason
    assert sorted(map(key, await loaded.read_table())) == sorted(map(key, [good1, good2]))


async def test_rollback_on_error_applies_nothing(loaded, device):
    good, bad = lpm_entry(0x0A000000, 8), lpm_entry(0x0C000001, 8)
    codes = await write_fails(loaded, [insert(good), insert(bad)],
                              atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)
    assert codes == [code_pb2.ABORTED, INVALID]
    assert await loaded.read_table() == []
    await loaded.write([insert(good)], atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)
    assert await loaded.read_table() == [good]


async def test_digest_entries_are_unimplemented(loaded):
    digest = p4r.Entity(digest_entry=p4r.DigestEntry(digest_id=401001))
    update = p4r.Update(type=p4r.Update.INSERT, entity=digest)
    assert await write_fails(loaded, [update]) == [code_pb2.UNIMPLEMENTED]
    await expect(grpc.StatusCode.UNIMPLEMENTED, loaded.read([digest]))


async def test_an_unknown_counter_is_invalid(loaded):
    counter = p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=307793999))
    update = p4r.Update(type=p4r.Update.MODIFY, entity=counter)
    assert await write_fails(loaded, [update]) == [INVALID]
    await expect(grpc.StatusCode.INVALID_ARGUMENT, loaded.read([counter]))


async def test_unspecified_update_type_is_invalid(loaded):
    update = p4r.Update(entity=p4r.Entity(table_entry=lpm_entry(0x0A000000, 8)))
    assert await write_fails(loaded, [update]) == [INVALID]


# ------------------------------------------------------------------ default actions


def default_forward(port: int) -> p4r.TableEntry:
    e = p4r.TableEntry(table_id=BASIC.ipv4_lpm, is_default_action=True)
    e.action.action.action_id = BASIC.forward
    e.action.action.params.add(param_id=1, value=be(0xAABBCCDDEEFF))
    e.action.action.params.add(param_id=2, value=be(port))
    return e


async def test_default_action_modify_read_reset(loaded):
    initial = await loaded.read_table(BASIC.ipv4_lpm, is_default_action=True)
    assert len(initial) == 1 and initial[0].action.action.action_id == BASIC.drop
    await loaded.write([modify(default_forward(4))])
    assert await loaded.read_table(BASIC.ipv4_lpm, is_default_action=True) == [default_forward(4)]
    # wildcard reads do not include default entries
    assert await loaded.read_table() == []
    # MODIFY without an action restores the program's initial default
    await loaded.write([modify(p4r.TableEntry(table_id=BASIC.ipv4_lpm, is_default_action=True))])
    assert await loaded.read_table(BASIC.ipv4_lpm, is_default_action=True) == initial


async def test_default_action_only_modify(loaded):
    assert await write_fails(loaded, [insert(default_forward(4)), delete(default_forward(4))]) == \
        [INVALID, INVALID]
    with_match = default_forward(4)
    with_match.match.add(field_id=1, lpm=p4r.FieldMatch.LPM(value=b"\x0a", prefix_len=8))
    assert await write_fails(loaded, [modify(with_match)]) == [INVALID]


async def test_default_action_scopes_and_const(synthetic):
    only_default = p4r.TableEntry(table_id=RT, is_default_action=True)
    only_default.action.action.action_id = ONLY_DEFAULT
    await synthetic.write([modify(only_default)])
    # a DEFAULT_ONLY action cannot be used by a regular entry
    assert await write_fails(synthetic, [insert(ranged(1, 2, None, action=ONLY_DEFAULT))]) == [INVALID]
    const = p4r.TableEntry(table_id=XT, is_default_action=True)
    const.action.action.action_id = NOP
    assert await write_fails(synthetic, [modify(const)]) == [code_pb2.PERMISSION_DENIED]


# ------------------------------------------------------------------ range + optional


async def test_range_and_optional(synthetic):
    a = ranged(10, 20, 5, priority=1, action=SET)
    b = ranged(10, 20, None, priority=1)    # optional omitted: wildcard, different key
    c = ranged(None, None, 7, priority=2)   # range omitted: wildcard
    await synthetic.write([insert(a), insert(b), insert(c)])
    assert sorted(map(key, await synthetic.read_table(RT))) == sorted(map(key, [a, b, c]))
    assert await write_fails(synthetic, [insert(a)]) == [code_pb2.ALREADY_EXISTS]
    a2 = ranged(10, 20, 5, priority=1, action=NOP)
    await synthetic.write([modify(a2)])
    assert await synthetic.read_table(RT, match=a.match, priority=1) == [a2]
    await synthetic.write([delete(a2), delete(b), delete(c)])
    assert await synthetic.read_table() == []


async def test_range_and_optional_rules(synthetic):
    inverted = ranged(20, 10, None)
    full = ranged(0, 0xFFFF, None)           # don't-care must be omitted
    too_wide = ranged(1, 0x10000, None)
    opt_too_wide = ranged(None, None, 0x1000)  # vlan is 12 bits
    no_priority = ranged(1, 2, None, priority=0)
    kind_mismatch = ranged(None, None, None)
    kind_mismatch.match.add(field_id=1, exact=p4r.FieldMatch.Exact(value=b"\x01"))
    assert await write_fails(synthetic, [insert(e) for e in (inverted, full, too_wide, opt_too_wide,
                                                             no_priority, kind_mismatch)]) == [INVALID] * 6


async def test_table_size_is_enforced(synthetic):
    await synthetic.write([insert(ranged(i, i, None)) for i in range(1, 17)])
    assert await write_fails(synthetic, [insert(ranged(100, 100, None))]) == [code_pb2.RESOURCE_EXHAUSTED]


# ------------------------------------------------------------------ read


async def test_read_wildcard_by_table_and_by_match(loaded):
    lpm = [lpm_entry(0x0A000000, 8), lpm_entry(0x0B000000, 8)]
    acl = [acl_entry(0x0A000000, 0xFF000000, 1, priority=3)]
    await loaded.write([insert(e) for e in lpm + acl])
    assert sorted(map(key, await loaded.read_table())) == sorted(map(key, lpm + acl))
    assert sorted(map(key, await loaded.read_table(BASIC.ipv4_lpm))) == sorted(map(key, lpm))
    assert await loaded.read_table(BASIC.acl) == acl
    assert await loaded.read_table(BASIC.ipv4_lpm, match=lpm[1].match) == [lpm[1]]
    absent = lpm_entry(0x0C000000, 8)
    assert await loaded.read_table(BASIC.ipv4_lpm, match=absent.match) == []
    # the acl entry's key includes its priority
    assert await loaded.read_table(BASIC.acl, match=acl[0].match, priority=3) == acl
    assert await loaded.read_table(BASIC.acl, match=acl[0].match, priority=4) == []


async def test_read_several_entities_in_one_request(loaded):
    await loaded.write([insert(lpm_entry(0x0A000000, 8)), insert(acl_entry(None, None, 1))])
    got = await loaded.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=BASIC.ipv4_lpm)),
                             p4r.Entity(table_entry=p4r.TableEntry(table_id=BASIC.acl))])
    assert [e.table_entry.table_id for e in got] == [BASIC.ipv4_lpm, BASIC.acl]


async def test_read_unknown_table_is_invalid(loaded):
    await expect(grpc.StatusCode.INVALID_ARGUMENT, loaded.read_table(999))


async def test_read_many_entries_is_chunked(loaded):
    entries = [lpm_entry(0x0A000000 + (i << 8), 24) for i in range(2500)]
    await loaded.write([insert(e) for e in entries])
    got = await loaded.read_table(BASIC.ipv4_lpm)
    assert len(got) == 2500 and got[0] == entries[0]

