"""Revisions: immutable snapshots of what a Deployment installs (pipeline, digest, entities), one per
change of them, named ``<deployment>-<n>`` (Knative's Revision, Kubernetes' ControllerRevision).

Pure helpers: the content hash (equal contents, equal hash: a placement's revision is the one whose
hash its own content has), a new revision from a deployment, the history to prune.
"""
from __future__ import annotations

import hashlib

from kubep4.entities import ENTITY_FIELDS, copy_entities
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

DEPLOYMENT_LABEL = "kubep4.io/deployment"
CHANGE_CAUSE = "kubep4.io/change-cause"  # a deployment annotation, copied into its next revision
PAUSED = "kubep4.io/paused"              # "true": move no more replicas to the target revision
PROMOTE = "kubep4.io/promote"            # "<target revision>/<step>": a canary may pass that step
DEFAULT_HISTORY = 10


def content_hash(pipeline: str, digest: str, spec) -> str:
    """sha256 over the pipeline name, its digest and the entities of ``spec`` (a DeploymentSpec,
    PlacementSpec or RevisionSpec: the entity fields have the same names)."""
    h = hashlib.sha256()
    for part in (pipeline.encode(), digest.encode()):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    for name in ENTITY_FIELDS:
        items = getattr(spec, name)
        h.update(name.encode() + len(items).to_bytes(8, "big"))
        for item in items:
            b = item.SerializeToString(deterministic=True)
            h.update(len(b).to_bytes(8, "big"))
            h.update(b)
    return h.hexdigest()[:32]


def deployment_hash(d: kr.Deployment) -> str:
    return content_hash(d.spec.pipeline, d.status.pipeline_digest, d.spec)


def placement_hash(p: kr.Placement) -> str:
    return content_hash(p.spec.pipeline, p.spec.pipeline_digest, p.spec)


def revision_name(deployment: str, n: int) -> str:
    return f"{deployment}-{n}"


def new_revision(d: kr.Deployment, n: int, change_cause: str = "") -> kr.Revision:
    r = kr.Revision()
    r.metadata.name = revision_name(d.metadata.name, n)
    r.metadata.namespace = d.metadata.namespace
    r.metadata.labels[DEPLOYMENT_LABEL] = d.metadata.name
    s = r.spec
    s.deployment, s.revision, s.pipeline = d.metadata.name, n, d.spec.pipeline
    s.pipeline_digest, s.deployment_generation = d.status.pipeline_digest, d.metadata.generation
    copy_entities(d.spec, s)
    s.hash = deployment_hash(d)
    s.change_cause = change_cause or d.metadata.annotations.get(CHANGE_CAUSE, "")
    return r


def history_limit(d: kr.Deployment) -> int:
    return d.spec.revision_history_limit if d.spec.HasField("revision_history_limit") else DEFAULT_HISTORY


def to_prune(revisions: list[kr.Revision], limit: int, keep: set[str]) -> list[kr.Revision]:
    """The revisions beyond the newest ``limit``, oldest first, except those named in ``keep``
    (the current and the target revision)."""
    ordered = sorted(revisions, key=lambda r: r.spec.revision, reverse=True)
    kept = {r.metadata.name for r in ordered if r.metadata.name in keep}
    for r in ordered:
        if len(kept) >= limit:
            break
        kept.add(r.metadata.name)
    return sorted((r for r in ordered if r.metadata.name not in kept), key=lambda r: r.spec.revision)
