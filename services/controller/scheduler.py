"""Placement of deployment replicas onto P4 devices.

Pure and synchronous: no I/O, no clocks, no randomness. The controller builds a
list of :class:`DeviceState` from the Node objects and the existing Placements
(:func:`devices_from`), then schedules one :class:`Request` per unplaced replica
and commits each success so the next request sees the new state.

The device model
----------------
A device runs ONE P4 pipeline at a time. ``pipeline_slots`` is how many
placements (deployment replicas) it can hold, and co-located placements must all
use the same pipeline (same digest): a device running pipeline X cannot take a
replica of pipeline Y until it is empty again (``used == 0``; an empty device
has ``pipeline_digest == ''``). A device's labels are its Node's
``metadata.labels`` overlaid with the Device's own ``labels`` (device wins), so a
deployment selector may pick devices by node labels (``zone``, ``rack``) as well
as by device labels.

Two policies, same interface
----------------------------
Both classes offer ``schedule(request, devices, commit=False) -> Decision``,
``commit(decision)`` and ``release(device)``.

:class:`BuiltinScheduler` (the default) is P4-aware and sees *devices*.
  Filters, in order (a device is counted under the first one it fails):
  ``NodeNotReady``, ``TargetMismatch``, ``ArchMismatch`` (an empty request
  target/arch matches any), ``SelectorMismatch`` (Kubernetes label-selector
  semantics over the merged labels), ``Excluded`` (``request.exclude_devices``),
  ``NoFreeSlot``, ``PipelineConflict`` (the device runs another pipeline).
  Ranking, lexicographic: (1) devices on nodes not in ``request.avoid_nodes``
  (spread a deployment's replicas across nodes), (2) devices already running the
  same pipeline digest (no reinstall, keeps other devices free), (3) least loaded
  (``used / slots``), (4) ``(node, device)`` name order. The reported
  ``Decision.score`` is ``4*spread + 2*reuse + (1 - used/slots)`` in ``(0, 7]``,
  which orders candidates exactly like the lexicographic key.

:class:`KubernetesDefaultScheduler` models what you get by mapping each replica
  to a Pod and letting kube-scheduler's default profile place it, for
  comparison. It sees *nodes*: one Pod per replica requests 1 of the extended
  resource ``kubep4.io/pipeline-slots``; a node's allocatable is the sum of its
  devices' slots; its labels are the union of its devices' labels (the first
  device wins on a conflicting key, node labels are already part of every
  device's labels) plus ``kubep4.io/target-<target>: "true"`` and
  ``kubep4.io/arch-<arch>: "true"`` for every device (a Kubernetes label holds one
  value, hence one key per value). Filters: node Ready (the not-ready taint),
  node affinity built from target/arch/selector over those node labels,
  NodeResourcesFit. Score: NodeResourcesFit LeastAllocated on the slot resource
  (weight 1; i.e. ``scoringStrategy.resources`` lists the slot resource) plus
  PodTopologySpread with the system default hostname constraint (maxSkew 3,
  ScheduleAnyway; weight 2) over the deployment's replicas (each node in
  ``avoid_nodes`` counts as hosting one), normalised as kube-scheduler does;
  all feasible nodes are scored (``percentageOfNodesToScore: 100``); ties go
  to the first node name
  (kube-scheduler picks randomly among ties). The node agent then assigns the
  first device of that node (in spec order) whose target/arch/selector fit, that
  is not excluded and has a free slot, WITHOUT knowing about pipelines: if that
  device runs another pipeline the install fails -> ``failure='PipelineConflict'``.
  If no device of the chosen node fits (node labels are a union, slots are
  pooled), the placement fails with the reason of the device that got furthest
  through the device filters (e.g. ``TargetMismatch`` or ``NoFreeSlot``). A
  failed placement consumes nothing (``commit`` ignores it).

  Differences that matter: kube-scheduler cannot see pipelines (conflicts are
  discovered at install time), pools the slots of all devices of a node (a free
  slot on a tofino device makes the node "fit" a bmv2 replica), matches
  selectors and target/arch on the union of the node's device labels, and
  prefers the emptiest node rather than reusing an installed pipeline.

Speed
-----
Each policy keeps an index keyed by the identity of the ``devices`` list it was
last given (built on first use, or explicitly with ``prepare``) and maintained
by ``commit`` / ``release``. For each distinct (target, arch, selector) a
*plan* is computed once, with set operations over a label -> value -> items
index: the items failing the static filters are counted, and then either

* the selection is small (<= ``_SCAN_MAX`` items): it is scanned per decision;
* or a *maintained view* drives it: the view of its (target, arch) base or of
  one of its requirements, if that view has at most ``_SKIP_MAX`` extra items
  (skipped while searching, subtracted from the counts), else a view of its own.

A maintained view keeps counters per dynamic state (full, empty, running digest
X with a free slot; full nodes) and lazy-deletion heaps (empty devices by name;
devices running a digest by (load, name); nodes by (LeastAllocated score,
name)), so a decision pops a handful of entries, and the ``Decision`` counts
come from counters rather than a scan. Results (device, score, counts, message)
are identical to the reference full scan (``indexed=False``); the tests check
that on random clusters. If you change a ``DeviceState`` yourself (rather than
through ``commit``/``release``) or hand over the same list object with
different contents, call ``invalidate()``. A scheduler instance is not
thread-safe and should own its device list (two schedulers committing into the
same list would not see each other's changes).
"""
from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from kubep4.gen.kubep4.v1 import resources_pb2 as pb

__all__ = [
    "ARCH_LABEL_PREFIX",
    "ARCH_MISMATCH",
    "EXCLUDED",
    "NODE_NOT_READY",
    "NO_FREE_SLOT",
    "PIPELINE_CONFLICT",
    "POLICIES",
    "REASONS",
    "SELECTOR_MISMATCH",
    "SLOT_RESOURCE",
    "TARGET_LABEL_PREFIX",
    "TARGET_MISMATCH",
    "BuiltinScheduler",
    "Decision",
    "DeviceState",
    "KubernetesDefaultScheduler",
    "Request",
    "SelectorError",
    "devices_from",
    "format_selector",
    "make_scheduler",
    "matches",
    "parse_selector",
    "validate_selector",
]

# ----------------------------------------------------------------- reasons

NODE_NOT_READY = "NodeNotReady"
TARGET_MISMATCH = "TargetMismatch"
ARCH_MISMATCH = "ArchMismatch"
SELECTOR_MISMATCH = "SelectorMismatch"
EXCLUDED = "Excluded"
NO_FREE_SLOT = "NoFreeSlot"
PIPELINE_CONFLICT = "PipelineConflict"
#: Filter reasons in evaluation order (a device/node is counted under the first it fails).
REASONS = (NODE_NOT_READY, TARGET_MISMATCH, ARCH_MISMATCH, SELECTOR_MISMATCH,
           EXCLUDED, NO_FREE_SLOT, PIPELINE_CONFLICT)
_REASON_ORDER = {r: i for i, r in enumerate(REASONS)}

SLOT_RESOURCE = "kubep4.io/pipeline-slots"
TARGET_LABEL_PREFIX = "kubep4.io/target-"
ARCH_LABEL_PREFIX = "kubep4.io/arch-"

# kube-scheduler constants used by the Kubernetes model.
_MAX_NODE_SCORE = 100
_FIT_WEIGHT = 1          # NodeResourcesFit score weight in the default profile
_SPREAD_WEIGHT = 2       # PodTopologySpread score weight in the default profile
_HOSTNAME_MAX_SKEW = 3   # system default constraint for kubernetes.io/hostname


# ----------------------------------------------------------------- model

@dataclass(slots=True)
class DeviceState:
    """Scheduling view of one device: static description plus current usage."""

    node: str
    device: str
    target: str
    arch: str
    labels: dict[str, str]
    slots: int
    used: int = 0
    pipeline_digest: str = ""   # '' when the device is empty
    node_ready: bool = True

    @property
    def free(self) -> int:
        return self.slots - self.used

    @property
    def key(self) -> tuple[str, str]:
        return (self.node, self.device)

    @classmethod
    def from_nodes(cls, nodes: Iterable[pb.Node],
                   placements: Iterable[Any] = ()) -> list[DeviceState]:
        """Alias of :func:`devices_from`."""
        return devices_from(nodes, placements)


def devices_from(nodes: Iterable[pb.Node], placements: Iterable[Any] = ()) -> list[DeviceState]:
    """Build the device list from Node messages and the current placements.

    ``placements`` holds ``(node, device, pipeline_digest)`` tuples (``pb.Placement``
    messages are accepted too). Each adds one used slot; the device's digest is
    that of its first placement. Placements on unknown devices are ignored.
    Devices come out in node order, then in the node's spec order (the order the
    Kubernetes model's agent uses for first-fit). ``pipeline_slots`` 0 (unset)
    means 1. A node is ready iff ``status.phase == "Ready"``.
    """
    out: list[DeviceState] = []
    by_key: dict[tuple[str, str], DeviceState] = {}
    for node in nodes:
        name = node.metadata.name
        ready = node.status.phase == "Ready"
        node_labels = dict(node.metadata.labels)
        for dev in node.spec.devices:
            if (name, dev.name) in by_key:
                raise ValueError(f"node {name!r} lists device {dev.name!r} twice")
            labels = dict(node_labels)
            labels.update(dev.labels)
            st = DeviceState(node=name, device=dev.name, target=dev.target, arch=dev.arch,
                             labels=labels, slots=dev.pipeline_slots if dev.pipeline_slots > 0 else 1,
                             used=0, pipeline_digest="", node_ready=ready)
            by_key[(name, dev.name)] = st
            out.append(st)
    for p in placements:
        if isinstance(p, pb.Placement):
            p = (p.spec.node, p.spec.device, p.spec.pipeline_digest)
        node_name, dev_name, digest = p
        st = by_key.get((node_name, dev_name))
        if st is None:
            continue
        st.used += 1
        if not st.pipeline_digest:
            st.pipeline_digest = digest
    return out


@dataclass(frozen=True)
class Request:
    """One replica of one deployment to place."""

    namespace: str
    deployment: str
    replica: int
    target: str = ""                    # '' = any
    arch: str = ""                      # '' = any
    selector: pb.LabelSelector | None = field(default=None, hash=False)  # None/empty = all
    pipeline_digest: str = ""
    avoid_nodes: frozenset[str] = frozenset()                 # nodes hosting this deployment's replicas
    exclude_devices: frozenset[tuple[str, str]] = frozenset()  # (node, device) never to use

    @classmethod
    def for_deployment(cls, deployment: pb.Deployment, replica: int, *,
                       pipeline_digest: str | None = None,
                       avoid_nodes: Iterable[str] = (),
                       exclude_devices: Iterable[tuple[str, str]] = ()) -> Request:
        """Request for ``replica`` of ``deployment`` (digest defaults to ``status.pipeline_digest``)."""
        spec = deployment.spec
        selector = None
        if spec.HasField("selector"):
            selector = pb.LabelSelector()
            selector.CopyFrom(spec.selector)  # a snapshot: the request must not change with the message
        return cls(namespace=deployment.metadata.namespace or "default",
                   deployment=deployment.metadata.name, replica=replica,
                   target=spec.target, arch=spec.arch,
                   selector=selector,
                   pipeline_digest=(deployment.status.pipeline_digest if pipeline_digest is None
                                    else pipeline_digest),
                   avoid_nodes=frozenset(avoid_nodes), exclude_devices=frozenset(exclude_devices))


@dataclass
class Decision:
    """Outcome of one ``schedule`` call.

    ``device`` is the chosen device (None when unschedulable, or when the
    Kubernetes model picked a node where no device fits). ``scheduled`` is True
    only if the replica can actually run there; ``failure`` names the reason a
    chosen placement would fail at install (Kubernetes model only). Counts are
    in the policy's unit: devices for the builtin policy, nodes for the
    Kubernetes model. ``filtered`` maps filter reasons to non-zero counts.
    """

    device: DeviceState | None
    score: float
    candidates: int
    feasible: int
    filtered: dict[str, int]
    message: str = ""
    node: str = ""
    failure: str = ""
    request: Request | None = field(default=None, repr=False, compare=False)
    committed: bool = field(default=False, compare=False)

    @property
    def scheduled(self) -> bool:
        return self.device is not None and not self.failure


# ----------------------------------------------------------------- selectors

class SelectorError(ValueError):
    """An invalid label selector (string syntax or LabelSelector message)."""


_IN, _NOT_IN, _EXISTS, _DOES_NOT_EXIST = "In", "NotIn", "Exists", "DoesNotExist"
_OPERATORS = (_IN, _NOT_IN, _EXISTS, _DOES_NOT_EXIST)
_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# A compiled requirement: (key, operator, values); match_labels k=v becomes (k, "In", {v}).
_Requirement: TypeAlias = tuple[str, str, frozenset[str]]
_Compiled: TypeAlias = tuple[_Requirement, ...]


def _key_error(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return f"label key {key!r}: prefix part must be non-empty"
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        return (f"label key {key!r}: prefix part must be a DNS-1123 subdomain "
                "(lower-case alphanumerics, '-' and '.', at most 253 characters)")
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        return (f"label key {key!r}: name part must be 1-63 characters of alphanumerics, '-', '_' or '.', "
                "starting and ending with an alphanumeric")
    return None


def _value_error(value: str) -> str | None:
    if value and (len(value) > 63 or not _NAME_RE.match(value)):
        return (f"label value {value!r}: must be empty or 1-63 characters of alphanumerics, '-', '_' "
                "or '.', starting and ending with an alphanumeric")
    return None


def _compile(selector: pb.LabelSelector | None, *, strict: bool = False) -> _Compiled:
    """Requirements of a selector, sorted by key (the canonical cache key)."""
    if selector is None:
        return ()
    reqs: list[_Requirement] = []
    for k, v in selector.match_labels.items():
        if strict and (err := _key_error(k) or _value_error(v)):
            raise SelectorError(f"match_labels: {err}")
        reqs.append((k, _IN, frozenset((v,))))
    for i, expr in enumerate(selector.match_expressions):
        where = f"match_expressions[{i}]"
        if strict and (err := _key_error(expr.key)):
            raise SelectorError(f"{where}: {err}")
        op = expr.operator
        if op not in _OPERATORS:
            raise SelectorError(f"{where}: unknown operator {op!r} (expected one of {', '.join(_OPERATORS)})")
        values = frozenset(expr.values)
        if op in (_IN, _NOT_IN) and not values:
            raise SelectorError(f"{where}: operator {op} needs at least one value")
        if op in (_EXISTS, _DOES_NOT_EXIST) and values:
            raise SelectorError(f"{where}: operator {op} takes no values")
        if strict:
            for v in expr.values:
                if err := _value_error(v):
                    raise SelectorError(f"{where}: {err}")
        reqs.append((expr.key, op, values))
    reqs.sort(key=lambda r: (r[0], r[1], sorted(r[2])))
    return tuple(reqs)


def _match(reqs: _Compiled, labels: Mapping[str, str]) -> bool:
    for key, op, values in reqs:
        v = labels.get(key)
        if op == _IN:
            if v is None or v not in values:
                return False
        elif op == _NOT_IN:
            if v is not None and v in values:
                return False
        elif op == _EXISTS:
            if v is None:
                return False
        elif v is not None:  # DoesNotExist
            return False
    return True


def matches(selector: pb.LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: every requirement must hold (AND).

    ``match_labels`` k=v: the label is present with that value. ``In``: present
    with one of the values. ``NotIn``: absent, or present with none of the
    values. ``Exists`` / ``DoesNotExist``: presence. A None or empty selector
    matches everything. Raises :class:`SelectorError` on an unknown operator or
    wrong number of values.
    """
    return _match(_compile(selector), labels)


def validate_selector(selector: pb.LabelSelector) -> None:
    """Raise :class:`SelectorError` unless ``selector`` is valid (operators, value counts,
    label key and value syntax). For the admission service."""
    _compile(selector, strict=True)


_SPECIAL = set(" \t\n\r!=,()<>")


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """Tokens (kind, text, position); kinds: ident, !, =, ==, !=, ',', (, ), <, >, end."""
    toks: list[tuple[str, str, int]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "!=" and i + 1 < n and text[i + 1] == "=":
            toks.append((c + "=", c + "=", i))
            i += 2
            continue
        if c in _SPECIAL:
            toks.append((c, c, i))
            i += 1
            continue
        j = i
        while j < n and text[j] not in _SPECIAL:
            j += 1
        toks.append(("ident", text[i:j], i))
        i = j
    toks.append(("end", "", n))
    return toks


def parse_selector(text: str) -> pb.LabelSelector:
    """Parse the Kubernetes selector string syntax into a LabelSelector.

    ``a=b`` / ``a==b`` (match_labels; a repeated key becomes an ``In``
    expression), ``a!=b`` (NotIn), ``a in (x,y)``, ``a notin (x,y)``, ``a``
    (Exists), ``!a`` (DoesNotExist), comma-separated (AND). The empty string is
    the empty selector (matches everything). ``<``/``>`` are not supported by
    LabelSelector. Raises :class:`SelectorError` (a ValueError) describing the
    problem and its position.
    """
    sel = pb.LabelSelector()
    toks = _tokenize(text)
    pos = 0

    def fail(msg: str, at: int) -> SelectorError:
        return SelectorError(f"invalid label selector {text!r}: {msg} at position {at}")

    def expect_key() -> str:
        nonlocal pos
        kind, val, at = toks[pos]
        if kind != "ident":
            raise fail(f"expected a label key, found {val or 'end of input'!r}", at)
        if err := _key_error(val):
            raise fail(err, at)
        pos += 1
        return val

    def check_value(val: str, at: int) -> str:
        if err := _value_error(val):
            raise fail(err, at)
        return val

    def add_expr(key: str, op: str, values: Iterable[str]) -> None:
        sel.match_expressions.add(key=key, operator=op, values=sorted(set(values)))

    if toks[0][0] == "end":
        return sel
    while True:
        kind, val, at = toks[pos]
        if kind == "!":
            pos += 1
            add_expr(expect_key(), _DOES_NOT_EXIST, ())
        else:
            key = expect_key()
            kind, val, at = toks[pos]
            if kind in (",", "end"):
                add_expr(key, _EXISTS, ())
            elif kind in ("=", "==", "!="):
                pos += 1
                vkind, vval, vat = toks[pos]
                if vkind == "ident":
                    pos += 1
                    value = check_value(vval, vat)
                elif vkind in (",", "end"):
                    value = ""
                else:
                    raise fail(f"expected a value after {val!r}, found {vval!r}", vat)
                if kind == "!=":
                    add_expr(key, _NOT_IN, (value,))
                elif key in sel.match_labels:
                    add_expr(key, _IN, (value,))
                else:
                    sel.match_labels[key] = value
            elif kind == "ident" and val in ("in", "notin"):
                pos += 1
                if toks[pos][0] != "(":
                    raise fail(f"expected '(' after {val!r}", toks[pos][2])
                pos += 1
                values: list[str] = []
                if toks[pos][0] == ")":
                    raise fail(f"the values set of {val!r} can't be empty", toks[pos][2])
                while True:
                    vkind, vval, vat = toks[pos]
                    if vkind == "ident":
                        values.append(check_value(vval, vat))
                        pos += 1
                        vkind, vval, vat = toks[pos]
                    elif vkind in (",", ")"):
                        values.append("")
                    else:
                        raise fail(f"expected a value, found {vval or 'end of input'!r}", vat)
                    if vkind == ",":
                        pos += 1
                        continue
                    if vkind == ")":
                        pos += 1
                        break
                    raise fail(f"expected ',' or ')', found {vval or 'end of input'!r}", vat)
                add_expr(key, _IN if val == "in" else _NOT_IN, values)
            elif kind in ("<", ">"):
                raise fail(f"operator {kind!r} is not supported by LabelSelector "
                           "(use =, ==, !=, in, notin, exists or !key)", at)
            else:
                raise fail(f"expected an operator (=, ==, !=, in, notin) or ',' after key {key!r}, "
                           f"found {val or 'end of input'!r}", at)
        kind, val, at = toks[pos]
        if kind == "end":
            return sel
        if kind != ",":
            raise fail(f"expected ',' or end of input, found {val!r}", at)
        pos += 1
        if toks[pos][0] == "end":
            raise fail("expected a requirement after ','", toks[pos][2])


def format_selector(selector: pb.LabelSelector | None) -> str:
    """The string form of a selector (inverse of :func:`parse_selector`, canonical order)."""
    if selector is None:
        return ""
    parts = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for e in selector.match_expressions:
        vals = ",".join(sorted(e.values))
        if e.operator == _IN:
            parts.append(f"{e.key} in ({vals})")
        elif e.operator == _NOT_IN:
            parts.append(f"{e.key}!={vals}" if len(e.values) == 1 else f"{e.key} notin ({vals})")
        elif e.operator == _EXISTS:
            parts.append(e.key)
        elif e.operator == _DOES_NOT_EXIST:
            parts.append(f"!{e.key}")
        else:
            parts.append(f"{e.key} {e.operator} ({vals})")
    return ",".join(parts)


# ----------------------------------------------------------------- shared helpers

def _unschedulable_message(filtered: Mapping[str, int], total: int, unit: str) -> str:
    reasons = sorted(filtered.items(), key=lambda kv: (-kv[1], _REASON_ORDER.get(kv[0], 99), kv[0]))
    detail = ", ".join(f"{n} {r}" for r, n in reasons)
    return f"0/{total} {unit} are available" + (f": {detail}." if detail else ".")


def _nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    return {r: counts[r] for r in REASONS if counts.get(r)}


# Device state categories (from used/slots/digest); a partly used device's category is its digest.
_FULL = ("full",)
_EMPTY = ("empty",)


def _category(d: DeviceState) -> object:
    if d.used >= d.slots:
        return _FULL
    if d.used <= 0:
        return _EMPTY
    return d.pipeline_digest


def _device_reason(d: DeviceState, req: Request, reqs: _Compiled,
                   excluded: frozenset[tuple[str, str]] | set[tuple[str, str]],
                   *, check_pipeline: bool = True) -> str | None:
    """First device filter ``d`` fails for ``req`` (None if feasible)."""
    if not d.node_ready:
        return NODE_NOT_READY
    if req.target and d.target != req.target:
        return TARGET_MISMATCH
    if req.arch and d.arch != req.arch:
        return ARCH_MISMATCH
    if reqs and not _match(reqs, d.labels):
        return SELECTOR_MISMATCH
    if excluded and (d.node, d.device) in excluded:
        return EXCLUDED
    if d.used >= d.slots:
        return NO_FREE_SLOT
    if check_pipeline and d.used > 0 and d.pipeline_digest != req.pipeline_digest:
        return PIPELINE_CONFLICT
    return None


# ----------------------------------------------------------------- the selection index

_SCAN_MAX = 96       # selections this small are scanned on every decision
_SKIP_MAX = 128      # a maintained view may drive a selection it exceeds by at most this many items
_MAX_OWN_VIEWS = 128
_MAX_PLANS = 8192
_NO_ITEMS: frozenset[int] = frozenset()


class _OwnView:
    """A maintained view over a fixed member set; subclasses add counters and heaps
    that the policy updates on every change of a member (``views_of``)."""

    __slots__ = ("members", "size")

    def __init__(self, members: set[int] | frozenset[int]) -> None:
        self.members = members
        self.size = len(members)


class _Plan:
    """How to evaluate one (target, arch, selector).

    ``static`` counts the items failing the static filters (NodeNotReady,
    TargetMismatch, ArchMismatch, SelectorMismatch). A *scan* plan lists its few
    members (``order``); a *driven* plan uses a maintained view ``driver`` whose
    members are the plan's members plus the (few) items in ``skip``.
    """

    __slots__ = ("driver", "order", "scan", "skip", "static")

    def __init__(self, static: dict[str, int], *, order: tuple[int, ...] | None = None,
                 driver: _OwnView | None = None, skip: frozenset[int] = _NO_ITEMS) -> None:
        self.scan = order is not None
        self.static = static
        self.order = order or ()
        self.driver = driver
        self.skip = skip


class _SelectionIndex:
    """Static filter membership of items (devices or nodes) by (target, arch, selector).

    Membership is computed with set operations over a label -> value -> items
    index (so a new selector costs a few C-level set operations, not a Python
    scan). Maintained views are shared: a dense selection is driven by the view
    of its (target, arch) base, or of one of its requirements, whenever that view
    exceeds it by at most ``_SKIP_MAX`` items; only otherwise does it get a view
    of its own.
    """

    def __init__(self, ready: Sequence[bool], labels: Sequence[Mapping[str, str]],
                 targets: Mapping[str, set[int]], arches: Mapping[str, set[int]],
                 make_view: Callable[[set[int] | frozenset[int]], _OwnView]) -> None:
        self.n = len(ready)
        self.ready = frozenset(i for i, r in enumerate(ready) if r)
        self._targets, self._arches = targets, arches
        self._make_view = make_view
        self._values: dict[str, dict[str, set[int]]] = {}
        self._keys: dict[str, set[int]] = {}
        for i in self.ready:
            for k, v in labels[i].items():
                by_value = self._values.get(k)
                if by_value is None:
                    by_value = self._values[k] = {}
                    self._keys[k] = set()
                self._keys[k].add(i)
                s = by_value.get(v)
                if s is None:
                    by_value[v] = {i}
                else:
                    s.add(i)
        self._bases: dict[tuple[str, str], tuple[frozenset[int], dict[str, int]]] = {}
        self._own: dict[tuple, _OwnView] = {}
        self._plans: dict[tuple, _Plan] = {}
        self.views_of: list[list[_OwnView]] = [[] for _ in range(self.n)]

    def _base(self, target: str, arch: str) -> tuple[frozenset[int], dict[str, int]]:
        b = self._bases.get((target, arch))
        if b is None:
            ready = self.ready
            t = ready & self._targets.get(target, _NO_ITEMS) if target else ready
            a = t & self._arches.get(arch, _NO_ITEMS) if arch else t
            b = self._bases[(target, arch)] = (frozenset(a), {
                NODE_NOT_READY: self.n - len(ready), TARGET_MISMATCH: len(ready) - len(t),
                ARCH_MISMATCH: len(t) - len(a)})
        return b

    def _members(self, base: frozenset[int], reqs: _Compiled) -> frozenset[int]:
        if not reqs:
            return base
        m = set(base)
        for key, op, values in reqs:
            if op == _IN:
                by_value = self._values.get(key, {})
                if len(values) == 1:
                    m &= by_value.get(next(iter(values)), _NO_ITEMS)
                else:
                    m &= set().union(*(by_value.get(v, _NO_ITEMS) for v in values))
            elif op == _NOT_IN:
                by_value = self._values.get(key, {})
                for v in values:
                    m -= by_value.get(v, _NO_ITEMS)
            elif op == _EXISTS:
                m &= self._keys.get(key, _NO_ITEMS)
            else:
                m -= self._keys.get(key, _NO_ITEMS)
        return frozenset(m)

    def plan(self, target: str, arch: str, reqs: _Compiled) -> _Plan:
        key = (target, arch, reqs)
        p = self._plans.get(key)
        if p is not None:
            return p
        base, base_static = self._base(target, arch)
        members = self._members(base, reqs)
        static = dict(base_static)
        static[SELECTOR_MISMATCH] = len(base) - len(members)
        if len(members) <= _SCAN_MAX:
            p = _Plan(static, order=tuple(sorted(members)))
        else:
            choice: tuple[int, _Compiled, frozenset[int]] | None = None
            subs: list[_Compiled] = [()] + ([(r,) for r in reqs] if len(reqs) > 1 else [])
            for sub in subs:
                if sub == reqs:
                    continue
                view = self._own.get((target, arch, sub))
                sub_members = view.members if view is not None else self._members(base, sub)
                extra = len(sub_members) - len(members)
                if extra <= _SKIP_MAX and (choice is None or extra < choice[0]):
                    choice = (extra, sub, frozenset(sub_members))
            sub, sub_members = (reqs, members) if choice is None else (choice[1], choice[2])
            driver = self._own_view(target, arch, sub, sub_members)
            skip = frozenset(driver.members - members) if sub != reqs else _NO_ITEMS
            p = _Plan(static, driver=driver, skip=skip)
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        self._plans[key] = p
        return p

    def _own_view(self, target: str, arch: str, sub: _Compiled, members: frozenset[int]) -> _OwnView:
        key = (target, arch, sub)
        v = self._own.get(key)
        if v is None:
            if len(self._own) >= _MAX_OWN_VIEWS:
                # Start over (plans refer to views): correct, only slower when thrashing.
                self._own.clear()
                self._plans.clear()
                self.views_of = [[] for _ in range(self.n)]
            v = self._own[key] = self._make_view(members)
            views_of = self.views_of
            for i in members:
                views_of[i].append(v)
        return v


def _heap_search(heap: list[tuple], valid: Callable[[tuple], bool], avoid: frozenset[str],
                 excluded: set[int] | frozenset[int], skip: frozenset[int],
                 names: Sequence[str]) -> tuple[int | None, int | None]:
    """Walk a lazy-deletion heap in order (the item index is ``entry[-2]``).

    Returns (first valid item neither excluded/skipped nor on an avoided node,
    first valid non-excluded/skipped item on an avoided node). Stale and
    duplicate entries are dropped; the others are restored."""
    popped: list[tuple] = []
    seen: set[int] = set()
    found = fallback = None
    pop = heapq.heappop
    while heap:
        e = pop(heap)
        idx = e[-2]
        if idx in seen or not valid(e):
            continue
        seen.add(idx)
        popped.append(e)
        if idx in excluded or idx in skip:
            continue
        if avoid and names[idx] in avoid:
            if fallback is None:
                fallback = idx
            continue
        found = idx
        break
    if len(popped) == 1:
        heapq.heappush(heap, popped[0])
    else:
        for e in popped:
            heapq.heappush(heap, e)
    return found, fallback


def _compact(heap: list[tuple], valid: Callable[[tuple], bool]) -> list[tuple]:
    """Drop stale and duplicate entries."""
    seen: set[int] = set()
    kept = []
    for e in heap:
        if e[-2] not in seen and valid(e):
            seen.add(e[-2])
            kept.append(e)
    heapq.heapify(kept)
    return kept


class _Base:
    """State and index bookkeeping shared by both policies."""

    name = ""

    def __init__(self, *, indexed: bool = True) -> None:
        self.indexed = indexed
        self._devs: list[DeviceState] | None = None
        self._n = 0
        self._key_to_idx: dict[tuple[str, str], int] = {}
        self._cats: list[object] = []

    # -- public API -------------------------------------------------------
    def prepare(self, devices: list[DeviceState]) -> None:
        """Build the index for ``devices`` now (otherwise the first ``schedule`` does)."""
        if self.indexed:
            self._ensure(devices)

    def invalidate(self) -> None:
        """Forget the index (call after changing DeviceStates outside commit/release)."""
        self._devs = None
        self._n = 0

    def schedule(self, request: Request, devices: list[DeviceState], *, commit: bool = False) -> Decision:
        """Decide where ``request`` goes; with ``commit=True`` also apply a successful decision."""
        if self.indexed:
            self._ensure(devices)
            decision = self._schedule_indexed(request)
        else:
            decision = self._schedule_scan(request, devices)
        decision.request = request
        if commit:
            self.commit(decision)
        return decision

    def commit(self, decision: Decision, request: Request | None = None) -> bool:
        """Apply a decision: the chosen device gets one more used slot and the request's
        pipeline. Returns False (and changes nothing) for unscheduled or failed decisions
        and for a decision already committed."""
        request = request or decision.request
        if not decision.scheduled or decision.committed or request is None:
            return False
        d = decision.device
        assert d is not None
        d.used += 1
        d.pipeline_digest = request.pipeline_digest
        idx = self._index_of(d)
        if idx is not None:
            self._changed(idx)
        decision.committed = True
        return True

    def release(self, device: DeviceState | tuple[str, str],
                devices: list[DeviceState] | None = None) -> None:
        """Remove one placement from a device, given as DeviceState or as (node, device)
        looked up in the indexed list (or in ``devices``). An emptied device forgets its pipeline."""
        if isinstance(device, tuple):
            found: DeviceState | None = None
            if self._devs is not None and device in self._key_to_idx:
                found = self._devs[self._key_to_idx[device]]
            elif devices is not None:
                found = next((d for d in devices if (d.node, d.device) == device), None)
            if found is None:
                raise KeyError(f"unknown device {device[0]}/{device[1]}")
            device = found
        if device.used <= 0:
            return
        device.used -= 1
        if device.used == 0:
            device.pipeline_digest = ""
        idx = self._index_of(device)
        if idx is not None:
            self._changed(idx)

    # -- index plumbing ---------------------------------------------------
    def _index_of(self, d: DeviceState) -> int | None:
        if self._devs is None:
            return None
        idx = self._key_to_idx.get((d.node, d.device))
        if idx is None or self._devs[idx] is not d:
            return None
        return idx

    def _ensure(self, devices: list[DeviceState]) -> None:
        if devices is not self._devs or len(devices) != self._n:
            self._build(devices)

    def _build(self, devices: list[DeviceState]) -> None:
        self._devs = devices
        self._n = len(devices)
        self._key_to_idx = {(d.node, d.device): i for i, d in enumerate(devices)}
        self._cats = [_category(d) for d in devices]

    def _changed(self, idx: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _schedule_indexed(self, request: Request) -> Decision:  # pragma: no cover - overridden
        raise NotImplementedError

    def _schedule_scan(self, request: Request,
                       devices: Sequence[DeviceState]) -> Decision:  # pragma: no cover - overridden
        raise NotImplementedError


# ----------------------------------------------------------------- builtin policy

_Entry: TypeAlias = tuple[float, str, str, int, int]   # (load, node, device, idx, used)


class _DeviceView(_OwnView):
    """Counters and heaps of a device view. Empty devices are ordered by name
    (their load is 0); devices running a digest with a free slot by (load, name)."""

    __slots__ = ("empty_heap", "n_empty", "n_full", "n_partial", "reuse_heaps")

    def __init__(self, members: set[int] | frozenset[int], devs: Sequence[DeviceState],
                 cats: Sequence[object]) -> None:
        super().__init__(members)
        self.n_full = self.n_empty = 0
        self.n_partial: dict[str, int] = {}
        self.empty_heap: list[_Entry] = []
        self.reuse_heaps: dict[str, list[_Entry]] = {}
        for i in members:
            c, d = cats[i], devs[i]
            if c is _FULL:
                self.n_full += 1
            elif c is _EMPTY:
                self.n_empty += 1
                self.empty_heap.append((0.0, d.node, d.device, i, 0))
            else:
                self.n_partial[c] = self.n_partial.get(c, 0) + 1  # type: ignore[index]
                self.reuse_heaps.setdefault(c, []).append(  # type: ignore[arg-type]
                    (d.used / d.slots, d.node, d.device, i, d.used))
        heapq.heapify(self.empty_heap)
        for heap in self.reuse_heaps.values():
            heapq.heapify(heap)

    def update(self, old: object, new: object, d: DeviceState, idx: int) -> None:
        if old is _FULL:
            self.n_full -= 1
        elif old is _EMPTY:
            self.n_empty -= 1
        else:
            left = self.n_partial[old] - 1  # type: ignore[index]
            if left:
                self.n_partial[old] = left  # type: ignore[index]
            else:
                del self.n_partial[old]  # type: ignore[arg-type]
        if new is _FULL:
            self.n_full += 1
        elif new is _EMPTY:
            self.n_empty += 1
            heapq.heappush(self.empty_heap, (0.0, d.node, d.device, idx, 0))
        else:
            self.n_partial[new] = self.n_partial.get(new, 0) + 1  # type: ignore[index]
            heap = self.reuse_heaps.get(new)  # type: ignore[arg-type]
            if heap is None:
                heap = self.reuse_heaps[new] = []  # type: ignore[index]
            heapq.heappush(heap, (d.used / d.slots, d.node, d.device, idx, d.used))


class BuiltinScheduler(_Base):
    """P4-aware device scheduler (see the module docstring for filters and ranking)."""

    name = "builtin"

    def __init__(self, *, indexed: bool = True) -> None:
        super().__init__(indexed=indexed)
        self._index: _SelectionIndex | None = None
        self._node_of: list[str] = []

    def _build(self, devices: list[DeviceState]) -> None:
        super()._build(devices)
        targets: dict[str, set[int]] = {}
        arches: dict[str, set[int]] = {}
        for i, d in enumerate(devices):
            targets.setdefault(d.target, set()).add(i)
            arches.setdefault(d.arch, set()).add(i)
        self._node_of = [d.node for d in devices]
        self._index = _SelectionIndex([d.node_ready for d in devices], [d.labels for d in devices],
                                      targets, arches, self._make_view)

    def _make_view(self, members: set[int] | frozenset[int]) -> _DeviceView:
        assert self._devs is not None
        return _DeviceView(members, self._devs, self._cats)

    def _changed(self, idx: int) -> None:
        assert self._devs is not None and self._index is not None
        d = self._devs[idx]
        old, new = self._cats[idx], _category(d)
        self._cats[idx] = new
        for v in self._index.views_of[idx]:
            v.update(old, new, d, idx)  # type: ignore[attr-defined]

    @staticmethod
    def _score(d: DeviceState, avoid: frozenset[str]) -> float:
        return 4.0 * (d.node not in avoid) + 2.0 * (d.used > 0) + (1.0 - d.used / d.slots)

    def _schedule_indexed(self, req: Request) -> Decision:
        assert self._devs is not None and self._index is not None
        devs, cats = self._devs, self._cats
        reqs = _compile(req.selector)
        plan = self._index.plan(req.target, req.arch, reqs)
        if plan.scan:
            return self._scan(req, reqs, [devs[i] for i in plan.order], self._n, plan.static)
        v = plan.driver
        assert isinstance(v, _DeviceView)
        skip = plan.skip
        digest = req.pipeline_digest
        full, empty, reuse = v.n_full, v.n_empty, v.n_partial.get(digest, 0)
        conflict = v.size - full - empty - reuse
        excluded: set[int] = set()
        adjust = list(skip)
        if req.exclude_devices:
            k2i, members = self._key_to_idx, v.members
            for key in req.exclude_devices:
                i = k2i.get(key)
                if i is not None and i in members and i not in skip:
                    excluded.add(i)
                    adjust.append(i)
        for i in adjust:
            c = cats[i]
            if c is _FULL:
                full -= 1
            elif c is _EMPTY:
                empty -= 1
            elif c == digest:
                reuse -= 1
            else:
                conflict -= 1
        feasible = empty + reuse
        counts = dict(plan.static)
        counts[EXCLUDED] = len(excluded)
        counts[NO_FREE_SLOT] = full
        counts[PIPELINE_CONFLICT] = conflict
        filtered = _nonzero(counts)
        if feasible == 0:
            return Decision(None, 0.0, self._n, 0, filtered,
                            _unschedulable_message(filtered, self._n, "devices"))
        avoid = req.avoid_nodes
        names = self._node_of
        found = fb_reuse = fb_empty = None
        if reuse:
            heap = v.reuse_heaps[digest]

            def valid_reuse(e: tuple) -> bool:
                i = e[3]
                return cats[i] == digest and devs[i].used == e[4]

            found, fb_reuse = _heap_search(heap, valid_reuse, avoid, excluded, skip, names)
            if len(heap) > 2 * v.n_partial.get(digest, 0) + 64:
                v.reuse_heaps[digest] = _compact(heap, valid_reuse)
        if found is None and empty:

            def valid_empty(e: tuple) -> bool:
                return cats[e[3]] is _EMPTY

            found, fb_empty = _heap_search(v.empty_heap, valid_empty, avoid, excluded, skip, names)
            if len(v.empty_heap) > 2 * v.n_empty + 64:
                v.empty_heap = _compact(v.empty_heap, valid_empty)
        if found is None:
            found = fb_reuse if fb_reuse is not None else fb_empty
        if found is None:  # pragma: no cover - defensive
            raise RuntimeError("scheduler index out of sync with device states; call invalidate()")
        d = devs[found]
        return Decision(d, self._score(d, avoid), self._n, feasible, filtered, node=d.node)

    def _schedule_scan(self, req: Request, devices: Sequence[DeviceState]) -> Decision:
        return self._scan(req, _compile(req.selector), devices, len(devices), {})

    def _scan(self, req: Request, reqs: _Compiled, devices: Iterable[DeviceState], total: int,
              static: Mapping[str, int]) -> Decision:
        """Reference evaluation over ``devices`` (all of them, or a small pre-filtered
        selection whose static filter counts are ``static``)."""
        excluded = req.exclude_devices
        avoid = req.avoid_nodes
        counts = dict(static)
        best: DeviceState | None = None
        best_key: tuple | None = None
        feasible = 0
        for d in devices:
            reason = _device_reason(d, req, reqs, excluded)
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
                continue
            feasible += 1
            key = (d.node in avoid, d.used == 0, d.used / d.slots, d.node, d.device)
            if best_key is None or key < best_key:
                best, best_key = d, key
        filtered = _nonzero(counts)
        if best is None:
            return Decision(None, 0.0, total, 0, filtered, _unschedulable_message(filtered, total, "devices"))
        return Decision(best, self._score(best, avoid), total, feasible, filtered, node=best.node)


# ----------------------------------------------------------------- Kubernetes model

@dataclass(slots=True)
class _NodeAgg:
    name: str
    ready: bool
    alloc: int
    labels: dict[str, str]
    devices: list[int]


def _aggregate_nodes(devices: Sequence[DeviceState]) -> list[_NodeAgg]:
    """Nodes as Kubernetes sees them (first-appearance order)."""
    nodes: dict[str, _NodeAgg] = {}
    for i, d in enumerate(devices):
        n = nodes.get(d.node)
        if n is None:
            n = nodes[d.node] = _NodeAgg(d.node, d.node_ready, 0, {}, [])
        n.alloc += d.slots
        n.devices.append(i)
        for k, val in d.labels.items():
            n.labels.setdefault(k, val)
        n.labels[TARGET_LABEL_PREFIX + d.target] = "true"
        n.labels[ARCH_LABEL_PREFIX + d.arch] = "true"
    return list(nodes.values())


def _least_allocated(alloc: int, requested: int) -> int:
    """NodeResourcesFit LeastAllocated for one resource, the pod's request included."""
    if alloc <= 0 or requested > alloc:
        return 0
    return (alloc - requested) * _MAX_NODE_SCORE // alloc


def _go_round(x: float) -> int:
    """Go's math.Round (half away from zero)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


class _SpreadScorer:
    """Normalised PodTopologySpread score (hostname, system default constraint) for
    a feasible set of ``n_feasible`` nodes of which ``n_with_replica`` host a replica."""

    __slots__ = ("mn", "mx", "raw0", "raw1")

    def __init__(self, n_feasible: int, n_with_replica: int) -> None:
        w = math.log(n_feasible + 2)
        self.raw0 = _go_round(_HOSTNAME_MAX_SKEW - 1)
        self.raw1 = _go_round(w + _HOSTNAME_MAX_SKEW - 1)
        raws = ([self.raw0] if n_feasible > n_with_replica else []) + ([self.raw1] if n_with_replica else [])
        self.mn, self.mx = min(raws), max(raws)

    def score(self, has_replica: bool) -> int:
        if self.mx == 0:
            return _MAX_NODE_SCORE
        raw = self.raw1 if has_replica else self.raw0
        return _MAX_NODE_SCORE * (self.mx + self.mn - raw) // self.mx


_NodeEntry: TypeAlias = tuple[int, str, int, int]   # (-LeastAllocated, name, node idx, requested)


class _NodeView(_OwnView):
    """Counters and heap of a node view (heap ordered by LeastAllocated score, then name)."""

    __slots__ = ("heap", "n_full")

    def __init__(self, members: set[int] | frozenset[int], nodes: Sequence[_NodeAgg],
                 requested: Sequence[int]) -> None:
        super().__init__(members)
        self.n_full = 0
        self.heap: list[_NodeEntry] = []
        for ni in members:
            n, r = nodes[ni], requested[ni]
            if r >= n.alloc:
                self.n_full += 1
            else:
                self.heap.append((-_least_allocated(n.alloc, r + 1), n.name, ni, r))
        heapq.heapify(self.heap)


def _node_affinity_reason(n: _NodeAgg, req: Request, reqs: _Compiled) -> str | None:
    if not n.ready:
        return NODE_NOT_READY
    if req.target and TARGET_LABEL_PREFIX + req.target not in n.labels:
        return TARGET_MISMATCH
    if req.arch and ARCH_LABEL_PREFIX + req.arch not in n.labels:
        return ARCH_MISMATCH
    if reqs and not _match(reqs, n.labels):
        return SELECTOR_MISMATCH
    return None


class KubernetesDefaultScheduler(_Base):
    """Model of kube-scheduler's default placement plus a pipeline-unaware node agent
    (see the module docstring)."""

    name = "kubernetes"

    def __init__(self, *, indexed: bool = True) -> None:
        super().__init__(indexed=indexed)
        self._nodes: list[_NodeAgg] = []
        self._names: list[str] = []
        self._node_idx: dict[str, int] = {}
        self._node_of_dev: list[int] = []
        self._req: list[int] = []
        self._index: _SelectionIndex | None = None

    def _build(self, devices: list[DeviceState]) -> None:
        super()._build(devices)
        self._nodes = _aggregate_nodes(devices)
        self._names = [n.name for n in self._nodes]
        self._node_idx = {n.name: i for i, n in enumerate(self._nodes)}
        self._node_of_dev = [self._node_idx[d.node] for d in devices]
        self._req = [sum(devices[i].used for i in n.devices) for n in self._nodes]
        targets: dict[str, set[int]] = {}
        arches: dict[str, set[int]] = {}
        for ni, n in enumerate(self._nodes):
            for k in n.labels:
                if k.startswith(TARGET_LABEL_PREFIX):
                    targets.setdefault(k[len(TARGET_LABEL_PREFIX):], set()).add(ni)
                if k.startswith(ARCH_LABEL_PREFIX):
                    arches.setdefault(k[len(ARCH_LABEL_PREFIX):], set()).add(ni)
        self._index = _SelectionIndex([n.ready for n in self._nodes], [n.labels for n in self._nodes],
                                      targets, arches, self._make_view)

    def _make_view(self, members: set[int] | frozenset[int]) -> _NodeView:
        return _NodeView(members, self._nodes, self._req)

    def _changed(self, idx: int) -> None:
        assert self._devs is not None and self._index is not None
        ni = self._node_of_dev[idx]
        n = self._nodes[ni]
        old = self._req[ni]
        new = sum(self._devs[i].used for i in n.devices)
        self._req[ni] = new
        self._cats[idx] = _category(self._devs[idx])
        was_full, is_full = old >= n.alloc, new >= n.alloc
        entry = (-_least_allocated(n.alloc, new + 1), n.name, ni, new)
        for v in self._index.views_of[ni]:
            v.n_full += is_full - was_full  # type: ignore[attr-defined]
            if not is_full:
                heapq.heappush(v.heap, entry)  # type: ignore[attr-defined]

    def _schedule_indexed(self, req: Request) -> Decision:
        assert self._index is not None
        reqs = _compile(req.selector)
        plan = self._index.plan(req.target, req.arch, reqs)
        nodes, reqd = self._nodes, self._req
        n_nodes = len(nodes)
        if plan.scan:
            return self._select(req, reqs, [(nodes[ni], reqd[ni]) for ni in plan.order], n_nodes, plan.static)
        v = plan.driver
        assert isinstance(v, _NodeView)
        skip = plan.skip
        n_full = v.n_full - sum(1 for ni in skip if reqd[ni] >= nodes[ni].alloc)
        feasible = v.size - len(skip) - n_full
        counts = dict(plan.static)
        counts[NO_FREE_SLOT] = n_full
        filtered = _nonzero(counts)
        if feasible == 0:
            return Decision(None, 0.0, n_nodes, 0, filtered,
                            _unschedulable_message(filtered, n_nodes, "nodes"))
        avoid = req.avoid_nodes
        with_replica: list[int] = []
        for name in avoid:
            ni = self._node_idx.get(name)
            if ni is not None and ni in v.members and ni not in skip and reqd[ni] < nodes[ni].alloc:
                with_replica.append(ni)
        spread = _SpreadScorer(feasible, len(with_replica))
        best: tuple[int, str] | None = None
        best_ni = -1
        if feasible > len(with_replica):

            def valid(e: tuple) -> bool:
                ni = e[2]
                return reqd[ni] == e[3] and e[3] < nodes[ni].alloc

            found, _ = _heap_search(v.heap, valid, avoid, _NO_ITEMS, skip, self._names)
            if found is None:  # pragma: no cover - defensive
                raise RuntimeError("scheduler index out of sync with device states; call invalidate()")
            n = nodes[found]
            score = (_FIT_WEIGHT * _least_allocated(n.alloc, reqd[found] + 1)
                     + _SPREAD_WEIGHT * spread.score(False))
            best, best_ni = (-score, n.name), found
            if len(v.heap) > 2 * (v.size - v.n_full) + 64:
                v.heap = _compact(v.heap, valid)
        for ni in with_replica:
            n = nodes[ni]
            score = (_FIT_WEIGHT * _least_allocated(n.alloc, reqd[ni] + 1)
                     + _SPREAD_WEIGHT * spread.score(True))
            if best is None or (-score, n.name) < best:
                best, best_ni = (-score, n.name), ni
        assert best is not None
        return self._assign(req, reqs, nodes[best_ni], float(-best[0]), n_nodes, feasible, filtered)

    def _schedule_scan(self, req: Request, devices: Sequence[DeviceState]) -> Decision:
        nodes = _aggregate_nodes(devices)
        candidates = [(n, sum(devices[i].used for i in n.devices)) for n in nodes]
        return self._select(req, _compile(req.selector), candidates, len(nodes), {}, devices)

    def _select(self, req: Request, reqs: _Compiled, candidates: Sequence[tuple[_NodeAgg, int]], total: int,
                static: Mapping[str, int], devices: Sequence[DeviceState] | None = None) -> Decision:
        """Reference filter + score over ``candidates`` ((node, requested slots) pairs: all
        nodes, or a small pre-filtered selection whose static filter counts are ``static``)."""
        counts = dict(static)
        feasible: list[tuple[_NodeAgg, int]] = []
        for n, requested in candidates:
            reason = _node_affinity_reason(n, req, reqs)
            if reason is None and requested >= n.alloc:
                reason = NO_FREE_SLOT
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
                continue
            feasible.append((n, requested))
        filtered = _nonzero(counts)
        if not feasible:
            return Decision(None, 0.0, total, 0, filtered, _unschedulable_message(filtered, total, "nodes"))
        avoid = req.avoid_nodes
        spread = _SpreadScorer(len(feasible), sum(1 for n, _ in feasible if n.name in avoid))
        best_key: tuple[int, str] | None = None
        best_node: _NodeAgg | None = None
        for n, requested in feasible:
            score = (_FIT_WEIGHT * _least_allocated(n.alloc, requested + 1)
                     + _SPREAD_WEIGHT * spread.score(n.name in avoid))
            key = (-score, n.name)
            if best_key is None or key < best_key:
                best_key, best_node = key, n
        assert best_node is not None and best_key is not None
        return self._assign(req, reqs, best_node, float(-best_key[0]), total, len(feasible), filtered,
                            devices)

    def _assign(self, req: Request, reqs: _Compiled, node: _NodeAgg, score: float, n_nodes: int,
                feasible: int, filtered: dict[str, int],
                devices: Sequence[DeviceState] | None = None) -> Decision:
        """The node agent: first device (spec order) that fits, pipeline-unaware."""
        devs = devices if devices is not None else self._devs
        assert devs is not None
        furthest = -1
        for i in node.devices:
            d = devs[i]
            reason = _device_reason(d, req, reqs, req.exclude_devices, check_pipeline=False)
            if reason is None:
                if d.used > 0 and d.pipeline_digest != req.pipeline_digest:
                    msg = (f"node {node.name}: device {d.device} runs pipeline {d.pipeline_digest or '?'}; "
                           f"cannot install {req.pipeline_digest or '?'} next to it ({PIPELINE_CONFLICT})")
                    return Decision(d, score, n_nodes, feasible, filtered, msg, node.name, PIPELINE_CONFLICT)
                return Decision(d, score, n_nodes, feasible, filtered, node=node.name)
            furthest = max(furthest, _REASON_ORDER[reason])
        reason = REASONS[furthest] if furthest >= 0 else NO_FREE_SLOT
        msg = (f"node {node.name} was chosen but none of its {len(node.devices)} devices can take the "
               f"replica ({reason})")
        return Decision(None, score, n_nodes, feasible, filtered, msg, node.name, reason)


POLICIES: dict[str, type[BuiltinScheduler | KubernetesDefaultScheduler]] = {
    BuiltinScheduler.name: BuiltinScheduler,
    KubernetesDefaultScheduler.name: KubernetesDefaultScheduler,
}


def make_scheduler(policy: str = "builtin", *,
                   indexed: bool = True) -> BuiltinScheduler | KubernetesDefaultScheduler:
    """A scheduler by policy name (``builtin`` or ``kubernetes``)."""
    try:
        cls = POLICIES[policy]
    except KeyError:
        raise ValueError(f"unknown scheduling policy {policy!r} "
                         f"(expected one of {', '.join(POLICIES)})") from None
    return cls(indexed=indexed)
