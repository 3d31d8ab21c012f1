"""Ids for named action profile members and groups, set by admission as Kubernetes sets defaults.

A member or group may carry a ``name`` instead of an id; groups and table entries may name the
member or group they use (``member``, ``group``) instead of giving its id. Admission then:

- gives a named member (group) without an id the id it had under that name in the stored
  deployment (on UPDATE), when no other member of its profile took it meanwhile; else the lowest
  id its profile does not use in this deployment. So re-applying a manifest, reordering its
  members or adding one never renumbers what the device already holds;
- sets every ``member`` / ``group`` reference to that id.

Names are unique among the deployment's members (and among its groups), so a reference needs no
P4Info to resolve: admission checks afterwards, against the P4Info, that the member belongs to
the table's profile (``entities._references``). Every problem is a violation at its field path.
"""
from __future__ import annotations

from kubep4.errors import Violation
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

MAX_ID = (1 << 32) - 1  # member and group ids are uint32 on the wire


def allocate_ids(spec: kr.DeploymentSpec, old: kr.DeploymentSpec | None) -> list[Violation]:
    """Fill in the ids of named members and groups and of the references by name, in place."""
    out: list[Violation] = []
    members = _allocate(spec.action_profile_members, "member_id", "spec.action_profile_members",
                        old.action_profile_members if old is not None else (), out)
    groups = _allocate(spec.action_profile_groups, "group_id", "spec.action_profile_groups",
                       old.action_profile_groups if old is not None else (), out)
    for i, g in enumerate(spec.action_profile_groups):
        for j, m in enumerate(g.members):
            _resolve(m, "member", "member_id", members, f"spec.action_profile_groups[{i}].members[{j}]",
                     "spec.action_profile_members", out)
    for i, e in enumerate(spec.table_entries):
        _resolve(e, "member", "member_id", members, f"spec.table_entries[{i}]", "spec.action_profile_members", out)
        _resolve(e, "group", "group_id", groups, f"spec.table_entries[{i}]", "spec.action_profile_groups", out)
    return out


def _allocate(items, id_field: str, path: str, old_items, out: list[Violation]) -> dict[str, int]:
    """Ids for the named ``items`` without one; returns name -> id for every named item."""
    what = id_field.removesuffix("_id")
    named: dict[str, int] = {}
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
    used = {(item.action_profile, getattr(item, id_field)) for item in items if getattr(item, id_field)}
    before = {(o.action_profile, o.name): getattr(o, id_field) for o in old_items if o.name and getattr(o, id_field)}
    waiting = []
    for item in items:  # first the ids these names had: they stay on the device unchanged
        if item.name and not getattr(item, id_field):
            had = before.get((item.action_profile, item.name))
            if had and (item.action_profile, had) not in used:
                setattr(item, id_field, had)
                used.add((item.action_profile, had))
            else:
                waiting.append(item)
    lowest: dict[str, int] = {}
    for item in waiting:  # then the lowest free id of the profile
        n = lowest.get(item.action_profile, 1)
        while (item.action_profile, n) in used:
            n += 1
        if n > MAX_ID:
            break  # cannot happen within the object size limit; the missing id is reported by conversion
        setattr(item, id_field, n)
        used.add((item.action_profile, n))
        lowest[item.action_profile] = n + 1
    for item in items:
        if item.name and item.name not in named:
            named[item.name] = getattr(item, id_field)
    return named


def _resolve(ref, name_field: str, id_field: str, ids: dict[str, int], path: str, where: str,
             out: list[Violation]) -> None:
    name = getattr(ref, name_field)
    if not name:
        return
    if name not in ids:
        out.append(Violation(f"{path}.{name_field}", f"no {name_field} named {name!r} in {where}"))
        return
    given = getattr(ref, id_field)
    if given and given != ids[name]:
        out.append(Violation(f"{path}.{id_field}", f"{id_field} {given} is not the id of {name_field} "
                             f"{name!r} ({ids[name]}): give one of them"))
        return
    setattr(ref, id_field, ids[name])
