"""A model of kube-scheduler's default profile placing one Pod per replica, for comparison."""
from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from kubep4 import labels
from services.controller.scheduling import index as ix
from services.controller.scheduling.model import (
    _FIT_WEIGHT,
    _HOSTNAME_MAX_SKEW,
    _MAX_NODE_SCORE,
    _REASON_ORDER,
    _SPREAD_WEIGHT,
    ARCH_LABEL_PREFIX,
    ARCH_MISMATCH,
    NO_FREE_SLOT,
    NODE_NOT_READY,
    PIPELINE_CONFLICT,
    REASONS,
    SELECTOR_MISMATCH,
    TARGET_LABEL_PREFIX,
    TARGET_MISMATCH,
    Decision,
    DeviceState,
    Request,
)

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


class _NodeView(ix._OwnView):
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


def _node_affinity_reason(n: _NodeAgg, req: Request, reqs: labels.Requirements) -> str | None:
    if not n.ready:
        return NODE_NOT_READY
    if req.target and TARGET_LABEL_PREFIX + req.target not in n.labels:
        return TARGET_MISMATCH
    if req.arch and ARCH_LABEL_PREFIX + req.arch not in n.labels:
        return ARCH_MISMATCH
    if reqs and not labels.match(reqs, n.labels):
        return SELECTOR_MISMATCH
    return None


class KubernetesDefaultScheduler(ix._Base):
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
        self._index: ix._SelectionIndex | None = None

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
        self._index = ix._SelectionIndex([n.ready for n in self._nodes], [n.labels for n in self._nodes],
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
        self._cats[idx] = ix._category(self._devs[idx])
        was_full, is_full = old >= n.alloc, new >= n.alloc
        entry = (-_least_allocated(n.alloc, new + 1), n.name, ni, new)
        for v in self._index.views_of[ni]:
            v.n_full += is_full - was_full  # type: ignore[attr-defined]
            if not is_full:
                heapq.heappush(v.heap, entry)  # type: ignore[attr-defined]

    def _schedule_indexed(self, req: Request) -> Decision:
        assert self._index is not None
        reqs = labels.compile(req.selector)
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
        filtered = ix._nonzero(counts)
        if feasible == 0:
            return Decision(None, 0.0, n_nodes, 0, filtered,
                            ix._unschedulable_message(filtered, n_nodes, "nodes"))
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

            found, _ = ix._heap_search(v.heap, valid, avoid, ix._NO_ITEMS, skip, self._names)
            if found is None:  # pragma: no cover - defensive
                raise RuntimeError("scheduler index out of sync with device states; call invalidate()")
            n = nodes[found]
            score = (_FIT_WEIGHT * _least_allocated(n.alloc, reqd[found] + 1)
                     + _SPREAD_WEIGHT * spread.score(False))
            best, best_ni = (-score, n.name), found
            if len(v.heap) > 2 * (v.size - v.n_full) + 64:
                v.heap = ix._compact(v.heap, valid)
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
        return self._select(req, labels.compile(req.selector), candidates, len(nodes), {}, devices)

    def _select(self, req: Request, reqs: labels.Requirements, candidates: Sequence[tuple[_NodeAgg, int]], total: int,
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
        filtered = ix._nonzero(counts)
        if not feasible:
            return Decision(None, 0.0, total, 0, filtered, ix._unschedulable_message(filtered, total, "nodes"))
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

    def _assign(self, req: Request, reqs: labels.Requirements, node: _NodeAgg, score: float, n_nodes: int,
                feasible: int, filtered: dict[str, int],
                devices: Sequence[DeviceState] | None = None) -> Decision:
        """The node agent: first device (spec order) that fits, pipeline-unaware."""
        devs = devices if devices is not None else self._devs
        assert devs is not None
        furthest = -1
        for i in node.devices:
            d = devs[i]
            reason = ix._device_reason(d, req, reqs, req.exclude_devices, check_pipeline=False)
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
