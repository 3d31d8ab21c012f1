"""The Deployment reconciler: replicas into Placements, rolling updates, moves off lost devices,
finalization, and the status aggregated from the placements.

Scheduling follows kube-scheduler's assume/forget: the lock covers only the in-memory decision and
the slot's reservation in the scheduler cache; the etcd write happens outside it, and a write that
fails forgets the reservation.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from opentelemetry import metrics, trace

from kubep4 import conditions as cond
from kubep4 import store as st
from kubep4.entities import copy_entities
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.telemetry import extract_context, stamp_write
from services.controller import scheduling as sched
from services.controller.placement import Placer, Scope
from services.controller.scheduling.cache import SchedulerCache
from services.controller.status import deployment_status, rollout_budget
from services.controller.view import ClusterView

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.controller")
meter = metrics.get_meter("kubep4.controller")


def placement_name(deployment: str, replica: int) -> str:
    return f"{deployment}-{replica}"


def _copy(m):
    out = type(m)()
    out.CopyFrom(m)
    return out


PLACEMENTS_PER_TXN = 64
SCHEDULED_GRACE = 0.05  # s: a Scheduled status younger than this is not written (the agent's Installing is 50 ms too)


def _scheduled_too_recent(s: kr.DeploymentStatus, placements) -> float | None:
    """How long to defer a status that only says Scheduled, while every placement is fresher than the
    grace period (just written, not yet picked up by its agent); None to write it now."""
    if s.phase != cond.SCHEDULED_PHASE:
        return None
    newest = max((p.status.last_transition_time.ToNanoseconds() for p in placements), default=0)
    left = SCHEDULED_GRACE - (time.time_ns() - newest) / 1e9
    return left if left > 0 else None


class DeploymentReconciler:
    def __init__(self, store: st.Store, view: ClusterView, cache: SchedulerCache, placer: Placer,
                 requeue: Callable[[str, str], None],
                 wrote: Callable[[tuple[str, str], int], None] = lambda key, revision: None) -> None:
        self.store = store
        self.wrote = wrote  # tells the work queue which revisions of a deployment's objects we wrote
        self.view = view
        self.cache = cache
        self.placer = placer
        self.requeue = requeue
        self.waiting: set[tuple[str, str]] = set()  # deployments with replicas that found no device
        self._lock = asyncio.Lock()  # decisions are serialised so each sees the slots the others took
        self.decisions = 0           # scheduling decisions made (benchmarks read it)
        self._phase_hist = meter.create_histogram(
            "kubep4_deployment_phase_transition_time_from_creation_seconds", unit="s",
            description="Time from a deployment's creation to each phase it enters")

    async def reconcile(self, key: tuple[str, str]) -> float | None:
        ns, name = key
        d = self.view.deployments.get(key)
        placements = self.view.placements_of(ns, name)
        if d is None:
            self.waiting.discard(key)
            for p in placements:  # orphans of a deployment that is gone
                await self._delete_placement(p)
            await self.placer.deleted(ns, name)
            return None
        ctx = extract_context(d.metadata.trace_context)
        with tracer.start_as_current_span("controller reconcile", context=ctx,
                                          attributes={"kubep4.deployment": f"{ns}/{name}",
                                                      "kubep4.generation": d.metadata.generation}):
            if d.metadata.HasField("deletion_timestamp"):
                return await self._finalize(d, placements)
            waiting = self.view.pipeline_waiting(d)  # its pipeline is not Ready: wait, naming it
            unschedulable = [waiting] if waiting else await self._schedule(d, placements)
            if unschedulable:
                self.waiting.add(key)
            else:
                self.waiting.discard(key)
            later = await self._update_status(d, unschedulable)
            # level-triggered safety net: whatever frees a device also requeues us, but retry anyway
            return 10.0 if unschedulable else later

    # ------------------------------------------------------------ scheduling
    async def _schedule(self, d: kr.Deployment, placements: list[kr.Placement]) -> list[str]:
        ns, name = d.metadata.namespace, d.metadata.name
        by_replica = {p.spec.replica: p for p in placements}
        messages: list[str] = []
        for p in placements:
            if p.spec.replica >= d.spec.replicas:  # scaled down
                await self._remove_placement(p)
        new: list[tuple[int, str, str]] = []  # (replica, node, device) decided for replicas with no placement
        for i in range(d.spec.replicas):
            p = by_replica.get(i)
            if p is not None and p.metadata.HasField("deletion_timestamp"):
                if self.view.node_ready(p.spec.node):
                    continue  # its agent is releasing it; the replica is placed again after
                await self._delete_placement(p)  # its node is gone: nobody else will release it
                p = None
                del by_replica[i]
            move = p is not None and (not self.view.device_exists(p) or self._pipeline_blocked(d, p))
            if p is None or move:
                others = frozenset([q.spec.node for r, q in by_replica.items() if r != i] + [n for _, n, _ in new])
                exclude = frozenset({(p.spec.node, p.spec.device)}) if move else frozenset()
                request = sched.Request(namespace=ns, deployment=name, replica=i, target=d.spec.target,
                                        arch=d.spec.arch, selector=d.spec.selector,
                                        pipeline_digest=d.status.pipeline_digest, avoid_nodes=others,
                                        exclude_devices=exclude)
                decision = await self._decide(request, (ns, placement_name(name, i)))
                if not decision.scheduled:
                    if decision.failure != "Pending":  # Pending: a placer still waiting (kube-scheduler)
                        messages.append(decision.message)
                    continue  # a placement that cannot move stays where it is
                chosen = decision.device
                if p is None:  # written with the other new replicas, in one transaction
                    new.append((i, chosen.node, chosen.device))
                    continue
                try:
                    by_replica[i] = await self._write_placement(d, i, chosen.node, chosen.device, p)
                finally:  # written (and in the informer's cache) or failed: no longer an assumption
                    self.cache.forget((ns, placement_name(name, i)))
            elif (p.spec.deployment_generation != d.metadata.generation
                  or p.spec.pipeline_digest != d.status.pipeline_digest):
                if rollout_budget(d, by_replica) <= 0:
                    continue  # RollingUpdate: wait until an updated replica is Running
                by_replica[i] = await self._write_placement(d, i, p.spec.node, p.spec.device, p)
        if new:
            await self._create_placements(d, new)
        return messages

    async def _decide(self, request: sched.Request, key: tuple[str, str]) -> sched.Decision:
        """Scope (outside the lock), decide and assume (inside), the backend's bookkeeping (outside)."""
        scope = await self.placer.scope(request)
        if isinstance(scope, sched.Decision):
            return scope
        assert isinstance(scope, Scope)
        async with self._lock:
            with tracer.start_as_current_span("schedule") as span:
                decision = self.placer.decide(request, self.cache, scope)
                self.decisions += 1
                if decision.scheduled:
                    self.cache.assume(key, decision.device.node, decision.device.device,
                                      request.pipeline_digest)
                span.set_attributes({
                    "kubep4.replica": request.replica, "scheduler.candidates": decision.candidates,
                    "scheduler.feasible": decision.feasible,
                    "scheduler.filtered": ", ".join(f"{k}={v}" for k, v in sorted(decision.filtered.items())),
                    "scheduler.chosen": f"{decision.device.node}/{decision.device.device}"
                    if decision.device else "", "scheduler.score": float(decision.score)})
        return self.placer.decided(request, scope, decision)

    def _pipeline_blocked(self, d: kr.Deployment, p: kr.Placement) -> bool:
        """The deployment now wants another pipeline, but the device also holds other deployments'
        placements running the old one: the replica must move rather than replace their pipeline."""
        if p.spec.pipeline_digest == d.status.pipeline_digest:
            return False
        return any((q.metadata.namespace, q.spec.deployment) != (p.metadata.namespace, p.spec.deployment)
                   for q in self.view.placements_on_device(p.spec.node, p.spec.device))

    # ------------------------------------------------------------ placement writes
    @staticmethod
    def _placement(d: kr.Deployment, replica: int, node: str, device: str,
                   current: kr.Placement | None) -> kr.Placement:
        """The placement of ``replica`` on ``node``/``device`` for the deployment's current generation."""
        p = _copy(current) if current is not None else kr.Placement()
        p.metadata.name = placement_name(d.metadata.name, replica)
        p.metadata.namespace = d.metadata.namespace
        p.metadata.labels["kubep4.io/deployment"] = d.metadata.name
        moved = current is not None and (current.spec.node, current.spec.device) != (node, device)
        p.spec.CopyFrom(kr.PlacementSpec(
            deployment=d.metadata.name, namespace=d.metadata.namespace, replica=replica, node=node,
            device=device, pipeline=d.spec.pipeline, pipeline_digest=d.status.pipeline_digest,
            deployment_generation=d.metadata.generation))
        copy_entities(d.spec, p.spec)
        p.spec.pipeline_upgrade, p.spec.fallback = d.spec.strategy.pipeline_upgrade, d.spec.strategy.fallback
        if current is None or moved:
            p.status.CopyFrom(kr.PlacementStatus(phase="Pending"))
            p.status.last_transition_time.GetCurrentTime()
        p.metadata.trace_context.clear()
        stamp_write(p.metadata.trace_context)
        return p

    async def _create_placements(self, d: kr.Deployment, new: list[tuple[int, str, str]]) -> None:
        """The new replicas' placements, in transactions of at most PLACEMENTS_PER_TXN (etcd's own limit
        is 128 operations), each observed at once; every assumption is forgotten, written or not."""
        ns = d.metadata.namespace
        try:
            for start in range(0, len(new), PLACEMENTS_PER_TXN):
                chunk = new[start:start + PLACEMENTS_PER_TXN]
                with tracer.start_as_current_span("placement write", attributes={
                        "kubep4.replicas": len(chunk), "kubep4.nodes": ",".join(sorted({n for _, n, _ in chunk})),
                        "kubep4.devices": ",".join(f"{n}/{dev}" for _, n, dev in chunk)}):
                    stored = await self.store.create_all(
                        st.PLACEMENTS, [self._placement(d, i, node, device, None) for i, node, device in chunk])
                for p in stored:
                    self.view.placements.observe(p)
                    self.wrote((ns, d.metadata.name), p.metadata.resource_version)
                    log.info("placement %s/%s -> %s/%s (generation %d)", ns, p.metadata.name, p.spec.node,
                             p.spec.device, d.metadata.generation)
        finally:
            for i, _, _ in new:
                self.cache.forget((ns, placement_name(d.metadata.name, i)))

    async def _write_placement(self, d: kr.Deployment, replica: int, node: str, device: str,
                               current: kr.Placement | None) -> kr.Placement:
        with tracer.start_as_current_span("placement write", attributes={
                "kubep4.node": node, "kubep4.device": device, "kubep4.replica": replica}):
            p = self._placement(d, replica, node, device, current)
            if current is None:
                stored = await self.store.create(st.PLACEMENTS, p)
            elif current.spec.node != node:  # its key is under the node: another node, another key
                stored = await self.store.move(st.PLACEMENTS, p, from_shard=current.spec.node)
            else:
                stored = await self.store.update(st.PLACEMENTS, p)
            self.view.placements.observe(stored)
            self.wrote((d.metadata.namespace, d.metadata.name), stored.metadata.resource_version)
            log.info("placement %s/%s -> %s/%s (generation %d)", p.metadata.namespace, p.metadata.name,
                     node, device, d.metadata.generation)
            return stored

    async def _remove_placement(self, p: kr.Placement) -> None:
        """Ask the node agent to clear the device (it deletes the placement), or delete it if the node is gone."""
        if not self.view.node_ready(p.spec.node):
            await self._delete_placement(p)
        elif not p.metadata.HasField("deletion_timestamp"):
            q = _copy(p)
            q.metadata.deletion_timestamp.GetCurrentTime()
            q.metadata.trace_context.clear()
            stamp_write(q.metadata.trace_context)
            try:
                self.view.placements.observe(await self.store.update(st.PLACEMENTS, q))
            except st.NotFound:
                self.view.placements.forget(p)

    async def _delete_placement(self, p: kr.Placement) -> None:
        try:
            await self.store.delete(st.PLACEMENTS, p.metadata.namespace, p.metadata.name, shard=p.spec.node)
        except st.NotFound:
            pass
        self.view.placements.forget(p)
        await self.placer.released(p.metadata.namespace, p.spec.deployment, p.spec.replica)

    async def _finalize(self, d: kr.Deployment, placements: list[kr.Placement]) -> float | None:
        for p in placements:
            await self._remove_placement(p)
        left = self.view.placements_of(d.metadata.namespace, d.metadata.name)
        if left:
            log.info("deployment %s/%s: waiting for %d placement(s) to be released", d.metadata.namespace,
                     d.metadata.name, len(left))
            return 5.0  # waiting for the node agents; their deletes requeue us sooner
        try:
            await self.store.delete(st.DEPLOYMENTS, d.metadata.namespace, d.metadata.name,
                                    d.metadata.resource_version)
            log.info("deployment %s/%s deleted", d.metadata.namespace, d.metadata.name)
        except st.NotFound:
            pass
        await self.placer.deleted(d.metadata.namespace, d.metadata.name)
        return None

    # ------------------------------------------------------------ status
    async def _update_status(self, d: kr.Deployment, unschedulable: list[str]) -> float | None:
        """Write the status if it changed; returns when to look again (a deferred Scheduled)."""
        want = self.view.deployments.get((d.metadata.namespace, d.metadata.name)) or d
        if want.metadata.HasField("deletion_timestamp"):
            return None  # deleted while we reconciled: Terminating stays, the next pass finalizes
        placements = {p.spec.replica: p for p in self.view.placements_of(d.metadata.namespace, d.metadata.name)
                      if p.spec.replica < d.spec.replicas and not p.metadata.HasField("deletion_timestamp")}
        basis = _copy(d)
        basis.status.CopyFrom(want.status)
        s = deployment_status(basis, placements, unschedulable, self.view.device_exists)
        if s == want.status:
            return None
        wait = _scheduled_too_recent(s, placements.values())
        if wait:  # nobody could see it: the agents overwrite it within milliseconds (Installing, Running)
            return wait
        previous = want.status.phase
        updated = _copy(want)
        updated.status.CopyFrom(s)
        with tracer.start_as_current_span("status write", attributes={"kubep4.phase": s.phase}):
            try:
                stored = await self.store.update(st.DEPLOYMENTS, updated)
            except st.NotFound:
                return None
        self.view.deployments.observe(stored)
        self.wrote((d.metadata.namespace, d.metadata.name), stored.metadata.resource_version)
        if s.phase != previous:
            self._phase_changed(stored, previous)
        return None

    def _phase_changed(self, d: kr.Deployment, previous: str) -> None:
        created = d.metadata.creation_timestamp.ToNanoseconds()
        now = time.time_ns()
        self._phase_hist.record(max(0, now - created) / 1e9, {"phase": d.status.phase})
        log.info("deployment %s/%s: %s -> %s", d.metadata.namespace, d.metadata.name, previous, d.status.phase)
        if d.status.phase == cond.RUNNING:
            # one span covering creation -> Running, in the deployment's own trace
            span = tracer.start_span("deployment", context=extract_context(d.metadata.trace_context),
                                     start_time=created, attributes={
                                         "kubep4.deployment": f"{d.metadata.namespace}/{d.metadata.name}",
                                         "kubep4.generation": d.metadata.generation,
                                         "kubep4.replicas": d.spec.replicas})
            span.end(end_time=now)
