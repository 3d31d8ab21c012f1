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
           "canonical", "cookie_for_digest", "to_p4_entry", "to_p4_action", "to_p4_matches",
           "to_p4_meter_config", "to_p4_counter_data", "profile_weight", "register_bitwidth", "MatchKind"]

MatchKind = p4i.MatchField.MatchType
MAX_BITWIDTH = 2048  # admission's default bound on a match field's or a param's width


class EntryError(ValueError):
    """An entity does not fit the P4Info; ``field`` is the path inside the entity (or the spec)."""

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


V1MODEL_PORT_BITS = 9


def register_bitwidth(register: p4i.Register) -> int | None:
    """The width of a ``bit<W>`` register's cells; None for any other type (not writable here)."""
    t = register.type_spec
    if t.WhichOneof("type_spec") == "bitstring" and t.bitstring.WhichOneof("type_spec") == "bit":
        return t.bitstring.bit.bitwidth
    return None


def _named(items) -> tuple[dict, dict]:
    """By-name (and alias: a name wins over another object's alias) and by-id maps of P4Info objects."""
    by_name: dict = {}
    by_id: dict = {}
    for obj in items:
        by_name[obj.preamble.name] = obj
        by_id[obj.preamble.id] = obj
    for obj in items:
        if obj.preamble.alias:
            by_name.setdefault(obj.preamble.alias, obj)
    return by_name, by_id


@dataclass(frozen=True)
class _Table:
    info: p4i.Table
    fields: dict[str, p4i.MatchField]
    action_ids: frozenset[int]

    @property
    def entry_action_ids(self) -> frozenset[int]:
        """The actions an entry (not the default one) may take: all but the @defaultonly ones."""
        return frozenset(r.id for r in self.info.action_refs if r.scope != p4i.ActionRef.DEFAULT_ONLY)

    @property
    def default_action_ids(self) -> frozenset[int]:
        """The actions the default entry may take: all but the @tableonly ones."""
        return frozenset(r.id for r in self.info.action_refs if r.scope != p4i.ActionRef.TABLE_ONLY)


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
        self.action_profiles_by_name, self.action_profiles_by_id = _named(info.action_profiles)
        self.counters_by_name, self.counters_by_id = _named(info.counters)
        self.direct_counters_by_name, self.direct_counters_by_id = _named(info.direct_counters)
        self.meters_by_name, self.meters_by_id = _named(info.meters)
        self.direct_meters_by_name, self.direct_meters_by_id = _named(info.direct_meters)
        self.registers_by_name, self.registers_by_id = _named(info.registers)
        self.value_sets_by_name, self.value_sets_by_id = _named(info.value_sets)

    def direct_counter(self, table: p4i.Table) -> p4i.DirectCounter | None:
        """The table's direct counter (one of its ``direct_resource_ids``), if it has one."""
        return next((self.direct_counters_by_id[i] for i in table.direct_resource_ids
                     if i in self.direct_counters_by_id), None)

    def direct_meter(self, table: p4i.Table) -> p4i.DirectMeter | None:
        return next((self.direct_meters_by_id[i] for i in table.direct_resource_ids
                     if i in self.direct_meters_by_id), None)

    def profile_of(self, table: p4i.Table) -> p4i.ActionProfile | None:
        """The action profile (or selector) implementing the table; None for a direct table."""
        return self.action_profiles_by_id.get(table.implementation_id) if table.implementation_id else None

    def port_bitwidth(self) -> int:
        """The width of the architecture's port numbers (a replica's egress port): the P4Info's
        ``PortId_t`` type where it declares one (PSA's translated 32 bits), else 9 (v1model's
        ``bit<9>``, also what BMv2 and Tofino take)."""
        new_type = self.info.type_info.new_types.get("PortId_t")
        if new_type is not None:
            if new_type.HasField("translated_type") and new_type.translated_type.sdn_bitwidth:
                return new_type.translated_type.sdn_bitwidth
            bits = new_type.original_type.bitstring.bit.bitwidth
            if bits:
                return bits
        return V1MODEL_PORT_BITS

    def problems(self) -> list[tuple[str, str]]:
        """Self-consistency violations as (field path, description)."""
        out: list[tuple[str, str]] = []
        seen: dict[int, str] = {}
        groups = [("tables", self.info.tables), ("actions", self.info.actions),
                  ("counters", self.info.counters), ("direct_counters", self.info.direct_counters),
                  ("meters", self.info.meters), ("registers", self.info.registers),
                  ("action_profiles", self.info.action_profiles), ("digests", self.info.digests),
                  ("direct_meters", self.info.direct_meters), ("value_sets", self.info.value_sets)]
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
        for i, r in enumerate(self.info.registers):  # a register's value is encoded at its width
            width = register_bitwidth(r)
            if width is not None and not 1 <= width <= max_bitwidth:
                why = f"register {quoted(r.preamble.name)} is {width} bits wide: must be between 1 and {max_bitwidth}"
                out.append((f"registers[{i}].type_spec.bitstring", why))
        return out

    def table(self, name: str) -> _Table:
        return self.tables_by_name[name]


def _needs_priority(table: p4i.Table) -> bool:
    return any(m.match_type in (MatchKind.TERNARY, MatchKind.RANGE, MatchKind.OPTIONAL)
               for m in table.match_fields)


def to_p4_matches(matches, fields: dict[str, p4i.MatchField], ordered, owner: str, out,
                  required: bool = True) -> set[str]:
    """Convert KubeP4 field matches (of a table entry or a value set member) into ``out`` (a
    repeated p4r.FieldMatch); don't-care LPM and ternary matches are omitted (spec §9.1.1).
    Exact fields are required unless ``required`` is false. Returns the names given. Raises
    EntryError with paths ``match[i]...`` (or ``match``)."""
    seen: set[str] = set()
    for i, fm in enumerate(matches):
        path = f"match[{i}]"
        mf = fields.get(fm.field)
        if mf is None:
            raise EntryError(f"{path}.field", f"{owner} has no match field {quoted(fm.field)}")
        if fm.field in seen:
            raise EntryError(f"{path}.field", f"match field {fm.field} given twice")
        seen.add(fm.field)
        kind = fm.WhichOneof("kind")
        expected = MatchKind.Name(mf.match_type).lower()
        if kind != expected:
            raise EntryError(f"{path}.{kind or 'kind'}", f"field {fm.field} is matched by {expected}, not {kind}")
        w = mf.bitwidth
        p = out.add(field_id=mf.id)
        try:
            if kind == "exact":
                p.exact.value = encode_value(fm.exact.value, w)
            elif kind == "lpm":
                if not 0 <= fm.lpm.prefix_len <= w:
                    raise EntryError(f"{path}.lpm.prefix_len", f"must be between 0 and {w}")
                if fm.lpm.prefix_len == 0:  # a don't-care LPM is omitted (spec §9.1.1)
                    out.pop()
                    continue
                v = int.from_bytes(encode_value(fm.lpm.value, w), "big")
                mask = ((1 << fm.lpm.prefix_len) - 1) << (w - fm.lpm.prefix_len)
                p.lpm.value = canonical((v & mask).to_bytes((w + 7) // 8, "big"))
                p.lpm.prefix_len = fm.lpm.prefix_len
            elif kind == "ternary":
                v = int.from_bytes(encode_value(fm.ternary.value, w), "big")
                m = int.from_bytes(encode_value(fm.ternary.mask, w), "big")
                if m == 0:
                    out.pop()
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
    if required:
        for mf in ordered:
            if mf.match_type == MatchKind.EXACT and mf.name not in seen:
                raise EntryError("match", f"exact match field {mf.name} is required")
    return seen


def to_p4_action(name: str, params, index: P4InfoIndex, allowed: frozenset[int], owner: str,
                 prefix: str = "", scopes: dict[int, str] | None = None) -> p4r.Action:
    """A P4Runtime Action from an action name and its KubeP4 params; the action must be one of
    ``allowed`` (action ids; ``owner`` names them in errors, ``scopes`` says why an action of the
    table is not allowed here). Paths: ``{prefix}action``, ``{prefix}params[i]...``."""
    scopes = scopes or {}
    action = index.actions_by_name.get(name)
    if action is None:
        raise EntryError(f"{prefix}action", f"no action {quoted(name)} in the P4Info" if name else
                         "required: the name of an action")
    if action.preamble.id not in allowed:
        raise EntryError(f"{prefix}action", f"action {name} is not an action of {owner}"
                         + (f" {scoped}" if (scoped := scopes.get(action.preamble.id)) else ""))
    a = p4r.Action(action_id=action.preamble.id)
    specs = {p.name: p for p in action.params}
    given = set()
    for i, prm in enumerate(params):
        spec = specs.get(prm.name)
        if spec is None:
            raise EntryError(f"{prefix}params[{i}].name", f"action {name} has no parameter {quoted(prm.name)}")
        if prm.name in given:
            raise EntryError(f"{prefix}params[{i}].name", f"parameter {prm.name} given twice")
        given.add(prm.name)
        try:
            a.params.add(param_id=spec.id, value=encode_value(prm.value, spec.bitwidth))
        except ValueError as e:
            raise EntryError(f"{prefix}params[{i}].value", str(e)) from None
    missing = [n for n in specs if n not in given]
    if missing:
        raise EntryError(f"{prefix}params", f"action {name} needs parameters {', '.join(missing)}")
    return a


def to_p4_meter_config(config: kr.MeterConfig, spec: p4i.MeterSpec, prefix: str = "") -> p4r.MeterConfig:
    """A P4Runtime MeterConfig: rates and bursts are not negative; a two-rate meter's committed
    rate is at most its peak rate (RFC 2698; BMv2 refuses the other order), a single-rate meter's
    peak rate and burst are its committed ones (P4Runtime §9.4, as the reference target reads it).
    Paths ``{prefix}cir``..."""
    for name in ("cir", "cburst", "pir", "pburst"):
        if getattr(config, name) < 0:
            raise EntryError(f"{prefix}{name}", f"must be 0 or more, got {getattr(config, name)}")
    if spec.type == p4i.MeterSpec.TWO_RATE_THREE_COLOR:
        if config.cir > config.pir:
            raise EntryError(f"{prefix}cir", f"the committed rate {config.cir} exceeds the peak rate {config.pir}")
    elif (config.pir, config.pburst) != (config.cir, config.cburst):
        field = "pir" if config.pir != config.cir else "pburst"
        raise EntryError(f"{prefix}{field}", f"a single-rate meter takes pir = cir and pburst = cburst "
                         f"(got cir {config.cir}, cburst {config.cburst}, pir {config.pir}, pburst {config.pburst})")
    return p4r.MeterConfig(cir=config.cir, cburst=config.cburst, pir=config.pir, pburst=config.pburst)


def to_p4_counter_data(data: kr.CounterData, spec: p4i.CounterSpec, owner: str, prefix: str = ""
                       ) -> p4r.CounterData:
    """P4Runtime CounterData: counts are not negative, and only in the units the counter counts."""
    unit = spec.unit
    for name, counted in (("byte_count", (p4i.CounterSpec.BYTES, p4i.CounterSpec.BOTH)),
                          ("packet_count", (p4i.CounterSpec.PACKETS, p4i.CounterSpec.BOTH))):
        value = getattr(data, name)
        if value < 0:
            raise EntryError(f"{prefix}{name}", f"must be 0 or more, got {value}")
        if value and unit not in counted:
            raise EntryError(f"{prefix}{name}", f"{owner} counts {p4i.CounterSpec.Unit.Name(unit)}, "
                             f"not {name.split('_')[0]}s")
    return p4r.CounterData(byte_count=data.byte_count, packet_count=data.packet_count)


def profile_weight(weight: int, profile: p4i.ActionProfile, path: str) -> int:
    """A group member's or one-shot action's weight (0 means 1), as the profile allows it."""
    if weight < 0:
        raise EntryError(path, f"must be 0 (meaning 1) or more, got {weight}")
    if weight > 1 and profile.weights_disallowed:
        raise EntryError(path, f"action profile {profile.preamble.name} takes no weights")
    bound = profile.sum_of_members.max_member_weight if profile.HasField("sum_of_members") else 0
    if bound and weight > bound:
        raise EntryError(path, f"{weight} exceeds action selector {profile.preamble.name}'s "
                         f"max_member_weight {bound}")
    return weight or 1


def _allowed(t: _Table, default: bool) -> tuple[frozenset[int], dict[int, str]]:
    """The actions a table's entry (or its default entry) may take, and why the others of the
    table may not."""
    if default:
        return t.default_action_ids, {i: "as its default action (@tableonly)" for i in t.action_ids
                                      - t.default_action_ids}
    return t.entry_action_ids, {i: "but its default only (@defaultonly)" for i in t.action_ids
                                - t.entry_action_ids}


def to_p4_entry(entry: kr.TableEntry, index: P4InfoIndex) -> p4r.TableEntry:
    """Convert a KubeP4 table entry into a P4Runtime TableEntry.

    A direct table's entry, and every table's default entry, takes ``action`` and ``params``
    (not a @defaultonly action in an entry, nor a @tableonly one as the default); an entry of a
    table implemented by an action profile takes ``member_id``, ``group_id`` (a selector's) or
    ``action_set`` (a selector's one-shot set, weights 0 meaning 1), never ``action``.
    ``meter_config`` and ``counter_data`` only where the table has a direct meter / direct counter. Raises EntryError whose ``field``
    is relative to the entry (e.g. ``match[0].lpm.value``).
    """
    if entry.table not in index.tables_by_name:
        raise EntryError("table", f"no table {quoted(entry.table)} in the P4Info")
    t = index.table(entry.table)
    out = p4r.TableEntry(table_id=t.info.preamble.id)
    to_p4_matches(entry.match, t.fields, t.info.match_fields, f"table {entry.table}", out.match,
                  required=not entry.is_default_action)
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
    given = [name for name, set_ in (("action", bool(entry.action)), ("member_id", bool(entry.member_id)),
                                     ("group_id", bool(entry.group_id)), ("action_set", bool(entry.action_set)))
             if set_]
    if len(given) > 1:
        raise EntryError(given[1], f"an entry has one of action, member_id, group_id or action_set, "
                         f"not {' and '.join(given)}")
    profile = index.profile_of(t.info)
    if t.info.implementation_id and profile is None:
        raise EntryError("table", f"table {entry.table} is implemented by an unknown action profile "
                         f"(id {t.info.implementation_id})")
    if profile is None or entry.is_default_action:
        if given and given[0] != "action":
            raise EntryError(given[0], f"the default entry of table {entry.table} takes an action and params"
                             if entry.is_default_action else
                             f"table {entry.table} is a direct table: give action and params")
        allowed, scopes = _allowed(t, entry.is_default_action)
        out.action.action.CopyFrom(to_p4_action(entry.action, entry.params, index, allowed,
                                                f"table {entry.table}", scopes=scopes))
    else:
        pname = profile.preamble.name
        selector = "action selector" if profile.with_selector else "action profile"
        if not given or given[0] == "action":
            raise EntryError("action", f"table {entry.table} is implemented by {selector} {pname}: give "
                             + ("member_id, group_id or action_set" if profile.with_selector else "member_id")
                             + (", not action" if given else ""))
        if entry.params:
            raise EntryError("params", f"an entry of table {entry.table} takes its params from its member")
        if given[0] in ("group_id", "action_set") and not profile.with_selector:
            raise EntryError(given[0], f"table {entry.table} is implemented by action profile {pname}, "
                             "which has no selector: give member_id")
        if entry.member_id:
            out.action.action_profile_member_id = entry.member_id
        elif entry.group_id:
            out.action.action_profile_group_id = entry.group_id
        else:
            if profile.max_group_size and len(entry.action_set) > profile.max_group_size:
                raise EntryError("action_set", f"{len(entry.action_set)} actions; action selector {pname} "
                                 f"takes at most {profile.max_group_size}")
            aset = out.action.action_profile_action_set
            for i, pa in enumerate(entry.action_set):
                allowed, scopes = _allowed(t, False)
                act = to_p4_action(pa.action, pa.params, index, allowed, f"table {entry.table}",
                                   f"action_set[{i}].", scopes)
                aset.action_profile_actions.add(action=act, weight=profile_weight(pa.weight, profile,
                                                                           f"action_set[{i}].weight"))
    if entry.HasField("meter_config"):
        meter = index.direct_meter(t.info)
        if meter is None:
            raise EntryError("meter_config", f"table {entry.table} has no direct meter")
        out.meter_config.CopyFrom(to_p4_meter_config(entry.meter_config, meter.spec, "meter_config."))
    if entry.HasField("counter_data"):
        counter = index.direct_counter(t.info)
        if counter is None:
            raise EntryError("counter_data", f"table {entry.table} has no direct counter")
        out.counter_data.CopyFrom(to_p4_counter_data(entry.counter_data, counter.spec,
                                                     f"direct counter {counter.preamble.name}",
                                                     "counter_data."))
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
