"""Hypothesis strategies derived from protobuf descriptors, and the edge values they mix in.

``messages(descriptor)`` builds any message generically: every field may be set or left out, scalars
take edge values (0, -1, the type's extremes, huge ints, long and non-ASCII strings, NUL and '/')
besides random ones, repeated and map fields hold a few items, nested messages recurse to a bounded
depth. Fields named like the API's identifiers (name, namespace, arch, table, value, ...) also draw
from plausible values, so that generated requests get past the first check often enough to reach
admission, the store and etcd. ``patched(base)`` merges a generated message into a valid one.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import descriptor as pb
from google.protobuf import message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st

from kubep4.gen.p4.config.v1 import p4info_pb2 as p4i
from tests.conftest import example_objects

MAX_DEPTH = 6      # nesting of generated messages
MAX_ITEMS = 3      # items of a repeated or map field
HUGE = 2 << 20     # characters of the longest strings (past etcd's 1.5 MiB request limit)

_PIPELINE, _DEPLOYMENT = example_objects()


def _entry_names() -> dict[str, list[str]]:
    tables, actions, fields, params = set(), set(), set(), set()
    for e in _DEPLOYMENT.spec.table_entries:
        tables.add(e.table)
        actions.add(e.action)
        fields.update(m.field for m in e.match)
        params.update(p.name for p in e.params)
    return {"table": sorted(tables), "action": sorted(actions), "field": sorted(fields),
            "params.name": sorted(params)}


_NAMES = _entry_names()

# edge strings every string field may take
EDGE_STRINGS = [
    "", " ", "a", "-", "/", "a/b", "..", "\0", "a\0b", "default", "basic",
    "a" * 63, "a" * 64, "a" * 253, "a" * 254, "x" * 10_000, "x" * 70_000, "x" * HUGE,
    "٣", " 1 ", "::1", "0x", "-1", "1e9", "18446744073709551616", "Ünïcödé-名前", "\u202e\u0301", "😀" * 50,
    "{{}}", "%s%n", "'; DROP", "\n\r\t",
]
# plausible values per field name (or "message.field"), so requests reach deeper checks
PLAUSIBLE: dict[str, list[str]] = {
    "name": ["basic", "p", "d", "other", "node-1"] + _NAMES["params.name"],
    "namespace": ["default", "team-a", "kube-system"],
    "pipeline": ["basic", "missing"],
    "arch": ["v1model", "psa", "tna"],
    "target": ["bmv2", "dpdk", "tofino"],
    "backend": ["p4c", "t4p4s"],
    "table": _NAMES["table"] + ["BasicIngress.nope"],
    "action": _NAMES["action"] + ["NoAction"],
    "field": _NAMES["field"],
    "value": ["10.0.0.1", "10.0.1.0", "1", "0", "0x0a", "255", "256", "00:00:00:00:01:01", "999999999999999999999",
              "1.2.3", "-5"],
    "mask": ["255.255.255.0", "0xff", "0"],
    "low": ["0", "1"], "high": ["10", "0"],
    "type": ["Recreate", "RollingUpdate", "Ready", "Admitted"],
    "operator": ["In", "NotIn", "Exists", "DoesNotExist", "Like"],
    "key": ["app", "kubep4.io/role", "-bad-"],
    "program": ["control c() {}", "#include <core.p4>\n"],
    "digest": ["sha256:" + "0" * 64, "sha256:", "md5:1"],
}
_P4INFO = _PIPELINE.spec.artifacts.p4info
_DEVICE_CONFIG = _PIPELINE.spec.artifacts.device_config
EDGE_BYTES = [b"", b"\0", b"\xff" * 16, _P4INFO, _P4INFO[: len(_P4INFO) // 2], _P4INFO + b"\x08",
              b"tables { preamble { id: 1 } }", b"{" * 500, _DEVICE_CONFIG, b"\0" * (HUGE // 2)]
PLAUSIBLE_BYTES = {"p4info": [_P4INFO], "device_config": [_DEVICE_CONFIG, b"{}"]}

_INT_BOUNDS = {
    pb.FieldDescriptor.CPPTYPE_INT32: (-(1 << 31), (1 << 31) - 1),
    pb.FieldDescriptor.CPPTYPE_INT64: (-(1 << 63), (1 << 63) - 1),
    pb.FieldDescriptor.CPPTYPE_UINT32: (0, (1 << 32) - 1),
    pb.FieldDescriptor.CPPTYPE_UINT64: (0, (1 << 64) - 1),
}

# text protobuf accepts: no lone surrogates
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted({v for v in (0, 1, -1, 2, 7, 63, 64, 255, 2048, 2049, (1 << 31) - 1, -(1 << 31),
                                (1 << 53) + 1, (1 << 63) - 2, (1 << 63) - 1, -(1 << 63), (1 << 64) - 1,
                                low, high, low + 1, high - 1) if low <= v <= high})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _strings(field: pb.FieldDescriptor) -> st.SearchStrategy[str]:
    plausible = PLAUSIBLE.get(f"{field.containing_type.name}.{field.name}") or PLAUSIBLE.get(field.name)
    choices = [st.sampled_from(EDGE_STRINGS), _text]
    if plausible:
        choices.insert(0, st.sampled_from(plausible))
    return st.one_of(*choices)


def p4infos() -> st.SearchStrategy[bytes]:
    """Serialized P4Infos: generated from the P4Info descriptor, or the example's with generated
    tables, actions, widths and ids merged in (what admission parses and indexes)."""
    example = p4i.P4Info.FromString(_P4INFO)
    return st.one_of(patched(example), messages(p4i.P4Info.DESCRIPTOR)).map(lambda m: m.SerializeToString())


def _bytes(field: pb.FieldDescriptor) -> st.SearchStrategy[bytes]:
    choices = [st.sampled_from(EDGE_BYTES), st.binary(max_size=64)]
    if field.name in PLAUSIBLE_BYTES:
        choices.insert(0, st.sampled_from(PLAUSIBLE_BYTES[field.name]))
    if field.name == "p4info":
        choices.insert(1, st.deferred(p4infos))
    return st.one_of(*choices)


def scalar(field: pb.FieldDescriptor) -> st.SearchStrategy[Any]:
    t, cpp = field.type, field.cpp_type
    if t == pb.FieldDescriptor.TYPE_STRING:
        return _strings(field)
    if t == pb.FieldDescriptor.TYPE_BYTES:
        return _bytes(field)
    if t == pb.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == pb.FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), integers(-(1 << 31), (1 << 31) - 1))  # open enums
    if cpp in _INT_BOUNDS:
        return integers(*_INT_BOUNDS[cpp])
    if cpp == pb.FieldDescriptor.CPPTYPE_FLOAT:
        return st.floats(width=32)
    return st.floats()


def _value(field: pb.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == pb.FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return scalar(field)


def _field(field: pb.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        k = field.message_type.fields_by_name["key"]
        v = field.message_type.fields_by_name["value"]
        return st.dictionaries(_value(k, depth), _value(v, depth), max_size=MAX_ITEMS)
    if field.is_repeated:
        return st.lists(_value(field, depth), max_size=MAX_ITEMS)
    return _value(field, depth)


def _build(desc: pb.Descriptor, values: dict[str, Any]) -> Message:
    msg = message_factory.GetMessageClass(desc)()
    for name, value in values.items():
        field = desc.fields_by_name[name]
        target = getattr(msg, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            is_message = field.message_type.fields_by_name["value"].message_type is not None
            for k, v in value.items():
                if is_message:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif field.is_repeated:
            if field.message_type is not None:
                for v in value:
                    target.add().CopyFrom(v)
            else:
                target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)  # the last member of a oneof set wins, as on the wire
    return msg


_cache: dict[tuple[str, int], st.SearchStrategy[Message]] = {}


def messages(desc: pb.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of ``desc``: each field set or not, with edge and random values."""
    key = (desc.full_name, depth)
    if key not in _cache:
        if depth >= MAX_DEPTH:
            _cache[key] = st.just(message_factory.GetMessageClass(desc)())
        else:
            optional = {f.name: st.deferred(lambda f=f: _field(f, depth)) for f in desc.fields}
            _cache[key] = st.fixed_dictionaries({}, optional=optional).map(lambda kw: _build(desc, kw))
    return _cache[key]


def merged(base: Message, patch: Message) -> Message:
    """``base`` with ``patch`` merged in (set scalars replace, repeated fields append)."""
    out = type(base)()
    out.CopyFrom(base)
    out.MergeFrom(patch)
    return out


def patched(base: Message) -> st.SearchStrategy[Message]:
    """A valid message with generated fields merged into it: close to what admission accepts."""
    return messages(base.DESCRIPTOR).map(lambda p: merged(base, p))


def _leaf_paths(desc: pb.Descriptor, prefix: tuple = (), depth: int = 0):
    for f in desc.fields:
        if f.is_repeated:  # repeated and map fields: patched() covers them
            continue
        if f.message_type is None:
            yield (*prefix, f)
        elif depth < 3:
            yield from _leaf_paths(f.message_type, (*prefix, f), depth + 1)


def changes(desc: pb.Descriptor) -> st.SearchStrategy[tuple[tuple[pb.FieldDescriptor, ...], Any]]:
    """(path, value): one singular scalar field of ``desc`` (nested up to 3 deep) and a new value."""
    paths = list(_leaf_paths(desc))
    return st.sampled_from(paths).flatmap(lambda path: st.tuples(st.just(path), scalar(path[-1])))


def changed(base: Message, change: tuple[tuple[pb.FieldDescriptor, ...], Any]) -> Message:
    """A copy of ``base`` with one field changed: the nearest to valid a generated message gets."""
    path, value = change
    out = type(base)()
    out.CopyFrom(base)
    target = out
    for f in path[:-1]:
        target = getattr(target, f.name)
    setattr(target, path[-1].name, value)
    return out


def one_field_changed(base: Message) -> st.SearchStrategy[Message]:
    return changes(base.DESCRIPTOR).map(lambda c: changed(base, c))


def example_pipeline() -> Message:
    out = type(_PIPELINE)()
    out.CopyFrom(_PIPELINE)
    return out


def example_deployment() -> Message:
    out = type(_DEPLOYMENT)()
    out.CopyFrom(_DEPLOYMENT)
    return out
