"""The Deployment reconciler: revisions, replicas into Placements, rollouts (Recreate, RollingUpdate,
Canary) and automatic rollback, moves off lost devices, finalization, and the status aggregated
from the placements.

Each change of a deployment's pipeline or entities gets a Revision (``revisions.py``); a placement
carries the content of one revision, and its revision is the one whose hash its content has.
``status.rollout_plan`` decides how many replicas may carry the target revision this pass; the
others keep theirs (a new or moved one gets the current revision's content). RollingUpdate with
``max_surge`` places up to that many extra placements of the target (surge replicas, numbered from
``spec.replicas``, labelled ``kubep4.io/surge``) on devices the deployment does not use while the
rollout is under way, updates a replica only while enough placements stay available
(``status.surge_budget``), and removes the surge placements once it is complete.

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
from services.controller import revisions as rv
from services.controller import scheduling as sched
from services.controller.placement import Placer, Scope
from services.controller.scheduling.cache import SchedulerCache
from services.controller.status import (
    PROGRESSING,
    ROLLED_BACK,
    Plan,
    Rev,
    available,
    deployment_status,
    rollout_budget,
    rollout_plan,
    surge_budget,
)
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
HASH_LABEL = "kubep4.io/revision-hash"  # on placements: the hash of the revision content they carry
SURGE_LABEL = "kubep4.io/surge"  # "true" on RollingUpdate's surge placements (replica >= spec.replicas)
SCHEDULED_GRACE = 0.05  # s: a Scheduled status younger than this is not written (the agent's Installing is 50 ms too)


def is_surge(d: kr.Deployment, p: kr.Placement) -> bool:
    """A surge placement of ``d`` (a replica beyond spec.replicas that a RollingUpdate added), not a
    scaled-down one."""
    return p.spec.replica >= d.spec.replicas and p.metadata.labels.get(SURGE_LABEL) == "true"


def _surges(d: kr.Deployment, placements) -> dict[int, kr.Placement]:
    """The live surge placements (none being deleted), by replica."""
    return {p.spec.replica: p for p in placements
            if is_surge(d, p) and not p.metadata.HasField("deletion_timestamp")}


def _rev(r: kr.Revision | None) -> Rev | None:
    return Rev(r.metadata.name, r.spec.hash) if r is not None else None


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
        self._hashes: dict[tuple[str, str, str], tuple[int, str]] = {}  # placement -> (version, hash)
        self._dhash: tuple[tuple, str] = ((), "")  # the last deployment hashed: (its version, hash)
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
            await self._delete_revisions(ns, name)
            await self.placer.deleted(ns, name)
            return None
        ctx = extract_context(d.metadata.trace_context)
        with tracer.start_as_current_span("controller reconcile", context=ctx,
                                          attributes={"kubep4.deployment": f"{ns}/{name}",
                                                      "kubep4.generation": d.metadata.generation}):
            if d.metadata.HasField("deletion_timestamp"):
                return await self._finalize(d, placements)
            target, current = await self._revisions(d)
            live = {p.spec.replica: p for p in placements
                    if p.spec.replica < d.spec.replicas and not p.metadata.HasField("deletion_timestamp")}
            plan = rollout_plan(d, live, _rev(target), _rev(current), self._hash, time.time_ns(),
                                _surges(d, placements))
            if plan.rollback and d.status.rollback_generation != d.metadata.generation \
                    and await self._rollback(d, current, plan):
                return 0.01  # the new generation's own pass (our write's watch event does not requeue us)
            waiting = self.view.pipeline_waiting(d)  # its pipeline is not Ready: wait, naming it
            unschedulable, surge_waiting = ([waiting], "") if waiting else \
                await self._schedule(d, placements, plan, target, current)
            if unschedulable or surge_waiting:
                self.waiting.add(key)
            else:
                self.waiting.discard(key)
            later = await self._update_status(d, unschedulable, plan, surge_waiting)
            # level-triggered safety net: whatever frees a device also requeues us, but retry anyway
            if unschedulable or surge_waiting:
                return 10.0
            waits = [t for t in (later, plan.recheck) if t is not None]
            return min(waits) if waits else None

    # ------------------------------------------------------------ revisions
    async def _revisions(self, d: kr.Deployment) -> tuple[kr.Revision, kr.Revision | None]:
        """The target revision (the spec's: made now when the newest differs) and the current one
        (status.current_revision, None when there is none); the history pruned to its limit."""
        ns, name = d.metadata.namespace, d.metadata.name
        revs = self.view.revisions_of(ns, name)
        want = self._deployment_hash(d)
        if not revs or revs[-1].spec.hash != want:
            n = revs[-1].spec.revision + 1 if revs else 1
            cause = (f"rollback from revision {d.status.rolled_back_from}"
                     if d.status.rollback_generation == d.metadata.generation and d.status.rolled_back_from else "")
            try:
                stored = await self.store.create(st.REVISIONS, rv.new_revision(d, n, cause))
            except st.AlreadyExists:  # our cache is behind: the next pass sees it
                raise st.Conflict(f"revision {ns}/{rv.revision_name(name, n)} exists; looking again") from None
            self.view.revisions.observe(stored)
            self.wrote((ns, name), stored.metadata.resource_version)
            log.info("revision %s/%s: pipeline %s (%s), generation %d", ns, stored.metadata.name, d.spec.pipeline,
                     d.status.pipeline_digest[:19], d.metadata.generation)
            revs.append(stored)
        target = revs[-1]
        current = next((r for r in revs if r.metadata.name == d.status.current_revision), None)
        keep = {target.metadata.name} | ({current.metadata.name} if current is not None else set())
        for r in rv.to_prune(revs, rv.history_limit(d), keep):
            await self._delete_revision(r)
        return target, current

    async def _delete_revision(self, r: kr.Revision) -> None:
        try:
            await self.store.delete(st.REVISIONS, r.metadata.namespace, r.metadata.name)
        except st.NotFound:
            pass
        self.view.revisions.forget(r)

    async def _delete_revisions(self, ns: str, name: str) -> None:
        for r in self.view.revisions_of(ns, name):
            await self._delete_revision(r)

    def _deployment_hash(self, d: kr.Deployment) -> str:
        """The revision hash of the deployment's spec, computed once per stored version."""
        key = (d.metadata.namespace, d.metadata.name, d.metadata.resource_version, d.metadata.generation)
        if self._dhash[0] != key:
            self._dhash = (key, rv.deployment_hash(d))
        return self._dhash[1]

    def _hash(self, p: kr.Placement) -> str:
        """The revision hash of the content a placement carries (its label, else computed once per version)."""
        label = p.metadata.labels.get(HASH_LABEL)
        if label:
            return label
        key = (p.metadata.namespace, p.metadata.name, p.spec.node)
        hit = self._hashes.get(key)
        if hit is None or hit[0] != p.metadata.resource_version:
            hit = (p.metadata.resource_version, rv.placement_hash(p))
            self._hashes[key] = hit
        return hit[1]

    async def _rollback(self, d: kr.Deployment, current: kr.Revision | None, plan: Plan) -> bool:
        """auto_rollback: the current revision's pipeline and entities back into the spec (a new
        generation), as ``kubep4 rollout undo`` writes them; Progressing False RolledBack. False when
        that revision's pipeline no longer has its digest (nothing is written; the rollout stays stopped)."""
        ns = d.metadata.namespace
        try:
            pipeline = await self.store.get(st.PIPELINES, ns, current.spec.pipeline)
        except st.NotFound:
            pipeline = None
        if pipeline is None or pipeline.status.digest != current.spec.pipeline_digest:
            log.warning("deployment %s/%s: cannot roll back to %s: pipeline %s no longer has digest %s", ns,
                        d.metadata.name, current.metadata.name, current.spec.pipeline, current.spec.pipeline_digest[:19])
            return False
        updated = _copy(d)
        updated.spec.pipeline = current.spec.pipeline
        copy_entities(current.spec, updated.spec)
        updated.metadata.generation = d.metadata.generation + 1
        s = updated.status
        s.pipeline_digest = current.spec.pipeline_digest
        s.rollback_generation, s.rolled_back_from = updated.metadata.generation, plan.target.name
        cond.mark_false(s.conditions, PROGRESSING, ROLLED_BACK,
                        f"rolled back to revision {current.metadata.name} after revision {plan.target.name} "
                        f"stopped: {plan.reason}: {plan.message}")
        updated.metadata.trace_context.clear()
        stamp_write(updated.metadata.trace_context)
        with tracer.start_as_current_span("rollback write", attributes={"kubep4.revision": current.metadata.name}):
            stored = await self.store.update(st.DEPLOYMENTS, updated)
        self.view.deployments.observe(stored)
        self.wrote((ns, d.metadata.name), stored.metadata.resource_version)
        log.warning("deployment %s/%s: rolled back to revision %s (generation %d): %s: %s", ns, d.metadata.name,
                    current.metadata.name, stored.metadata.generation, plan.reason, plan.message)
        return True

    # ------------------------------------------------------------ scheduling
    async def _schedule(self, d: kr.Deployment, placements: list[kr.Placement], plan: Plan,
                        target: kr.Revision, current: kr.Revision | None) -> tuple[list[str], str]:
        """Each replica: placed, moved off a lost device, or updated to the target revision while the
        plan allows (and RollingUpdate's budget); the others keep the revision they carry. First the
        surge placements (``_surge``). Returns why replicas found no device, and why a surge
        replica found none ("" when none waits)."""
        ns, name = d.metadata.namespace, d.metadata.name
        by_replica = {p.spec.replica: p for p in placements}
        messages: list[str] = []
        for p in placements:
            if p.spec.replica >= d.spec.replicas and not is_surge(d, p):  # scaled down
                await self._remove_placement(p)
        surges, surge_waiting = await self._surge(d, placements, plan, target)
        # the surge budget while a rollout between revisions runs; otherwise (back to the current
        # content, as after a rollback) the replicas move as without max_surge
        with_surge = d.spec.strategy.type == "RollingUpdate" and d.spec.strategy.max_surge > 0 and plan.rolling
        on_target = sum(1 for p in placements if p.spec.replica < d.spec.replicas
                        and not p.metadata.HasField("deletion_timestamp") and self._hash(p) == target.spec.hash)
        new: list[tuple[int, str, str, kr.Revision]] = []  # (replica, node, device, revision) of new placements
        for i in range(d.spec.replicas):
            p = by_replica.get(i)
            if p is not None and p.metadata.HasField("deletion_timestamp"):
                if self.view.node_ready(p.spec.node):
                    continue  # its agent is releasing it; the replica is placed again after
                await self._delete_placement(p)  # its node is gone: nobody else will release it
                p = None
                del by_replica[i]
            # the revision this replica carries after this pass (None: the one it has)
            if p is None:
                rev = target if on_target < plan.allowed or current is None else current
                on_target += rev is target
            elif self._hash(p) == target.spec.hash:
                rev = target
            elif on_target < plan.allowed and (
                    (not available(p) or surge_budget(d, self._regular(d, by_replica), surges) > 0) if with_surge
                    else rollout_budget(d, by_replica) > 0):
                rev = target
                on_target += 1
            else:
                rev = None
            digest = rev.spec.pipeline_digest if rev is not None else p.spec.pipeline_digest
            move = p is not None and (not self.view.device_exists(p) or self._pipeline_blocked(p, digest))
            if p is None or move:
                others = frozenset([q.spec.node for r, q in by_replica.items() if r != i] + [n for _, n, _, _ in new])
                exclude = frozenset({(p.spec.node, p.spec.device)}) if move else frozenset()
                request = sched.Request(namespace=ns, deployment=name, replica=i, target=d.spec.target,
                                        arch=d.spec.arch, selector=d.spec.selector,
                                        pipeline_digest=digest, avoid_nodes=others,
                                        exclude_devices=exclude)
                decision = await self._decide(request, (ns, placement_name(name, i)))
                if not decision.scheduled:
                    if decision.failure != "Pending":  # Pending: a placer still waiting (kube-scheduler)
                        messages.append(decision.message)
                    continue  # a placement that cannot move stays where it is
                chosen = decision.device
                if p is None:  # written with the other new replicas, in one transaction
                    new.append((i, chosen.node, chosen.device, rev))
                    continue
                try:
                    by_replica[i] = await self._write_placement(d, i, chosen.node, chosen.device, p, rev)
                finally:  # written (and in the informer's cache) or failed: no longer an assumption
                    self.cache.forget((ns, placement_name(name, i)))
            elif rev is not None and (p.spec.deployment_generation != d.metadata.generation
                                      or self._hash(p) != target.spec.hash):
                if self._hash(p) == target.spec.hash and rollout_budget(d, by_replica) <= 0:
                    continue  # RollingUpdate: wait until an updated replica is Running
                by_replica[i] = await self._write_placement(d, i, p.spec.node, p.spec.device, p, rev)
        if new:
            await self._create_placements(d, new)
        return messages, surge_waiting

    @staticmethod
    def _regular(d: kr.Deployment, by_replica: dict[int, kr.Placement]) -> dict[int, kr.Placement]:
        return {i: p for i, p in by_replica.items()
                if i < d.spec.replicas and not p.metadata.HasField("deletion_timestamp")}

    async def _surge(self, d: kr.Deployment, placements: list[kr.Placement], plan: Plan, target: kr.Revision
                     ) -> tuple[dict[int, kr.Placement], str]:
        """RollingUpdate's surge placements: those of the target kept while the rollout is under way
        (the others removed: complete, another target, beyond max_surge, their device gone), and new
        ones up to ``plan.surge`` on devices the deployment does not use, numbered from spec.replicas.
        Returns the live ones and why a new one found no device ("")."""
        ns, name, n = d.metadata.namespace, d.metadata.name, d.spec.replicas
        limit = max(0, d.spec.strategy.max_surge) if d.spec.strategy.type == "RollingUpdate" else 0
        kept: dict[int, kr.Placement] = {}
        for p in placements:
            if not is_surge(d, p) or p.metadata.HasField("deletion_timestamp"):
                continue
            if plan.rolling and self._hash(p) == target.spec.hash and p.spec.replica < n + limit \
                    and self.view.device_exists(p):
                kept[p.spec.replica] = p
            else:
                log.info("surge placement %s/%s on %s/%s removed", ns, p.metadata.name, p.spec.node, p.spec.device)
                await self._remove_placement(p)
        taken = {p.spec.replica for p in placements}  # a replica number's key may still be held (being deleted)
        slots = [i for i in range(n, n + limit) if i not in taken][:max(0, plan.surge - len(kept))]
        for i in slots:
            mine = self.view.placements_of(ns, name)
            request = sched.Request(namespace=ns, deployment=name, replica=i, target=d.spec.target,
                                    arch=d.spec.arch, selector=d.spec.selector,
                                    pipeline_digest=target.spec.pipeline_digest,
                                    avoid_nodes=frozenset(p.spec.node for p in mine),
                                    exclude_devices=frozenset((p.spec.node, p.spec.device) for p in mine))
            decision = await self._decide(request, (ns, placement_name(name, i)))
            if not decision.scheduled:
                return kept, decision.message if decision.failure != "Pending" else ""
            try:
                kept[i] = await self._write_placement(d, i, decision.device.node, decision.device.device, None,
                                                      target, surge=True)
            finally:
                self.cache.forget((ns, placement_name(name, i)))
        return kept, ""

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

    def _pipeline_blocked(self, p: kr.Placement, digest: str) -> bool:
        """The replica now gets another pipeline (``digest``), but the device also holds other
        deployments' placements running the old one: it must move rather than replace their pipeline."""
        if p.spec.pipeline_digest == digest:
            return False
        return any((q.metadata.namespace, q.spec.deployment) != (p.metadata.namespace, p.spec.deployment)
                   for q in self.view.placements_on_device(p.spec.node, p.spec.device))

    # ------------------------------------------------------------ placement writes
    def _placement(self, d: kr.Deployment, replica: int, node: str, device: str,
                   current: kr.Placement | None, rev: kr.Revision | None, surge: bool = False) -> kr.Placement:
        """The placement of ``replica`` on ``node``/``device`` carrying revision ``rev`` (None: the
        content ``current`` carries). The target revision (the spec's) is for the deployment's
        current generation; an older one keeps the generation it was written for."""
        p = _copy(current) if current is not None else kr.Placement()
        p.metadata.name = placement_name(d.metadata.name, replica)
        p.metadata.namespace = d.metadata.namespace
        p.metadata.labels["kubep4.io/deployment"] = d.metadata.name
        moved = current is not None and (current.spec.node, current.spec.device) != (node, device)
        before = self._hash(current) if current is not None else ""
        if rev is None:
            src, pipeline, digest, gen = current.spec, current.spec.pipeline, current.spec.pipeline_digest, \
                current.spec.deployment_generation
            h = before
        else:
            target = rev.spec.hash == self._deployment_hash(d)
            src, pipeline, digest = rev.spec, rev.spec.pipeline, rev.spec.pipeline_digest
            gen = d.metadata.generation if target else rev.spec.deployment_generation
            h = rev.spec.hash
        p.spec.CopyFrom(kr.PlacementSpec(
            deployment=d.metadata.name, namespace=d.metadata.namespace, replica=replica, node=node,
            device=device, pipeline=pipeline, pipeline_digest=digest, deployment_generation=gen))
        copy_entities(src, p.spec)
        p.metadata.labels[HASH_LABEL] = h
        if surge:
            p.metadata.labels[SURGE_LABEL] = "true"
        else:  # a surge placement whose number spec.replicas now covers is that replica's
            p.metadata.labels.pop(SURGE_LABEL, None)
        p.spec.pipeline_upgrade, p.spec.fallback = d.spec.strategy.pipeline_upgrade, d.spec.strategy.fallback
        if current is None or moved:
            p.status.CopyFrom(kr.PlacementStatus(phase="Pending"))
            p.status.last_transition_time.GetCurrentTime()
        elif h != before and p.status.phase == "Failed":
            # what failed was the content it carried before: its agent reports on this one afresh
            p.status.phase, p.status.reason, p.status.message = "Pending", "", ""
            p.status.last_transition_time.GetCurrentTime()
        p.metadata.trace_context.clear()
        stamp_write(p.metadata.trace_context)
        return p

    async def _create_placements(self, d: kr.Deployment, new: list[tuple[int, str, str, kr.Revision]]) -> None:
        """The new replicas' placements, in transactions of at most PLACEMENTS_PER_TXN (etcd's own limit
        is 128 operations), each observed at once; every assumption is forgotten, written or not."""
        ns = d.metadata.namespace
        try:
            for start in range(0, len(new), PLACEMENTS_PER_TXN):
                chunk = new[start:start + PLACEMENTS_PER_TXN]
                with tracer.start_as_current_span("placement write", attributes={
                        "kubep4.replicas": len(chunk), "kubep4.nodes": ",".join(sorted({n for _, n, _, _ in chunk})),
                        "kubep4.devices": ",".join(f"{n}/{dev}" for _, n, dev, _ in chunk)}):
                    stored = await self.store.create_all(st.PLACEMENTS, [
                        self._placement(d, i, node, device, None, rev) for i, node, device, rev in chunk])
                for p in stored:
                    self.view.placements.observe(p)
                    self.wrote((ns, d.metadata.name), p.metadata.resource_version)
                    log.info("placement %s/%s -> %s/%s (generation %d)", ns, p.metadata.name, p.spec.node,
                             p.spec.device, d.metadata.generation)
        finally:
            for i, _, _, _ in new:
                self.cache.forget((ns, placement_name(d.metadata.name, i)))

    async def _write_placement(self, d: kr.Deployment, replica: int, node: str, device: str,
                               current: kr.Placement | None, rev: kr.Revision | None,
                               surge: bool = False) -> kr.Placement:
        with tracer.start_as_current_span("placement write", attributes={
                "kubep4.node": node, "kubep4.device": device, "kubep4.replica": replica,
                "kubep4.surge": surge}):
            p = self._placement(d, replica, node, device, current, rev, surge)
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
        self._hashes.pop((p.metadata.namespace, p.metadata.name, p.spec.node), None)
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
        await self._delete_revisions(d.metadata.namespace, d.metadata.name)
        try:
            await self.store.delete(st.DEPLOYMENTS, d.metadata.namespace, d.metadata.name,
                                    d.metadata.resource_version)
            log.info("deployment %s/%s deleted", d.metadata.namespace, d.metadata.name)
        except st.NotFound:
            pass
        await self.placer.deleted(d.metadata.namespace, d.metadata.name)
        return None

    # ------------------------------------------------------------ status
    async def _update_status(self, d: kr.Deployment, unschedulable: list[str], plan: Plan | None = None,
                             surge_waiting: str = "") -> float | None:
        """Write the status if it changed; returns when to look again (a deferred Scheduled)."""
        want = self.view.deployments.get((d.metadata.namespace, d.metadata.name)) or d
        if want.metadata.HasField("deletion_timestamp"):
            return None  # deleted while we reconciled: Terminating stays, the next pass finalizes
        mine = self.view.placements_of(d.metadata.namespace, d.metadata.name)
        placements = {p.spec.replica: p for p in mine
                      if p.spec.replica < d.spec.replicas and not p.metadata.HasField("deletion_timestamp")}
        basis = _copy(d)
        basis.status.CopyFrom(want.status)
        names = {r.spec.hash: r.metadata.name for r in self.view.revisions_of(d.metadata.namespace, d.metadata.name)}
        if plan is not None:
            names[plan.target.hash] = plan.target.name
        s = deployment_status(basis, placements, unschedulable, self.view.device_exists, plan, self._hash,
                              lambda h: names.get(h, ""), _surges(d, mine), surge_waiting)
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
