"""The P4Runtime entities a Deployment carries, named once.

A Deployment's spec and each of its Placements' specs hold the same entity lists under the same
field names (``ENTITY_FIELDS``); the controller copies them into every placement, so a replica is
always installed with the entities of the generation it belongs to.

``to_p4_entities`` converts them (names to P4Info ids, text to canonical bytes) for the node agent
and for admission; ``from_p4_entity`` turns what a device reads back into the KubeP4 message.
"""
from __future__ import annotations

from kubep4.errors import quoted
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import (
    EntryError,
    P4InfoIndex,
    encode_value,
    p4i,
    p4r,
    profile_weight,
    register_bitwidth,
    to_p4_action,
    to_p4_counter_data,
    to_p4_entry,
    to_p4_matches,
    to_p4_meter_config,
)

__all__ = ["ENTITY_FIELDS", "MODIFY_ONLY", "copy_entities", "entity_count", "to_p4_entities", "to_p4_entity",
           "from_p4_entity", "kind_of"]

# In the order the node agent installs them: what a later kind refers to comes first
# (members before groups before the table entries that use them). Deletes run in reverse.
ENTITY_FIELDS = ("multicast_groups", "clone_sessions", "action_profile_members",
                 "action_profile_groups", "table_entries", "meter_entries", "counter_entries",
                 "register_entries", "value_set_entries")


def copy_entities(src: kr.DeploymentSpec | kr.PlacementSpec,
                  dst: kr.DeploymentSpec | kr.PlacementSpec) -> None:
    """Replace ``dst``'s entities with ``src``'s."""
    for name in ENTITY_FIELDS:
        target = getattr(dst, name)
        del target[:]
        target.extend(getattr(src, name))


def entity_count(spec: kr.DeploymentSpec | kr.PlacementSpec) -> int:
    return sum(len(getattr(spec, name)) for name in ENTITY_FIELDS)


# Kinds a device holds a cell of whatever is written: P4Runtime writes them with MODIFY only
# (no INSERT, no DELETE: "deleting" one means writing its default back). The others are inserted.
MODIFY_ONLY = frozenset({"meter_entries", "counter_entries", "register_entries", "value_set_entries"})


def to_p4_entities(spec: kr.DeploymentSpec | kr.PlacementSpec, index: P4InfoIndex
                   ) -> list[tuple[str, p4r.Entity]]:
    """Every entity of the spec as a P4Runtime Entity, in ``ENTITY_FIELDS`` order, each with its
    path in the spec (``table_entries[3]``). Names become ids and text values canonical bytes.

    Each entity is checked against the P4Info on its own (names, kinds, widths, indexes, ids > 0);
    what spans entities (a group's members in the spec, unique ids) is admission's. Raises
    EntryError whose ``field`` is the full path inside the spec, e.g.
    ``action_profile_groups[1].members[0].member_id``.
    """
    for path, why in named_reference_problems(spec, index):  # first: a clash would show as its symptom
        raise EntryError(path, why)
    out: list[tuple[str, p4r.Entity]] = []
    for name in ENTITY_FIELDS:
        convert = _CONVERTERS[name]
        for i, item in enumerate(getattr(spec, name)):
            path = f"{name}[{i}]"
            try:
                out.append((path, convert(item, index)))
            except EntryError as e:
                raise EntryError(f"{path}.{e.field}" if e.field else path, e.description) from None
    return out


def named_reference_problems(spec: kr.DeploymentSpec | kr.PlacementSpec, index: P4InfoIndex
                             ) -> list[tuple[str, str]]:
    """(path, why) for each member or group with the id of an earlier one of its profile (the
    profile spelt two ways in a spec admission saw without a P4Info), and for each group member or
    table entry that names (``member``, ``group``) a member or group of another action profile than
    its group's or table's: the id set from the name would address whatever that profile holds
    under it."""
    profiles = {}
    out = []
    for field, ref, id_field in (("action_profile_members", "member", "member_id"),
                                 ("action_profile_groups", "group", "group_id")):
        seen: dict[tuple[int, int], int] = {}
        for i, item in enumerate(getattr(spec, field)):
            p = index.action_profiles_by_name.get(item.action_profile)
            if p is None:
                continue
            if item.name:
                profiles.setdefault((ref, item.name), p)
            key = (p.preamble.id, getattr(item, id_field))
            if key[1] and key in seen:
                out.append((f"{field}[{i}].{id_field}", f"{ref} {key[1]} of action profile {p.preamble.name} "
                            f"is already given at {field}[{seen[key]}]"))
            seen.setdefault(key, i)
    for i, g in enumerate(spec.action_profile_groups):
        own = index.action_profiles_by_name.get(g.action_profile)
        for j, m in enumerate(g.members):
            named = profiles.get(("member", m.member)) if m.member else None
            if named is not None and own is not None and named.preamble.id != own.preamble.id:
                out.append((f"action_profile_groups[{i}].members[{j}].member", f"member {m.member!r} is of "
                            f"action profile {named.preamble.name}; the group's is {own.preamble.name}"))
    for i, e in enumerate(spec.table_entries):
        t = index.tables_by_name.get(e.table)
        own = index.profile_of(t.info) if t is not None else None
        for ref in ("member", "group"):
            name = getattr(e, ref)
            named = profiles.get((ref, name)) if name else None
            if named is not None and (own is None or named.preamble.id != own.preamble.id):
                table_has = f"table {e.table}'s is {own.preamble.name}" if own else f"table {e.table} has none"
                out.append((f"table_entries[{i}].{ref}", f"{ref} {name!r} is of action profile "
                            f"{named.preamble.name}; {table_has}"))
    return out


def to_p4_entity(field: str, item, index: P4InfoIndex) -> p4r.Entity:
    """One entity of the spec list ``field`` (one of ENTITY_FIELDS) as a P4Runtime Entity; raises
    EntryError with a path relative to the entity."""
    return _CONVERTERS[field](item, index)


def kind_of(entity: p4r.Entity) -> str:
    """The spec field (one of ENTITY_FIELDS) an entity of this kind belongs to."""
    which = entity.WhichOneof("entity")
    if which == "packet_replication_engine_entry":
        pre = entity.packet_replication_engine_entry.WhichOneof("type")
        return "multicast_groups" if pre == "multicast_group_entry" else "clone_sessions"
    if which in ("direct_counter_entry", "direct_meter_entry"):
        return "table_entries"
    return _FIELD_OF_ENTITY.get(which, "")


def _index(value: int, size: int, what: str) -> p4r.Index:
    if not 0 <= value < size:
        raise EntryError("index", f"must be between 0 and {size - 1} ({what} has {size} cells), got {value}"
                         if size > 0 else f"{what} has no cells")
    return p4r.Index(index=value)


def _table_entry(e: kr.TableEntry, index: P4InfoIndex) -> p4r.Entity:
    return p4r.Entity(table_entry=to_p4_entry(e, index))


def _profile(name: str, index: P4InfoIndex) -> p4i.ActionProfile:
    profile = index.action_profiles_by_name.get(name)
    if profile is None:
        raise EntryError("action_profile", f"no action profile {quoted(name)} in the P4Info" if name
                         else "required: the name of an action profile")
    return profile


def _member(m: kr.ProfileMember, index: P4InfoIndex) -> p4r.Entity:
    profile = _profile(m.action_profile, index)
    if m.member_id == 0:
        raise EntryError("member_id", "required: an id greater than 0, or a name (admission gives it an id)")
    tables = [index.tables_by_id[t] for t in profile.table_ids if t in index.tables_by_id]
    allowed = frozenset().union(*(t.entry_action_ids for t in tables))
    default_only = frozenset().union(*(t.action_ids for t in tables)) - allowed
    names = ", ".join(t.info.preamble.name for t in tables) or "none"
    action = to_p4_action(m.action, m.params, index, allowed,
                          f"a table of action profile {profile.preamble.name} (tables: {names})",
                          scopes={i: "but their default only (@defaultonly)" for i in default_only})
    return p4r.Entity(action_profile_member=p4r.ActionProfileMember(
        action_profile_id=profile.preamble.id, member_id=m.member_id, action=action))


def _group_size_limit(g: kr.ProfileGroup, profile: p4i.ActionProfile) -> int:
    """The group's size bound (0: none): its own max_size, else the profile's max_group_size."""
    return g.max_size or profile.max_group_size


def _group(g: kr.ProfileGroup, index: P4InfoIndex) -> p4r.Entity:
    profile = _profile(g.action_profile, index)
    pname = profile.preamble.name
    if not profile.with_selector:
        raise EntryError("action_profile", f"action profile {pname} has no selector: it takes members, not groups")
    if g.group_id == 0:
        raise EntryError("group_id", "required: an id greater than 0, or a name (admission gives it an id)")
    if g.max_size < 0:
        raise EntryError("max_size", f"must be 0 (the profile's max_group_size) or more, got {g.max_size}")
    if profile.max_group_size and g.max_size > profile.max_group_size:
        raise EntryError("max_size", f"{g.max_size} exceeds action selector {pname}'s max_group_size "
                         f"{profile.max_group_size}")
    # max_size 0 is the profile's max_group_size: given as such (a target may refuse 0 under a bound)
    out = p4r.ActionProfileGroup(action_profile_id=profile.preamble.id, group_id=g.group_id,
                                 max_size=g.max_size or profile.max_group_size)
    seen: set[int] = set()
    for j, m in enumerate(g.members):
        if m.member_id == 0:
            raise EntryError(f"members[{j}].member_id",
                             "required: an id greater than 0, or the member's name in member")
        if m.member_id in seen:
            raise EntryError(f"members[{j}].member_id", f"member {m.member_id} is in the group twice")
        seen.add(m.member_id)
        out.members.add(member_id=m.member_id, weight=profile_weight(m.weight, profile, f"members[{j}].weight"))
    limit = _group_size_limit(g, profile)
    by_members = profile.WhichOneof("selector_size_semantics") == "sum_of_members"
    size = len(out.members) if by_members else sum(m.weight for m in out.members)
    if limit and size > limit:
        what = f"{len(out.members)} members" if by_members else f"weights summing to {size}"
        bound = "its max_size" if g.max_size else f"action selector {pname}'s max_group_size"
        raise EntryError("members", f"{what}; {bound} is {limit}")
    return p4r.Entity(action_profile_group=out)


def _replicas(replicas, index: P4InfoIndex, out) -> None:
    bits = index.port_bitwidth()
    v1model = index.info.pkg_info.arch == "v1model"
    seen: set[tuple[int, int]] = set()
    for j, r in enumerate(replicas):
        if r.egress_port >= 1 << bits:
            raise EntryError(f"replicas[{j}].egress_port", f"port {r.egress_port} does not fit the "
                             f"architecture's {bits}-bit ports (at most {(1 << bits) - 1})")
        if v1model and r.instance >= 1 << V1MODEL_INSTANCE_BITS:
            raise EntryError(f"replicas[{j}].instance", f"v1model tells copies apart by a "
                             f"{V1MODEL_INSTANCE_BITS}-bit egress_rid: at most {(1 << V1MODEL_INSTANCE_BITS) - 1}")
        if (r.egress_port, r.instance) in seen:
            raise EntryError(f"replicas[{j}]", f"port {r.egress_port} instance {r.instance} is given twice")
        seen.add((r.egress_port, r.instance))
        # the deprecated uint32 egress_port, not bytes port: what BMv2's PI reads (and refuses the other)
        out.add(egress_port=r.egress_port, instance=r.instance)


V1MODEL_MULTICAST_GROUP_BITS = 16  # standard_metadata.mcast_grp
V1MODEL_INSTANCE_BITS = 16  # standard_metadata.egress_rid


def _multicast(g: kr.MulticastGroup, index: P4InfoIndex) -> p4r.Entity:
    if g.group_id == 0:
        raise EntryError("group_id", "required: an id greater than 0")
    if index.info.pkg_info.arch == "v1model" and g.group_id >= 1 << V1MODEL_MULTICAST_GROUP_BITS:
        raise EntryError("group_id", f"v1model selects multicast groups with a {V1MODEL_MULTICAST_GROUP_BITS}"
                         f"-bit mcast_grp: at most {(1 << V1MODEL_MULTICAST_GROUP_BITS) - 1}")
    out = p4r.MulticastGroupEntry(multicast_group_id=g.group_id)
    _replicas(g.replicas, index, out.replicas)
    return p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(multicast_group_entry=out))


def _clone(s: kr.CloneSession, index: P4InfoIndex) -> p4r.Entity:
    if s.session_id == 0:
        raise EntryError("session_id", "required: an id greater than 0")
    if s.packet_length_bytes < 0:
        raise EntryError("packet_length_bytes", f"must be 0 (whole packets) or more, got {s.packet_length_bytes}")
    out = p4r.CloneSessionEntry(session_id=s.session_id, class_of_service=s.class_of_service,
                                packet_length_bytes=s.packet_length_bytes)
    _replicas(s.replicas, index, out.replicas)
    return p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(clone_session_entry=out))


def _meter_entry(m: kr.MeterEntry, index: P4InfoIndex) -> p4r.Entity:
    meter = index.meters_by_name.get(m.meter)
    if meter is None:
        why = (f"{m.meter} is a direct meter: give meter_config on its table's entries"
               if m.meter in index.direct_meters_by_name else f"no meter {quoted(m.meter)} in the P4Info")
        raise EntryError("meter", why if m.meter else "required: the name of a meter")
    out = p4r.MeterEntry(meter_id=meter.preamble.id, index=_index(m.index, meter.size, f"meter {meter.preamble.name}"))
    if m.HasField("config"):  # none: the cell is reset to its default (every packet green)
        out.config.CopyFrom(to_p4_meter_config(m.config, meter.spec, "config."))
    return p4r.Entity(meter_entry=out)


def _counter_entry(c: kr.CounterEntry, index: P4InfoIndex) -> p4r.Entity:
    counter = index.counters_by_name.get(c.counter)
    if counter is None:
        why = (f"{c.counter} is a direct counter: give counter_data on its table's entries"
               if c.counter in index.direct_counters_by_name else f"no counter {quoted(c.counter)} in the P4Info")
        raise EntryError("counter", why if c.counter else "required: the name of a counter")
    name = counter.preamble.name
    return p4r.Entity(counter_entry=p4r.CounterEntry(  # no data: the cell is written back to 0
        counter_id=counter.preamble.id, index=_index(c.index, counter.size, f"counter {name}"),
        data=to_p4_counter_data(c.data, counter.spec, f"counter {name}", "data.")))


def _register_entry(r: kr.RegisterEntry, index: P4InfoIndex) -> p4r.Entity:
    register = index.registers_by_name.get(r.register)
    if register is None:
        raise EntryError("register", f"no register {quoted(r.register)} in the P4Info" if r.register
                         else "required: the name of a register")
    name = register.preamble.name
    width = register_bitwidth(register)
    if width is None:
        raise EntryError("register", f"register {name} does not hold a bit<W> value: only those are written")
    out = p4r.RegisterEntry(register_id=register.preamble.id, index=_index(r.index, register.size, f"register {name}"))
    try:
        out.data.bitstring = encode_value(r.value, width)
    except ValueError as e:
        raise EntryError("value", str(e)) from None
    return p4r.Entity(register_entry=out)


def _value_set_entry(v: kr.ValueSetEntry, index: P4InfoIndex) -> p4r.Entity:
    vs = index.value_sets_by_name.get(v.value_set)
    if vs is None:
        raise EntryError("value_set", f"no value set {quoted(v.value_set)} in the P4Info" if v.value_set
                         else "required: the name of a value set")
    name = vs.preamble.name
    if vs.size > 0 and len(v.members) > vs.size:
        raise EntryError("members", f"{len(v.members)} members; value set {name} holds at most {vs.size}")
    fields = {m.name: m for m in vs.match}
    out = p4r.ValueSetEntry(value_set_id=vs.preamble.id)
    seen: dict[bytes, int] = {}
    for j, member in enumerate(v.members):
        converted = out.members.add()
        try:
            to_p4_matches(member.match, fields, vs.match, f"value set {name}", converted.match)
        except EntryError as e:
            raise EntryError(f"members[{j}].{e.field}", e.description) from None
        key = converted.SerializeToString(deterministic=True)
        if key in seen:
            raise EntryError(f"members[{j}]", f"the same as members[{seen[key]}]")
        seen[key] = j
    return p4r.Entity(value_set_entry=out)


_CONVERTERS = {"multicast_groups": _multicast, "clone_sessions": _clone, "action_profile_members": _member,
               "action_profile_groups": _group, "table_entries": _table_entry, "meter_entries": _meter_entry,
               "counter_entries": _counter_entry, "register_entries": _register_entry,
               "value_set_entries": _value_set_entry}
assert tuple(_CONVERTERS) == ENTITY_FIELDS
_FIELD_OF_ENTITY = {"table_entry": "table_entries", "action_profile_member": "action_profile_members",
                    "action_profile_group": "action_profile_groups", "meter_entry": "meter_entries",
                    "counter_entry": "counter_entries", "register_entry": "register_entries",
                    "value_set_entry": "value_set_entries"}


# -- back: a device's entities as KubeP4 messages, for display ----------------------------------------

def _number(value: bytes) -> str:
    return str(int.from_bytes(value, "big"))


def _mask(value: bytes) -> str:
    return hex(int.from_bytes(value, "big"))


def _name(by_id: dict, id_: int) -> str:
    """An object's name; an id the P4Info does not know shows as its number (no P4 name is one)."""
    obj = by_id.get(id_)
    return obj.preamble.name if obj is not None else str(id_)


def _params(a: p4r.Action, index: P4InfoIndex) -> tuple[str, list[kr.ActionParam]]:
    action = index.actions_by_id.get(a.action_id)
    names = {p.id: p.name for p in action.params} if action is not None else {}
    return (_name(index.actions_by_id, a.action_id),
            [kr.ActionParam(name=names.get(p.param_id, str(p.param_id)), value=_number(p.value)) for p in a.params])


def _from_matches(matches, fields_by_id: dict[int, p4i.MatchField]) -> list[kr.FieldMatch]:
    out = []
    for m in matches:
        mf = fields_by_id.get(m.field_id)
        fm = kr.FieldMatch(field=mf.name if mf is not None else str(m.field_id))
        kind = m.WhichOneof("field_match_type")
        if kind == "exact":
            fm.exact.value = _number(m.exact.value)
        elif kind == "lpm":
            fm.lpm.value, fm.lpm.prefix_len = _number(m.lpm.value), m.lpm.prefix_len
        elif kind == "ternary":
            fm.ternary.value, fm.ternary.mask = _number(m.ternary.value), _mask(m.ternary.mask)
        elif kind == "range":
            fm.range.low, fm.range.high = _number(m.range.low), _number(m.range.high)
        elif kind == "optional":
            fm.optional.value = _number(m.optional.value)
        out.append(fm)
    return out


def _meter_config(c: p4r.MeterConfig) -> kr.MeterConfig:
    return kr.MeterConfig(cir=c.cir, cburst=c.cburst, pir=c.pir, pburst=c.pburst)


def _counter_data(d: p4r.CounterData) -> kr.CounterData:
    return kr.CounterData(byte_count=d.byte_count, packet_count=d.packet_count)


def _from_table_entry(e: p4r.TableEntry, index: P4InfoIndex) -> kr.TableEntry:
    t = index.tables_by_id.get(e.table_id)
    out = kr.TableEntry(table=t.info.preamble.name if t is not None else str(e.table_id),
                        priority=e.priority, is_default_action=e.is_default_action)
    out.match.extend(_from_matches(e.match, {m.id: m for m in t.info.match_fields} if t is not None else {}))
    which = e.action.WhichOneof("type")
    if which == "action":
        out.action, params = _params(e.action.action, index)
        out.params.extend(params)
    elif which == "action_profile_member_id":
        out.member_id = e.action.action_profile_member_id
    elif which == "action_profile_group_id":
        out.group_id = e.action.action_profile_group_id
    elif which == "action_profile_action_set":
        for pa in e.action.action_profile_action_set.action_profile_actions:
            name, params = _params(pa.action, index)
            out.action_set.add(action=name, params=params, weight=pa.weight)
    if e.HasField("meter_config"):
        out.meter_config.CopyFrom(_meter_config(e.meter_config))
    if e.HasField("counter_data"):
        out.counter_data.CopyFrom(_counter_data(e.counter_data))
    return out


def _from_replicas(replicas) -> list[kr.PacketReplica]:
    return [kr.PacketReplica(egress_port=r.egress_port if r.WhichOneof("port_kind") != "port"
                             else int.from_bytes(r.port, "big"), instance=r.instance) for r in replicas]


def from_p4_entity(entity: p4r.Entity, index: P4InfoIndex):
    """A P4Runtime entity (as a device reads it back) as the KubeP4 message of its kind (see
    ``kind_of``), for display: P4Info names (an id the P4Info lacks shows as its number), values
    in decimal text (ternary masks in 0x-hex), each of which converts back to the same bytes. A
    table entry keeps its direct meter config and counter data; a direct counter or meter entry
    is its table entry with them. Raises EntryError for a kind a Deployment does not carry."""
    which = entity.WhichOneof("entity")
    if which == "table_entry":
        return _from_table_entry(entity.table_entry, index)
    if which == "direct_counter_entry":
        out = _from_table_entry(entity.direct_counter_entry.table_entry, index)
        out.counter_data.CopyFrom(_counter_data(entity.direct_counter_entry.data))
        return out
    if which == "direct_meter_entry":
        out = _from_table_entry(entity.direct_meter_entry.table_entry, index)
        out.meter_config.CopyFrom(_meter_config(entity.direct_meter_entry.config))
        return out
    if which == "action_profile_member":
        m = entity.action_profile_member
        name, params = _params(m.action, index)
        return kr.ProfileMember(action_profile=_name(index.action_profiles_by_id, m.action_profile_id),
                                member_id=m.member_id, action=name, params=params)
    if which == "action_profile_group":
        g = entity.action_profile_group
        return kr.ProfileGroup(action_profile=_name(index.action_profiles_by_id, g.action_profile_id),
                               group_id=g.group_id, max_size=g.max_size,
                               members=[kr.ProfileGroup.Member(member_id=m.member_id, weight=m.weight)
                                        for m in g.members])
    if which == "packet_replication_engine_entry":
        pre = entity.packet_replication_engine_entry
        if pre.WhichOneof("type") == "multicast_group_entry":
            g = pre.multicast_group_entry
            return kr.MulticastGroup(group_id=g.multicast_group_id, replicas=_from_replicas(g.replicas))
        s = pre.clone_session_entry
        return kr.CloneSession(session_id=s.session_id, replicas=_from_replicas(s.replicas),
                               class_of_service=s.class_of_service, packet_length_bytes=s.packet_length_bytes)
    if which == "meter_entry":
        m = entity.meter_entry
        out = kr.MeterEntry(meter=_name(index.meters_by_id, m.meter_id), index=m.index.index)
        if m.HasField("config"):
            out.config.CopyFrom(_meter_config(m.config))
        return out
    if which == "counter_entry":
        c = entity.counter_entry
        return kr.CounterEntry(counter=_name(index.counters_by_id, c.counter_id), index=c.index.index,
                               data=_counter_data(c.data))
    if which == "register_entry":
        r = entity.register_entry
        value = _number(r.data.bitstring) if r.data.WhichOneof("data") == "bitstring" else ""
        return kr.RegisterEntry(register=_name(index.registers_by_id, r.register_id), index=r.index.index,
                                value=value)
    if which == "value_set_entry":
        v = entity.value_set_entry
        vs = index.value_sets_by_id.get(v.value_set_id)
        fields = {m.id: m for m in vs.match} if vs is not None else {}
        return kr.ValueSetEntry(value_set=_name(index.value_sets_by_id, v.value_set_id),
                                members=[kr.ValueSetEntry.Member(match=_from_matches(m.match, fields))
                                         for m in v.members])
    raise EntryError("entity", f"a {which or 'empty'} entity is not one a Deployment carries")
