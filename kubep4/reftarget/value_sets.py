"""Parser value sets of the reference target (spec §9.6 ValueSetEntry).

A ValueSetEntry takes MODIFY only (INSERT and DELETE are INVALID_ARGUMENT): it replaces the value
set's members with those given, an empty list restoring the empty initial set.  Each member's
``match`` follows the rules of a table entry's match (spec §9.1.1; the value set's P4Info ``match``
specs play the table's match fields; no priority is needed); more members than the value set's
``size`` is RESOURCE_EXHAUSTED, a member given twice ALREADY_EXISTS (read-write symmetry, §9.6).
Reads: ``value_set_id`` 0 reads every value set, an id that one; members come back as written.
"""
from __future__ import annotations

from dataclasses import dataclass

from kubep4.p4 import p4i, p4r
from kubep4.reftarget.errors import Code, fail, q
from kubep4.reftarget.values import match_key, modify_only

__all__ = ["ValueSetStore"]


@dataclass(frozen=True)
class _ValueSet:
    info: p4i.ValueSet
    fields: dict[int, p4i.MatchField]

    @property
    def name(self) -> str:
        return q(self.info.preamble.name)

    def shape(self) -> list[tuple[int, int, int, str]]:
        return sorted((m.id, m.bitwidth, m.match_type, m.other_match_type) for m in self.fields.values())


class ValueSetStore:
    """The members of every value set of a device (absent: empty)."""

    def __init__(self, info: p4i.P4Info | None = None):
        self.sets: dict[int, _ValueSet] = {}
        for vs in getattr(info, "value_sets", ()):
            self.sets[vs.preamble.id] = _ValueSet(vs, {m.id: m for m in vs.match})
        self.members: dict[int, tuple[p4r.ValueSetMember, ...]] = {}

    def copy(self) -> "ValueSetStore":
        out = ValueSetStore()
        out.sets, out.members = self.sets, dict(self.members)
        return out

    def write(self, update: p4r.Update) -> None:
        msg = update.entity.value_set_entry
        modify_only(update, "a value set entry")
        if msg.value_set_id == 0:
            raise fail(Code.INVALID_ARGUMENT, "value_set_id 0 is not a value set (wildcards are for reads)")
        vs = self.sets.get(msg.value_set_id)
        if vs is None:
            raise fail(Code.INVALID_ARGUMENT, f"unknown value set id {msg.value_set_id}")
        seen: set = set()
        for i, member in enumerate(msg.members):
            key = match_key(vs, member.match, f"members[{i}].match")
            if key in seen:
                raise fail(Code.ALREADY_EXISTS, f"members[{i}] of value set {vs.name} is given twice")
            seen.add(key)
        if len(msg.members) > vs.info.size:
            raise fail(Code.RESOURCE_EXHAUSTED, f"value set {vs.name} holds at most {vs.info.size} members "
                                                f"({len(msg.members)} given)")
        if len(msg.members):
            self.members[msg.value_set_id] = tuple(_copy(m) for m in msg.members)
        else:
            self.members.pop(msg.value_set_id, None)

    def read(self, entity: p4r.Entity) -> list[p4r.Entity]:
        vs_id = entity.value_set_entry.value_set_id
        if vs_id == 0:
            ids = sorted(self.sets)
        elif vs_id not in self.sets:
            raise fail(Code.INVALID_ARGUMENT, f"unknown value set id {vs_id}")
        else:
            ids = [vs_id]
        return [p4r.Entity(value_set_entry=p4r.ValueSetEntry(value_set_id=i, members=self.members.get(i, ())))
                for i in ids]

    def reconcile(self, info: p4i.P4Info) -> tuple["ValueSetStore", list[str]]:
        """RECONCILE_AND_COMMIT keeps a value set's members when the new P4Info has a value set of its id
        with the same match fields and room for them."""
        new = ValueSetStore(info)
        problems: list[str] = []
        for vs_id, members in self.members.items():
            old, other = self.sets[vs_id], new.sets.get(vs_id)
            if other is None:
                problems.append(f"value set {old.name} (id {vs_id}) holding members is gone")
            elif other.shape() != old.shape() or other.info.size < len(members):
                problems.append(f"value set {old.name} (id {vs_id}) changed its match fields or size")
            else:
                new.members[vs_id] = members
        return new, problems


def _copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out
