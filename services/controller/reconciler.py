"""The controller's level-triggered reconcile loops.

Everything is derived from etcd (informer caches) on every pass, so the loop can
restart at any time and converge. Deployments are scheduled replica by replica
into Placements (one etcd transaction each); placements on nodes whose heartbeat
lease lapsed are moved; the Deployment status aggregates its placements.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from opentelemetry import metrics, trace

from kubep4 import conditions as cond
from kubep4 import store as st
from kubep4.backoff import Backoff
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.informer import Informer, WorkQueue, run_workers
from kubep4.telemetry import WRITTEN_AT, extract_context, record_delivery, stamp_write
from services.controller import scheduling as sched

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.controller")
meter = metrics.get_meter("kubep4.controller")


def placement_name(deployment: str, replica: int) -> str:
    return f"{deployment}-{replica}"


def _copy(m):
    out = type(m)()
    out.CopyFrom(m)
    return out


class Placer:
    """Chooses a device for each replica. This one runs the builtin scheduler in-process.

    A placer may also run background work (``start``: e.g. watching Kubernetes pods,
    calling ``requeue(namespace, deployment)`` when something changed) and is told
    when a replica's placement goes away (``released``) or a deployment is gone
    (``deleted``). kube_placement.KubernetesPlacer implements the same interface.
    """

    def __init__(self, policy=None):
        # a full scan per decision: the device list is rebuilt per reconcile, so an index would not pay off
        self.policy = policy or sched.BuiltinScheduler(indexed=False)

    async def start(self, store: st.Store, requeue: Callable[[str, str], None]) -> None:
        return None

    async def place(self, request: "sched.Request", devices: list) -> "sched.Decision":
        return self.policy.schedule(request, devices, commit=True)

    async def released(self, namespace: str, deployment: str, replica: int) -> None:
        return None

    async def deleted(self, namespace: str, deployment: str) -> None:
        return None


class Controller:
    def __init__(self, store: st.Store, placer: Placer | None = None, workers: int = 4,
                 gc_interval: float = 60.0, sync_timeout: float = 60.0):
        self.sync_timeout = sync_timeout  # seconds to list everything before the term is given up
        self.store = store
        self.placer = placer or Placer()
        self.workers = workers
        self.queue: WorkQueue = WorkQueue()
        self.deployments = Informer(store, st.DEPLOYMENTS, self._on_deployment)
        self.placements = Informer(store, st.PLACEMENTS, self._on_placement, indexes={
            "deployment": lambda p: (p.metadata.namespace, p.spec.deployment),
            "device": lambda p: (p.spec.node, p.spec.device)})
        self.nodes = Informer(store, st.NODES, self._on_node, key=lambda o: o.metadata.name)
        self.live_nodes: set[str] = set()
        self._lease_rev = 0  # etcd revision the lease watch has reached
        self._leases_synced = asyncio.Event()
        self._phase_hist = meter.create_histogram(
            "kubep4_deployment_phase_transition_time_from_creation_seconds", unit="s",
            description="Time from a deployment's creation to each phase it enters")
        self.gc_interval = gc_interval
        self._gc_mark = 0  # etcd revision of the previous artifact collection
        self._waiting: set[tuple] = set()  # deployments with replicas that found no device
        self._delivered: dict[tuple, str] = {}  # watch deliveries already traced (by write time)
        self._nodes_seen: dict[str, tuple] = {}  # node -> (spec, phase) last acted on
        self._lock = asyncio.Lock()  # scheduling decisions are serialised so they see each other
        self._assumed: dict[tuple[str, str], tuple[str, str, str]] = {}  # placement -> (node, device, digest)

    # ---------------------------------------------------------------- events
    def _on_deployment(self, etype: str, d: kr.Deployment) -> None:
        key = ("deployment", d.metadata.namespace, d.metadata.name)
        if etype in ("ADDED", "MODIFIED"):
            written = d.metadata.trace_context.get(WRITTEN_AT)
            if written and self._delivered.get(key) != written:
                self._delivered[key] = written
                record_delivery(tracer, d.metadata.trace_context, time.time_ns(), "etcd watch delivery",
                                {"kubep4.watcher": "controller", "kubep4.kind": "deployment"})
        elif etype == "DELETED":
            self._delivered.pop(key, None)
        self.queue.add(key)

    def _on_placement(self, etype: str, p: kr.Placement) -> None:
        self.queue.add(("deployment", p.metadata.namespace, p.spec.deployment))
        if etype == "DELETED":  # a device slot was freed: deployments waiting for one may fit now
            for key in self._waiting:
                self.queue.add(key)

    def _on_node(self, etype: str, n: kr.Node) -> None:
        # a node agent's report of its devices (or its heartbeat time) changes nothing to schedule
        seen = (n.spec.SerializeToString(deterministic=True), n.status.phase)
        if etype != "DELETED" and self._nodes_seen.get(n.metadata.name) == seen:
            return
        self._nodes_seen[n.metadata.name] = seen
        if etype == "DELETED":
            self._nodes_seen.pop(n.metadata.name, None)
        self.queue.add(("node", "", n.metadata.name))

    def _placements_of(self, ns: str, name: str) -> list[kr.Placement]:
        return self.placements.by("deployment", (ns, name))

    async def _watch_leases(self) -> None:
        backoff = Backoff(initial=0.1, cap=5.0)
        while True:
            try:
                kvs, rev = await self.store.list_raw(st.NODE_LEASES)
                self._lease_rev = rev
                live = {k[len(st.NODE_LEASES):] for k, _ in kvs}
                changed = live ^ self.live_nodes
                self.live_nodes = live
                self._leases_synced.set()
                for n in changed:
                    self.queue.add(("node", "", n))
                async for etype, kv, _ in self.store.watch_raw(st.NODE_LEASES.encode(), rev + 1):
                    node = kv.key.decode()[len(st.NODE_LEASES):]
                    self._lease_rev = kv.mod_revision
                    if etype == "DELETE":
                        self.live_nodes.discard(node)
                    else:
                        self.live_nodes.add(node)
                    self.queue.add(("node", "", node))
                backoff.reset()
            except (st.Unavailable, st.Compacted) as e:
                log.warning("lease watch: %s", e)
                await asyncio.sleep(backoff.next())

    # ---------------------------------------------------------------- run
    async def run(self) -> None:
        tasks = [asyncio.create_task(t) for t in (
            self.deployments.run(), self.placements.run(), self.nodes.run(), self._watch_leases())]
        try:
            synced = asyncio.gather(self.deployments.synced.wait(), self.placements.synced.wait(),
                                    self.nodes.synced.wait(), self._leases_synced.wait())
            try:  # a leader that cannot see the cluster must not sit on the lease
                await asyncio.wait_for(synced, self.sync_timeout)
            except asyncio.TimeoutError:
                errs = "; ".join(f"{i.kind.name}: {i.error}" for i in (self.deployments, self.placements, self.nodes)
                                 if i.error) or "no answer"
                raise RuntimeError(f"caches not synced after {self.sync_timeout:.0f}s ({errs})") from None
            log.info("caches synced: %d deployments, %d placements, %d nodes", len(self.deployments.cache),
                     len(self.placements.cache), len(self.nodes.cache))
            tasks.append(asyncio.create_task(self.placer.start(
                self.store, lambda ns, name: self.queue.add(("deployment", ns, name)))))
            tasks.append(asyncio.create_task(run_workers(self.queue, self.reconcile, self.workers)))
            tasks.append(asyncio.create_task(self._collect_periodically()))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _collect_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.gc_interval)
            try:
                await self.collect_artifacts()
            except st.StoreError as e:
                log.warning("artifact collection: %s", e)

    async def collect_artifacts(self) -> list[str]:
        """Delete artifact blobs no Pipeline references (Store.collect_blobs). A blob must be unreferenced
        and unwritten since the previous collection, so one stored just before its Pipeline is never taken.
        Returns the digests."""
        with tracer.start_as_current_span("artifact collection"):
            doomed, revision = await self.store.collect_blobs(self._gc_mark)
        if doomed:
            log.info("collected %d unreferenced artifact(s)", len(doomed))
        self._gc_mark = revision
        return doomed

    async def reconcile(self, key) -> float | None:
        kind, ns, name = key
        if kind == "node":
            return await self.reconcile_node(name)
        return await self.reconcile_deployment(ns, name)

    # ---------------------------------------------------------------- nodes
    async def reconcile_node(self, name: str) -> float | None:
        node = self.nodes.get(name)
        live = self._node_ready(name)
        if node is not None:
            want = "Ready" if live else "NotReady"
            if node.status.phase != want:
                def set_phase(n: kr.Node) -> kr.Node:
                    n.status.phase = want
                    cond.mark(n.status.conditions, "Ready", cond.TRUE if live else cond.FALSE,
                              "HeartbeatOK" if live else "LeaseExpired",
                              "" if live else "the node agent's heartbeat lease expired")
                    return n
                updated = await self.store.mutate(st.NODES, "", name, set_phase)
                if updated is not None:
                    self.nodes.observe(updated)
                log.info("node %s is %s", name, want)
        # every deployment with a placement there may need to move or can now be placed
        for d in self.deployments.items():
            self.queue.add(("deployment", d.metadata.namespace, d.metadata.name))
        return None

    def _device_states(self) -> list:
        """Every device with the slots its placements use, those decided but not yet written included."""
        used = [(p.spec.node, p.spec.device, p.spec.pipeline_digest) for p in self.placements.items()]
        for (ns, name), where in self._assumed.items():
            cached = self.placements.get((ns, name))
            if cached is None or (cached.spec.node, cached.spec.device) != where[:2]:
                used.append(where)
        devices = sched.devices_from(self.nodes.items(), used)
        for d in devices:
            d.node_ready = self._node_ready(d.node)
        return devices

    def _node_ready(self, name: str) -> bool:
        """Readiness is the heartbeat lease. An agent takes its lease before it writes its Node, so a Node
        (still Ready) newer than the lease watch has caught up to has a lease we have not seen yet."""
        if name in self.live_nodes:
            return True
        node = self.nodes.get(name)
        return node is not None and node.status.phase == "Ready" and \
            node.metadata.resource_version > self._lease_rev

    # ---------------------------------------------------------------- deployments
    async def reconcile_deployment(self, ns: str, name: str) -> float | None:
        d = self.deployments.get((ns, name))
        placements = self._placements_of(ns, name)
        if d is None:
            self._waiting.discard(("deployment", ns, name))
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
            unschedulable = await self._schedule(d, placements)
            key = ("deployment", ns, name)
            if unschedulable:
                self._waiting.add(key)
            else:
                self._waiting.discard(key)
            await self._update_status(d, unschedulable)
            # level-triggered safety net: whatever frees a device also requeues us, but retry anyway
            return 10.0 if unschedulable else None

    async def _schedule(self, d: kr.Deployment, placements: list[kr.Placement]) -> list[str]:
        ns, name = d.metadata.namespace, d.metadata.name
        by_replica = {p.spec.replica: p for p in placements}
        messages: list[str] = []
        for p in placements:
            if p.spec.replica >= d.spec.replicas:  # scaled down
                await self._remove_placement(p)
        for i in range(d.spec.replicas):
            p = by_replica.get(i)
            if p is not None and p.metadata.HasField("deletion_timestamp"):
                if self._node_ready(p.spec.node):
                    continue  # its agent is releasing it; the replica is placed again after
                await self._delete_placement(p)  # its node is gone: nobody else will release it
                p = None
                del by_replica[i]
            move = p is not None and (not self._device_exists(p) or self._pipeline_blocked(d, p))
            if p is None or move:
                others = frozenset(q.spec.node for r, q in by_replica.items() if r != i)
                exclude = frozenset({(p.spec.node, p.spec.device)}) if move else frozenset()
                request = sched.Request(namespace=ns, deployment=name, replica=i, target=d.spec.target,
                                        arch=d.spec.arch, selector=d.spec.selector,
                                        pipeline_digest=d.status.pipeline_digest, avoid_nodes=others,
                                        exclude_devices=exclude)
                key = (ns, placement_name(name, i))
                # kube-scheduler's assume: the lock covers only deciding and reserving the slot in
                # memory; the etcd write happens outside it, and a failed write forgets the slot
                async with self._lock:
                    with tracer.start_as_current_span("schedule") as span:
                        decision = await self.placer.place(request, self._device_states())
                        if decision.scheduled:
                            self._assumed[key] = (decision.device.node, decision.device.device,
                                                  d.status.pipeline_digest)
                        span.set_attributes({
                            "kubep4.replica": i, "scheduler.candidates": decision.candidates,
                            "scheduler.feasible": decision.feasible,
                            "scheduler.filtered": ", ".join(
                                f"{k}={v}" for k, v in sorted(decision.filtered.items())),
                            "scheduler.chosen": f"{decision.device.node}/{decision.device.device}"
                            if decision.device else "", "scheduler.score": float(decision.score)})
                if not decision.scheduled:
                    if decision.failure != "Pending":  # Pending: a placer still waiting (kube-scheduler)
                        messages.append(decision.message)
                    continue  # a placement that cannot move stays where it is
                chosen = decision.device
                try:
                    by_replica[i] = await self._write_placement(d, i, chosen.node, chosen.device, p)
                finally:  # written (and in the informer's cache) or failed: no longer an assumption
                    self._assumed.pop(key, None)
            elif (p.spec.deployment_generation != d.metadata.generation
                  or p.spec.pipeline_digest != d.status.pipeline_digest):
                if self._rollout_budget(d, by_replica) <= 0:
                    continue  # RollingUpdate: wait until an updated replica is Running
                by_replica[i] = await self._write_placement(d, i, p.spec.node, p.spec.device, p)
        return messages

    def _pipeline_blocked(self, d: kr.Deployment, p: kr.Placement) -> bool:
        """The deployment now wants another pipeline, but the device also holds other deployments'
        placements running the old one: the replica must move rather than replace their pipeline."""
        if p.spec.pipeline_digest == d.status.pipeline_digest:
            return False
        return any((q.metadata.namespace, q.spec.deployment) != (p.metadata.namespace, p.spec.deployment)
                   for q in self.placements.by("device", (p.spec.node, p.spec.device)))

    @staticmethod
    def _rollout_budget(d: kr.Deployment, by_replica: dict[int, kr.Placement]) -> int:
        """How many more replicas may be moved to the new generation now (Recreate: all of them)."""
        if d.spec.strategy.type != "RollingUpdate":
            return d.spec.replicas
        gen = d.metadata.generation
        updating = sum(1 for p in by_replica.values()
                       if p.spec.deployment_generation == gen
                       and not (p.status.phase == "Running" and p.status.observed_generation == gen))
        return max(1, d.spec.strategy.max_unavailable) - updating

    def _device_exists(self, p: kr.Placement) -> bool:
        """The placement's device is still registered on a node with a live heartbeat."""
        if not self._node_ready(p.spec.node):
            return False
        node = self.nodes.get(p.spec.node)
        return node is not None and any(dev.name == p.spec.device for dev in node.spec.devices)

    async def _write_placement(self, d: kr.Deployment, replica: int, node: str, device: str,
                               current: kr.Placement | None) -> kr.Placement:
        with tracer.start_as_current_span("placement write", attributes={
                "kubep4.node": node, "kubep4.device": device, "kubep4.replica": replica}):
            p = _copy(current) if current is not None else kr.Placement()
            p.metadata.name = placement_name(d.metadata.name, replica)
            p.metadata.namespace = d.metadata.namespace
            p.metadata.labels["kubep4.io/deployment"] = d.metadata.name
            moved = current is not None and (current.spec.node, current.spec.device) != (node, device)
            p.spec.CopyFrom(kr.PlacementSpec(
                deployment=d.metadata.name, namespace=d.metadata.namespace, replica=replica, node=node,
                device=device, pipeline=d.spec.pipeline, pipeline_digest=d.status.pipeline_digest,
                deployment_generation=d.metadata.generation, table_entries=d.spec.table_entries))
            if current is None or moved:
                p.status.CopyFrom(kr.PlacementStatus(phase="Pending"))
                p.status.last_transition_time.GetCurrentTime()
            p.metadata.trace_context.clear()
            stamp_write(p.metadata.trace_context)
            if current is None:
                stored = await self.store.create(st.PLACEMENTS, p)
            elif current.spec.node != node:  # its key is under the node: another node, another key
                stored = await self.store.move(st.PLACEMENTS, p, from_shard=current.spec.node)
            else:
                stored = await self.store.update(st.PLACEMENTS, p)
            self.placements.observe(stored)
            log.info("placement %s/%s -> %s/%s (generation %d)", p.metadata.namespace, p.metadata.name,
                     node, device, d.metadata.generation)
            return stored

    async def _remove_placement(self, p: kr.Placement) -> None:
        """Ask the node agent to clear the device (it deletes the placement), or delete it if the node is gone."""
        if not self._node_ready(p.spec.node):
            await self._delete_placement(p)
        elif not p.metadata.HasField("deletion_timestamp"):
            q = _copy(p)
            q.metadata.deletion_timestamp.GetCurrentTime()
            q.metadata.trace_context.clear()
            stamp_write(q.metadata.trace_context)
            try:
                self.placements.observe(await self.store.update(st.PLACEMENTS, q))
            except st.NotFound:
                self.placements.forget(p)

    async def _delete_placement(self, p: kr.Placement) -> None:
        try:
            await self.store.delete(st.PLACEMENTS, p.metadata.namespace, p.metadata.name, shard=p.spec.node)
        except st.NotFound:
            pass
        self.placements.forget(p)
        await self.placer.released(p.metadata.namespace, p.spec.deployment, p.spec.replica)

    async def _finalize(self, d: kr.Deployment, placements: list[kr.Placement]) -> float | None:
        for p in placements:
            await self._remove_placement(p)
        left = self._placements_of(d.metadata.namespace, d.metadata.name)
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

    # ---------------------------------------------------------------- status
    async def _update_status(self, d: kr.Deployment, unschedulable: list[str]) -> float | None:
        gen = d.metadata.generation
        want = self.deployments.get((d.metadata.namespace, d.metadata.name)) or d
        if want.metadata.HasField("deletion_timestamp"):
            return None  # deleted while we reconciled: Terminating stays, the next pass finalizes
        placements = {p.spec.replica: p for p in self._placements_of(d.metadata.namespace, d.metadata.name)
                      if p.spec.replica < d.spec.replicas and not p.metadata.HasField("deletion_timestamp")}
        s = kr.DeploymentStatus()
        s.CopyFrom(want.status)
        del s.replicas[:]
        ready = 0
        failed: list[kr.ReplicaStatus] = []       # the device refused (or is held by another client)
        unreachable: list[kr.ReplicaStatus] = []  # the device does not answer
        installing = False
        for i in range(d.spec.replicas):
            p = placements.get(i)
            if p is None:
                s.replicas.add(replica=i, phase="Unschedulable" if unschedulable else "Pending",
                               message=unschedulable[0] if unschedulable else "")
                continue
            current = (p.spec.deployment_generation == gen and p.status.observed_generation == gen
                       and self._device_exists(p))
            phase = p.status.phase or "Pending"
            if phase == "Running" and not current:
                phase = "Installing"
            r = s.replicas.add(replica=i, node=p.spec.node, device=p.spec.device, phase=phase,
                               message=p.status.message, reason=p.status.reason)
            if phase == "Running":
                ready += 1
            elif phase == "Unknown":
                unreachable.append(r)
            elif phase == "Failed":
                failed.append(r)
            elif phase == "Installing":
                installing = True
        placed = len(placements)
        n = d.spec.replicas
        if ready == n:
            phase = cond.RUNNING
        elif failed:
            phase = cond.FAILED
        elif unreachable:
            phase = cond.DEGRADED
        elif unschedulable and placed == 0:
            phase = cond.UNSCHEDULABLE
        elif installing or ready:
            phase = cond.INSTALLING
        elif placed == n:
            phase = cond.SCHEDULED_PHASE
        elif unschedulable:
            phase = cond.UNSCHEDULABLE
        else:
            phase = cond.PENDING
        c = s.conditions
        if placed == n:
            cond.mark_true(c, cond.SCHEDULED, "Scheduled", f"{n}/{n} replicas placed")
        elif unschedulable:
            cond.mark_false(c, cond.SCHEDULED, "Unschedulable", unschedulable[0])
        else:
            cond.mark_unknown(c, cond.SCHEDULED, "Scheduling", f"{placed}/{n} replicas placed")
        if ready == n:
            cond.mark_true(c, cond.INSTALLED, "Installed", f"{n}/{n} replicas running")
        elif failed or unreachable:
            bad = failed + unreachable
            cond.mark_false(c, cond.INSTALLED, bad[0].reason or "InstallFailed",
                            "; ".join(f"{r.node}/{r.device}: {r.message}" for r in bad))
        else:
            cond.mark_unknown(c, cond.INSTALLED, "Installing", f"{ready}/{n} replicas running")
        cond.derive_ready(c)
        s.ready_replicas = ready
        s.observed_generation = gen
        s.phase = phase
        if s == want.status:
            return None
        previous = want.status.phase
        updated = _copy(want)
        updated.status.CopyFrom(s)
        with tracer.start_as_current_span("status write", attributes={"kubep4.phase": phase}):
            try:
                stored = await self.store.update(st.DEPLOYMENTS, updated)
            except st.NotFound:
                return None
        self.deployments.observe(stored)
        if phase != previous:
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


