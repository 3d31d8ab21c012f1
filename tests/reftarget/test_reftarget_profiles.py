"""Action profiles and selectors (spec §9.2): ActionProfileMember, ActionProfileGroup, tables with
an implementation, one-shot action sets, on examples/multipath (``ecmp_selector`` implements
``ipv4_route``) and variants of its P4Info."""
from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2

from kubep4.p4 import p4i, p4r
from kubep4.reftarget.profiles import MIX_MESSAGE

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
NOT_FOUND = code_pb2.NOT_FOUND
OK = code_pb2.OK
PRECONDITION = code_pb2.FAILED_PRECONDITION
EXHAUSTED = code_pb2.RESOURCE_EXHAUSTED


def hop(port: int) -> p4r.Action:
    a = p4r.Action(action_id=MP.set_next_hop)
    a.params.add(param_id=1, value=be(0x0A0B0C0D0E00 + port))
    a.params.add(param_id=2, value=be(port))
    return a


def member(member_id: int, action: p4r.Action | None = None, profile: int = MP.ecmp_selector) -> p4r.Entity:
    m = p4r.ActionProfileMember(action_profile_id=profile, member_id=member_id)
    if action is not None:
        m.action.CopyFrom(action)
    return entity(action_profile_member=m)


def group(group_id: int, members: list[int] | list[tuple[int, int]] = (), max_size: int = 0,
          profile: int = MP.ecmp_selector) -> p4r.Entity:
    g = p4r.ActionProfileGroup(action_profile_id=profile, group_id=group_id, max_size=max_size)
    for m in members:
        mid, weight = m if isinstance(m, tuple) else (m, 1)
        g.members.add(member_id=mid, weight=weight)
    return entity(action_profile_group=g)


def route(dst: int, *, member_id: int | None = None, group_id: int | None = None,
          oneshot: list[tuple[p4r.Action, int]] | None = None, action: p4r.Action | None = None,
          table_id: int = MP.ipv4_route) -> p4r.TableEntry:
    e = p4r.TableEntry(table_id=table_id)
    if table_id == MP.l2_flood:
        e.match.add(field_id=1, exact=p4r.FieldMatch.Exact(value=be(dst)))
    else:
        e.match.add(field_id=1, lpm=p4r.FieldMatch.LPM(value=be(dst), prefix_len=32))
    if member_id is not None:
        e.action.action_profile_member_id = member_id
    if group_id is not None:
        e.action.action_profile_group_id = group_id
    if oneshot is not None:
        s = e.action.action_profile_action_set
        for a, w in oneshot:
            s.action_profile_actions.add(action=a, weight=w)
    if action is not None:
        e.action.action.CopyFrom(action)
    return e


def variant(**profile_fields) -> p4i.P4Info:
    info = multipath_p4info()
    prof = info.action_profiles[0]
    for k, v in profile_fields.items():
        if k == "max_member_weight":
            prof.sum_of_members.max_member_weight = v
        else:
            setattr(prof, k, v)
    return info


async def load(client, info: p4i.P4Info) -> None:
    await client.set_pipeline(info, multipath_device_config(), cookie=9)


# ------------------------------------------------------------------ members


async def test_member_insert_read_modify_delete(mp):
    await mp.write([insert(member(1, hop(1))), insert(member(2, hop(2)))])
    [one] = await mp.read([member(1)])
    assert one.action_profile_member == member(1, hop(1)).action_profile_member
    assert len(await mp.read([member(0)])) == 2
    assert len(await mp.read([member(0, profile=0)])) == 2
    assert await mp.read([member(3)]) == []
    await mp.write([modify(member(1, hop(7)))])
    [changed] = await mp.read([member(1)])
    assert changed.action_profile_member.action == hop(7)
    await mp.write([delete(member(1))])
    assert [e.action_profile_member.member_id for e in await mp.read([member(0)])] == [2]


async def test_member_errors(mp):
    await mp.write([insert(member(1, hop(1)))])
    no_param = hop(1)
    del no_param.params[1]
    acl_action = p4r.Action(action_id=MP.acl_allow)
    codes = await write_fails(mp, [
        insert(member(0, hop(1))),                       # member id 0
        insert(member(1, hop(2))),                       # id in use
        modify(member(5, hop(2))),                       # no such member
        delete(member(5)),
        insert(member(6)),                               # no action
        insert(member(7, acl_action)),                   # not an action of ipv4_route
        insert(member(8, p4r.Action(action_id=MP.no_action))),   # default-only
        insert(member(9, no_param)),                     # missing param
        insert(member(10, hop(1), profile=12345)),       # unknown profile
        insert(member(11, hop(1), profile=0)),
    ])
    assert codes == [INVALID, code_pb2.ALREADY_EXISTS, NOT_FOUND, NOT_FOUND, INVALID, INVALID, INVALID,
                     INVALID, INVALID, INVALID]
    await expect(grpc.StatusCode.INVALID_ARGUMENT, mp.read([member(1, profile=0)]))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, mp.read([member(1, profile=12345)]))


async def test_profile_size_bounds_members(client):
    await load(client, variant(size=2))
    codes = await write_fails(client, [insert(member(i, hop(i))) for i in (1, 2, 3)])
    assert codes == [OK, OK, EXHAUSTED]


# ------------------------------------------------------------------ groups


async def test_group_insert_read_modify_delete(mp):
    await mp.write([insert(member(i, hop(i))) for i in (1, 2, 3)])
    await mp.write([insert(group(10, [1, (2, 3)]))])
    [g] = await mp.read([group(10)])
    assert g.action_profile_group == group(10, [1, (2, 3)]).action_profile_group
    await mp.write([modify(group(10, [3]))])
    [g] = await mp.read([group(10)])
    assert [m.member_id for m in g.action_profile_group.members] == [3]
    # member 1 left the group: it can go now, member 3 cannot
    codes = await write_fails(mp, [delete(member(1)), delete(member(3))])
    assert codes == [OK, PRECONDITION]
    assert len(await mp.read([group(0, profile=0)])) == 1
    await mp.write([delete(group(10)), delete(member(3))])
    assert await mp.read([group(0)]) == []


async def test_group_errors(mp):
    await mp.write([insert(member(1, hop(1))), insert(group(10, [1], max_size=4))])
    codes = await write_fails(mp, [
        insert(group(0, [1])),                 # group id 0
        insert(group(10, [1])),                # in use
        insert(group(11, [1, 2])),             # member 2 does not exist
        insert(group(12, [1, 1])),             # duplicate member
        insert(group(13, [(1, 0)])),           # weight 0
        modify(group(14, [1])),                # no such group
        modify(group(10, [1], max_size=5)),    # max_size cannot change
        delete(group(15)),
        insert(group(16, [1], max_size=-1)),
    ])
    assert codes == [INVALID, code_pb2.ALREADY_EXISTS, NOT_FOUND, INVALID, INVALID, NOT_FOUND, INVALID,
                     NOT_FOUND, INVALID]


async def test_group_size_within_max_size(mp):
    await mp.write([insert(member(i, hop(i))) for i in (1, 2, 3)])
    # sum_of_weights (the default): 1 + 3 = 4 > max_size 3
    codes = await write_fails(mp, [insert(group(10, [1, (2, 3)], max_size=3)), insert(group(11, [1, 2, 3], max_size=3))])
    assert codes == [EXHAUSTED, OK]


async def test_max_size_rules_with_a_max_group_size(client):
    """Spec §9.2.2.1: with max_group_size > 0, max_size must be in 1..max_group_size."""
    await load(client, variant(max_group_size=4))
    await client.write([insert(member(i, hop(i))) for i in (1, 2)])
    codes = await write_fails(client, [insert(group(10, [1], max_size=0)), insert(group(11, [1], max_size=5)),
                                       insert(group(12, [1, (2, 3)], max_size=4)),
                                       insert(group(13, [1, (2, 4)], max_size=4))])
    assert codes == [INVALID, INVALID, OK, EXHAUSTED]


async def test_sum_of_members_and_max_member_weight(client):
    await load(client, variant(max_group_size=2, max_member_weight=2))
    await client.write([insert(member(i, hop(i))) for i in (1, 2, 3)])
    codes = await write_fails(client, [insert(group(10, [(1, 2), (2, 2)], max_size=2)),
                                       insert(group(11, [(1, 3)], max_size=2)),
                                       insert(group(12, [1, 2, 3], max_size=2))])
    assert codes == [OK, INVALID, EXHAUSTED]


async def test_groups_need_a_selector(client):
    await load(client, variant(with_selector=False))
    await client.write([insert(member(1, hop(1)))])
    err = await write_error(client, insert(group(10, [1])))
    assert err.canonical_code == INVALID
    codes = await write_fails(client, [insert(route(0x0A000001, group_id=10)),
                                       insert(route(0x0A000002, oneshot=[(hop(1), 1)])),
                                       insert(route(0x0A000003, member_id=1))])
    assert codes == [INVALID, INVALID, OK]


# ------------------------------------------------------------------ table entries of an indirect table


async def test_indirect_table_entries(mp):
    await mp.write([insert(member(1, hop(1))), insert(member(2, hop(2)))])
    await mp.write([insert(group(10, [1, 2]))])
    codes = await write_fails(mp, [
        insert(route(0x0A000001, member_id=1)),
        insert(route(0x0A000002, group_id=10)),
        insert(route(0x0A000003, action=hop(1))),      # a direct action on an indirect table
        insert(route(0x0A000004, member_id=9)),        # no such member
        insert(route(0x0A000005, group_id=99)),        # no such group
    ])
    assert codes == [OK, OK, INVALID, NOT_FOUND, NOT_FOUND]
    entries = {e.match[0].lpm.value: e for e in await mp.read_table(MP.ipv4_route)}
    assert entries[be(0x0A000001)].action.action_profile_member_id == 1
    assert entries[be(0x0A000002)].action.action_profile_group_id == 10


async def test_referenced_members_and_groups_cannot_be_deleted(mp):
    await mp.write([insert(member(1, hop(1))), insert(member(2, hop(2)))])
    await mp.write([insert(group(10, [2]))])
    await mp.write([insert(route(0x0A000001, member_id=1)), insert(route(0x0A000002, group_id=10))])
    assert await write_fails(mp, [delete(member(1)), delete(group(10))]) == [PRECONDITION, PRECONDITION]
    # the entry moves from member 1 to group 10: member 1 is free
    await mp.write([modify(route(0x0A000001, group_id=10))])
    await mp.write([delete(member(1))])
    await mp.write([delete(route(0x0A000001)), delete(route(0x0A000002))])
    await mp.write([delete(group(10)), delete(member(2))])
    assert await mp.read([member(0)]) == [] and await mp.read([group(0)]) == []


async def test_direct_tables_refuse_profile_actions(mp):
    await mp.write([insert(member(1, hop(1)))])
    codes = await write_fails(mp, [insert(route(0x0A0B0C0D0E01, member_id=1, table_id=MP.l2_flood)),
                                   insert(route(0x0A0B0C0D0E02, group_id=1, table_id=MP.l2_flood)),
                                   insert(route(0x0A0B0C0D0E03, oneshot=[(p4r.Action(action_id=MP.drop), 1)],
                                                table_id=MP.l2_flood))])
    assert codes == [INVALID, INVALID, INVALID]


# ------------------------------------------------------------------ one-shot action sets


async def test_oneshot_reads_back_as_written(mp):
    written = route(0x0A000001, oneshot=[(hop(1), 1), (hop(2), 2), (hop(1), 1)])
    written.action.action_profile_action_set.action_profile_actions[1].watch_port = b"\x02"
    await mp.write([insert(written)])
    [got] = await mp.read_table(MP.ipv4_route)
    assert got == written
    # one-shot sets are not members: no member or group shows
    assert await mp.read([member(0)]) == [] and await mp.read([group(0)]) == []


async def test_oneshot_errors(mp):
    codes = await write_fails(mp, [
        insert(route(0x0A000001, oneshot=[(hop(1), 0)])),                               # weight 0
        insert(route(0x0A000002, oneshot=[(p4r.Action(action_id=MP.acl_allow), 1)])),  # not of the table
        insert(route(0x0A000003, oneshot=[(p4r.Action(action_id=MP.no_action), 1)])),  # default-only
    ])
    assert codes == [INVALID, INVALID, INVALID]


async def test_oneshot_within_max_group_size(client):
    await load(client, variant(max_group_size=2))
    codes = await write_fails(client, [insert(route(0x0A000001, oneshot=[(hop(1), 1), (hop(2), 1)])),
                                       insert(route(0x0A000002, oneshot=[(hop(1), 2), (hop(2), 1)]))])
    assert codes == [OK, INVALID]


@pytest.mark.parametrize("first", ["oneshot", "members"])
async def test_programming_modes_do_not_mix(mp, first):
    """Like BMv2 through PI: one-shot and member/group programming of one profile exclude each other
    until the profile is empty again."""
    oneshot = insert(route(0x0A000001, oneshot=[(hop(1), 1)]))
    manual = insert(member(1, hop(1)))
    first_up, second = (oneshot, manual) if first == "oneshot" else (manual, oneshot)
    await mp.write([first_up])
    err = await write_error(mp, second)
    assert err.canonical_code == INVALID and MIX_MESSAGE in err.message
    # empty again: the other mode is allowed
    undo = delete(route(0x0A000001)) if first == "oneshot" else delete(member(1))
    await mp.write([undo])
    await mp.write([second])


async def test_profile_writes_roll_back_with_the_batch(mp):
    codes = await write_fails(mp, [insert(member(1, hop(1))), insert(group(10, [1])), insert(group(11, [7]))],
                              atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)
    assert codes == [code_pb2.ABORTED, code_pb2.ABORTED, NOT_FOUND]
    assert await mp.read([member(0)]) == [] and await mp.read([group(0)]) == []


async def test_profiles_are_cleared_by_verify_and_commit(mp):
    await mp.write([insert(member(1, hop(1)))])
    await mp.write([insert(group(10, [1]))])
    await mp.set_pipeline(multipath_p4info(), multipath_device_config(), cookie=8)
    assert await mp.read([member(0)]) == [] and await mp.read([group(0)]) == []
