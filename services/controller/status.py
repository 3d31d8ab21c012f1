"""A Deployment's status from its placements: a pure function, so it is tested table by table.

Phase, in order: Running (every replica verified on its device for this generation), Failed (a
device refused), Degraded (a device does not answer), Unschedulable (nothing placed and no device
fits), Installing, Scheduled (all placed, none installed yet), Pending. Conditions are Knative's:
Scheduled, Installed, and Ready derived from them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kubep4 import conditions as cond
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

PROGRESSING, DISRUPTIVE = "Progressing", "Disruptive"
# Progressing reasons (Kubernetes' Deployment condition, Argo Rollouts' steps and pauses)
NEW_REVISION, COMPLETE, PAUSED = "NewRevisionProgressing", "Complete", "Paused"
DEADLINE, REPLICA_FAILED, ROLLED_BACK = "ProgressDeadlineExceeded", "ReplicaFailed", "RolledBack"
STOPPED = frozenset({DEADLINE, REPLICA_FAILED})
DEFAULT_DEADLINE = 600  # s, Kubernetes' progressDeadlineSeconds default


def deployment_status(d: kr.Deployment, placements: Mapping[int, kr.Placement], unschedulable: list[str],
                      device_exists: Callable[[kr.Placement], bool], plan: Plan | None = None,
                      hash_of: Callable[[kr.Placement], str] | None = None,
                      revision_of: Callable[[str], str] = lambda h: "",
                      surge: Mapping[int, kr.Placement] | None = None, surge_waiting: str = ""
                      ) -> kr.DeploymentStatus:
    """The status ``d`` should have. ``placements``: replica -> its live placement (replicas below
    ``spec.replicas``, none being deleted); ``unschedulable``: why replicas found no device;
    ``device_exists``: whether a placement's device is registered on a node with a live heartbeat.
    An ``unschedulable`` message with every replica placed is a replica that must move (its pipeline
    changed on a shared device, or its device is gone) and finds nowhere to go: Scheduled is False.
    The conditions' transition times are kept from ``d.status`` when their status is unchanged.

    ``plan`` (the rollout decided this pass, see ``rollout_plan``), ``hash_of`` (a placement's
    revision hash) and ``revision_of`` (a hash's revision name): the rollout's part of the status,
    Progressing and the revisions. A replica held on an older revision (its content is not the
    target's) that its agent verified is Running: it serves that revision.

    ``surge``: RollingUpdate's surge placements (replica -> placement, numbered from spec.replicas,
    none being deleted), listed after the replicas with ``surge`` set; they count as ready (serving)
    but never beyond spec.replicas, and never as updated: the phase and ``updated_replicas`` are the
    replicas'. ``surge_waiting``: why a surge replica found no device (in Progressing's message)."""
    gen = d.metadata.generation
    s = kr.DeploymentStatus()
    s.CopyFrom(d.status)
    del s.replicas[:]
    ready = 0
    failed: list[kr.ReplicaStatus] = []       # the device refused (or is held by another client)
    unreachable: list[kr.ReplicaStatus] = []  # the device does not answer
    installing = False
    updated = 0  # Running the target revision at this generation
    for i in range(d.spec.replicas):
        p = placements.get(i)
        if p is None:
            s.replicas.add(replica=i, phase="Unschedulable" if unschedulable else "Pending",
                           message=unschedulable[0] if unschedulable else "")
            continue
        held = plan is not None and hash_of is not None and hash_of(p) != plan.target.hash
        want = p.spec.deployment_generation if held else gen
        current = (p.spec.deployment_generation == want and p.status.observed_generation == want
                   and device_exists(p))
        phase = p.status.phase or "Pending"
        if phase == "Running" and not current:
            phase = "Installing"
        r = s.replicas.add(replica=i, node=p.spec.node, device=p.spec.device, phase=phase,
                           message=p.status.message, reason=p.status.reason,
                           revision=revision_of(hash_of(p)) if hash_of is not None else "")
        if phase == "Running":
            ready += 1
            if not held:
                updated += 1
        elif phase == "Unknown":
            unreachable.append(r)
        elif phase == "Failed":
            failed.append(r)
        elif phase == "Installing":
            installing = True
    surge_ready = 0
    for i, p in sorted((surge or {}).items()):
        phase = p.status.phase or "Pending"
        if phase == "Running" and not (p.status.observed_generation == p.spec.deployment_generation
                                       and device_exists(p)):
            phase = "Installing"
        r = s.replicas.add(replica=i, node=p.spec.node, device=p.spec.device, phase=phase, surge=True,
                           message=p.status.message, reason=p.status.reason,
                           revision=revision_of(hash_of(p)) if hash_of is not None else "")
        if phase == "Running":
            surge_ready += 1
        elif phase == "Unknown":
            unreachable.append(r)
        elif phase == "Failed":
            failed.append(r)
        elif phase == "Installing":
            installing = True
    placed = len(placements)
    n = d.spec.replicas
    if plan is None:
        updated = ready
    if ready == n and updated == n:
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
    if ready == n and updated == n:
        cond.mark_true(c, cond.INSTALLED, "Installed", f"{n}/{n} replicas running")
    elif failed or unreachable:
        bad = failed + unreachable
        cond.mark_false(c, cond.INSTALLED, bad[0].reason or "InstallFailed",
                        "; ".join(f"{r.node}/{r.device}: {r.message}" for r in bad))
    elif updated < ready:
        cond.mark_unknown(c, cond.INSTALLED, "Installing", f"{ready}/{n} replicas running, {updated} of "
                          f"them revision {plan.target.name}")
    else:
        cond.mark_unknown(c, cond.INSTALLED, "Installing", f"{ready}/{n} replicas running")
    cond.derive_ready(c)
    s.ready_replicas = min(n, ready + surge_ready)  # serving either revision; a surge never beyond spec.replicas
    s.observed_generation = gen
    s.phase = phase
    if plan is not None:
        note = ""
        if surge:
            note = f"; surge replicas: {surge_ready}/{len(surge)} Running"
        if surge_waiting:
            note += f"; a surge replica waits for a free device: {surge_waiting}"
        _rollout_status(d, s, plan, placements, updated, note)
    return s


def _rollout_status(d: kr.Deployment, s: kr.DeploymentStatus, plan: Plan, placements: Mapping[int, kr.Placement],
                    updated: int, surge_note: str = "") -> None:
    n = d.spec.replicas
    if updated > d.status.updated_replicas and plan.target.name == d.status.target_revision:
        s.progress_time.FromNanoseconds(plan.now)  # a replica came up on the target: progress
    elif plan.progress_time:
        s.progress_time.FromNanoseconds(plan.progress_time)
    s.target_revision = plan.target.name
    s.updated_replicas = updated
    s.canary_step = plan.step
    if plan.step_ready_time:
        s.step_ready_time.FromNanoseconds(plan.step_ready_time)
    else:
        s.ClearField("step_ready_time")
    complete = updated == n and plan.reason not in STOPPED
    s.current_revision = plan.target.name if complete else (plan.current.name if plan.current else "")
    c = s.conditions
    target = plan.target.name
    if d.status.rollback_generation and d.status.rollback_generation == d.metadata.generation:
        old = cond.get(d.status.conditions, PROGRESSING)
        cond.mark_false(c, PROGRESSING, ROLLED_BACK, old.message if old is not None and old.reason == ROLLED_BACK
                        else f"rolled back from revision {d.status.rolled_back_from}")
    elif plan.reason in STOPPED:
        cond.mark_false(c, PROGRESSING, plan.reason, plan.message)
    elif complete:
        cond.mark_true(c, PROGRESSING, COMPLETE, f"revision {target} runs on {n}/{n} replicas")
    elif plan.reason == PAUSED:
        cond.mark_unknown(c, PROGRESSING, PAUSED, f"{plan.message}: {updated}/{n} replicas run revision {target}"
                          + surge_note)
    else:
        cond.mark_true(c, PROGRESSING, NEW_REVISION, f"{updated}/{n} replicas run revision {target}"
                       + (f" (canary step {plan.step + 1}/{len(d.spec.strategy.steps)})"
                          if plan.canary and plan.step < len(d.spec.strategy.steps) else "") + surge_note)
    disruptive = [p for _, p in sorted(placements.items()) if p.status.disruptive]
    if disruptive:
        cond.mark_true(c, DISRUPTIVE, "TablesEmptied", "; ".join(
            f"replica {p.spec.replica} on {p.spec.node}/{p.spec.device}" for p in disruptive)
            + ": the last pipeline change emptied the device's tables (Recreate fallback)")
    elif cond.get(c, DISRUPTIVE) is not None:
        cond.mark_false(c, DISRUPTIVE, "Hitless", "no replica's last pipeline change emptied its tables")


# ------------------------------------------------------------------ rollout across replicas
@dataclass(frozen=True)
class Rev:
    name: str
    hash: str


@dataclass(frozen=True)
class Plan:
    """What a rollout allows this pass. ``allowed``: how many replicas may carry the target
    revision now (the others stay on the revision they have; new ones get ``current``'s);
    ``reason``/``message``: Progressing's, when the plan decides it (Paused, a stop); ``rollback``:
    stopped, and the deployment should return to ``current``; ``recheck``: seconds until a wait or
    deadline ends. ``rolling``: a rollout from one revision to another is under way (not complete),
    so RollingUpdate's surge placements of the target are kept; ``surge``: how many may exist now
    (``max_surge`` while rolling, neither paused nor stopped: none are added otherwise)."""
    target: Rev
    current: Rev | None
    now: int
    allowed: int
    step: int = 0
    canary: bool = False
    progress_time: int = 0
    step_ready_time: int = 0
    reason: str = ""
    message: str = ""
    rollback: bool = False
    recheck: float | None = None
    rolling: bool = False
    surge: int = 0


def step_replicas(step: kr.CanaryStep, n: int) -> int:
    """How many replicas a canary step runs on the new revision."""
    want = step.replicas if step.replicas else math.ceil(n * step.percent / 100)
    return max(0, min(n, want))


def rollout_plan(d: kr.Deployment, placements: Mapping[int, kr.Placement], target: Rev, current: Rev | None,
                 hash_of: Callable[[kr.Placement], str], now: int,
                 surge: Mapping[int, kr.Placement] | None = None) -> Plan:
    """The rollout of ``target`` over the deployment's replicas, decided from its status (step,
    times, the last Progressing condition), its placements and its annotations (pause, promote).

    Recreate and RollingUpdate allow every replica (RollingUpdate's ``rollout_budget`` limits how
    many update at once). Canary allows the current step's replicas; a step is passed once they
    are all Running the target, and its pause was promoted or its wait_ready_seconds elapsed. No
    steps when there is nothing to roll from (a new deployment) or the target has the content of
    the current revision (a rollback). In a rollout from one revision to another, a replica of the
    target Failed, or no progress within progress_deadline_seconds, stops it (no more replicas move)
    until the target changes. ``surge``: RollingUpdate's surge placements; one Failed stops the rollout
    as a replica does, and the plan says how many may exist (``Plan.surge``)."""
    gen, n, strategy = d.metadata.generation, d.spec.replicas, d.spec.strategy
    status = d.status
    fresh = status.target_revision != target.name
    step = 0 if fresh else status.canary_step
    progress = now if fresh or not status.HasField("progress_time") else status.progress_time.ToNanoseconds()
    step_ready = 0 if fresh or not status.HasField("step_ready_time") else status.step_ready_time.ToNanoseconds()
    on_target = [p for p in placements.values() if hash_of(p) == target.hash]
    verified = [p for p in on_target if p.spec.deployment_generation == gen and p.status.phase == "Running"
                and p.status.observed_generation == gen]
    failed = [p for p in on_target + [q for q in (surge or {}).values() if hash_of(q) == target.hash]
              if p.spec.deployment_generation == gen and p.status.phase == "Failed"]
    base = {"target": target, "current": current, "now": now}
    if len(verified) == n or current is None or current.hash == target.hash:
        # complete, or nothing to roll from (a new deployment) or back to (the stable content again)
        return Plan(**base, allowed=n, step=step, progress_time=progress, step_ready_time=step_ready)
    base["rolling"] = True
    previous = cond.get(status.conditions, PROGRESSING)
    deadline = (strategy.progress_deadline_seconds or DEFAULT_DEADLINE) * 10**9
    rollback = strategy.auto_rollback
    canary = strategy.type == "Canary" and bool(strategy.steps)
    if not fresh and previous is not None and previous.reason in STOPPED:  # stays stopped
        return Plan(**base, allowed=len(on_target), step=step, canary=canary, progress_time=progress,
                    step_ready_time=step_ready, reason=previous.reason, message=previous.message, rollback=rollback)
    if failed:
        p = min(failed, key=lambda x: x.spec.replica)
        return Plan(**base, allowed=len(on_target), step=step, canary=canary, progress_time=progress,
                    reason=REPLICA_FAILED, rollback=rollback, message=(
                        f"replica {p.spec.replica} of revision {target.name} failed on {p.spec.node}/"
                        f"{p.spec.device}: {p.status.reason or 'Failed'}: {p.status.message}"))
    paused = d.metadata.annotations.get("kubep4.io/paused") == "true"
    allowed, reason, message, recheck = n, "", "", None
    if canary:
        steps = strategy.steps
        while step < len(steps):
            want = step_replicas(steps[step], n)
            if len(verified) < want:
                allowed = want
                break
            st = steps[step]
            if st.pause and d.metadata.annotations.get("kubep4.io/promote") != f"{target.name}/{step}":
                allowed, reason = want, PAUSED
                message = f"canary step {step + 1}/{len(steps)} reached: waiting for kubep4 rollout promote"
                break
            if st.wait_ready_seconds:
                step_ready = step_ready or now
                left = step_ready + st.wait_ready_seconds * 10**9 - now
                if left > 0:
                    allowed, recheck = want, left / 1e9
                    break
            step, step_ready, progress = step + 1, 0, now
        else:
            allowed = n
    if paused:
        allowed, reason, message = min(allowed, len(on_target)), PAUSED, "paused by kubep4 rollout pause"
    if previous is not None and previous.reason == PAUSED and reason != PAUSED:
        progress = now  # promoted or resumed: the deadline counts afresh
    if reason == PAUSED or (recheck is not None and canary):
        pass  # waiting on purpose (a pause, a step's wait) is not a lack of progress
    elif now - progress > deadline:
        return Plan(**base, allowed=len(on_target), step=step, canary=canary, progress_time=progress,
                    step_ready_time=step_ready, reason=DEADLINE, rollback=rollback, message=(
                        f"revision {target.name} made no progress for {deadline // 10**9}s: "
                        f"{len(verified)}/{n} replicas Running it"))
    else:
        left = (progress + deadline - now) / 1e9
        recheck = left if recheck is None else min(recheck, left)
    surges = max(0, strategy.max_surge) if strategy.type == "RollingUpdate" and reason != PAUSED else 0
    return Plan(**base, allowed=allowed, step=step, canary=canary, progress_time=progress,
                step_ready_time=step_ready, reason=reason, message=message, recheck=recheck, surge=surges)


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


def available(p: kr.Placement) -> bool:
    """Its agent verified it on its device for the generation it carries (either revision)."""
    return p.status.phase == "Running" and p.status.observed_generation == p.spec.deployment_generation


def surge_budget(d: kr.Deployment, replicas: Mapping[int, kr.Placement], surge: Mapping[int, kr.Placement]) -> int:
    """RollingUpdate with ``max_surge``: how many more available replicas may be taken down (moved to
    the target revision) now, so that at least ``spec.replicas - max_unavailable`` placements stay
    available, the surge ones counted (0 means 0 here: the surge replicas make room). ``replicas``:
    the live placements of replicas below spec.replicas; ``surge``: the live surge placements. A
    replica that is not available costs nothing to update."""
    up = sum(available(p) for p in replicas.values()) + sum(available(p) for p in surge.values())
    return up - (d.spec.replicas - max(0, d.spec.strategy.max_unavailable))
