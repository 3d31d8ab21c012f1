"""Value checks shared by every entity kind: canonical bytestrings (spec §8.4), match keys
(spec §9.1.1, also used by value sets, §9.6), action specifications and update types.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Protocol

from kubep4.p4 import MatchKind, p4i, p4r
from kubep4.reftarget.errors import Code
from kubep4.reftarget.errors import fail as _fail
from kubep4.reftarget.errors import q as _q

__all__ = ["check_bytes", "match_key", "check_action_spec", "check_update_type", "modify_only",
           "MatchKey", "EntryKey", "PRIORITY_KINDS", "KIND_NAMES", "UpdateType"]

UpdateType = p4r.Update.Type

# Match kinds whose presence requires a priority (P4Runtime spec §9.1).
PRIORITY_KINDS = (MatchKind.TERNARY, MatchKind.RANGE, MatchKind.OPTIONAL)
KIND_NAMES = {MatchKind.EXACT: "exact", MatchKind.LPM: "lpm", MatchKind.TERNARY: "ternary",
              MatchKind.RANGE: "range", MatchKind.OPTIONAL: "optional"}
_KIND_NAMES = KIND_NAMES


class Matchable(Protocol):
    """What a match key is checked against: a table, or a value set."""

    fields: Mapping[int, p4i.MatchField]

    @property
    def name(self) -> str: ...


def check_bytes(value: bytes, bitwidth: int, what: str) -> int:
    """Validate a canonical P4Runtime bytestring (spec §8.4) and return its integer value."""
    if not value:
        raise _fail(Code.INVALID_ARGUMENT, f"{what}: empty bytestring")
    if len(value) > 1 and value[0] == 0:
        raise _fail(Code.INVALID_ARGUMENT, f"{what}: bytestring {value.hex()} is not canonical "
                                           "(leading zero bytes)")
    number = int.from_bytes(value, "big")
    if bitwidth and number.bit_length() > bitwidth:
        raise _fail(Code.INVALID_ARGUMENT, f"{what}: value 0x{value.hex()} does not fit in {bitwidth} bits")
    return number


MatchKey = tuple[tuple[int, str, tuple[bytes, ...]], ...]
EntryKey = tuple[MatchKey, int]


def match_key(table: Matchable, matches: Iterable[p4r.FieldMatch], what: str = "match") -> MatchKey:
    """Validate the match of an entry against its table; return a canonical, hashable key."""
    out: list[tuple[int, str, tuple[bytes, ...]]] = []
    seen: set[int] = set()
    for i, fm in enumerate(matches):
        path = f"{what}[{i}]"
        mf = table.fields.get(fm.field_id)
        if mf is None:
            raise _fail(Code.INVALID_ARGUMENT,
                        f"{path}: table {table.name} has no match field id {fm.field_id}")
        if fm.field_id in seen:
            raise _fail(Code.INVALID_ARGUMENT, f"{path}: match field {_q(mf.name)} given twice")
        seen.add(fm.field_id)
        kind = fm.WhichOneof("field_match_type")
        expected = _KIND_NAMES.get(mf.match_type)
        if kind is None:
            raise _fail(Code.INVALID_ARGUMENT, f"{path}: no match value for field {_q(mf.name)}")
        if kind == "other" or expected is None:
            raise _fail(Code.UNIMPLEMENTED, f"{path}: match kind of field {_q(mf.name)} is not supported")
        if kind != expected:
            raise _fail(Code.INVALID_ARGUMENT,
                        f"{path}: field {_q(mf.name)} is matched by {expected}, not {kind}")
        w = mf.bitwidth
        fp = f"{path} ({_q(mf.name)})"
        if kind == "exact":
            check_bytes(fm.exact.value, w, f"{fp}.exact.value")
            values: tuple[bytes, ...] = (fm.exact.value,)
        elif kind == "lpm":
            plen = fm.lpm.prefix_len
            if plen <= 0:
                raise _fail(Code.INVALID_ARGUMENT,
                            f"{fp}.lpm.prefix_len: a don't-care LPM match (prefix 0) must be omitted")
            if plen > w:
                raise _fail(Code.INVALID_ARGUMENT, f"{fp}.lpm.prefix_len: {plen} exceeds bitwidth {w}")
            v = check_bytes(fm.lpm.value, w, f"{fp}.lpm.value")
            # the low (w - plen) bits must be 0: v's trailing zeros, without building a w-bit mask
            if v and ((v & -v).bit_length() - 1) < w - plen:
                raise _fail(Code.INVALID_ARGUMENT,
                            f"{fp}.lpm.value: bits are set beyond the /{plen} prefix")
            values = (fm.lpm.value, plen.to_bytes(4, "big"))
        elif kind == "ternary":
            v = check_bytes(fm.ternary.value, w, f"{fp}.ternary.value")
            m = check_bytes(fm.ternary.mask, w, f"{fp}.ternary.mask")
            if m == 0:
                raise _fail(Code.INVALID_ARGUMENT,
                            f"{fp}.ternary.mask: a don't-care ternary match (mask 0) must be omitted")
            if v & ~m:
                raise _fail(Code.INVALID_ARGUMENT, f"{fp}.ternary.value: bits are set outside the mask")
            values = (fm.ternary.value, fm.ternary.mask)
        elif kind == "range":
            lo = check_bytes(fm.range.low, w, f"{fp}.range.low")
            hi = check_bytes(fm.range.high, w, f"{fp}.range.high")
            if lo > hi:
                raise _fail(Code.INVALID_ARGUMENT, f"{fp}.range: low is greater than high")
            if w and lo == 0 and hi.bit_length() == w and not (hi & (hi + 1)):  # hi is w one-bits
                raise _fail(Code.INVALID_ARGUMENT,
                            f"{fp}.range: a don't-care range (full range) must be omitted")
            values = (fm.range.low, fm.range.high)
        else:  # optional
            check_bytes(fm.optional.value, w, f"{fp}.optional.value")
            values = (fm.optional.value,)
        out.append((fm.field_id, kind, values))
    for mf in table.fields.values():
        if mf.match_type == MatchKind.EXACT and mf.id not in seen:
            raise _fail(Code.INVALID_ARGUMENT,
                        f"{what}: exact match field {_q(mf.name)} of table {table.name} is mandatory")
    out.sort()
    return tuple(out)




def check_update_type(update: p4r.Update) -> None:
    """INVALID_ARGUMENT for an UNSPECIFIED or unknown ``Update.type``."""
    if update.type not in (UpdateType.INSERT, UpdateType.MODIFY, UpdateType.DELETE):
        what = "UNSPECIFIED" if update.type == UpdateType.UNSPECIFIED else f"unknown ({update.type})"
        raise _fail(Code.INVALID_ARGUMENT, f"update type is {what}")


def modify_only(update: p4r.Update, what: str) -> None:
    """Counters, meters, registers, value sets and direct resources take MODIFY only: INSERT and DELETE
    are INVALID_ARGUMENT (spec §9.3, §9.4, §9.6)."""
    check_update_type(update)
    if update.type != UpdateType.MODIFY:
        raise _fail(Code.INVALID_ARGUMENT, f"{what} can only be MODIFY'd (got {UpdateType.Name(update.type)})")


def check_action_spec(action_params: Mapping[int, Mapping[int, p4i.Action.Param]], action: p4r.Action,
                      what: str = "action") -> None:
    """The params of ``action``: each known, once, fitting its bitwidth, none missing (spec §9.1.2)."""
    params = action_params.get(action.action_id, {})
    given: set[int] = set()
    for i, prm in enumerate(action.params):
        spec = params.get(prm.param_id)
        if spec is None:
            raise _fail(Code.INVALID_ARGUMENT, f"{what}.params[{i}]: action id {action.action_id} "
                                               f"has no param id {prm.param_id}")
        if prm.param_id in given:
            raise _fail(Code.INVALID_ARGUMENT, f"{what}.params[{i}]: param {_q(spec.name)} given twice")
        given.add(prm.param_id)
        check_bytes(prm.value, spec.bitwidth, f"{what}.params[{i}] ({_q(spec.name)})")
    missing = [p.name for pid, p in params.items() if pid not in given]
    if missing:
        raise _fail(Code.INVALID_ARGUMENT, f"action id {action.action_id} is missing params "
                                           f"{', '.join(missing)}")
