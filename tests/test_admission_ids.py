"""Members and groups by name: admission allocates their ids, resolves references by name, and
keeps an id under its name across updates (through the real apiserver and admission service)."""
from __future__ import annotations

from kubep4 import manifest
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
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

