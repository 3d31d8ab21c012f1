"""Placement backends: where a replica may go, and the bookkeeping around the decision.

The controller asks in three steps, so its scheduling lock covers only memory:

1. ``await placer.scope(request)`` — outside the lock, may be slow (the Kubernetes backend creates a
   pod and waits for kube-scheduler to bind it). Returns a :class:`Scope` (which nodes may take the
   replica) or a final :class:`Decision` (not placeable now: unschedulable, or still waiting).
2. ``placer.decide(request, cache, scope)`` — inside the lock, synchronous: choose a device in the
   scheduler cache; the controller then assumes the slot before it lets go of the lock.
3. ``placer.decided(request, scope, decision)`` — outside again: the backend's own bookkeeping and
   messages.

``BuiltinPlacer`` (the default) schedules every node with the indexed P4-aware policy. The
Kubernetes backend is in ``kube_placement.py``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kubep4 import store as st
from services.controller import scheduling as sched
from services.controller.scheduling.cache import SchedulerCache
from services.controller.view import ClusterView


@dataclass(frozen=True)
class Scope:
    nodes: frozenset[str] | None = None  # the KubeP4 nodes the replica may use; None: every node
    context: object = None               # the backend's own (the Kubernetes pod)


class Placer:
    async def start(self, store: st.Store, requeue: Callable[[str, str], None], view: ClusterView) -> None:
        """Background work for the leader's term (watching pods...); ``requeue(namespace, deployment)``;
        ``view``: the controller's caches, to read rather than watching etcd again."""
        return None

    async def scope(self, request: sched.Request) -> Scope | sched.Decision:
        return Scope()

    def decide(self, request: sched.Request, cache: SchedulerCache, scope: Scope) -> sched.Decision:
        return cache.schedule(request)

    def decided(self, request: sched.Request, scope: Scope, decision: sched.Decision) -> sched.Decision:
        return decision

    async def released(self, namespace: str, deployment: str, replica: int) -> None:
        """A replica's placement is gone."""
        return None

    async def deleted(self, namespace: str, deployment: str) -> None:
        """A deployment is gone."""
        return None


BuiltinPlacer = Placer
