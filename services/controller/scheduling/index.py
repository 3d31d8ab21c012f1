"""The selection index both policies share: static filter membership by (target, arch, selector),
maintained views with counters and lazy-deletion heaps, and the base class that keeps them current."""
from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence

from kubep4 import labels
from services.controller.scheduling.model import (
    _REASON_ORDER,
    ARCH_MISMATCH,
    EXCLUDED,
    NO_FREE_SLOT,
    NODE_NOT_READY,
    PIPELINE_CONFLICT,
    REASONS,
    SELECTOR_MISMATCH,
    TARGET_MISMATCH,
    Decision,
    DeviceState,
    Request,
)

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


def _device_reason(d: DeviceState, req: Request, reqs: labels.Requirements,
                   excluded: frozenset[tuple[str, str]] | set[tuple[str, str]],
                   *, check_pipeline: bool = True) -> str | None:
    """First device filter ``d`` fails for ``req`` (None if feasible)."""
    if not d.node_ready:
        return NODE_NOT_READY
    if req.target and d.target != req.target:
        return TARGET_MISMATCH
    if req.arch and d.arch != req.arch:
        return ARCH_MISMATCH
    if reqs and not labels.match(reqs, d.labels):
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

    def _members(self, base: frozenset[int], reqs: labels.Requirements) -> frozenset[int]:
        if not reqs:
            return base
        m = set(base)
        for key, op, values in reqs:
            if op == labels.IN:
                by_value = self._values.get(key, {})
                if len(values) == 1:
                    m &= by_value.get(next(iter(values)), _NO_ITEMS)
                else:
                    m &= set().union(*(by_value.get(v, _NO_ITEMS) for v in values))
            elif op == labels.NOT_IN:
                by_value = self._values.get(key, {})
                for v in values:
                    m -= by_value.get(v, _NO_ITEMS)
            elif op == labels.EXISTS:
                m &= self._keys.get(key, _NO_ITEMS)
            else:
                m -= self._keys.get(key, _NO_ITEMS)
        return frozenset(m)

    def plan(self, target: str, arch: str, reqs: labels.Requirements) -> _Plan:
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
            choice: tuple[int, labels.Requirements, frozenset[int]] | None = None
            subs: list[labels.Requirements] = [()] + ([(r,) for r in reqs] if len(reqs) > 1 else [])
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

    def _own_view(self, target: str, arch: str, sub: labels.Requirements, members: frozenset[int]) -> _OwnView:
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

    def refresh(self, device: DeviceState) -> None:
        """``device``'s usage (``used``, ``pipeline_digest``) was changed by its owner: bring the index up
        to date. Changes of anything else (labels, slots, readiness, the set of devices) need a new list."""
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


