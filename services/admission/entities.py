"""Admission of a Deployment's entities against its pipeline's P4Info: each entity converts (the
node agent's own conversion, kubep4.entities), and what spans entities holds: ids unique per
action profile, per replication-engine kind and per cell; a group's members and a table entry's
member or group are in the same spec and profile; a profile holds at most its size of members
and is programmed one way (members and groups, or one-shot sets); no two table entries have
the same match (the device would keep one)."""
from __future__ import annotations

import time

from kubep4.entities import ENTITY_FIELDS, entity_count, to_p4_entity
from kubep4.errors import Violation
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import EntryError, P4InfoIndex, p4r


def entity_violations(spec: kr.DeploymentSpec, index: P4InfoIndex, review_seconds: float) -> list[Violation]:
    """Every violation of the spec's entities, each at its path ``spec.<field>[i]...``. Converting
    stops after ``review_seconds`` (all entities share the budget) with a violation saying where."""
    out: list[Violation] = []
    deadline = time.monotonic() + review_seconds
    done = 0
    total = entity_count(spec)
    converted: list[tuple[int, p4r.TableEntry]] = []
    for field in ENTITY_FIELDS:
        for i, item in enumerate(getattr(spec, field)):
            if time.monotonic() >= deadline:
                out.append(Violation(f"spec.{field}", f"review stopped after {review_seconds} s at "
                                     f"{field}[{i}] (entry {done} of {total}, counting every entity): split "
                                     "the entities across deployments"))
                return out
            try:
                entity = to_p4_entity(field, item, index)
                if field == "table_entries":
                    converted.append((i, entity.table_entry))
            except EntryError as e:
                out.append(Violation(f"spec.{field}[{i}].{e.field}" if e.field else f"spec.{field}[{i}]",
                                     e.description))
            done += 1
    out.extend(_references(spec, index))
    out.extend(_duplicate_entries(spec, converted))
    return out


def _duplicate_entries(spec: kr.DeploymentSpec, converted: list[tuple[int, p4r.TableEntry]]) -> list[Violation]:
    """Two entries of one table with the same match and priority (or two default entries): the
    device would hold only one of them."""
    out: list[Violation] = []
    seen: dict = {}
    for i, e in converted:
        key = (e.table_id, True) if e.is_default_action else (
            e.table_id, e.priority, tuple(sorted(m.SerializeToString(deterministic=True) for m in e.match)))
        what = (f"the default action of table {spec.table_entries[i].table}" if e.is_default_action
                else f"an entry of table {spec.table_entries[i].table} with this match and priority")
        _first(seen, key, f"spec.table_entries[{i}].match" if not e.is_default_action
               else f"spec.table_entries[{i}].is_default_action", what, out)
    return out


def _first(seen: dict, key, path: str, what: str, out: list[Violation]) -> None:
    """Record ``key`` at ``path``; a violation if an earlier entity has it."""
    if key in seen:
        out.append(Violation(path, f"{what} is already given at spec.{seen[key]}"))
    else:
        seen[key] = path.removeprefix("spec.")


def _references(spec: kr.DeploymentSpec, index: P4InfoIndex) -> list[Violation]:
    out: list[Violation] = []
    profiles = index.action_profiles_by_name

    def profile_id(name: str) -> int | None:
        p = profiles.get(name)
        return p.preamble.id if p is not None else None

    # action profile members: unique per profile, at most the profile's size
    members: dict[tuple[int, int], str] = {}
    per_profile: dict[int, int] = {}
    for i, m in enumerate(spec.action_profile_members):
        pid = profile_id(m.action_profile)
        if pid is None or not m.member_id:
            continue  # the conversion said so
        name = index.action_profiles_by_id[pid].preamble.name
        _first(members, (pid, m.member_id), f"spec.action_profile_members[{i}].member_id",
               f"member {m.member_id} of action profile {name}", out)
        per_profile[pid] = per_profile.get(pid, 0) + 1
        size = index.action_profiles_by_id[pid].size
        if size and per_profile[pid] == size + 1:
            out.append(Violation(f"spec.action_profile_members[{i}]", f"action profile {name} holds at most "
                                 f"{size} members; this is member {size + 1}"))
    # groups: unique per profile, members of the same profile in this spec
    groups: dict[tuple[int, int], str] = {}
    for i, g in enumerate(spec.action_profile_groups):
        pid = profile_id(g.action_profile)
        if pid is None or not g.group_id:
            continue
        name = index.action_profiles_by_id[pid].preamble.name
        _first(groups, (pid, g.group_id), f"spec.action_profile_groups[{i}].group_id",
               f"group {g.group_id} of action selector {name}", out)
        for j, m in enumerate(g.members):
            if m.member_id and (pid, m.member_id) not in members:
                out.append(Violation(f"spec.action_profile_groups[{i}].members[{j}].member_id",
                                     f"no member {m.member_id} of action profile {name} in "
                                     "spec.action_profile_members"))
    # table entries: a member or group of the table's profile, in this spec; a selector is
    # programmed one way, with members and groups or with one-shot sets (P4Runtime §9.2.3)
    explicit = {pid for pid, _ in members} | {pid for pid, _ in groups}
    for e in spec.table_entries:
        t = index.tables_by_name.get(e.table)
        if t is not None and t.info.implementation_id and (e.member_id or e.group_id):
            explicit.add(t.info.implementation_id)
    for i, e in enumerate(spec.table_entries):
        t = index.tables_by_name.get(e.table)
        profile = index.profile_of(t.info) if t is not None else None
        if profile is None:
            continue
        pid, name = profile.preamble.id, profile.preamble.name
        if e.action_set and not e.member_id and not e.group_id and pid in explicit:
            out.append(Violation(f"spec.table_entries[{i}].action_set", f"action selector {name} is "
                                 "programmed with members and groups in this deployment: a selector takes "
                                 "one-shot action sets or members and groups, not both"))
        if e.member_id and not e.group_id and (pid, e.member_id) not in members:
            out.append(Violation(f"spec.table_entries[{i}].member_id", f"no member {e.member_id} of action "
                                 f"profile {name} (table {e.table}'s) in spec.action_profile_members"))
        if e.group_id and not e.member_id and profile.with_selector and (pid, e.group_id) not in groups:
            out.append(Violation(f"spec.table_entries[{i}].group_id", f"no group {e.group_id} of action "
                                 f"selector {name} (table {e.table}'s) in spec.action_profile_groups"))
    # the packet replication engine: ids unique per kind
    seen: dict = {}
    for i, mg in enumerate(spec.multicast_groups):
        if mg.group_id:
            _first(seen, ("multicast", mg.group_id), f"spec.multicast_groups[{i}].group_id",
                   f"multicast group {mg.group_id}", out)
    for i, cs in enumerate(spec.clone_sessions):
        if cs.session_id:
            _first(seen, ("clone", cs.session_id), f"spec.clone_sessions[{i}].session_id",
                   f"clone session {cs.session_id}", out)
    # cells: one entity per (meter, index), (counter, index), (register, index); one per value set
    cells = (("meter_entries", "meter", index.meters_by_name), ("counter_entries", "counter", index.counters_by_name),
             ("register_entries", "register", index.registers_by_name))
    for field, attr, by_name in cells:
        for i, c in enumerate(getattr(spec, field)):
            obj = by_name.get(getattr(c, attr))
            if obj is not None:
                _first(seen, (field, obj.preamble.id, c.index), f"spec.{field}[{i}].index",
                       f"{attr} {obj.preamble.name} index {c.index}", out)
    for i, v in enumerate(spec.value_set_entries):
        vs = index.value_sets_by_name.get(v.value_set)
        if vs is not None:
            _first(seen, ("value_set", vs.preamble.id), f"spec.value_set_entries[{i}].value_set",
                   f"value set {vs.preamble.name} (one entry holds all its members)", out)
    return out
