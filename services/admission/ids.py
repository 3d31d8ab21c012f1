"""Ids for named action profile members and groups, set by admission as Kubernetes sets defaults.

A member or group may carry a ``name`` instead of an id; groups and table entries may name the
member or group they use (``member``, ``group``) instead of giving its id. Admission then:

- gives a named member (group) without an id the id it had under that name in the stored
  deployment (on UPDATE), when no other member of its profile took it meanwhile; else the lowest
  id its profile does not use in this deployment. So re-applying a manifest, reordering its
  members or adding one never renumbers what the device already holds;
- sets every ``member`` / ``group`` reference to that id; that the named member is of the
  referring group's or table's profile, and that no two members of a profile share an id, is
  checked against the P4Info (``kubep4.entities.named_reference_problems``): here when the
  Pipeline has one, by the node agent after the compile when it is given as source.

Names are unique among the deployment's members (and among its groups). With the P4Info a profile
is one profile however it is spelt (``ecmp_selector``, ``MpIngress.ecmp_selector``: one run of
ids); without it each spelling has its own, and the agent refuses the clash after the compile.
Every problem is a violation at its field path.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable

from kubep4.entities import named_reference_problems
from kubep4.errors import Violation
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import P4InfoIndex

MAX_ID = (1 << 32) - 1  # member and group ids are uint32 on the wire


def allocate_ids(spec: kr.DeploymentSpec, old: kr.DeploymentSpec | None,
                 index: P4InfoIndex | None = None) -> list[Violation]:
    """Fill in the ids of named members and groups and of the references by name, in place."""
    out: list[Violation] = []

    def profile(name: str) -> Hashable:  # one key per profile, however it is spelt
        p = index.action_profiles_by_name.get(name) if index is not None else None
        return p.preamble.id if p is not None else name
    members = _allocate(spec.action_profile_members, "member_id", "spec.action_profile_members",
                        old.action_profile_members if old is not None else (), profile, out)
    groups = _allocate(spec.action_profile_groups, "group_id", "spec.action_profile_groups",
                       old.action_profile_groups if old is not None else (), profile, out)
    for i, g in enumerate(spec.action_profile_groups):
        for j, m in enumerate(g.members):
            _resolve(m, "member", "member_id", members, f"spec.action_profile_groups[{i}].members[{j}]",
                     "spec.action_profile_members", out)
    for i, e in enumerate(spec.table_entries):
        _resolve(e, "member", "member_id", members, f"spec.table_entries[{i}]", "spec.action_profile_members", out)
        _resolve(e, "group", "group_id", groups, f"spec.table_entries[{i}]", "spec.action_profile_groups", out)
    if index is not None:
        out.extend(Violation(f"spec.{path}", why) for path, why in named_reference_problems(spec, index))
    return out


def _allocate(items, id_field: str, path: str, old_items, profile: Callable[[str], Hashable],
              out: list[Violation]) -> dict[str, tuple[Hashable, int]]:
    """Ids for the named ``items`` without one; returns name -> (profile, id) for every named item."""
    what = id_field.removesuffix("_id")
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        if not item.name:
            continue
        if item.name in first:
            out.append(Violation(f"{path}[{i}].name", f"{what} name {item.name!r} is already given at "
                                 f"{path.removeprefix('spec.')}[{first[item.name]}]: names are unique "
                                 "in a deployment"))
        else:
            first[item.name] = i
    used = {(profile(item.action_profile), getattr(item, id_field)) for item in items if getattr(item, id_field)}
    before = {(profile(o.action_profile), o.name): getattr(o, id_field) for o in old_items
              if o.name and getattr(o, id_field)}
    waiting = []
    for item in items:  # first the ids these names had: they stay on the device unchanged
        if item.name and not getattr(item, id_field):
            key = profile(item.action_profile)
            had = before.get((key, item.name))
            if had and (key, had) not in used:
                setattr(item, id_field, had)
                used.add((key, had))
            else:
                waiting.append(item)
    lowest: dict[Hashable, int] = {}
    for item in waiting:  # then the lowest free id of the profile
        key = profile(item.action_profile)
        n = lowest.get(key, 1)
        while (key, n) in used:
            n += 1
        if n > MAX_ID:
            break  # cannot happen within the object size limit; the missing id is reported by conversion
        setattr(item, id_field, n)
        used.add((key, n))
        lowest[key] = n + 1
    named: dict[str, tuple[Hashable, int]] = {}
    for item in items:
        if item.name and item.name not in named:
            named[item.name] = (profile(item.action_profile), getattr(item, id_field))
    return named


def _resolve(ref, name_field: str, id_field: str, named: dict[str, tuple[Hashable, int]], path: str,
             where: str, out: list[Violation]) -> None:
    """Set ``ref``'s id from the name it gives (whether the named one is of the right profile is
    ``named_reference_problems``'s, which needs the P4Info)."""
    name = getattr(ref, name_field)
    if not name:
        return
    if name not in named:
        out.append(Violation(f"{path}.{name_field}", f"no {name_field} named {name!r} in {where}"))
        return
    _, ident = named[name]
    given = getattr(ref, id_field)
    if given and given != ident:
        out.append(Violation(f"{path}.{id_field}", f"{id_field} {given} is not the id of {name_field} "
                             f"{name!r} ({ident}): give one of them"))
        return
    setattr(ref, id_field, ident)
