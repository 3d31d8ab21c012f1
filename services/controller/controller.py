"""The controller: one process, leader-elected, level-triggered. It wires the parts together:

* ``view.ClusterView`` — informer caches of Deployments, Placements (indexed) and Nodes, and the
  heartbeat leases;
* ``scheduling.cache.SchedulerCache`` — the devices and their used slots, fed by informer events;
* one reconciler per kind, each with its own work queue: ``deployments.DeploymentReconciler`` and
  ``nodes.NodeReconciler``; and ``artifacts.ArtifactCollector`` on a timer;
* a placement backend (``placement.Placer``; Kubernetes in ``kube_placement``).

Event handlers only enqueue keys; reconcilers read the caches.
"""
from __future__ import annotations

import asyncio
import logging
import time

from opentelemetry import trace

from kubep4 import store as st
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.informer import WorkQueue, run_workers
from kubep4.telemetry import WRITTEN_AT, record_delivery
from services.controller.artifacts import ArtifactCollector
from services.controller.deployments import DeploymentReconciler
from services.controller.nodes import NodeReconciler
from services.controller.placement import Placer
from services.controller.scheduling import BuiltinScheduler
from services.controller.scheduling.cache import SchedulerCache
from services.controller.view import ClusterView

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.controller")


class Controller:
    def __init__(self, store: st.Store, placer: Placer | None = None, workers: int = 4,
                 gc_interval: float = 60.0, sync_timeout: float = 60.0):
        self.store = store
        self.placer = placer or Placer()
        self.workers = workers
        self.sync_timeout = sync_timeout  # seconds to list everything before the term is given up
        self.deployment_queue: WorkQueue = WorkQueue()
        self.node_queue: WorkQueue = WorkQueue()
        self.view = ClusterView(store, on_deployment=self._on_deployment, on_placement=self._on_placement,
                                on_node=self._on_node, on_lease=self._on_lease, on_pipeline=self._on_pipeline,
                                on_revision=self._on_revision)
        self.cache = SchedulerCache(BuiltinScheduler(), ready=self.view.node_ready)
        self.view.nodes.add_listener(self.cache.node_changed)
        self.view.placements.add_listener(self.cache.placement_changed)
        self.deployments = DeploymentReconciler(store, self.view, self.cache, self.placer, self.requeue,
                                                wrote=self.deployment_queue.wrote)
        self.nodes = NodeReconciler(store, self.view, self.requeue, lambda: self.deployments.waiting)
        self.artifacts = ArtifactCollector(store, gc_interval)
        self._delivered: dict[tuple, str] = {}  # watch deliveries already traced (by write time)
        self._nodes_seen: dict[str, tuple] = {}  # node -> (spec, phase) last acted on

    def requeue(self, namespace: str, deployment: str) -> None:
        self.deployment_queue.add((namespace, deployment))

    # ------------------------------------------------------------ events: enqueue keys only
    def _on_deployment(self, etype: str, d: kr.Deployment) -> None:
        key = (d.metadata.namespace, d.metadata.name)
        if etype in ("ADDED", "MODIFIED"):
            written = d.metadata.trace_context.get(WRITTEN_AT)
            if written and self._delivered.get(key) != written:
                self._delivered[key] = written
                record_delivery(tracer, d.metadata.trace_context, time.time_ns(), "etcd watch delivery",
                                {"kubep4.watcher": "controller", "kubep4.kind": "deployment"})
        elif etype == "DELETED":
            self._delivered.pop(key, None)
        self.deployment_queue.add(key, cause=d.metadata.resource_version if etype != "DELETED" else None)

    def _on_placement(self, etype: str, p: kr.Placement) -> None:
        self.deployment_queue.add((p.metadata.namespace, p.spec.deployment),
                                  cause=p.metadata.resource_version if etype != "DELETED" else None)
        if etype == "DELETED":  # a device slot was freed: deployments waiting for one may fit now
            for key in self.deployments.waiting:
                self.deployment_queue.add(key)

    def _on_node(self, etype: str, n: kr.Node) -> None:
        # a node agent's report of its devices (or its heartbeat time) changes nothing to schedule
        seen = (n.spec.SerializeToString(deterministic=True), n.status.phase)
        if etype != "DELETED" and self._nodes_seen.get(n.metadata.name) == seen:
            return
        self._nodes_seen[n.metadata.name] = seen
        if etype == "DELETED":
            self._nodes_seen.pop(n.metadata.name, None)
        self.node_queue.add(n.metadata.name)

    def _on_pipeline(self, etype: str, pl: kr.Pipeline) -> None:
        """A pipeline became Ready (or Failed): the deployments waiting for it are looked at again."""
        if etype in ("ADDED", "MODIFIED"):
            for d in self.view.deployments.by("pipeline", (pl.metadata.namespace, pl.metadata.name)):
                self.deployment_queue.add((d.metadata.namespace, d.metadata.name))

    def _on_revision(self, etype: str, r: kr.Revision) -> None:
        if etype == "DELETED":  # pruned by us, or deleted behind our back: the deployment looks again
            self.deployment_queue.add((r.metadata.namespace, r.spec.deployment))

    def _on_lease(self, node: str) -> None:
        self.cache.readiness_changed(node)
        self.node_queue.add(node)

    # ------------------------------------------------------------ run
    async def run(self) -> None:
        tasks = [asyncio.create_task(t) for t in self.view.tasks()]
        try:
            await self.view.wait_synced(self.sync_timeout)  # a leader that cannot see must not lead
            v = self.view
            log.info("caches synced: %d deployments, %d placements, %d nodes", len(v.deployments.cache),
                     len(v.placements.cache), len(v.nodes.cache))
            tasks.append(asyncio.create_task(self.placer.start(self.store, self.requeue, self.view)))
            tasks.append(asyncio.create_task(run_workers(self.deployment_queue, self.deployments.reconcile,
                                                         self.workers, name="deployment")))
            tasks.append(asyncio.create_task(run_workers(self.node_queue, self.nodes.reconcile, 1, name="node")))
            tasks.append(asyncio.create_task(self.artifacts.run()))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
