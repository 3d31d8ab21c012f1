"""Hypothesis strategies over manifests: YAML or JSON text (and bytes) as a user could write it.

Three sources: documents built from the Pipeline and Deployment descriptors (field names in camelCase
or snake_case, values of the right type or of any other, unknown fields, file references), dumped as
YAML or JSON; the example manifest with bytes inserted, deleted or replaced; and arbitrary text or
bytes.
"""
from __future__ import annotations

import json
from typing import Any

import yaml
from google.protobuf import descriptor as pb
from hypothesis import strategies as st

from kubep4 import manifest
from tests.conftest import EXAMPLE

from .strategies import EDGE_STRINGS, PLAUSIBLE, integers

EXAMPLE_TEXT = EXAMPLE.read_text()
FILES = ["basic.p4info.txtpb", "basic.json", "basic.p4", "deployment.yaml", "missing.txt", "", "/", "/dev/null",
         "../../etc/passwd", "a\0b", "x" * 5000]
MAX_DEPTH = 7

_short_text = st.one_of(st.sampled_from([s for s in EDGE_STRINGS if len(s) < 300]),
                        st.text(st.characters(exclude_categories=["Cs"]), max_size=16))
# any YAML value: what a careless user puts where something else belongs
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), integers(-(1 << 70), 1 << 70), st.floats(), _short_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(_short_text, inner, max_size=3)),
    max_leaves=8)


def _scalar(field: pb.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == pb.FieldDescriptor.TYPE_STRING:
        plausible = PLAUSIBLE.get(field.name)
        return st.one_of(st.sampled_from(plausible), _short_text) if plausible else _short_text
    if t == pb.FieldDescriptor.TYPE_BYTES:
        return st.sampled_from(["", "AAAA", "not base64!", "=", "8J+YgA=="])
    if t == pb.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == pb.FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.name for v in field.enum_type.values])
    if field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
        return st.sampled_from(["2024-01-01T00:00:00Z", "yesterday", "9999-99-99T00:00:00Z"])
    if field.cpp_type in (pb.FieldDescriptor.CPPTYPE_FLOAT, pb.FieldDescriptor.CPPTYPE_DOUBLE):
        return st.floats()
    return integers(-(1 << 64), 1 << 64)


def _value(field: pb.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.full_name != "google.protobuf.Timestamp":
        return documents_of(field.message_type, depth + 1)
    return _scalar(field)


def _field(field: pb.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        right = st.dictionaries(_short_text, _value(field.message_type.fields_by_name["value"], depth), max_size=3)
    elif field.is_repeated:
        right = st.lists(_value(field, depth), max_size=3)
    else:
        right = _value(field, depth)
    return st.one_of(right, right, right, json_values)  # mostly the right type


def documents_of(desc: pb.Descriptor, depth: int = 0) -> st.SearchStrategy[dict]:
    """A mapping for a message: some of its fields (by json or proto name), now and then an unknown one."""
    if depth >= MAX_DEPTH:
        return st.just({})
    optional: dict[str, st.SearchStrategy] = {}
    for f in desc.fields:
        key = f.json_name if f.index % 2 else f.name  # both spellings are accepted
        optional[key] = st.deferred(lambda f=f: _field(f, depth))
    if desc.name == "Artifacts":
        optional["p4infoFile"] = st.sampled_from(FILES)
        optional["deviceConfigFile"] = st.sampled_from(FILES)
    if desc.name == "P4Source":
        optional["programFile"] = st.one_of(st.sampled_from(FILES), json_values)
    return st.fixed_dictionaries({}, optional=optional).flatmap(
        lambda d: st.one_of(st.just(d), st.dictionaries(_short_text, json_values, max_size=1).map(
            lambda extra: {**d, **extra})))


def _document() -> st.SearchStrategy[dict]:
    def doc(kind: str, metadata: dict, spec: Any, extra: dict) -> dict:
        return {"apiVersion": manifest.API_VERSION, "kind": kind, "metadata": metadata, "spec": spec, **extra}
    kinds = st.sampled_from(["Pipeline", "Deployment"])
    return kinds.flatmap(lambda kind: st.builds(
        doc, st.just(kind),
        st.one_of(documents_of(manifest.KINDS[kind].DESCRIPTOR.fields_by_name["metadata"].message_type),
                  st.just({"name": "basic"}), json_values),
        st.one_of(documents_of(manifest.KINDS[kind].DESCRIPTOR.fields_by_name["spec"].message_type),
                  json_values),
        st.one_of(st.just({}), st.fixed_dictionaries({}, optional={
            "apiVersion": st.one_of(st.sampled_from(["v1", "kubep4.io/v1", ""]), json_values),
            "kind": st.one_of(st.sampled_from(["Pod", "Node", "Placement", "pipeline"]), json_values),
            "status": json_values, "extra": json_values}))))


def _dump(docs: list, as_json: bool) -> str:
    if as_json:
        return "\n---\n".join(json.dumps(d, allow_nan=True) for d in docs)
    return yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False)


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    for where, cut, insert in edits:
        i = where % (len(text) + 1)
        text = text[:i] + insert + text[i + cut:]
    return text


_insertions = st.one_of(st.sampled_from(["\t", ":", "- ", "{", "}", "[", "]", "&a ", "*a", "!!binary ", "---\n",
                                         "\n  ", "'", '"', "#", "%YAML 1.1\n", "? ", "|", ">", "\0", "\x07", "\ufeff",
                                         "[" * 100, "{a: " * 70]),
                        st.text(max_size=8))

texts: st.SearchStrategy[str | bytes] = st.one_of(
    st.lists(_document(), min_size=1, max_size=3).flatmap(lambda docs: st.builds(_dump, st.just(docs),
                                                                                 st.booleans())),
    st.lists(st.tuples(st.integers(0, len(EXAMPLE_TEXT)), st.integers(0, 20), _insertions), min_size=1,
             max_size=4).map(lambda edits: _mutate(EXAMPLE_TEXT, edits)),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.just(EXAMPLE_TEXT).map(lambda t: t.encode()).flatmap(
        lambda b: st.integers(0, len(b)).map(lambda i: b[:i] + b"\xff\xfe" + b[i:])),
)


_EXAMPLE_DOCS = list(yaml.safe_load_all(EXAMPLE_TEXT))


def _edited(name: str, namespace: Any, replicas: Any, value: Any, prefix: Any, label: Any, pipeline_name: str) -> str:
    pipeline, deployment = json.loads(json.dumps(_EXAMPLE_DOCS))  # a deep copy
    pipeline["metadata"]["name"] = pipeline_name
    deployment["metadata"].update(name=name, labels={"app": label})
    if namespace is not None:
        pipeline["metadata"]["namespace"] = deployment["metadata"]["namespace"] = namespace
    deployment["spec"].update(replicas=replicas, pipeline=pipeline_name)
    deployment["spec"]["tableEntries"][0]["match"][0]["lpm"] = {"value": value, "prefixLen": prefix}
    return yaml.safe_dump_all([pipeline, deployment], allow_unicode=True, sort_keys=False)


# the example manifest with values changed: it loads, so `apply` reaches the apiserver and admission
edited_examples: st.SearchStrategy[str] = st.builds(
    _edited,
    st.one_of(st.sampled_from(PLAUSIBLE["name"]), _short_text),
    st.one_of(st.none(), st.sampled_from(PLAUSIBLE["namespace"]), _short_text),
    integers(-(1 << 31), (1 << 31) - 1),
    st.one_of(st.sampled_from(PLAUSIBLE["value"]), _short_text),
    integers(-(1 << 31), (1 << 31) - 1),
    st.one_of(st.sampled_from(["basic-forwarding", ""]), _short_text),
    st.sampled_from(["basic", "other", "Basic", "b" * 70]),
)
