"""The Node reconciler: a Node's phase follows its agent's heartbeat lease, and the deployments a
change can matter to are requeued — those with placements on that node (they may have to move) and
those waiting for a device (they may fit now). Never every deployment."""
from __future__ import annotations

import logging
from collections.abc import Callable

from kubep4 import conditions as cond
from kubep4 import store as st
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.controller.view import ClusterView

log = logging.getLogger(__name__)


class NodeReconciler:
    def __init__(self, store: st.Store, view: ClusterView, requeue_deployment: Callable[[str, str], None],
                 waiting: Callable[[], set[tuple[str, str]]]) -> None:
        self.store = store
        self.view = view
        self.requeue_deployment = requeue_deployment
        self.waiting = waiting

    async def reconcile(self, name: str) -> float | None:
        node = self.view.nodes.get(name)
        live = self.view.node_ready(name)
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
                    self.view.nodes.observe(updated)
                log.info("node %s is %s", name, want)
        affected = {(p.metadata.namespace, p.spec.deployment) for p in self.view.placements_on_node(name)}
        for key in affected | set(self.waiting()):
            self.requeue_deployment(*key)
        return None
