"""Table tests of the pure status computation (``deployment_status``) and the rollout budget
(``rollout_budget``): a deployment and its placements in, the status (or budget) out."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from kubep4 import conditions as cond
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.controller.status import deployment_status, rollout_budget

from .objects import deployment, placement

T, F, U = cond.TRUE, cond.FALSE, cond.UNKNOWN
NO_FIT = "0/2 devices are available: 2 TargetMismatch."


def P(replica: int, phase: str = "Running", **kw) -> kr.Placement:
    """Replica ``i`` on node-<a+i>/dev0 (so messages name distinct devices)."""
    return placement(replica, node=f"node-{'abcd'[replica]}", phase=phase, **kw)


@dataclass(frozen=True)
class StatusRow:
    id: str
    replicas: int
    placements: tuple[kr.Placement, ...]
    # expected
    phase: str
    ready: int
    scheduled: tuple[str, str]   # (status, reason) of each condition
    installed: tuple[str, str]
    ready_condition: tuple[str, str]
    replica_phases: tuple[str, ...]
    generation: int = 1
    unschedulable: tuple[str, ...] = ()
    gone: frozenset[int] = frozenset()  # replicas whose device is no longer registered / live
    messages: tuple[str | None, str | None] = (None, None)  # (Scheduled, Installed) messages, when checked


STATUS_ROWS = [
    StatusRow("running", 2, (P(0), P(1)), cond.RUNNING, 2, (T, "Scheduled"), (T, "Installed"), (T, "Ready"),
              ("Running", "Running"), messages=("2/2 replicas placed", "2/2 replicas running")),
    StatusRow("running-zero-replicas", 0, (), cond.RUNNING, 0, (T, "Scheduled"), (T, "Installed"),
              (T, "Ready"), ()),
    StatusRow("installing-placement-of-older-generation", 2,
              (P(0, generation=2), P(1, generation=1)), cond.INSTALLING, 1,
              (T, "Scheduled"), (U, "Installing"), (U, "Installing"), ("Running", "Installing"), generation=2,
              messages=(None, "1/2 replicas running")),
    StatusRow("installing-running-but-not-yet-verified-for-this-generation", 1,
              (P(0, generation=2, observed=1),), cond.INSTALLING, 0,
              (T, "Scheduled"), (U, "Installing"), (U, "Installing"), ("Installing",), generation=2),
    StatusRow("installing-device-gone", 2, (P(0), P(1)), cond.INSTALLING, 1,
              (T, "Scheduled"), (U, "Installing"), (U, "Installing"), ("Running", "Installing"),
              gone=frozenset({1})),
    StatusRow("installing-agent-reports-installing", 2, (P(0, "Installing"), P(1, "Pending")), cond.INSTALLING,
              0, (T, "Scheduled"), (U, "Installing"), (U, "Installing"), ("Installing", "Pending")),
    StatusRow("failed", 2, (P(0), P(1, "Failed", reason="InstallFailed", message="the device refused")),
              cond.FAILED, 1, (T, "Scheduled"), (F, "InstallFailed"), (F, "InstallFailed"),
              ("Running", "Failed"), messages=(None, "node-b/dev0: the device refused")),
    StatusRow("failed-without-reason-is-InstallFailed", 1, (P(0, "Failed", message="no"),), cond.FAILED, 0,
              (T, "Scheduled"), (F, "InstallFailed"), (F, "InstallFailed"), ("Failed",)),
    StatusRow("degraded", 2, (P(0), P(1, "Unknown", reason="DeviceUnreachable", message="no answer")),
              cond.DEGRADED, 1, (T, "Scheduled"), (F, "DeviceUnreachable"), (F, "DeviceUnreachable"),
              ("Running", "Unknown"), messages=(None, "node-b/dev0: no answer")),
    # the failed replicas first, then the unreachable ones, each "node/device: message", joined by "; "
    StatusRow("failed-beats-degraded-messages-joined", 3,
              (P(0, "Unknown", reason="DeviceUnreachable", message="no answer"),
               P(1, "Failed", reason="PipelineConflict", message="another pipeline"),
               P(2, "Failed", reason="InstallFailed", message="refused")),
              cond.FAILED, 0, (T, "Scheduled"), (F, "PipelineConflict"), (F, "PipelineConflict"),
              ("Unknown", "Failed", "Failed"),
              messages=(None, "node-b/dev0: another pipeline; node-c/dev0: refused; node-a/dev0: no answer")),
    StatusRow("unschedulable-none-placed", 2, (), cond.UNSCHEDULABLE, 0,
              (F, "Unschedulable"), (U, "Installing"), (F, "Unschedulable"), ("Unschedulable", "Unschedulable"),
              unschedulable=(NO_FIT, "another message"), messages=(NO_FIT, "0/2 replicas running")),
    StatusRow("unschedulable-some-placed", 2, (P(0, "Pending"),), cond.UNSCHEDULABLE, 0,
              (F, "Unschedulable"), (U, "Installing"), (F, "Unschedulable"), ("Pending", "Unschedulable"),
              unschedulable=(NO_FIT,), messages=(NO_FIT, None)),
    # a replica runs and another found no device: the phase says Installing, the Scheduled condition why
    StatusRow("unschedulable-one-running-one-not", 2, (P(0),), cond.INSTALLING, 1,
              (F, "Unschedulable"), (U, "Installing"), (F, "Unschedulable"), ("Running", "Unschedulable"),
              unschedulable=(NO_FIT,)),
    StatusRow("scheduled", 2, (P(0, "Pending"), P(1, "Pending")), cond.SCHEDULED_PHASE, 0,
              (T, "Scheduled"), (U, "Installing"), (U, "Installing"), ("Pending", "Pending")),
    StatusRow("scheduled-empty-placement-phase-is-Pending", 1, (P(0, ""),), cond.SCHEDULED_PHASE, 0,
              (T, "Scheduled"), (U, "Installing"), (U, "Installing"), ("Pending",)),
    StatusRow("pending-nothing-placed", 2, (), cond.PENDING, 0,
              (U, "Scheduling"), (U, "Installing"), (U, "Scheduling"), ("Pending", "Pending"),
              messages=("0/2 replicas placed", None)),
    StatusRow("pending-some-placed", 2, (P(0, "Pending"),), cond.PENDING, 0,
              (U, "Scheduling"), (U, "Installing"), (U, "Scheduling"), ("Pending", "Pending"),
              messages=("1/2 replicas placed", None)),
]


@pytest.mark.parametrize("row", STATUS_ROWS, ids=lambda r: r.id)
def test_deployment_status(row: StatusRow):
    d = deployment(replicas=row.replicas, generation=row.generation)
    placements = {p.spec.replica: p for p in row.placements}
    s = deployment_status(d, placements, list(row.unschedulable),
                          lambda p: p.spec.replica not in row.gone)

    def condition(ctype: str) -> tuple[str, str]:
        c = cond.get(s.conditions, ctype)
        assert c is not None, f"no {ctype} condition"
        return c.status, c.reason

    assert s.phase == row.phase
    assert s.ready_replicas == row.ready
    assert s.observed_generation == row.generation
    assert condition(cond.SCHEDULED) == row.scheduled
    assert condition(cond.INSTALLED) == row.installed
    assert condition(cond.READY) == row.ready_condition
    assert condition(cond.ADMITTED) == (T, "Admitted"), "admission's condition is kept"
    assert tuple(r.phase for r in s.replicas) == row.replica_phases
    assert [r.replica for r in s.replicas] == list(range(row.replicas))
    assert s.pipeline_digest == d.status.pipeline_digest
    for ctype, want in zip((cond.SCHEDULED, cond.INSTALLED), row.messages):
        if want is not None:
            assert cond.get(s.conditions, ctype).message == want
    for r in s.replicas:
        p = placements.get(r.replica)
        if p is not None:
            assert (r.node, r.device, r.reason, r.message) == (p.spec.node, p.spec.device, p.status.reason,
                                                               p.status.message)
        else:
            assert r.message == (row.unschedulable[0] if row.unschedulable else "")
    d.status.CopyFrom(s)  # what the reconciler wrote: computing again changes nothing (its no-op pass)
    assert deployment_status(d, placements, list(row.unschedulable),
                             lambda p: p.spec.replica not in row.gone) == s, "a fixed point"


def test_transition_times_move_only_when_a_condition_changes_status():
    d = deployment(replicas=1)
    scheduled = deployment_status(d, {0: P(0, "Pending")}, [], lambda p: True)
    d.status.CopyFrom(scheduled)
    running = deployment_status(d, {0: P(0)}, [], lambda p: True)
    sched_before, sched_after = (cond.get(s.conditions, cond.SCHEDULED) for s in (scheduled, running))
    assert sched_after.last_transition_time == sched_before.last_transition_time  # True both times
    inst_before, inst_after = (cond.get(s.conditions, cond.INSTALLED) for s in (scheduled, running))
    assert (inst_before.status, inst_after.status) == (U, T)


# ------------------------------------------------------------------ rollout budget

@dataclass(frozen=True)
class BudgetRow:
    id: str
    strategy: str
    max_unavailable: int
    placements: tuple[kr.Placement, ...]  # of a 3-replica deployment now at generation 2
    budget: int


OLD = {"generation": 1}                             # not yet moved to generation 2 (Running at 1)
UPDATING = {"generation": 2, "phase": "Pending"}  # moved, not Running yet
STALE = {"generation": 2, "observed": 1}          # moved, Running, but verified only for generation 1
DONE = {"generation": 2}                           # moved and verified Running at generation 2

BUDGET_ROWS = [
    BudgetRow("recreate-default-all-at-once", "", 0, (P(0, **OLD), P(1, **OLD), P(2, **OLD)), 3),
    BudgetRow("recreate-all-even-while-updating", "Recreate", 1, (P(0, **UPDATING), P(1, **OLD)), 3),
    BudgetRow("rolling-max-unavailable-0-means-1", "RollingUpdate", 0, (P(0, **OLD), P(1, **OLD)), 1),
    BudgetRow("rolling-1-nothing-updating", "RollingUpdate", 1, (P(0, **OLD), P(1, **OLD), P(2, **OLD)), 1),
    BudgetRow("rolling-2-nothing-updating", "RollingUpdate", 2, (P(0, **OLD), P(1, **OLD), P(2, **OLD)), 2),
    BudgetRow("rolling-1-one-updating", "RollingUpdate", 1, (P(0, **UPDATING), P(1, **OLD), P(2, **OLD)), 0),
    BudgetRow("rolling-0-one-updating", "RollingUpdate", 0, (P(0, **UPDATING), P(1, **OLD)), 0),
    BudgetRow("rolling-1-running-but-unverified-counts", "RollingUpdate", 1, (P(0, **STALE), P(1, **OLD)), 0),
    BudgetRow("rolling-1-one-done-frees-the-budget", "RollingUpdate", 1,
              (P(0, **DONE), P(1, **OLD), P(2, **OLD)), 1),
    BudgetRow("rolling-2-one-updating", "RollingUpdate", 2, (P(0, **UPDATING), P(1, **OLD), P(2, **OLD)), 1),
    BudgetRow("rolling-2-one-done-one-updating", "RollingUpdate", 2,
              (P(0, **DONE), P(1, **UPDATING), P(2, **OLD)), 1),
    BudgetRow("rolling-1-failed-new-replica-blocks", "RollingUpdate", 1,
              (P(0, generation=2, phase="Failed"), P(1, **OLD)), 0),
    BudgetRow("rolling-2-overcommitted-is-negative", "RollingUpdate", 2,
              (P(0, **UPDATING), P(1, **UPDATING), P(2, **UPDATING)), -1),
]


@pytest.mark.parametrize("row", BUDGET_ROWS, ids=lambda r: r.id)
def test_rollout_budget(row: BudgetRow):
    d = deployment(replicas=3, generation=2, strategy=row.strategy, max_unavailable=row.max_unavailable)
    assert rollout_budget(d, {p.spec.replica: p for p in row.placements}) == row.budget
