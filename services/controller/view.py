"""What the controller's reconcilers read: informer caches of Deployments, Placements (indexed by
deployment, device and node), Nodes, Pipelines (their readiness) and Revisions (by deployment),
plus the node agents' heartbeat leases.

Everything here is derived from etcd and rebuilt by a relist, so any reconciler may restart at any
time and converge. Reconcilers never scan a whole kind: they ask an index.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kubep4 import store as st
from kubep4.backoff import Backoff
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.informer import Informer

log = logging.getLogger(__name__)


class NodeLeases:
    """The set of nodes whose agent holds its heartbeat lease, kept by a list-then-watch of the lease keys.
    ``on_change(node)`` is called for every node whose lease came or went."""

    def __init__(self, store: st.Store, on_change: Callable[[str], None]) -> None:
        self.store = store
        self.on_change = on_change
        self.live: set[str] = set()
        self.revision = 0  # etcd revision the watch has reached
        self.synced = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff(initial=0.1, cap=5.0)
        while True:
            try:
                kvs, rev = await self.store.list_raw(st.NODE_LEASES)
                self.revision = rev
                live = {k[len(st.NODE_LEASES):] for k, _ in kvs}
                changed = live ^ self.live
                self.live = live
                self.synced.set()
                for n in changed:
                    self.on_change(n)
                async for etype, kv, _ in self.store.watch_raw(st.NODE_LEASES.encode(), rev + 1):
                    node = kv.key.decode()[len(st.NODE_LEASES):]
                    self.revision = kv.mod_revision
                    if etype == "DELETE":
                        self.live.discard(node)
                    else:
                        self.live.add(node)
                    self.on_change(node)
                backoff.reset()
            except (st.Unavailable, st.Compacted) as e:
                log.warning("lease watch: %s", e)
                await asyncio.sleep(backoff.next())


class ClusterView:
    def __init__(self, store: st.Store, *, on_deployment: Callable[[str, kr.Deployment], None],
                 on_placement: Callable[[str, kr.Placement], None], on_node: Callable[[str, kr.Node], None],
                 on_lease: Callable[[str], None],
                 on_pipeline: Callable[[str, kr.Pipeline], None] = lambda etype, p: None,
                 on_revision: Callable[[str, kr.Revision], None] = lambda etype, r: None) -> None:
        self.deployments: Informer = Informer(store, st.DEPLOYMENTS, on_deployment, indexes={
            "pipeline": lambda d: (d.metadata.namespace, d.spec.pipeline)})
        self.placements: Informer = Informer(store, st.PLACEMENTS, on_placement, indexes={
            "deployment": lambda p: (p.metadata.namespace, p.spec.deployment),
            "device": lambda p: (p.spec.node, p.spec.device),
            "node": lambda p: p.spec.node})
        self.nodes: Informer = Informer(store, st.NODES, on_node, key=lambda o: o.metadata.name, indexes={
            "kubernetes_node": lambda n: n.spec.kubernetes_node or n.metadata.name})
        self.revisions: Informer = Informer(store, st.REVISIONS, on_revision, indexes={
            "deployment": lambda r: (r.metadata.namespace, r.spec.deployment)})
        self.leases = NodeLeases(store, on_lease)
        # whether a deployment's pipeline is Ready (a source Pipeline is once the builder compiled it)
        self.pipelines: Informer = Informer(store, st.PIPELINES, on_pipeline)

    @property
    def informers(self) -> list[Informer]:
        return [self.deployments, self.placements, self.nodes, self.pipelines, self.revisions]

    def tasks(self) -> list:
        return [i.run() for i in self.informers] + [self.leases.run()]

    async def wait_synced(self, timeout: float) -> None:
        synced = asyncio.gather(*(i.synced.wait() for i in self.informers), self.leases.synced.wait())
        try:
            await asyncio.wait_for(synced, timeout)
        except asyncio.TimeoutError:
            errs = "; ".join(f"{i.kind.name}: {i.error}" for i in self.informers if i.error) or "no answer"
            raise RuntimeError(f"caches not synced after {timeout:.0f}s ({errs})") from None

    # ------------------------------------------------------------ questions
    def placements_of(self, namespace: str, deployment: str) -> list[kr.Placement]:
        return self.placements.by("deployment", (namespace, deployment))

    def revisions_of(self, namespace: str, deployment: str) -> list[kr.Revision]:
        """The deployment's revisions, oldest first."""
        return sorted(self.revisions.by("deployment", (namespace, deployment)), key=lambda r: r.spec.revision)

    def placements_on_device(self, node: str, device: str) -> list[kr.Placement]:
        return self.placements.by("device", (node, device))

    def placements_on_node(self, node: str) -> list[kr.Placement]:
        return self.placements.by("node", node)

    def node_ready(self, name: str) -> bool:
        """Readiness is the heartbeat lease. An agent takes its lease before it writes its Node, so a Node
        (still Ready) newer than the lease watch has caught up to has a lease we have not seen yet."""
        if name in self.leases.live:
            return True
        node = self.nodes.get(name)
        return node is not None and node.status.phase == "Ready" and \
            node.metadata.resource_version > self.leases.revision

    def pipeline_waiting(self, d: kr.Deployment) -> str | None:
        """Why the deployment must wait for its pipeline (not Ready: a source not compiled yet, or
        failed to compile), naming it; None when it may be placed."""
        pl = self.pipelines.get((d.metadata.namespace, d.spec.pipeline))
        if pl is None or pl.status.digest != d.status.pipeline_digest or pl.status.phase in ("", "Ready"):
            return None  # gone or replaced meanwhile: as before, the agents say what they find
        why = next((f"{c.reason}: {c.message}" for c in pl.status.conditions if c.type == "Compiled"), "")
        return (f"pipeline {d.metadata.namespace}/{d.spec.pipeline} is not Ready ({pl.status.phase}"
                + (f", {why}" if why else "") + ")")

    def device_exists(self, p: kr.Placement) -> bool:
        """The placement's device is still registered on a node with a live heartbeat."""
        if not self.node_ready(p.spec.node):
            return False
        node = self.nodes.get(p.spec.node)
        return node is not None and any(dev.name == p.spec.device for dev in node.spec.devices)
