"""What a device's tables must change to equal the desired entries, and which changes are repairs.

Pure: no I/O. The agent reads the device, calls :func:`plan`, writes ``Plan.updates``.

A change is a *repair* (drift) when the device differs from what the agent last knew it to
hold (``expected``): an entry gone missing, one changed behind the agent's back, one nobody
placed. A change the placements asked for (a new generation, a departed placement) is not.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from kubep4.p4 import p4r

MISSING, MODIFIED, EXTRANEOUS, DEFAULT_ACTION, PIPELINE = (
    "missing", "modified", "extraneous", "default_action", "pipeline")


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
        for pa in e.action.action_profile_action_set.action_profile_actions:
            t.action_profile_action_set.action_profile_actions.add(
                action=_canon_action(pa.action), weight=pa.weight, watch_port=pa.watch_port)
    elif kind is not None:
        t.CopyFrom(e.action)
    return t.SerializeToString(deterministic=True)


def snapshot(entries: list[p4r.TableEntry]) -> dict[tuple, bytes]:
    """key -> action: what a device holds (or should), in the form :func:`plan` compares."""
    return {entry_key(e): action_bytes(e) for e in entries}


@dataclass
class Plan:
    updates: list[p4r.Update] = field(default_factory=list)
    repairs: Counter = field(default_factory=Counter)  # kind -> count


def _update(kind: int, e: p4r.TableEntry) -> p4r.Update:
    return p4r.Update(type=kind, entity=p4r.Entity(table_entry=e))


def plan(actual: list[p4r.TableEntry], desired: list[p4r.TableEntry],
         expected: dict[tuple, bytes], protected_tables: frozenset[int] = frozenset()) -> Plan:
    """Updates that make ``actual`` (match entries and the default entries read) equal ``desired``.

    Default entries are only ever modified (a table always has one): one that was set (it is in
    ``expected``) and is no longer desired is reset to the program's default with a MODIFY that
    carries no action. Match entries are inserted, modified or deleted, except those the program
    itself installs (``is_const``, or any in ``protected_tables``: const tables and tables with
    initial entries), which are never deleted. Deletes come first, so a re-keyed entry never collides.
    """
    out = Plan()
    have = {entry_key(e): e for e in actual}
    want = {entry_key(e): e for e in desired}
    for k, e in have.items():
        if k in want or e.is_const or e.table_id in protected_tables:
            continue
        if e.is_default_action:
            if k in expected:  # a default we set that nobody wants any more: the program's again
                out.updates.append(_update(p4r.Update.MODIFY, p4r.TableEntry(table_id=e.table_id,
                                                                             is_default_action=True)))
            continue
        out.updates.append(_update(p4r.Update.DELETE, e))
        if k not in expected:
            out.repairs[EXTRANEOUS] += 1
    for k, e in want.items():
        cur = have.get(k)
        if cur is None and not e.is_default_action:
            out.updates.append(_update(p4r.Update.INSERT, e))
            if k in expected:
                out.repairs[MISSING] += 1
        elif cur is None or action_bytes(cur) != action_bytes(e):
            out.updates.append(_update(p4r.Update.MODIFY, e))
            if expected.get(k) == action_bytes(e):
                out.repairs[DEFAULT_ACTION if e.is_default_action else MODIFIED] += 1
    return out
