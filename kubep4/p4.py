"""P4Runtime helpers shared by admission, the node agent, the reference target and benchmarks.

Short aliases for the generated bindings (``p4r.TableEntry``, ``p4i.P4Info``),
P4Info indexing, and conversion of KubeP4 table entries (text values) into
P4Runtime entries with canonical byte strings (P4Runtime spec §8.4).
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

import grpc
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from kubep4.errors import quoted
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.gen.p4.config.v1 import p4info_pb2 as p4i
from kubep4.gen.p4.v1 import p4runtime_pb2 as p4r
from kubep4.gen.p4.v1 import p4runtime_pb2_grpc as p4r_grpc

__all__ = ["p4r", "p4i", "p4r_grpc", "P4InfoIndex", "EntryError", "parse_p4info", "encode_value",
           "canonical", "cookie_for_digest", "to_p4_entry", "MatchKind"]

MatchKind = p4i.MatchField.MatchType
MAX_BITWIDTH = 2048  # admission's default bound on a match field's or a param's width


class EntryError(ValueError):
    """A table entry does not fit the P4Info; ``field`` is the path inside the entry."""

    def __init__(self, field: str, description: str):
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


MAX_TEXT_DEPTH = 64  # nested messages in a text P4Info; the binary parser (upb) stops at 100
_TEXT_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*|[{}<>]')



# What a device with no pipeline answers a Read or GetForwardingPipelineConfig with: the
# reference target and PI say FAILED_PRECONDITION, some servers NOT_FOUND.
NO_PIPELINE = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)

def text_depth(text: str) -> int:
    """The deepest message nesting of a protobuf text, ignoring strings and comments."""
    depth = deepest = 0
    for m in _TEXT_TOKENS.finditer(text):
        c = m.group()
        if c in "{<":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "}>":
            depth -= 1
    return deepest


def parse_p4info(data: bytes | str, max_depth: int = MAX_TEXT_DEPTH) -> p4i.P4Info:
    """Parse a P4Info given as binary protobuf or protobuf text format.

    A text nested deeper than ``max_depth`` raises ParseError before it is parsed (the text parser
    recurses once per level).
    """
    info = p4i.P4Info()
    if isinstance(data, bytes):
        try:
            info.ParseFromString(data)
            return info
        except DecodeError:
            data = data.decode("utf-8", errors="strict")
    depth = text_depth(data)
    if depth > max_depth:
        raise text_format.ParseError(f"messages nested {depth} deep; at most {max_depth}")
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


_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_IPV6 = re.compile(r"[0-9a-fA-F:.]*:[0-9a-fA-F:.]*")
_FORMS = "decimal, 0x-hex, or IPv4 (32+ bits), MAC (48+ bits) or IPv6 (128 bits) where the field fits it"
def _parse_number(s: str, bitwidth: int) -> int:
    """The integer a value text denotes; raises ValueError (strict: ASCII, no spaces, known forms)."""
    if not s:
        raise ValueError("empty value")
    if s != s.strip():
        raise ValueError(f"{quoted(s)} has surrounding spaces")
    if _DECIMAL.fullmatch(s):
        if len(s.lstrip("0")) > bitwidth * 302 // 1000 + 1:  # more digits than 2**bitwidth has
            raise ValueError(f"{quoted(s)} does not fit in {bitwidth} bits")
        return int(s)
    if _HEX.fullmatch(s):
        return int(s, 16)
    if _MAC.fullmatch(s):
        form, width, number = "a MAC address", 48, int(s.replace(":", ""), 16)
    else:
        form, width = ("an IPv4 address", 32) if _IPV4.fullmatch(s) else ("an IPv6 address", 128)
        try:
            number = int(ipaddress.ip_address(s)) if _IPV4.fullmatch(s) or _IPV6.fullmatch(s) else None
        except ValueError:
            number = None
        if number is None:
            raise ValueError(f"cannot parse {quoted(s)} (use {_FORMS})")
    if bitwidth < width:
        raise ValueError(f"{quoted(s)} is {form}: the field is {bitwidth} bits, the form needs {width}")
    return number


def encode_value(text: str, bitwidth: int) -> bytes:
    """Encode a textual value (decimal, 0x-hex, IPv4, IPv6, MAC) as a canonical bytestring.

    Raises ValueError when the text does not parse or does not fit ``bitwidth`` bits. The syntax is
    strict: ASCII digits only, no surrounding spaces, exactly two hex digits per MAC octet, and an
    address form only where the field is at least as wide as the address.
    """
    s = str(text)
    number = _parse_number(s, bitwidth)
    if number.bit_length() > bitwidth:
        raise ValueError(f"{quoted(s)} does not fit in {bitwidth} bits")
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

    def bound_problems(self, max_bitwidth: int = MAX_BITWIDTH) -> list[tuple[str, str]]:
        """What a device would refuse or could not afford, as (field path, description): match
        fields and action params without an id or a name (or given twice), match fields without a
        match type, bit widths outside 1..max_bitwidth (a value's cost grows with its width)."""
        out: list[tuple[str, str]] = []

        def check(path: str, what: str, item, names: set[str], ids: set[int] | None) -> None:
            if item.id == 0:
                out.append((f"{path}.id", f"{what} {quoted(item.name)} has no id (0)"))
            elif ids is not None and item.id in ids:
                out.append((f"{path}.id", f"{what} id {item.id} is given twice"))
            elif ids is not None:
                ids.add(item.id)
            if not item.name:
                out.append((f"{path}.name", f"{what} has an empty name"))
            elif item.name in names:
                out.append((f"{path}.name", f"{what} {quoted(item.name)} is given twice"))
            names.add(item.name)
            if not 1 <= item.bitwidth <= max_bitwidth:
                why = f"{what} {quoted(item.name)} is {item.bitwidth} bits wide: must be between 1 and {max_bitwidth}"
                out.append((f"{path}.bitwidth", why))

        for i, t in enumerate(self.info.tables):
            names: set[str] = set()
            for j, m in enumerate(t.match_fields):  # duplicate ids: problems()
                check(f"tables[{i}].match_fields[{j}]", "match field", m, names, None)
                if m.WhichOneof("match") is None or (m.WhichOneof("match") == "match_type"
                                                     and m.match_type == MatchKind.UNSPECIFIED):
                    out.append((f"tables[{i}].match_fields[{j}].match_type",
                                f"match field {quoted(m.name)} has no match type"))
        for i, a in enumerate(self.info.actions):
            names, ids = set(), set()
            for j, prm in enumerate(a.params):
                check(f"actions[{i}].params[{j}]", "param", prm, names, ids)
        for i, c in enumerate(self.info.controller_packet_metadata):
            names, ids = set(), set()
            for j, md in enumerate(c.metadata):
                check(f"controller_packet_metadata[{i}].metadata[{j}]", "metadata", md, names, ids)
        for i, vs in enumerate(self.info.value_sets):
            names, ids = set(), set()
            for j, m in enumerate(vs.match):
                check(f"value_sets[{i}].match[{j}]", "match field", m, names, ids)
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
        raise EntryError("table", f"no table {quoted(entry.table)} in the P4Info")
    t = index.table(entry.table)
    out = p4r.TableEntry(table_id=t.info.preamble.id)
    seen: set[str] = set()
    for i, fm in enumerate(entry.match):
        path = f"match[{i}]"
        mf = t.fields.get(fm.field)
        if mf is None:
            raise EntryError(f"{path}.field", f"table {entry.table} has no match field {quoted(fm.field)}")
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
        raise EntryError("action", f"no action {quoted(entry.action)} in the P4Info")
    if action.preamble.id not in t.action_ids:
        raise EntryError("action", f"action {entry.action} is not an action of table {entry.table}")
    a = out.action.action
    a.action_id = action.preamble.id
    params = {p.name: p for p in action.params}
    given = set()
    for i, prm in enumerate(entry.params):
        spec = params.get(prm.name)
        if spec is None:
            raise EntryError(f"params[{i}].name", f"action {entry.action} has no parameter {quoted(prm.name)}")
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


# Compiler options a user may give, for every backend: preprocessor defines and diagnostics switches.
# Nothing that names a file or directory (-o, -I, --p4runtime-files, --dump, --pp, @file...), picks
# the target or arch (the spec does), or runs anything: the node compiles with them in its own sandbox.
_OPTION_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_ALLOWED_OPTIONS = re.compile(
    rf"-D{_OPTION_NAME}(=[A-Za-z0-9_.+-]{{0,64}})?|-U{_OPTION_NAME}"
    r"|--W(disable|warn|error)(=[a-z_]{1,32}(,[a-z_]{1,32}){0,15})?|-w|--std=p4-1[46]")


def compiler_option_problem(option: str) -> str | None:
    """Why a compiler option is not allowed (None when it is)."""
    if _ALLOWED_OPTIONS.fullmatch(option):
        return None
    return (f"option {quoted(option)} is not allowed: only -DNAME[=VALUE], -UNAME, --Wdisable/--Wwarn/"
            "--Werror[=KIND,...], -w and --std=p4-14|p4-16 (no option may name a file, the target or the arch)")
