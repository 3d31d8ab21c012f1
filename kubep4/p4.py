"""P4Runtime helpers shared by admission, the node agent, the reference target and benchmarks.

Short aliases for the generated bindings (``p4r.TableEntry``, ``p4i.P4Info``),
P4Info indexing, and conversion of KubeP4 table entries (text values) into
P4Runtime entries with canonical byte strings (P4Runtime spec §8.4).
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.gen.p4.config.v1 import p4info_pb2 as p4i
from kubep4.gen.p4.v1 import p4runtime_pb2 as p4r
from kubep4.gen.p4.v1 import p4runtime_pb2_grpc as p4r_grpc

__all__ = ["p4r", "p4i", "p4r_grpc", "P4InfoIndex", "EntryError", "parse_p4info", "encode_value",
           "canonical", "cookie_for_digest", "to_p4_entry", "MatchKind"]

MatchKind = p4i.MatchField.MatchType


class EntryError(ValueError):
    """A table entry does not fit the P4Info; ``field`` is the path inside the entry."""

    def __init__(self, field: str, description: str):
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


def parse_p4info(data: bytes | str) -> p4i.P4Info:
    """Parse a P4Info given as binary protobuf or protobuf text format."""
    info = p4i.P4Info()
    if isinstance(data, bytes):
        try:
            info.ParseFromString(data)
            return info
        except DecodeError:
            data = data.decode("utf-8", errors="strict")
    text_format.Parse(data, info)
    return info


def cookie_for_digest(digest: str) -> int:
    """The 64-bit pipeline cookie for a pipeline digest ("sha256:<hex>"), never 0."""
    hexpart = digest.split(":", 1)[-1]
    if not hexpart:
        return 1
    return int(hexpart[:16], 16) or 1


def canonical(value: bytes) -> bytes:
    """P4Runtime canonical binary string: no leading zero bytes, at least one byte."""
    stripped = value.lstrip(b"\x00")
    return stripped or b"\x00"


def encode_value(text: str, bitwidth: int) -> bytes:
    """Encode a textual value (decimal, 0x-hex, IPv4, IPv6, MAC) as a canonical bytestring.

    Raises ValueError when the text does not parse or does not fit ``bitwidth`` bits.
    """
    s = str(text).strip()
    if not s:
        raise ValueError("empty value")
    try:
        if s.lower().startswith("0x"):
            number = int(s, 16)
        elif s.isdigit():
            number = int(s)
        elif s.count(":") == 5 and all(len(p) in (1, 2) for p in s.split(":")):
            number = int(s.replace(":", ""), 16)
        elif "." in s or ":" in s:
            number = int(ipaddress.ip_address(s))
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"cannot parse {s!r} (use decimal, 0x-hex, IPv4, IPv6 or MAC)") from None
    if number < 0 or number.bit_length() > bitwidth:
        raise ValueError(f"{s!r} does not fit in {bitwidth} bits")
    return canonical(number.to_bytes(max(1, (bitwidth + 7) // 8), "big"))


@dataclass(frozen=True)
class _Table:
    info: p4i.Table
    fields: dict[str, p4i.MatchField]
    action_ids: frozenset[int]


class P4InfoIndex:
    """Name and id lookups over a P4Info, with a consistency check."""

    def __init__(self, info: p4i.P4Info):
        self.info = info
        self.actions_by_name: dict[str, p4i.Action] = {}
        self.actions_by_id: dict[int, p4i.Action] = {}
        for a in info.actions:
            self.actions_by_name[a.preamble.name] = a
            if a.preamble.alias:
                self.actions_by_name.setdefault(a.preamble.alias, a)
            self.actions_by_id[a.preamble.id] = a
        self.tables_by_name: dict[str, _Table] = {}
        self.tables_by_id: dict[int, _Table] = {}
        for t in info.tables:
            entry = _Table(t, {m.name: m for m in t.match_fields},
                           frozenset(r.id for r in t.action_refs))
            self.tables_by_name[t.preamble.name] = entry
            if t.preamble.alias:
                self.tables_by_name.setdefault(t.preamble.alias, entry)
            self.tables_by_id[t.preamble.id] = entry

    def problems(self) -> list[tuple[str, str]]:
        """Self-consistency violations as (field path, description)."""
        out: list[tuple[str, str]] = []
        seen: dict[int, str] = {}
        groups = [("tables", self.info.tables), ("actions", self.info.actions),
                  ("counters", self.info.counters), ("direct_counters", self.info.direct_counters),
                  ("meters", self.info.meters), ("registers", self.info.registers),
                  ("action_profiles", self.info.action_profiles), ("digests", self.info.digests)]
        for group, items in groups:
            for i, obj in enumerate(items):
                pid = obj.preamble.id
                path = f"{group}[{i}].preamble.id"
                if pid == 0:
                    out.append((path, f"{obj.preamble.name or '?'} has no id"))
                elif pid in seen:
                    out.append((path, f"id {pid} of {obj.preamble.name} is already used by {seen[pid]}"))
                else:
                    seen[pid] = obj.preamble.name
                if not obj.preamble.name:
                    out.append((f"{group}[{i}].preamble.name", "empty name"))
        for i, t in enumerate(self.info.tables):
            for j, ref in enumerate(t.action_refs):
                if ref.id not in self.actions_by_id:
                    out.append((f"tables[{i}].action_refs[{j}].id",
                                f"table {t.preamble.name} references unknown action id {ref.id}"))
            if t.const_default_action_id and t.const_default_action_id not in self.actions_by_id:
                out.append((f"tables[{i}].const_default_action_id", "unknown action id"))
            fids = [m.id for m in t.match_fields]
            if len(fids) != len(set(fids)):
                out.append((f"tables[{i}].match_fields", f"duplicate match field ids in {t.preamble.name}"))
        return out

    def table(self, name: str) -> _Table:
        return self.tables_by_name[name]


def _needs_priority(table: p4i.Table) -> bool:
    return any(m.match_type in (MatchKind.TERNARY, MatchKind.RANGE, MatchKind.OPTIONAL)
               for m in table.match_fields)


def to_p4_entry(entry: kr.TableEntry, index: P4InfoIndex) -> p4r.TableEntry:
    """Convert a KubeP4 table entry into a P4Runtime TableEntry.

    Raises EntryError whose ``field`` is relative to the entry (e.g. ``match[0].lpm.value``).
    """
    if entry.table not in index.tables_by_name:
        raise EntryError("table", f"no table {entry.table!r} in the P4Info")
    t = index.table(entry.table)
    out = p4r.TableEntry(table_id=t.info.preamble.id)
    seen: set[str] = set()
    for i, fm in enumerate(entry.match):
        path = f"match[{i}]"
        mf = t.fields.get(fm.field)
        if mf is None:
            raise EntryError(f"{path}.field", f"table {entry.table} has no match field {fm.field!r}")
        if fm.field in seen:
            raise EntryError(f"{path}.field", f"match field {fm.field} given twice")
        seen.add(fm.field)
        kind = fm.WhichOneof("kind")
        expected = MatchKind.Name(mf.match_type).lower()
        if kind != expected:
            raise EntryError(f"{path}.{kind or 'kind'}", f"field {fm.field} is matched by {expected}, not {kind}")
        w = mf.bitwidth
        p = out.match.add(field_id=mf.id)
        try:
            if kind == "exact":
                p.exact.value = encode_value(fm.exact.value, w)
            elif kind == "lpm":
                if not 0 <= fm.lpm.prefix_len <= w:
                    raise EntryError(f"{path}.lpm.prefix_len", f"must be between 0 and {w}")
                if fm.lpm.prefix_len == 0:  # a don't-care LPM is omitted (spec §9.1.1)
                    out.match.pop()
                    continue
                v = int.from_bytes(encode_value(fm.lpm.value, w), "big")
                mask = ((1 << fm.lpm.prefix_len) - 1) << (w - fm.lpm.prefix_len)
                p.lpm.value = canonical((v & mask).to_bytes((w + 7) // 8, "big"))
                p.lpm.prefix_len = fm.lpm.prefix_len
            elif kind == "ternary":
                v = int.from_bytes(encode_value(fm.ternary.value, w), "big")
                m = int.from_bytes(encode_value(fm.ternary.mask, w), "big")
                if m == 0:
                    out.match.pop()
                    continue
                p.ternary.value = canonical((v & m).to_bytes((w + 7) // 8, "big"))
                p.ternary.mask = canonical(m.to_bytes((w + 7) // 8, "big"))
            elif kind == "range":
                lo = encode_value(fm.range.low, w)
                hi = encode_value(fm.range.high, w)
                if int.from_bytes(lo, "big") > int.from_bytes(hi, "big"):
                    raise EntryError(f"{path}.range", "low is greater than high")
                p.range.low, p.range.high = lo, hi
            elif kind == "optional":
                p.optional.value = encode_value(fm.optional.value, w)
        except ValueError as e:
            if isinstance(e, EntryError):
                raise
            raise EntryError(f"{path}.{kind}", str(e)) from None
    for i, mf in enumerate(t.info.match_fields):
        if mf.match_type == MatchKind.EXACT and mf.name not in seen and not entry.is_default_action:
            raise EntryError("match", f"exact match field {mf.name} is required")
    if _needs_priority(t.info) and not entry.is_default_action:
        if entry.priority <= 0:
            raise EntryError("priority", f"table {entry.table} has ternary/range/optional fields: "
                             "priority must be > 0")
        out.priority = entry.priority
    elif entry.priority:
        raise EntryError("priority", f"table {entry.table} takes no priority")
    if entry.is_default_action:
        out.is_default_action = True
        if entry.match:
            raise EntryError("match", "a default action entry has no match")
    action = index.actions_by_name.get(entry.action)
    if action is None:
        raise EntryError("action", f"no action {entry.action!r} in the P4Info")
    if action.preamble.id not in t.action_ids:
        raise EntryError("action", f"action {entry.action} is not an action of table {entry.table}")
    a = out.action.action
    a.action_id = action.preamble.id
    params = {p.name: p for p in action.params}
    given = set()
    for i, prm in enumerate(entry.params):
        spec = params.get(prm.name)
        if spec is None:
            raise EntryError(f"params[{i}].name", f"action {entry.action} has no parameter {prm.name!r}")
        given.add(prm.name)
        try:
            a.params.add(param_id=spec.id, value=encode_value(prm.value, spec.bitwidth))
        except ValueError as e:
            raise EntryError(f"params[{i}].value", str(e)) from None
    missing = [n for n in params if n not in given]
    if missing:
        raise EntryError("params", f"action {entry.action} needs parameters {', '.join(missing)}")
    return out


def digest_of(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return "sha256:" + h.hexdigest()
