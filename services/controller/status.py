"""A Deployment's status from its placements: a pure function, so it is tested table by table.

Phase, in order: Running (every replica verified on its device for this generation), Failed (a
device refused), Degraded (a device does not answer), Unschedulable (nothing placed and no device
fits), Installing, Scheduled (all placed, none installed yet), Pending. Conditions are Knative's:
Scheduled, Installed, and Ready derived from them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from kubep4 import conditions as cond
from kubep4.gen.kubep4.v1 import resources_pb2 as kr


def deployment_status(d: kr.Deployment, placements: Mapping[int, kr.Placement], unschedulable: list[str],
                      device_exists: Callable[[kr.Placement], bool]) -> kr.DeploymentStatus:
    """The status ``d`` should have. ``placements``: replica -> its live placement (replicas below
    ``spec.replicas``, none being deleted); ``unschedulable``: why replicas found no device;
    ``device_exists``: whether a placement's device is registered on a node with a live heartbeat.
    An ``unschedulable`` message with every replica placed is a replica that must move (its pipeline
    changed on a shared device, or its device is gone) and finds nowhere to go: Scheduled is False.
    The conditions' transition times are kept from ``d.status`` when their status is unchanged."""
    gen = d.metadata.generation
    s = kr.DeploymentStatus()
    s.CopyFrom(d.status)
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
                   and device_exists(p))
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
    if placed == n and not unschedulable:
        cond.mark_true(c, cond.SCHEDULED, "Scheduled", f"{n}/{n} replicas placed")
    elif unschedulable:  # replicas with no device, or placed ones that must move and cannot
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
    return s


def rollout_budget(d: kr.Deployment, by_replica: Mapping[int, kr.Placement]) -> int:
    """How many more replicas may be moved to the new generation now (Recreate: all of them).
    RollingUpdate: at most ``max_unavailable`` (0 means 1) replicas of the new generation may be
    not yet Running at once."""
    if d.spec.strategy.type != "RollingUpdate":
        return d.spec.replicas
    gen = d.metadata.generation
    updating = sum(1 for p in by_replica.values()
                   if p.spec.deployment_generation == gen
                   and not (p.status.phase == "Running" and p.status.observed_generation == gen))
    return max(1, d.spec.strategy.max_unavailable) - updating
