"""Kubernetes-style YAML manifests <-> KubeP4 objects.

    apiVersion: kubep4.io/v1alpha1
    kind: Pipeline | Deployment
    metadata: {name: ..., namespace: ..., labels: {...}}
    spec: {...}            # field names in camelCase or snake_case

Pipelines name their artifacts by file, relative to the manifest:
``spec.artifacts.p4infoFile`` (text or binary P4Info), ``spec.artifacts.deviceConfigFile``,
``spec.source.programFile``.

A bad manifest raises :class:`ManifestError` naming the file, the document (1-based, with its kind
and name once known) and the field: ``m.yaml, document 2 (Deployment basic): spec.replicas: expected
an integer, got a string``.  Unknown fields, values of the wrong type, binary or non-UTF-8 files,
YAML nested deeper than :data:`MAX_DEPTH`, documents expanding (through aliases) past
:data:`MAX_NODES` values, files over :data:`MAX_MANIFEST_BYTES` and manifests with no object at
all are refused before anything is sent.
"""
from __future__ import annotations

import base64
import os
import re
from typing import Any

import yaml
from google.protobuf import descriptor as pb
from google.protobuf import json_format
from google.protobuf.message import Message

from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import parse_p4info

API_VERSION = "kubep4.io/v1alpha1"
KINDS: dict[str, type[Message]] = {"Pipeline": kr.Pipeline, "Deployment": kr.Deployment, "Node": kr.Node,
                                   "Placement": kr.Placement}
MAX_MANIFEST_BYTES = 16 << 20   # the YAML itself; artifacts are separate files
MAX_DEPTH = 64                  # nesting of YAML collections (a Deployment needs about 8)
MAX_NODES = 1_000_000           # values of a document once its aliases are expanded
MAX_PROBLEMS = 10               # problems listed per document
TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")  # status is ignored, as kubectl apply does


class ManifestError(ValueError):
    """A manifest is malformed; ``field`` locates the (first) problem, ``problems`` lists them all
    as (field, description)."""

    def __init__(self, source: str, field: str, description: str,
                 more: list[tuple[str, str]] | None = None):
        super().__init__(f"{source}: {field}: {description}" if field else f"{source}: {description}")
        self.source = source
        self.field = field
        self.description = description
        self.problems = [(field, description), *(more or [])]


def _what(value: Any) -> str:
    """How a YAML value is named in messages."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", bytes: "binary data"}
    return names.get(type(value), f"a {type(value).__name__}")


# --------------------------------------------------------------------------- YAML text -> documents


def _yaml_problem(e: yaml.YAMLError, text: str) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None:
        where = f" at line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(e, yaml.reader.ReaderError):  # a character YAML does not allow
        where = f" at line {text.count(chr(10), 0, e.position) + 1}"
    else:
        where = ""
    problem = getattr(e, "problem", None) or (str(e).splitlines() or ["unreadable"])[0]
    if isinstance(e, yaml.reader.ReaderError):
        char = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "\0")
        problem = f"character U+{char:04X} is not allowed"
    return f"invalid YAML{where}: {problem}"


_OPEN = (yaml.BlockSequenceStartToken, yaml.BlockMappingStartToken, yaml.FlowSequenceStartToken,
         yaml.FlowMappingStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting past MAX_DEPTH before the (recursive) YAML composer sees it."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                line = token.start_mark.line + 1
                raise ManifestError(source, "", f"nested deeper than {MAX_DEPTH} levels (line {line})")
        elif isinstance(token, _CLOSE):
            depth -= 1


def _check_size(doc: Any, source: str) -> None:
    """Refuse a document that expands (YAML aliases) past MAX_NODES values; iterative."""
    count, stack = 0, [doc]
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ManifestError(source, "", f"more than {MAX_NODES} values once its aliases are expanded")
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _documents(path: str) -> list[Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise ManifestError(path, "", e.strerror or str(e)) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(path, "", f"larger than {MAX_MANIFEST_BYTES >> 20} MiB")
    if b"\0" in data:
        raise ManifestError(path, "", f"a binary file (NUL byte at offset {data.index(0)}), not YAML")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(path, "", f"not UTF-8 text (invalid byte at offset {e.start})") from None
    try:
        _check_depth(text, path)
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise ManifestError(path, "", _yaml_problem(e, text)) from None
    except RecursionError:  # a nesting _check_depth did not count (it counts collections only)
        raise ManifestError(path, "", "nested too deeply") from None
    return docs


# --------------------------------------------------------------------------- structure and types


_INT_RANGES = {
    pb.FieldDescriptor.CPPTYPE_INT32: (-(1 << 31), (1 << 31) - 1),
    pb.FieldDescriptor.CPPTYPE_INT64: (-(1 << 63), (1 << 63) - 1),
    pb.FieldDescriptor.CPPTYPE_UINT32: (0, (1 << 32) - 1),
    pb.FieldDescriptor.CPPTYPE_UINT64: (0, (1 << 64) - 1),
}
# proto3's JSON form writes 64-bit integers as decimal strings: those are read back too
_INT64 = (pb.FieldDescriptor.CPPTYPE_INT64, pb.FieldDescriptor.CPPTYPE_UINT64)
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_STRING_MESSAGES = {"google.protobuf.Timestamp": "a timestamp string (RFC 3339)",
                    "google.protobuf.Duration": "a duration string (e.g. 1.5s)"}


class _Checker:
    """Walks a YAML value against a message descriptor, collecting (path, problem) pairs."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def add(self, path: str, problem: str) -> None:
        self.problems.append((path, problem))

    def message(self, value: Any, desc: pb.Descriptor, path: str) -> None:
        if desc.full_name in _STRING_MESSAGES:
            if not isinstance(value, str):
                self.add(path, f"expected {_STRING_MESSAGES[desc.full_name]}, got {_what(value)}")
            return
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping, got {_what(value)}")
            return
        fields = {**{f.name: f for f in desc.fields}, **{f.json_name: f for f in desc.fields}}
        oneofs: dict[str, str] = {}
        for key, item in value.items():
            field_path = f"{path}.{key}" if path else str(key)
            field = fields.get(key) if isinstance(key, str) else None
            if field is None:
                known = ", ".join(sorted({f.json_name for f in desc.fields}))
                self.add(field_path, f"unknown field (known: {known})")
                continue
            group = field.containing_oneof
            if group is not None and item is not None:
                if group.name in oneofs:
                    self.add(field_path, f"{oneofs[group.name]} is already given: choose one of "
                                         + ", ".join(f.json_name for f in group.fields))
                oneofs[group.name] = key
            self.field(item, field, field_path)

    def field(self, value: Any, field: pb.FieldDescriptor, path: str) -> None:
        if value is None:
            return  # null leaves the field unset
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if not isinstance(value, dict):
                self.add(path, f"expected a mapping, got {_what(value)}")
                return
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for k, v in value.items():
                if key_field.type == pb.FieldDescriptor.TYPE_STRING and not isinstance(k, str):
                    self.add(f"{path}.{k}", f"keys are strings, got {_what(k)} (quote it)")
                self.single(v, value_field, f"{path}.{k}")
        elif field.is_repeated:
            if not isinstance(value, list):
                self.add(path, f"expected a list, got {_what(value)}")
                return
            for i, item in enumerate(value):
                self.single(item, field, f"{path}[{i}]")
        else:
            self.single(value, field, path)

    def single(self, value: Any, field: pb.FieldDescriptor, path: str) -> None:
        kind = field.type
        if kind == pb.FieldDescriptor.TYPE_MESSAGE:
            self.message(value, field.message_type, path)
        elif kind == pb.FieldDescriptor.TYPE_STRING:
            if not isinstance(value, str):
                self.add(path, f"expected a string, got {_what(value)} (quote it)")
        elif kind == pb.FieldDescriptor.TYPE_BYTES:
            if not isinstance(value, str):
                self.add(path, f"expected base64 text, got {_what(value)}")
        elif kind == pb.FieldDescriptor.TYPE_BOOL:
            if not isinstance(value, bool):
                self.add(path, f"expected true or false, got {_what(value)}")
        elif kind == pb.FieldDescriptor.TYPE_ENUM:
            names = [v.name for v in field.enum_type.values]
            if not (isinstance(value, str) and value in names):
                self.add(path, f"expected one of {', '.join(names)}, got {value!r}"[:300])
        elif field.cpp_type in _INT_RANGES:
            low, high = _INT_RANGES[field.cpp_type]
            if field.cpp_type in _INT64 and isinstance(value, str) and _DECIMAL.fullmatch(value):
                value = int(value)  # the JSON form of a 64-bit integer (what `-o yaml` prints)
            if isinstance(value, bool) or not isinstance(value, int):
                self.add(path, f"expected an integer, got {_what(value)}")
            elif not low <= value <= high:
                self.add(path, f"{value} is out of range ({low}..{high})")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):  # float, double
            self.add(path, f"expected a number, got {_what(value)}")


def _section(value: Any, desc: pb.Descriptor, name: str, source: str) -> None:
    checker = _Checker()
    checker.message(value, desc, name)
    if checker.problems:
        problems = checker.problems[:MAX_PROBLEMS]
        if len(checker.problems) > MAX_PROBLEMS:
            problems.append(("", f"and {len(checker.problems) - MAX_PROBLEMS} more problems"))
        (field, description), *more = problems
        raise ManifestError(source, field, description, more)


# --------------------------------------------------------------------------- files named by a Pipeline


def _mapping(spec: dict, key: str, source: str, path: str) -> dict | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError(source, path, f"expected a mapping, got {_what(value)}")
    copy = dict(value)
    spec[key] = copy
    return copy


def _read(base: str, rel: Any, source: str, field: str) -> bytes:
    if not isinstance(rel, str) or not rel:
        got = _what(rel) if rel != "" else "an empty string"
        raise ManifestError(source, field, f"expected a file name, got {got}")
    path = rel if os.path.isabs(rel) else os.path.join(base, rel)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ManifestError(source, field, f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:  # an embedded NUL byte
        raise ManifestError(source, field, f"not a usable file name: {e}") from None


def _resolve_files(kind: str, spec: dict, base: str, source: str) -> None:
    if kind != "Pipeline":
        return
    art = _mapping(spec, "artifacts", source, "spec.artifacts")
    if art is not None:
        for key, out in (("p4infoFile", "p4info"), ("p4info_file", "p4info"),
                         ("deviceConfigFile", "deviceConfig"), ("device_config_file", "deviceConfig")):
            if key in art:
                data = _read(base, art.pop(key), source, f"spec.artifacts.{key}")
                if out == "p4info":
                    try:
                        data = parse_p4info(data).SerializeToString()
                    except Exception as e:  # noqa: BLE001 - text_format, decode, depth errors: name the file
                        problem = (str(e).splitlines() or ["unreadable"])[0][:300]
                        raise ManifestError(source, f"spec.artifacts.{key}",
                                            f"not a P4Info: {problem}") from None
                art[out] = base64.b64encode(data).decode()
    src = _mapping(spec, "source", source, "spec.source")
    if src is not None:
        for key in ("programFile", "program_file"):
            if key in src:
                field = f"spec.source.{key}"
                data = _read(base, src.pop(key), source, field)
                try:
                    src["program"] = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ManifestError(source, field, f"not P4 source: not UTF-8 text (invalid byte at "
                                                       f"offset {e.start})") from None


# --------------------------------------------------------------------------- documents -> objects


def from_dict(doc: dict[str, Any], base_dir: str = ".", source: str = "<manifest>") -> Message:
    if not isinstance(doc, dict):
        raise ManifestError(source, "", f"a manifest document must be a mapping, got {_what(doc)}")
    api_version = doc.get("apiVersion")
    if api_version != API_VERSION:
        raise ManifestError(source, "apiVersion", f"expected {API_VERSION!r}, got {api_version!r}")
    kind = doc.get("kind")
    if kind not in ("Pipeline", "Deployment"):
        raise ManifestError(source, "kind", f"expected Pipeline or Deployment, got {kind!r}")
    metadata = doc.get("metadata")
    if metadata is None:
        metadata = {}
    if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
        source = f"{source} ({kind} {metadata['name'][:100]})"
    for key in doc:
        if key not in TOP_LEVEL:
            raise ManifestError(source, str(key), f"unknown field (known: {', '.join(TOP_LEVEL[:4])})")
    obj = KINDS[kind]()
    _section(metadata, obj.metadata.DESCRIPTOR, "metadata", source)
    spec = doc.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ManifestError(source, "spec", f"expected a mapping, got {_what(spec)}")
    spec = dict(spec)
    _resolve_files(kind, spec, base_dir, source)
    _section(spec, obj.spec.DESCRIPTOR, "spec", source)
    for name, value in (("metadata", metadata), ("spec", spec)):
        try:
            json_format.ParseDict(value, getattr(obj, name))
        except json_format.ParseError as e:  # what the walk does not check: base64, timestamp syntax
            detail = str(e).rsplit("field: ", 1)[-1].strip(". ")
            raise ManifestError(source, name, detail[:300]) from None
    return obj


def load(path: str) -> list[Message]:
    """All objects of a (multi-document) YAML file, in order; ManifestError when it has none."""
    docs = _documents(path)
    base = os.path.dirname(os.path.abspath(path))
    objs = []
    for i, doc in enumerate(docs):
        if doc is None:  # an empty document (a trailing ---, only comments)
            continue
        source = f"{path}, document {i + 1}"
        _check_size(doc, source)
        objs.append(from_dict(doc, base, source))
    if not objs:
        raise ManifestError(path, "", "no objects: the manifest is empty (expected a Pipeline or a "
                                      "Deployment document)")
    return objs


def to_dict(obj: Message, include_artifacts: bool = False) -> dict[str, Any]:
    kind = type(obj).DESCRIPTOR.name
    if not include_artifacts and isinstance(obj, kr.Pipeline) and obj.spec.HasField("artifacts"):
        copy = kr.Pipeline()
        copy.CopyFrom(obj)
        copy.spec.ClearField("artifacts")
        obj = copy
    body = json_format.MessageToDict(obj)
    return {"apiVersion": API_VERSION, "kind": kind, **body}


def dump_yaml(objs: list[Message]) -> str:
    return yaml.safe_dump_all([to_dict(o) for o in objs], sort_keys=False)
