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


def entry_key(e: p4r.TableEntry) -> tuple:
    """Identity of a table entry: table, priority and match (canonical, order-independent).

    A table's default entry has the key (table_id, "default").
    """
    if e.is_default_action:
        return (e.table_id, "default")
    return (e.table_id, e.priority, tuple(sorted((m.field_id, m.SerializeToString(deterministic=True))
                                                 for m in e.match)))


def action_bytes(e: p4r.TableEntry) -> bytes:
    return e.action.SerializeToString(deterministic=True)


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
         expected: dict[tuple, bytes]) -> Plan:
    """Updates that make ``actual`` (match entries and the default entries read) equal ``desired``.

    Default entries are only ever modified (a table always has one); match entries are
    inserted, modified or deleted. Deletes come first, so a re-keyed entry never collides.
    """
    out = Plan()
    have = {entry_key(e): e for e in actual}
    want = {entry_key(e): e for e in desired}
    for k, e in have.items():
        if k not in want and not e.is_default_action:
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
