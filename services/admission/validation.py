"""Validation and defaulting of KubeP4 objects: pure functions, every violation with its field path."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from google.protobuf.text_format import ParseError

from kubep4 import labels
from kubep4.compilers.backends import option_problem
from kubep4.entities import ENTITY_FIELDS, entity_count
from kubep4.errors import Violation, quoted, truncate
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import (
    MAX_BITWIDTH,
    MAX_TEXT_DEPTH,
    P4InfoIndex,
    parse_p4info,
)
from services.admission.entities import entity_violations
from services.admission.ids import allocate_ids

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
KNOWN_TARGETS = frozenset({"bmv2", "dpdk", "tofino", "t4p4s", "ebpf", "ubpf", "netfpga"})
KNOWN_ARCHS = frozenset({"v1model", "psa", "pna", "tna", "t2na", "ebpf_model", "ubpf", "sume"})
KNOWN_BACKENDS = frozenset({"p4c", "t4p4s", "p4llvm"})
STRATEGIES = frozenset({"Recreate", "RollingUpdate", "Canary"})
MAX_WAIT_SECONDS = 7 * 86400     # a canary step's wait_ready_seconds, progress_deadline_seconds
MAX_HISTORY = 1000               # revision_history_limit
PIPELINE_UPGRADES = frozenset({"", "Reconcile", "Recreate"})  # how each device changes pipeline


@dataclass(frozen=True)
class Policy:
    """Admission limits; the service fills it from flags."""
    namespaces: frozenset[str] = frozenset({"default"})
    max_replicas: int = 64
    max_device_config_bytes: int = 64 << 20
    default_target: str = "bmv2"
    max_object_bytes: int = 1 << 20  # a stored object is one etcd value (etcd takes 1.5 MiB requests)
    # bounds on admission's own work: a value costs time and memory in proportion to its width
    max_bitwidth: int = MAX_BITWIDTH
    max_p4info_bytes: int = 4 << 20
    max_p4info_depth: int = MAX_TEXT_DEPTH
    max_violations: int = 100        # reported per review; the last one counts the rest
    max_review_seconds: float = 5.0  # converting entities stops there (the apiserver waits 10 s)
    # per-namespace quotas (0: no limit), checked against the usage the apiserver counted
    quota_name: str = "kubep4-quota"
    # (off by default, as Kubernetes has no ResourceQuota until one is created)
    max_pipelines: int = 0
    max_deployments: int = 0
    max_artifact_bytes: int = 0
    max_table_entries: int = 0          # per deployment, counting every entity (entity_count)


KEY_CHARS = 64  # of a map key echoed in a field path


def _meta(md: kr.ObjectMeta, policy: Policy, out: list[Violation]) -> None:
    if not md.namespace:
        md.namespace = "default"
    if not md.name:
        out.append(Violation("metadata.name", "required"))
    elif len(md.name) > 63 or not DNS1123_LABEL.match(md.name):
        out.append(Violation("metadata.name", f"{quoted(md.name)} is not a DNS-1123 label (lower-case "
                             "letters, digits and '-', starting and ending with a letter or digit, at most 63)"))
    if md.namespace not in policy.namespaces:
        out.append(Violation("metadata.namespace", f"unknown namespace {quoted(md.namespace)} "
                             f"(known: {', '.join(sorted(policy.namespaces))})"))
    for k, v in md.labels.items():
        if problem := labels.key_error(k) or labels.value_error(v):
            out.append(Violation(f"metadata.labels[{truncate(k, KEY_CHARS)}]", problem))


@functools.lru_cache(maxsize=8)
def _index(data: bytes, max_depth: int, max_bitwidth: int
           ) -> tuple[P4InfoIndex | None, tuple[tuple[str, str], ...]]:
    """The parsed P4Info and its problems as (path relative to the P4Info, description); no index
    when it does not parse (its one problem has the path ""). Cached: a deployment's review parses
    its pipeline's P4Info again."""
    try:
        info = parse_p4info(data, max_depth)
    except (DecodeError, ParseError, UnicodeDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else truncate(str(e), 200)
        return None, (("", f"does not parse as a P4Info: {why}"),)
    index = P4InfoIndex(info)
    problems = []
    if not info.tables and not info.actions:
        problems.append(("", "P4Info declares no tables and no actions"))
    return index, tuple(problems + index.problems() + index.bound_problems(max_bitwidth))


def _p4info(data: bytes, path: str, policy: Policy, out: list[Violation]) -> P4InfoIndex | None:
    if not data:
        out.append(Violation(path, "required: the P4Info of the program"))
        return None
    if len(data) > policy.max_p4info_bytes:
        out.append(Violation(path, f"{len(data)} bytes exceeds the limit of {policy.max_p4info_bytes}"))
        return None
    index, problems = _index(data, policy.max_p4info_depth, policy.max_bitwidth)
    for field, problem in problems:
        out.append(Violation(f"{path}.{field}" if field else path, problem))
    return index


def review_pipeline(p: kr.Pipeline, policy: Policy) -> tuple[kr.Pipeline, list[Violation]]:
    """Validate and default a Pipeline. Returns the defaulted copy and all violations."""
    p = _copy(p)
    out: list[Violation] = []
    _meta(p.metadata, policy, out)
    which = p.spec.WhichOneof("program")
    if which is None:
        out.append(Violation("spec", "one of spec.source (P4 program) or spec.artifacts "
                             "(P4Info + device config) is required"))
    elif which == "artifacts":
        a = p.spec.artifacts
        index = _p4info(a.p4info, "spec.artifacts.p4info", policy, out)
        if not a.device_config:
            out.append(Violation("spec.artifacts.device_config", "required and must not be empty"))
        elif len(a.device_config) > policy.max_device_config_bytes:
            out.append(Violation("spec.artifacts.device_config",
                                 f"{len(a.device_config)} bytes exceeds the limit of "
                                 f"{policy.max_device_config_bytes}"))
        declared = index.info.pkg_info.arch if index is not None else ""
        if declared and not p.spec.arch:
            p.spec.arch = declared
        elif declared and p.spec.arch != declared:
            out.append(Violation("spec.arch", f"{quoted(p.spec.arch)} differs from the P4Info's "
                                 f"pkg_info.arch {quoted(declared)}"))
    else:
        s = p.spec.source
        if not s.program.strip():
            out.append(Violation("spec.source.program", "required: the P4 source text"))
        if not s.backend:
            s.backend = "p4c"
        if s.backend not in KNOWN_BACKENDS:
            out.append(Violation("spec.source.backend",
                                 f"unknown backend {quoted(s.backend)} (known: {', '.join(sorted(KNOWN_BACKENDS))})"))
        for i, opt in enumerate(s.options):
            if problem := option_problem(s.backend, opt):  # per backend (kubep4.compilers)
                out.append(Violation(f"spec.source.options[{i}]", problem))
        p.spec.arch = p.spec.arch or s.arch
        p.spec.target = p.spec.target or s.target
    if not p.spec.target:
        p.spec.target = policy.default_target
    if not p.spec.arch:
        out.append(Violation("spec.arch", "required (or give it in the P4Info pkg_info / source)"))
    elif p.spec.arch not in KNOWN_ARCHS:
        out.append(Violation("spec.arch", f"unknown arch {quoted(p.spec.arch)} (known: {', '.join(sorted(KNOWN_ARCHS))})"))
    if p.spec.target not in KNOWN_TARGETS:
        out.append(Violation("spec.target",
                             f"unknown target {quoted(p.spec.target)} (known: {', '.join(sorted(KNOWN_TARGETS))})"))
    return p, out


def _selector(sel: kr.LabelSelector, out: list[Violation]) -> None:
    out.extend(Violation(f"spec.selector.{path}", problem) for path, problem in labels.violations(sel))


def review_deployment(d: kr.Deployment, pipeline: kr.Pipeline | None, policy: Policy,
                      old: kr.Deployment | None = None) -> tuple[kr.Deployment, list[Violation]]:
    """Validate and default a Deployment against the pipeline it references (p4info inlined);
    ``old``: the stored deployment on an update (named members and groups keep their ids)."""
    d = _copy(d)
    out: list[Violation] = []
    _meta(d.metadata, policy, out)
    s = d.spec
    if s.replicas == 0:
        s.replicas = 1
    if not 1 <= s.replicas <= policy.max_replicas:
        out.append(Violation("spec.replicas", f"must be between 1 and {policy.max_replicas}, got {s.replicas}"))
    if not s.strategy.type:
        s.strategy.type = "Recreate"
    if s.strategy.max_unavailable < 0:
        out.append(Violation("spec.strategy.max_unavailable", "must be 0 (meaning 1) or more"))
    if s.strategy.pipeline_upgrade not in PIPELINE_UPGRADES:
        out.append(Violation("spec.strategy.pipeline_upgrade", f"unknown pipeline upgrade "
                             f"{quoted(s.strategy.pipeline_upgrade)} (Reconcile, the default, or Recreate)"))
    if s.strategy.fallback not in ("", "Recreate"):
        out.append(Violation("spec.strategy.fallback", f"unknown fallback {quoted(s.strategy.fallback)} "
                             "(empty: fail when a device cannot change hitlessly, or Recreate)"))
    if s.strategy.type not in STRATEGIES:
        out.append(Violation("spec.strategy.type", f"unknown strategy {quoted(s.strategy.type)} "
                             f"(one of {', '.join(sorted(STRATEGIES))})"))
    _rollout(s, out)
    _selector(s.selector, out)
    index = None
    if not s.pipeline:
        out.append(Violation("spec.pipeline", "required: the name of a Pipeline in the same namespace"))
    elif pipeline is None:
        out.append(Violation("spec.pipeline",
                             f"pipeline {quoted(s.pipeline)} not found in namespace {quoted(d.metadata.namespace)}"))
    else:
        s.target = s.target or pipeline.spec.target
        s.arch = s.arch or pipeline.spec.arch
        if s.target != pipeline.spec.target:
            out.append(Violation("spec.target", f"{quoted(s.target)} differs from the pipeline's target "
                                 f"{quoted(pipeline.spec.target)}"))
        if s.arch != pipeline.spec.arch:
            out.append(Violation("spec.arch", f"{quoted(s.arch)} differs from the pipeline's arch {quoted(pipeline.spec.arch)}"))
        if pipeline.spec.artifacts.p4info:
            index = _pipeline_index(pipeline, policy, out)
        # a pipeline given as source has no P4Info until a node compiles it: its entities are
        # checked by the node agent after the compile, and a bad one fails the placement with its path
    out.extend(allocate_ids(s, old.spec if old is not None else None, index))
    if s.target and s.target not in KNOWN_TARGETS:
        out.append(Violation("spec.target", f"unknown target {quoted(s.target)}"))
    if s.arch and s.arch not in KNOWN_ARCHS:
        out.append(Violation("spec.arch", f"unknown arch {quoted(s.arch)}"))
    size = d.ByteSize()
    if size > policy.max_object_bytes:
        largest = max(ENTITY_FIELDS, key=lambda name: sum(e.ByteSize() for e in getattr(s, name)))
        out.append(Violation(f"spec.{largest}", f"the deployment is {size} bytes; at most "
                             f"{policy.max_object_bytes} (one etcd value): split the entities across deployments"))
    if index is not None:
        # each entity costs at most a few values of max_bitwidth bits; all share the review budget
        out.extend(entity_violations(s, index, policy.max_review_seconds))
    return d, out


def _pipeline_index(pipeline: kr.Pipeline, policy: Policy, out: list[Violation]) -> P4InfoIndex | None:
    """The referenced pipeline's P4Info, if it is within today's bounds (it may predate them)."""
    name, data = quoted(pipeline.metadata.name), pipeline.spec.artifacts.p4info
    if len(data) > policy.max_p4info_bytes:
        out.append(Violation("spec.pipeline", f"pipeline {name} has a P4Info of {len(data)} bytes; "
                             f"at most {policy.max_p4info_bytes}"))
        return None
    index, problems = _index(data, policy.max_p4info_depth, policy.max_bitwidth)
    if index is None:
        out.append(Violation("spec.pipeline", f"pipeline {name} has an unreadable P4Info"))
        return None
    if problems:
        field, problem = problems[0]
        out.append(Violation("spec.pipeline", f"pipeline {name} has a P4Info its entries cannot be checked "
                             f"against ({len(problems)} problem(s)): {field}: {problem}"))
        return None
    return index


def _surge(s: kr.DeploymentSpec, out: list[Violation]) -> None:
    """RollingUpdate's max_surge (docs/rollouts.md): 0 to spec.replicas; with max_unavailable, more
    than 0 in all, as Kubernetes asks (given as 0, max_unavailable 0 would allow nothing; unset,
    max_unavailable 0 means 1 as before)."""
    st = s.strategy
    if not st.HasField("max_surge"):
        return
    path = "spec.strategy.max_surge"
    if st.max_surge < 0:
        out.append(Violation(path, f"must be 0 or more, got {st.max_surge}"))
    elif st.max_surge > max(1, s.replicas):
        out.append(Violation(path, f"must be at most spec.replicas ({s.replicas}), got {st.max_surge}"))
    elif st.max_surge + max(0, st.max_unavailable) == 0:
        out.append(Violation(path, "may not be 0 when max_unavailable is 0: the rollout could move no replica"))
    if st.max_surge > 0 and st.type != "RollingUpdate":
        out.append(Violation(path, f"max_surge is for type RollingUpdate, not {quoted(st.type)}"))


def _rollout(s: kr.DeploymentSpec, out: list[Violation]) -> None:
    """The rollout fields (docs/rollouts.md): canary steps, the progress deadline, the history
    limit; defaults progress_deadline_seconds (600) and revision_history_limit (10)."""
    st = s.strategy
    if not s.HasField("revision_history_limit"):
        s.revision_history_limit = 10
    elif not 0 <= s.revision_history_limit <= MAX_HISTORY:
        out.append(Violation("spec.revision_history_limit", f"must be between 0 and {MAX_HISTORY}, "
                             f"got {s.revision_history_limit} (the current and target revisions are always kept)"))
    if st.progress_deadline_seconds == 0:
        st.progress_deadline_seconds = 600
    elif not 0 < st.progress_deadline_seconds <= MAX_WAIT_SECONDS:
        out.append(Violation("spec.strategy.progress_deadline_seconds",
                             f"must be between 1 and {MAX_WAIT_SECONDS}, got {st.progress_deadline_seconds}"))
    _surge(s, out)
    if st.type != "Canary":
        if st.steps:
            out.append(Violation("spec.strategy.steps", f"steps are for type Canary, not {quoted(st.type)}"))
        return
    if not st.steps:
        out.append(Violation("spec.strategy.steps", "required for type Canary: at least one step "
                             "(e.g. {replicas: 1, pause: true})"))
    last = 0
    for i, step in enumerate(st.steps):
        path = f"spec.strategy.steps[{i}]"
        found = len(out)
        if bool(step.replicas) == bool(step.percent):
            out.append(Violation(path, "exactly one of replicas or percent"))
            continue
        if step.replicas and not 1 <= step.replicas <= max(s.replicas, 1):
            out.append(Violation(f"{path}.replicas", f"must be between 1 and spec.replicas ({s.replicas}), "
                                 f"got {step.replicas}"))
        if step.percent and not 1 <= step.percent <= 100:
            out.append(Violation(f"{path}.percent", f"must be between 1 and 100, got {step.percent}"))
        if not 0 <= step.wait_ready_seconds <= MAX_WAIT_SECONDS:
            out.append(Violation(f"{path}.wait_ready_seconds",
                                 f"must be between 0 and {MAX_WAIT_SECONDS}, got {step.wait_ready_seconds}"))
        elif step.pause and step.wait_ready_seconds:
            out.append(Violation(path, "pause (wait for kubep4 rollout promote) or wait_ready_seconds, not both"))
        if len(out) > found:
            continue
        want = step.replicas if step.replicas else -(-max(s.replicas, 1) * step.percent // 100)
        if want < last:
            out.append(Violation(path, f"runs {want} replica(s) on the new revision, fewer than the step "
                                 f"before it ({last}): steps only grow"))
        last = max(last, want)


QUOTA_EXCEEDED = "QuotaExceeded"  # the reason of a quota violation (a FieldViolation's reason)


def namespace_quota_applies(obj: kr.Pipeline | kr.Deployment, creating: bool, policy: Policy) -> bool:
    """A limit on what the whole namespace holds decides this request (not only the object itself)."""
    if not creating:
        return False
    if isinstance(obj, kr.Pipeline):
        return policy.max_pipelines > 0 or policy.max_artifact_bytes > 0
    return policy.max_deployments > 0


def quota_violations(obj: kr.Pipeline | kr.Deployment, usage, creating: bool, policy: Policy
                     ) -> list[Violation]:
    """The namespace quotas ``obj`` would exceed, given the namespace's ``usage`` (a NamespaceUsage
    the apiserver counted): one violation in Kubernetes ResourceQuota words, or none."""
    if isinstance(obj, kr.Pipeline):
        a = obj.spec.artifacts
        checks = [("pipelines", int(creating), usage.pipelines, policy.max_pipelines, True),
                  ("artifacts.bytes", len(a.p4info) + len(a.device_config) if creating else 0,
                   usage.artifact_bytes, policy.max_artifact_bytes, True)]
    else:
        checks = [("deployments", int(creating), usage.deployments, policy.max_deployments, True),
                  # per deployment: what it would hold against the limit (used: what it holds now);
                  # every entity counts, as each is one P4Runtime update (the quota keeps its name)
                  ("deployment.table_entries", entity_count(obj.spec), usage.table_entries,
                   policy.max_table_entries, False)]
    over = [(name, req, used, limit) for name, req, used, limit, cumulative in checks
            if limit > 0 and req > 0 and (used + req if cumulative else req) > limit]
    if not over:
        return []
    field = "spec.table_entries" if over[0][0] == "deployment.table_entries" else "metadata.namespace"

    def joined(i: int) -> str:
        return ",".join(f"{o[0]}={o[i]}" for o in sorted(over))
    return [Violation(field, f"exceeded quota: {policy.quota_name}, requested: {joined(1)}, "
                             f"used: {joined(2)}, limited: {joined(3)}")]


def _copy(m):
    out = type(m)()
    out.CopyFrom(m)
    return out
