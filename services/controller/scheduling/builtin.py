"""The P4-aware device policy (see the package docstring for its filters and ranking)."""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

from kubep4 import labels
from services.controller.scheduling import index as ix
from services.controller.scheduling.model import (
    EXCLUDED,
    NO_FREE_SLOT,
    PIPELINE_CONFLICT,
    Decision,
    DeviceState,
    Request,
)

# ----------------------------------------------------------------- builtin policy

_Entry: TypeAlias = tuple[float, str, str, int, int]   # (load, node, device, idx, used)


class _DeviceView(ix._OwnView):
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
            if c is ix._FULL:
                self.n_full += 1
            elif c is ix._EMPTY:
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
        if old is ix._FULL:
            self.n_full -= 1
        elif old is ix._EMPTY:
            self.n_empty -= 1
        else:
            left = self.n_partial[old] - 1  # type: ignore[index]
            if left:
                self.n_partial[old] = left  # type: ignore[index]
            else:
                del self.n_partial[old]  # type: ignore[arg-type]
        if new is ix._FULL:
            self.n_full += 1
        elif new is ix._EMPTY:
            self.n_empty += 1
            heapq.heappush(self.empty_heap, (0.0, d.node, d.device, idx, 0))
        else:
            self.n_partial[new] = self.n_partial.get(new, 0) + 1  # type: ignore[index]
            heap = self.reuse_heaps.get(new)  # type: ignore[arg-type]
            if heap is None:
                heap = self.reuse_heaps[new] = []  # type: ignore[index]
            heapq.heappush(heap, (d.used / d.slots, d.node, d.device, idx, d.used))


class BuiltinScheduler(ix._Base):
    """P4-aware device scheduler (see the module docstring for filters and ranking)."""

    name = "builtin"

    def __init__(self, *, indexed: bool = True) -> None:
        super().__init__(indexed=indexed)
        self._index: ix._SelectionIndex | None = None
        self._node_of: list[str] = []

    def _build(self, devices: list[DeviceState]) -> None:
        super()._build(devices)
        targets: dict[str, set[int]] = {}
        arches: dict[str, set[int]] = {}
        for i, d in enumerate(devices):
            targets.setdefault(d.target, set()).add(i)
            arches.setdefault(d.arch, set()).add(i)
        self._node_of = [d.node for d in devices]
        self._index = ix._SelectionIndex([d.node_ready for d in devices], [d.labels for d in devices],
                                      targets, arches, self._make_view)

    def _make_view(self, members: set[int] | frozenset[int]) -> _DeviceView:
        assert self._devs is not None
        return _DeviceView(members, self._devs, self._cats)

    def _changed(self, idx: int) -> None:
        assert self._devs is not None and self._index is not None
        d = self._devs[idx]
        old, new = self._cats[idx], ix._category(d)
        self._cats[idx] = new
        for v in self._index.views_of[idx]:
            v.update(old, new, d, idx)  # type: ignore[attr-defined]

    @staticmethod
    def _score(d: DeviceState, avoid: frozenset[str]) -> float:
        return 4.0 * (d.node not in avoid) + 2.0 * (d.used > 0) + (1.0 - d.used / d.slots)

    def _schedule_indexed(self, req: Request) -> Decision:
        assert self._devs is not None and self._index is not None
        devs, cats = self._devs, self._cats
        reqs = labels.compile(req.selector)
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
            if c is ix._FULL:
                full -= 1
            elif c is ix._EMPTY:
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
        filtered = ix._nonzero(counts)
        if feasible == 0:
            return Decision(None, 0.0, self._n, 0, filtered,
                            ix._unschedulable_message(filtered, self._n, "devices"))
        avoid = req.avoid_nodes
        names = self._node_of
        found = fb_reuse = fb_empty = None
        if reuse:
            heap = v.reuse_heaps[digest]

            def valid_reuse(e: tuple) -> bool:
                i = e[3]
                return cats[i] == digest and devs[i].used == e[4]

            found, fb_reuse = ix._heap_search(heap, valid_reuse, avoid, excluded, skip, names)
            if len(heap) > 2 * v.n_partial.get(digest, 0) + 64:
                v.reuse_heaps[digest] = ix._compact(heap, valid_reuse)
        if found is None and empty:

            def valid_empty(e: tuple) -> bool:
                return cats[e[3]] is ix._EMPTY

            found, fb_empty = ix._heap_search(v.empty_heap, valid_empty, avoid, excluded, skip, names)
            if len(v.empty_heap) > 2 * v.n_empty + 64:
                v.empty_heap = ix._compact(v.empty_heap, valid_empty)
        if found is None:
            found = fb_reuse if fb_reuse is not None else fb_empty
        if found is None:  # pragma: no cover - defensive
            raise RuntimeError("scheduler index out of sync with device states; call invalidate()")
        d = devs[found]
        return Decision(d, self._score(d, avoid), self._n, feasible, filtered, node=d.node)

    def _schedule_scan(self, req: Request, devices: Sequence[DeviceState]) -> Decision:
        return self._scan(req, labels.compile(req.selector), devices, len(devices), {})

    def _scan(self, req: Request, reqs: labels.Requirements, devices: Iterable[DeviceState], total: int,
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
            reason = ix._device_reason(d, req, reqs, excluded)
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
                continue
            feasible += 1
            key = (d.node in avoid, d.used == 0, d.used / d.slots, d.node, d.device)
            if best_key is None or key < best_key:
                best, best_key = d, key
        filtered = ix._nonzero(counts)
        if best is None:
            return Decision(None, 0.0, total, 0, filtered, ix._unschedulable_message(filtered, total, "devices"))
        return Decision(best, self._score(best, avoid), total, feasible, filtered, node=best.node)


