"""What a device must change to hold the desired P4Runtime entities, and which changes are repairs.

Pure: no I/O. The agent reads the device (:func:`reads`), calls :func:`plan`, and sends each of
``Plan.writes`` as its own Write requests, in order.

Every kind a deployment carries is diffed by identity (:func:`entity_key`) and canonical value
(:func:`entity_value`): table entries and default actions (with their direct meter configs), action profile members and groups,
multicast groups and clone sessions, indexed meter cells and value sets. Indexed counters and
registers are data-plane state: the packets change them, so the spec's values only *initialise*
them, once — when the agent has not written them before, or the device lost its pipeline.

A change is a *repair* (drift) when the device differs from what the agent last knew it to hold
(``expected``): an entity gone missing, one changed behind the agent's back, one nobody placed. A
change the placements asked for (a new generation, a departed placement) is not.

Order (P4Runtime spec §12.2: a server may apply the updates of one Write in any order, so whatever
depends on another entity goes in a later Write): members, PRE entries and indexed cells first, then
groups, then table entries (which refer to both), then the deletes of groups, then of members and
PRE entries.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from kubep4 import entities
from kubep4.entities import kind_of
from kubep4.p4 import p4r

MISSING, MODIFIED, EXTRANEOUS, DEFAULT_ACTION, PIPELINE = (
    "missing", "modified", "extraneous", "default_action", "pipeline")

# kinds (spec fields, kubep4.entities.kind_of) whose values the data plane changes: written
# once, never compared
WRITE_ONCE = frozenset({"counter_entries", "register_entries"})
# the other kinds that exist for as long as the pipeline does: only ever modified (reset, never deleted)
MODIFY_ONLY = entities.MODIFY_ONLY - WRITE_ONCE
# the phase (a Write of its own, in this order) of an insert or modify, and of a delete, per kind
_SET_PHASE = {"action_profile_members": 0, "multicast_groups": 0, "clone_sessions": 0, "meter_entries": 0,
              "counter_entries": 0, "register_entries": 0, "value_set_entries": 0,
              "action_profile_groups": 1, "table_entries": 2}
_DELETE_PHASE = {"table_entries": 2, "meter_entries": 2, "value_set_entries": 2, "action_profile_groups": 3,
                 "action_profile_members": 4, "multicast_groups": 4, "clone_sessions": 4}
PHASES = 5

def _canon(value: bytes) -> bytes:
    """P4Runtime's canonical byte string: no leading zero bytes (older PI and Stratum pad them)."""
    return value.lstrip(b"\x00") or b"\x00"


def _canon_match(m: p4r.FieldMatch) -> bytes | None:
    """A match field as bytes that do not depend on how a device spells it; None: a don't-care."""
    c = p4r.FieldMatch(field_id=m.field_id)
    kind = m.WhichOneof("field_match_type")
    if kind == "exact":
        c.exact.value = _canon(m.exact.value)
    elif kind == "lpm":
        if m.lpm.prefix_len == 0:
            return None
        c.lpm.value, c.lpm.prefix_len = _canon(m.lpm.value), m.lpm.prefix_len
    elif kind == "ternary":
        if not m.ternary.mask.strip(b"\x00"):
            return None
        c.ternary.value, c.ternary.mask = _canon(m.ternary.value), _canon(m.ternary.mask)
    elif kind == "range":
        c.range.low, c.range.high = _canon(m.range.low), _canon(m.range.high)
    elif kind == "optional":
        c.optional.value = _canon(m.optional.value)
    else:
        c.CopyFrom(m)
    return c.SerializeToString(deterministic=True)


def _canon_action(a: p4r.Action) -> p4r.Action:
    out = p4r.Action(action_id=a.action_id)
    for prm in sorted(a.params, key=lambda x: x.param_id):  # devices answer in P4Info order
        out.params.add(param_id=prm.param_id, value=_canon(prm.value))
    return out


def entry_key(e: p4r.TableEntry) -> tuple:
    """Identity of a table entry: table, priority and match (canonical, order-independent).

    A table's default entry has the key (table_id, "default").
    """
    if e.is_default_action:
        return (e.table_id, "default")
    fields = (_canon_match(m) for m in e.match)
    return (e.table_id, e.priority, tuple(sorted(f for f in fields if f is not None)))


def action_bytes(e: p4r.TableEntry) -> bytes:
    """The entry's action, canonical: the same bytes however the device orders or pads it."""
    t = p4r.TableAction()
    kind = e.action.WhichOneof("type")
    if kind == "action":
        t.action.CopyFrom(_canon_action(e.action.action))
    elif kind == "action_profile_action_set":
        for pa in sorted(e.action.action_profile_action_set.action_profile_actions,
                         key=lambda pa: _canon_action(pa.action).SerializeToString(deterministic=True)):
            t.action_profile_action_set.action_profile_actions.add(
                action=_canon_action(pa.action), weight=pa.weight or 1, watch_port=pa.watch_port)
    elif kind is not None:
        t.CopyFrom(e.action)
    return t.SerializeToString(deterministic=True)


def _port(r: p4r.Replica) -> int:
    return int.from_bytes(r.port, "big") if r.WhichOneof("port_kind") == "port" else r.egress_port


def _replicas(replicas) -> tuple:
    return tuple(sorted((_port(r), r.instance) for r in replicas))


def entity_key(e: p4r.Entity) -> tuple:
    """Identity of an entity of any kind: its spec field (kubep4.entities.kind_of), then its ids
    (a table entry's are :func:`entry_key`'s)."""
    kind = kind_of(e)
    if kind == "table_entries":
        return ("table_entries", *entry_key(e.table_entry))
    if kind == "action_profile_members":
        return (kind, e.action_profile_member.action_profile_id, e.action_profile_member.member_id)
    if kind == "action_profile_groups":
        return (kind, e.action_profile_group.action_profile_id, e.action_profile_group.group_id)
    if kind == "multicast_groups":
        return (kind, e.packet_replication_engine_entry.multicast_group_entry.multicast_group_id)
    if kind == "clone_sessions":
        return (kind, e.packet_replication_engine_entry.clone_session_entry.session_id)
    if kind == "meter_entries":
        return (kind, e.meter_entry.meter_id, e.meter_entry.index.index)
    if kind == "counter_entries":
        return (kind, e.counter_entry.counter_id, e.counter_entry.index.index)
    if kind == "register_entries":
        return (kind, e.register_entry.register_id, e.register_entry.index.index)
    return (kind, e.value_set_entry.value_set_id)


def entity_value(e: p4r.Entity) -> bytes:
    """The entity's content, canonical (two deployments giving one key two values conflict)."""
    kind = kind_of(e)
    if kind == "table_entries":  # its action, and its direct meter's config (absent: the default);
        # a default entry's is not compared: it is read without asking for it
        if not e.table_entry.HasField("meter_config") or e.table_entry.is_default_action:
            return action_bytes(e.table_entry)
        return action_bytes(e.table_entry) + b"\x00meter\x00" + e.table_entry.meter_config.SerializeToString(
            deterministic=True)
    if kind == "action_profile_members":
        return _canon_action(e.action_profile_member.action).SerializeToString(deterministic=True)
    if kind == "action_profile_groups":
        return repr(sorted((m.member_id, m.weight or 1, m.watch_port)
                           for m in e.action_profile_group.members)).encode()
    if kind == "multicast_groups":
        return repr(_replicas(e.packet_replication_engine_entry.multicast_group_entry.replicas)).encode()
    if kind == "clone_sessions":
        c = e.packet_replication_engine_entry.clone_session_entry
        return repr((_replicas(c.replicas), c.class_of_service, c.packet_length_bytes)).encode()
    if kind == "meter_entries":
        return e.meter_entry.config.SerializeToString(deterministic=True) if e.meter_entry.HasField("config") else b""
    if kind == "counter_entries":
        return e.counter_entry.data.SerializeToString(deterministic=True)
    if kind == "register_entries":
        return e.register_entry.data.SerializeToString(deterministic=True)
    members = sorted(b"".join(_canon_match(m) or b"" for m in sorted(v.match, key=lambda m: m.field_id))
                     for v in e.value_set_entry.members)
    return b"\x00".join(members)


def snapshot(entities: list[p4r.Entity]) -> dict[tuple, bytes]:
    """key -> value: what a device holds (or should), in the form :func:`plan` compares."""
    return {entity_key(e): entity_value(e) for e in entities}


def reads(desired: list[p4r.Entity], expected: dict[tuple, bytes],
          meter_tables: frozenset[int] = frozenset()) -> list[p4r.Entity]:
    """The entities one Read asks for to see everything :func:`plan` compares: every table entry,
    the entries of ``meter_tables`` (tables with a direct meter) again with their meter configs
    (a Read returns them only when asked, spec §9.1), the default entries desired or set before,
    and of each other kind in play (desired or written before) the whole kind (members, groups,
    PRE entries) or the cells concerned (meters, value sets). Counters and registers are not read:
    they are never compared."""
    keys = set(expected) | {entity_key(e) for e in desired}
    out = [p4r.Entity(table_entry=p4r.TableEntry(table_id=0))]
    out += [p4r.Entity(table_entry=p4r.TableEntry(table_id=t, meter_config=p4r.MeterConfig()))
            for t in sorted(meter_tables)]
    out += [p4r.Entity(table_entry=p4r.TableEntry(table_id=k[1], is_default_action=True))
            for k in sorted(k for k in keys if k[0] == "table_entries" and k[2:] == ("default",))]
    kinds = {k[0] for k in keys}
    if "action_profile_members" in kinds:
        out.append(p4r.Entity(action_profile_member=p4r.ActionProfileMember()))
    if "action_profile_groups" in kinds:
        out.append(p4r.Entity(action_profile_group=p4r.ActionProfileGroup()))
    if "multicast_groups" in kinds:
        e = p4r.Entity()
        e.packet_replication_engine_entry.multicast_group_entry.multicast_group_id = 0
        out.append(e)
    if "clone_sessions" in kinds:
        e = p4r.Entity()
        e.packet_replication_engine_entry.clone_session_entry.session_id = 0
        out.append(e)
    for k in sorted(k for k in keys if k[0] == "meter_entries"):
        e = p4r.Entity(meter_entry=p4r.MeterEntry(meter_id=k[1]))
        e.meter_entry.index.index = k[2]
        out.append(e)
    for k in sorted(k for k in keys if k[0] == "value_set_entries"):
        out.append(p4r.Entity(value_set_entry=p4r.ValueSetEntry(value_set_id=k[1])))
    return out


@dataclass
class Plan:
    writes: list[list[p4r.Update]] = field(default_factory=list)  # one or more Writes each, in order
    repairs: Counter = field(default_factory=Counter)  # kind -> count

    @property
    def updates(self) -> list[p4r.Update]:
        return [u for w in self.writes for u in w]


def _update(kind: int, e: p4r.Entity) -> p4r.Update:
    return p4r.Update(type=kind, entity=e)


def _reset(e: p4r.Entity) -> p4r.Entity:
    """The MODIFY that gives a modify-only entity back to the program: the table's initial default
    action, a meter cell with no configuration, an empty value set."""
    kind = kind_of(e)
    if kind == "table_entries":
        return p4r.Entity(table_entry=p4r.TableEntry(table_id=e.table_entry.table_id, is_default_action=True))
    if kind == "meter_entries":
        out = p4r.Entity(meter_entry=p4r.MeterEntry(meter_id=e.meter_entry.meter_id))
        out.meter_entry.index.index = e.meter_entry.index.index
        return out
    return p4r.Entity(value_set_entry=p4r.ValueSetEntry(value_set_id=e.value_set_entry.value_set_id))


def _without_counter_data(e: p4r.Entity) -> p4r.Entity:
    """A MODIFY of a table entry keeps its direct counter running: counter_data only initialises."""
    if kind_of(e) != "table_entries" or not e.table_entry.HasField("counter_data"):
        return e
    out = p4r.Entity()
    out.CopyFrom(e)
    out.table_entry.ClearField("counter_data")
    return out


def plan(actual: list[p4r.Entity], desired: list[p4r.Entity], expected: dict[tuple, bytes],
         protected_tables: frozenset[int] = frozenset(), fresh: bool = False) -> Plan:
    """Updates that make ``actual`` (what :func:`reads` returned) equal ``desired``.

    Default entries, meter cells and value sets are only ever modified: one that was set (it is in
    ``expected``) and is no longer desired is reset (:func:`_reset`). Other entities are inserted,
    modified or deleted, except the table entries the program itself installs (``is_const``, or any
    in ``protected_tables``: const tables and tables with initial entries), which are never deleted.
    Counters and registers are written when not in ``expected``, or when ``fresh`` (the device has
    just been given its pipeline, which cleared them).
    """
    out = Plan()
    phases: list[list[p4r.Update]] = [[] for _ in range(PHASES)]
    have: dict[tuple, p4r.Entity] = {}
    for e in actual:  # an entry of a meter table comes twice: keep the copy with its meter config
        k = entity_key(e)
        if k not in have or (kind_of(e) == "table_entries" and e.table_entry.HasField("meter_config")):
            have[k] = e
    want = {entity_key(e): e for e in desired}
    for k, e in have.items():
        if k in want or k[0] in WRITE_ONCE:
            continue
        if k[0] == "table_entries" and (e.table_entry.is_const or e.table_entry.table_id in protected_tables):
            continue
        if (k[0] == "table_entries" and e.table_entry.is_default_action) or k[0] in MODIFY_ONLY:
            if k in expected:  # set by us, wanted by nobody now: the program's again
                phases[_DELETE_PHASE[k[0]]].append(_update(p4r.Update.MODIFY, _reset(e)))
            continue
        phases[_DELETE_PHASE[k[0]]].append(_update(p4r.Update.DELETE, e))
        if k not in expected:
            out.repairs[EXTRANEOUS] += 1
    for k, e in want.items():
        phase = phases[_SET_PHASE[k[0]]]
        if k[0] in WRITE_ONCE:
            if fresh or k not in expected:
                phase.append(_update(p4r.Update.MODIFY, e))
            continue
        cur = have.get(k)
        modify_only = (k[0] == "table_entries" and e.table_entry.is_default_action) or k[0] in MODIFY_ONLY
        if cur is None and not modify_only:
            phase.append(_update(p4r.Update.INSERT, e))
            if k in expected:
                out.repairs[MISSING] += 1
        elif cur is None or entity_value(cur) != entity_value(e):
            phase.append(_update(p4r.Update.MODIFY, _without_counter_data(e)))
            if expected.get(k) == entity_value(e):
                out.repairs[DEFAULT_ACTION if modify_only else MODIFIED] += 1
    out.writes = [w for w in phases if w]
    return out


def batches(updates: list[p4r.Update], size: int) -> list[list[p4r.Update]]:
    """``updates`` in Writes of at most ``size`` updates each."""
    return [updates[i:i + size] for i in range(0, len(updates), max(1, size))]
