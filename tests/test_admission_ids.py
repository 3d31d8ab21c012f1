"""Members and groups by name: admission allocates their ids, resolves references by name, and
keeps an id under its name across updates (through the real apiserver and admission service)."""
from __future__ import annotations

import pytest

from kubep4 import manifest
from kubep4.client import AsyncClient
from kubep4.entities import to_p4_entities
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import EntryError, P4InfoIndex, parse_p4info
from services.admission.ids import allocate_ids
from services.admission.validation import Policy, review_deployment, review_pipeline

from .conftest import ROOT, Front

EXAMPLE = ROOT / "examples" / "multipath" / "deployment.yaml"


def by_name() -> tuple[kr.Pipeline, kr.Deployment]:
    """The multipath example with its two next hops and its ECMP group named, no id given."""
    p, d = manifest.load(str(EXAMPLE))
    s = d.spec
    for m, name in zip(s.action_profile_members, ("hop-a", "hop-b"), strict=True):
        m.name, m.member_id = name, 0
    g = s.action_profile_groups[0]
    g.name, g.group_id = "ecmp", 0
    for m, name in zip(g.members, ("hop-a", "hop-b"), strict=True):
        m.member, m.member_id = name, 0
    for e in s.table_entries:
        if e.group_id:
            e.group, e.group_id = "ecmp", 0
        if e.member_id:
            e.member, e.member_id = "hop-b", 0
    return p, d


def review(d: kr.Deployment, old: kr.Deployment | None = None) -> tuple[kr.Deployment, list]:
    p, violations = review_pipeline(by_name()[0], Policy())
    assert violations == []
    return review_deployment(d, p, Policy(), old)


def ids(d: kr.Deployment) -> dict[str, int]:
    return {m.name: m.member_id for m in d.spec.action_profile_members}


def test_named_members_and_groups_get_ids_and_references_resolve():
    got, violations = review(by_name()[1])
    assert violations == []
    assert ids(got) == {"hop-a": 1, "hop-b": 2}
    g = got.spec.action_profile_groups[0]
    assert g.group_id == 1 and [m.member_id for m in g.members] == [1, 2]
    used = {(e.group, e.group_id) for e in got.spec.table_entries if e.group} | {
        (e.member, e.member_id) for e in got.spec.table_entries if e.member}
    assert used == {("ecmp", 1), ("hop-b", 2)}


def test_an_update_keeps_the_ids_names_had():
    before, _ = review(by_name()[1])
    _, d = by_name()
    members = d.spec.action_profile_members
    new = kr.ProfileMember()
    new.CopyFrom(members[0])
    new.name = "hop-c"
    reordered = [new, members[1], members[0]]  # a new member first, the old two swapped
    del members[:]
    members.extend(reordered)
    got, violations = review(d, before)
    assert violations == []
    assert ids(got) == {"hop-c": 3, "hop-b": 2, "hop-a": 1}


def test_a_given_id_wins_and_a_named_member_takes_the_lowest_free_one():
    _, d = by_name()
    d.spec.action_profile_members[1].member_id = 1  # hop-b takes 1 itself
    got, violations = review(d, review(by_name()[1])[0])  # hop-a had 1 before: it moves
    assert violations == []
    assert ids(got) == {"hop-a": 2, "hop-b": 1}
    assert [m.member_id for m in got.spec.action_profile_groups[0].members] == [2, 1]


def test_bad_names_are_refused_at_their_paths():
    _, d = by_name()
    d.spec.action_profile_members[1].name = "hop-a"
    d.spec.action_profile_groups[0].members[1].member = "nowhere"
    d.spec.table_entries[0].group = "ecmp"
    d.spec.table_entries[0].group_id = 9
    _, violations = review(d)
    got = {(v.field, v.description.split(":")[0].split(" (")[0]) for v in violations}
    assert ("spec.action_profile_members[1].name", "member name 'hop-a' is already given at "
            "action_profile_members[0]") in got
    assert ("spec.action_profile_groups[0].members[1].member",
            "no member named 'nowhere' in spec.action_profile_members") in got
    assert ("spec.table_entries[0].group_id", "group_id 9 is not the id of group 'ecmp'") in got


async def test_reapplying_a_reordered_manifest_keeps_the_ids(etcd):
    f = await Front(etcd.endpoint, policy=Policy(namespaces=frozenset({"default"}))).start()
    try:
        async with AsyncClient(f.api) as c:
            p, d = by_name()
            await c.create(p)
            created = await c.create(d)
            assert ids(created) == {"hop-a": 1, "hop-b": 2}

            _, again = by_name()  # the manifest once more, its members swapped: no ids in it
            members = list(again.spec.action_profile_members)
            del again.spec.action_profile_members[:]
            again.spec.action_profile_members.extend(reversed(members))
            updated, _ = await c.apply(again)
            assert ids(updated) == {"hop-a": 1, "hop-b": 2}
            assert [m.member_id for m in updated.spec.action_profile_groups[0].members] == [1, 2]
    finally:
        await f.stop()


def test_a_member_with_neither_id_nor_name_is_refused():
    _, d = by_name()
    d.spec.action_profile_members[0].name = ""
    d.spec.action_profile_groups[0].members[0].member = ""
    _, violations = review(d)
    fields = {v.field for v in violations}
    assert "spec.action_profile_members[0].member_id" in fields
    assert "spec.action_profile_groups[0].members[0].member_id" in fields



def with_other_profile() -> kr.Pipeline:
    """The pipeline with a second selector over the same table (so its members' actions fit)."""
    p, _ = by_name()
    info = parse_p4info(p.spec.artifacts.p4info)
    ecmp = info.action_profiles[0]
    other = info.action_profiles.add()
    other.CopyFrom(ecmp)
    other.preamble.id, other.preamble.name, other.preamble.alias = 299999999, "MpIngress.other", "other"
    p.spec.artifacts.p4info = info.SerializeToString()
    reviewed, violations = review_pipeline(p, Policy())
    assert violations == []
    return reviewed


def other_hop(d: kr.Deployment) -> None:
    m = d.spec.action_profile_members.add()
    m.CopyFrom(d.spec.action_profile_members[0])
    m.action_profile, m.name = "other", "other-hop"


def test_a_name_of_another_profiles_member_is_refused_not_given_its_id():
    _, d = by_name()
    other_hop(d)  # id 1 of profile other, while hop-a is id 1 of the ecmp selector
    d.spec.action_profile_groups[0].members[0].member = "other-hop"
    route = next(i for i, e in enumerate(d.spec.table_entries) if e.member)
    d.spec.table_entries[route].member = "other-hop"
    got, violations = review_deployment(d, with_other_profile(), Policy())
    fields = {v.field: v.description for v in violations}
    assert fields["spec.action_profile_groups[0].members[0].member"] == (
        "member 'other-hop' is of action profile MpIngress.other; the group's is MpIngress.ecmp_selector")
    assert fields[f"spec.table_entries[{route}].member"] == (
        "member 'other-hop' is of action profile MpIngress.other; table ipv4_route's is MpIngress.ecmp_selector")


def test_a_profile_spelt_two_ways_is_one_profile():
    _, d = by_name()
    d.spec.action_profile_members[1].action_profile = "MpIngress.ecmp_selector"  # hop-a is "ecmp_selector"
    other_hop(d)
    got, violations = review_deployment(d, with_other_profile(), Policy())
    assert violations == []
    assert ids(got) == {"hop-a": 1, "hop-b": 2, "other-hop": 1}


def test_the_agent_refuses_a_name_of_another_profile_after_a_compile():
    """A source pipeline has no P4Info at admission: the node agent's conversion checks the names."""
    _, d = by_name()
    other_hop(d)
    route = next(i for i, e in enumerate(d.spec.table_entries) if e.member)
    d.spec.table_entries[route].member = "other-hop"
    assert allocate_ids(d.spec, None) == []  # admission without a P4Info: the name resolves to id 1
    with pytest.raises(EntryError) as e:
        to_p4_entities(d.spec, P4InfoIndex(parse_p4info(with_other_profile().spec.artifacts.p4info)))
    assert e.value.field == f"table_entries[{route}].member"


def test_without_a_p4info_a_profile_spelt_two_ways_is_refused_by_the_agent():
    """A source pipeline: admission cannot tell the spellings are one profile; the agent can."""
    _, d = by_name()
    d.spec.action_profile_members[1].action_profile = "MpIngress.ecmp_selector"
    assert allocate_ids(d.spec, None) == []
    assert ids(d) == {"hop-a": 1, "hop-b": 1}
    with pytest.raises(EntryError) as e:
        to_p4_entities(d.spec, P4InfoIndex(parse_p4info(by_name()[0].spec.artifacts.p4info)))
    assert e.value.field == "action_profile_members[1].member_id"
    assert "is already given at action_profile_members[0]" in e.value.description
