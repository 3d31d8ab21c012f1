"""The controller's scheduling cache: every device with the slots its placements use, kept current by
informer events rather than rebuilt per decision (kube-scheduler's cache, in miniature).

    cache = SchedulerCache(BuiltinScheduler(), ready=lambda node: ...)
    nodes.add_listener(cache.node_changed)            # informer: (old, new) per cache change
    placements.add_listener(cache.placement_changed)
    decision = cache.schedule(request)                # the indexed policy, over the live device list
    cache.assume(key, node, device, digest)           # the slot is taken before the etcd write...
    cache.forget(key)                                 # ...and given back once written or failed

A placement's slot counts once per device, whether the informer has seen its write yet or it is only
assumed, so assume-then-observe never counts twice. Usage changes update the policy's index in place
(``refresh``); a change of a node's devices, labels or readiness builds a new device list, and the
policy re-indexes it on the next decision.

Rebuilds are paced: a registration storm (thousands of nodes joining, leases flapping) would otherwise
rebuild 20,000 devices per decision. After a rebuild, the next waits ``rebuild_gap`` seconds (default:
four times the last rebuild's duration, at most 1 s) — unless a decision would land on a node that
changed since (it could be gone, not ready, relabelled) or finds no device while nodes changed: then
the list is rebuilt at once and the decision made again. ``rebuild_gap=0`` rebuilds on every change.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from kubep4.gen.kubep4.v1 import resources_pb2 as pb
from services.controller.scheduling.builtin import BuiltinScheduler
from services.controller.scheduling.kubernetes import KubernetesDefaultScheduler
from services.controller.scheduling.model import Decision, DeviceState, Request, devices_from

Where = tuple[str, str]  # (node, device)


class SchedulerCache:
    def __init__(self, policy: BuiltinScheduler | KubernetesDefaultScheduler | None = None,
                 ready: Callable[[str], bool] | None = None, rebuild_gap: float | None = None) -> None:
        self.rebuild_gap = rebuild_gap
        self._changed: set[str] = set()  # nodes changed since the last rebuild
        self._next_rebuild = 0.0         # monotonic time before which a paced rebuild waits
        self.policy = policy or BuiltinScheduler()
        # readiness: the controller's (heartbeat leases); by default the Node's own phase
        self._ready = ready or (lambda node: self._nodes[node].status.phase == "Ready")
        self._nodes: dict[str, pb.Node] = {}
        self._devices: list[DeviceState] = []
        self._by_key: dict[Where, DeviceState] = {}
        self._stale = True  # the device list must be rebuilt before the next decision
        self._placed: dict[Hashable, tuple[str, str, str]] = {}   # placement key -> (node, device, digest)
        self._assumed: dict[Hashable, tuple[str, str, str]] = {}
        self._holders: dict[Where, dict[Hashable, str]] = {}       # device -> placement key -> digest
        self._assumed_at: dict[Where, dict[Hashable, str]] = {}
        self.rebuilds = 0  # how many times the device list was built (for tests and benchmarks)

    # ------------------------------------------------------------ informer listeners
    def node_changed(self, old: pb.Node | None, new: pb.Node | None) -> None:
        """A Node was added, changed or deleted. Only its spec, labels and phase matter to scheduling."""
        if new is None:
            if self._nodes.pop(old.metadata.name, None) is not None:
                self._mark(old.metadata.name)
            return
        name = new.metadata.name
        cur = self._nodes.get(name)
        self._nodes[name] = new
        if cur is None or cur.spec != new.spec or cur.metadata.labels != new.metadata.labels \
                or cur.status.phase != new.status.phase:
            self._mark(name)

    def readiness_changed(self, node: str) -> None:
        """The node's heartbeat lease came or went: its devices' readiness may differ now."""
        d = next((d for d in self._devices if d.node == node), None) if node in self._nodes else None
        if d is not None and d.node_ready != self._ready(node):
            self._mark(node)

    def placement_changed(self, old: pb.Placement | None, new: pb.Placement | None) -> None:
        obj = new if new is not None else old
        key = (obj.metadata.namespace, obj.metadata.name)
        before = self._placed.pop(key, None)
        if before is not None:
            self._release(self._holders, before, key)
        if new is not None:
            where = (new.spec.node, new.spec.device, new.spec.pipeline_digest)
            self._placed[key] = where
            self._hold(self._holders, where, key)

    # ------------------------------------------------------------ assume / forget
    def assume(self, key: Hashable, node: str, device: str, digest: str) -> None:
        """Reserve a slot for a decision whose write has not been seen yet."""
        self.forget(key)
        where = (node, device, digest)
        self._assumed[key] = where
        self._hold(self._assumed_at, where, key)

    def forget(self, key: Hashable) -> None:
        where = self._assumed.pop(key, None)
        if where is not None:
            self._release(self._assumed_at, where, key)

    @property
    def assumed(self) -> int:
        """How many decisions are assumed and not yet written (or forgotten)."""
        return len(self._assumed)

    # ------------------------------------------------------------ decisions
    def devices(self) -> list[DeviceState]:
        """The device list, rebuilt if nodes changed (exact: not paced)."""
        if self._stale:
            self._rebuild()
        return self._devices

    def schedule(self, request: Request) -> Decision:
        """Decide (without taking the slot: ``assume`` does) with the cache's indexed policy."""
        if self._stale and time.monotonic() >= self._next_rebuild:
            self._rebuild()
        decision = self.policy.schedule(request, self._devices)
        if self._stale and (decision.device.node in self._changed if decision.device is not None else True):
            self._rebuild()  # the paced list may be wrong exactly here: decide on the current one
            decision = self.policy.schedule(request, self._devices)
        return decision

    def _mark(self, node: str) -> None:
        self._stale = True
        self._changed.add(node)

    # ------------------------------------------------------------ internals
    def _hold(self, table: dict[Where, dict[Hashable, str]], where: tuple[str, str, str], key: Hashable) -> None:
        table.setdefault(where[:2], {})[key] = where[2]
        self._recount(where[:2])

    def _release(self, table: dict[Where, dict[Hashable, str]], where: tuple[str, str, str],
                 key: Hashable) -> None:
        at = table.get(where[:2])
        if at is not None:
            at.pop(key, None)
            if not at:
                del table[where[:2]]
        self._recount(where[:2])

    def _usage(self, where: Where) -> tuple[int, str]:
        placed, assumed = self._holders.get(where, {}), self._assumed_at.get(where, {})
        used = len(placed) + sum(1 for k in assumed if k not in placed)
        digest = next(iter(placed.values()), "") or next(iter(assumed.values()), "")
        return used, digest if used else ""

    def _recount(self, where: Where) -> None:
        d = self._by_key.get(where)
        if d is None:
            return  # not in the list (yet): the next rebuild counts it
        d.used, d.pipeline_digest = self._usage(where)
        self.policy.refresh(d)

    def _rebuild(self) -> None:
        started = time.monotonic()
        devices = devices_from(self._nodes[n] for n in sorted(self._nodes))
        for d in devices:
            d.node_ready = self._ready(d.node)
            d.used, d.pipeline_digest = self._usage(d.key)
        self._devices = devices  # a new list object: the policy re-indexes it on its next decision
        self._by_key = {d.key: d for d in devices}
        self._stale = False
        self._changed.clear()
        self.rebuilds += 1
        self.policy.prepare(devices)  # index now, so the pacing counts the whole cost
        took = time.monotonic() - started
        gap = min(1.0, 4 * took) if self.rebuild_gap is None else self.rebuild_gap
        self._next_rebuild = time.monotonic() + gap
