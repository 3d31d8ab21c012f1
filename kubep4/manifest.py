"""Kubernetes-style YAML manifests <-> KubeP4 objects.

    apiVersion: kubep4.io/v1alpha1
    kind: Pipeline | Deployment
    metadata: {name: ..., namespace: ..., labels: {...}}
    spec: {...}            # field names in camelCase or snake_case

Pipelines name their artifacts by file, relative to the manifest:
``spec.artifacts.p4infoFile`` (text or binary P4Info), ``spec.artifacts.deviceConfigFile``,
``spec.source.programFile``.
"""
from __future__ import annotations

import os
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import parse_p4info

API_VERSION = "kubep4.io/v1alpha1"
KINDS: dict[str, type[Message]] = {"Pipeline": kr.Pipeline, "Deployment": kr.Deployment, "Node": kr.Node,
                                   "Placement": kr.Placement}


class ManifestError(ValueError):
    """A manifest is malformed; ``field`` locates the problem."""

    def __init__(self, source: str, field: str, description: str):
        super().__init__(f"{source}: {field}: {description}")
        self.field = field


def _read(base: str, rel: str, source: str, field: str) -> bytes:
    path = rel if os.path.isabs(rel) else os.path.join(base, rel)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ManifestError(source, field, f"cannot read {path}: {e.strerror}") from None


def _resolve_files(kind: str, spec: dict, base: str, source: str) -> None:
    if kind != "Pipeline" or not isinstance(spec, dict):
        return
    art = spec.get("artifacts")
    if isinstance(art, dict):
        for key, out in (("p4infoFile", "p4info"), ("p4info_file", "p4info"),
                         ("deviceConfigFile", "deviceConfig"), ("device_config_file", "deviceConfig")):
            if key in art:
                data = _read(base, art.pop(key), source, f"spec.artifacts.{key}")
                if out == "p4info":
                    try:
                        data = parse_p4info(data).SerializeToString()
                    except Exception as e:  # text_format / decode errors: tell which file
                        raise ManifestError(source, f"spec.artifacts.{key}", f"not a P4Info: {e}") from None
                import base64
                art[out] = base64.b64encode(data).decode()
    src = spec.get("source")
    if isinstance(src, dict):
        for key in ("programFile", "program_file"):
            if key in src:
                src["program"] = _read(base, src.pop(key), source, f"spec.source.{key}").decode()


def from_dict(doc: dict[str, Any], base_dir: str = ".", source: str = "<manifest>") -> Message:
    if not isinstance(doc, dict):
        raise ManifestError(source, "", "a manifest document must be a mapping")
    api_version = doc.get("apiVersion")
    if api_version != API_VERSION:
        raise ManifestError(source, "apiVersion", f"expected {API_VERSION!r}, got {api_version!r}")
    kind = doc.get("kind")
    if kind not in ("Pipeline", "Deployment"):
        raise ManifestError(source, "kind", f"expected Pipeline or Deployment, got {kind!r}")
    spec = dict(doc.get("spec") or {})
    if "artifacts" in spec:
        spec["artifacts"] = dict(spec["artifacts"])
    if "source" in spec:
        spec["source"] = dict(spec["source"])
    _resolve_files(kind, spec, base_dir, source)
    body = {"metadata": doc.get("metadata") or {}, "spec": spec}
    try:
        return json_format.ParseDict(body, KINDS[kind]())
    except json_format.ParseError as e:
        raise ManifestError(source, "spec", str(e)) from None


def load(path: str) -> list[Message]:
    """All objects of a (multi-document) YAML file, in order."""
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except OSError as e:
        raise ManifestError(path, "", e.strerror) from None
    except yaml.YAMLError as e:
        raise ManifestError(path, "", f"invalid YAML: {e}") from None
    base = os.path.dirname(os.path.abspath(path))
    return [from_dict(d, base, f"{path}[{i}]") for i, d in enumerate(docs)]


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
