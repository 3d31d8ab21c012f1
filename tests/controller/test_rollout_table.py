"""Table tests of the rollout across replicas: the pure plan (``status.rollout_plan``: how many
replicas may carry the target revision, canary steps, pauses, waits, the progress deadline, a
failed replica), the history to prune (``revisions.to_prune``), and rows of the real reconciler on a
real etcd (revisions made and pruned, a canary's first step, a rollback written into the spec)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from kubep4 import conditions as cond
from kubep4 import store as st
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.controller import revisions as rv
from services.controller.status import (
    DEADLINE,
    PAUSED,
    PROGRESSING,
    REPLICA_FAILED,
    ROLLED_BACK,
    Rev,
    rollout_plan,
    step_replicas,
)

from .objects import DIGEST, NEW_DIGEST, NS, deployment, placement
from .test_deployment_reconciler_table import (
    Harness,
    created,
    placements_now,
    seed,
    store,
    table_etcd,
    updated,
)
from .test_deployment_reconciler_table import Row as ReconcilerRow

__all__ = ["store", "table_etcd"]  # the reconciler table's etcd fixtures, used by the rows below

NOW = 1_800_000_000 * 10**9
S = 10**9
OLD, NEW = Rev("web-1", DIGEST), Rev("web-2", NEW_DIGEST)


def hash_of(p: kr.Placement) -> str:
    return p.spec.pipeline_digest  # in these rows a revision's content is told by its digest


def old(i: int, **kw) -> kr.Placement:
    return placement(i, f"node-{'abcd'[i]}", generation=1, digest=DIGEST, **kw)


def new(i: int, phase: str = "Running", disruptive: bool = False, **kw) -> kr.Placement:
    p = placement(i, f"node-{'abcd'[i]}", generation=2, digest=NEW_DIGEST, phase=phase, **kw)
    p.status.disruptive = disruptive
    return p


def canary(*steps: kr.CanaryStep, replicas: int = 3, deadline: int = 0, rollback: bool = False,
           annotations: dict[str, str] | None = None, progress: int = 0, step: int = 0, step_ready: int = 0,
           target: str = "web-2", strategy: str = "Canary", previous: tuple[str, str] | None = None
           ) -> kr.Deployment:
    d = deployment("web", replicas, 2, digest=NEW_DIGEST, strategy=strategy)
    d.spec.strategy.steps.extend(steps)
    d.spec.strategy.progress_deadline_seconds = deadline
    d.spec.strategy.auto_rollback = rollback
    d.metadata.annotations.update(annotations or {})
    s = d.status
    s.current_revision, s.target_revision, s.canary_step = "web-1", target, step
    s.progress_time.FromNanoseconds(progress or NOW - 1 * S)
    if step_ready:
        s.step_ready_time.FromNanoseconds(step_ready)
    if previous is not None:
        cond.mark(s.conditions, PROGRESSING, cond.FALSE, *previous)
    return d


ONE, HALF, ALL = kr.CanaryStep(replicas=1), kr.CanaryStep(percent=50), kr.CanaryStep(percent=100)
ONE_PAUSE = kr.CanaryStep(replicas=1, pause=True)
ONE_WAIT = kr.CanaryStep(replicas=1, wait_ready_seconds=30)


@dataclass(frozen=True)
class PlanRow:
    id: str
    d: kr.Deployment
    placements: tuple[kr.Placement, ...]
    allowed: int
    step: int = 0
    reason: str = ""
    rollback: bool = False
    current: Rev | None = OLD
    recheck: float | None = None  # checked when set
    progress_time: int | None = None
    step_ready_time: int | None = None


PLAN_ROWS = [
    PlanRow("canary-first-step-moves-one", canary(ONE, ALL), (old(0), old(1), old(2)), 1),
    PlanRow("canary-first-step-not-yet-running-waits", canary(ONE, ALL), (new(0, "Installing"), old(1), old(2)), 1),
    PlanRow("canary-step-reached-next-step-moves-all", canary(ONE, ALL), (new(0), old(1), old(2)), 3, step=1,
            progress_time=NOW),
    PlanRow("canary-percent-rounds-up", canary(HALF, ALL), (old(0), old(1), old(2)), 2),
    PlanRow("canary-after-the-last-step-every-replica", canary(ONE), (new(0), old(1), old(2)), 3, step=1),
    PlanRow("canary-pause-waits-for-promote", canary(ONE_PAUSE, ALL), (new(0), old(1), old(2)), 1, reason=PAUSED),
    PlanRow("canary-pause-promoted-goes-on", canary(ONE_PAUSE, ALL, annotations={rv.PROMOTE: "web-2/0"}),
            (new(0), old(1), old(2)), 3, step=1),
    PlanRow("canary-promote-of-another-revision-does-not-count",
            canary(ONE_PAUSE, ALL, annotations={rv.PROMOTE: "web-7/0"}), (new(0), old(1), old(2)), 1, reason=PAUSED),
    PlanRow("canary-pause-is-not-a-lack-of-progress",
            canary(ONE_PAUSE, ALL, deadline=10, progress=NOW - 60 * S), (new(0), old(1), old(2)), 1, reason=PAUSED),
    PlanRow("canary-wait-starts-when-the-step-runs", canary(ONE_WAIT, ALL), (new(0), old(1), old(2)), 1,
            recheck=30.0, step_ready_time=NOW),
    PlanRow("canary-wait-counts-from-the-step-ready-time", canary(ONE_WAIT, ALL, step_ready=NOW - 20 * S),
            (new(0), old(1), old(2)), 1, recheck=10.0, step_ready_time=NOW - 20 * S),
    PlanRow("canary-wait-elapsed-next-step", canary(ONE_WAIT, ALL, step_ready=NOW - 31 * S),
            (new(0), old(1), old(2)), 3, step=1, step_ready_time=0),
    PlanRow("canary-a-new-target-starts-at-step-0", canary(ONE, ALL, step=1, target="web-0"),
            (old(0), old(1), old(2)), 1, progress_time=NOW),
    PlanRow("canary-nothing-to-roll-from-every-replica", canary(ONE, ALL), (old(0), old(1), old(2)), 3, current=None),
    PlanRow("canary-back-to-the-current-content-every-replica", canary(ONE, ALL), (old(0), old(1), old(2)), 3,
            current=Rev("web-1", NEW_DIGEST)),
    PlanRow("paused-moves-nothing-more", canary(HALF, ALL, annotations={rv.PAUSED: "true"}),
            (new(0), old(1), old(2)), 1, reason=PAUSED),
    PlanRow("failed-replica-stops-the-rollout", canary(ONE, ALL), (new(0, "Failed"), old(1), old(2)), 1,
            reason=REPLICA_FAILED),
    PlanRow("failed-replica-with-auto-rollback", canary(ONE, ALL, rollback=True),
            (new(0, "Failed"), old(1), old(2)), 1, reason=REPLICA_FAILED, rollback=True),
    PlanRow("failed-of-an-older-generation-does-not-count", canary(ONE, ALL),
            (placement(0, "node-a", generation=1, digest=NEW_DIGEST, phase="Failed"), old(1), old(2)), 1),
    PlanRow("deadline-exceeded-stops", canary(ONE, ALL, deadline=60, progress=NOW - 61 * S),
            (new(0, "Installing"), old(1), old(2)), 1, reason=DEADLINE),
    PlanRow("deadline-not-yet", canary(ONE, ALL, deadline=60, progress=NOW - 20 * S),
            (new(0, "Installing"), old(1), old(2)), 1, recheck=40.0),
    PlanRow("default-deadline-is-600s", canary(ONE, ALL, progress=NOW - 599 * S),
            (new(0, "Installing"), old(1), old(2)), 1, recheck=1.0),
    PlanRow("stopped-stays-stopped", canary(ONE, ALL, previous=(DEADLINE, "no progress")),
            (new(0), old(1), old(2)), 1, reason=DEADLINE),
    PlanRow("stopped-for-another-target-is-forgotten", canary(ONE, ALL, previous=(DEADLINE, "x"), target="web-0"),
            (old(0), old(1), old(2)), 1),
    PlanRow("complete-every-replica", canary(ONE, ALL, previous=(DEADLINE, "x")), (new(0), new(1), new(2)), 3),
    PlanRow("rolling-update-every-replica-the-budget-limits", canary(strategy="RollingUpdate"),
            (old(0), old(1), old(2)), 3),
    PlanRow("rolling-update-deadline", canary(strategy="RollingUpdate", deadline=5, progress=NOW - 6 * S,
                                              rollback=True),
            (new(0, "Installing"), old(1), old(2)), 1, reason=DEADLINE, rollback=True),
    PlanRow("recreate-every-replica", canary(strategy="Recreate"), (old(0), old(1), old(2)), 3),
]


@pytest.mark.parametrize("row", PLAN_ROWS, ids=lambda r: r.id)
def test_rollout_plan(row: PlanRow):
    plan = rollout_plan(row.d, {p.spec.replica: p for p in row.placements}, NEW, row.current, hash_of, NOW)
    assert (plan.allowed, plan.step, plan.reason, plan.rollback) == (row.allowed, row.step, row.reason, row.rollback)
    if row.recheck is not None:
        assert plan.recheck == pytest.approx(row.recheck)
    if row.progress_time is not None:
        assert plan.progress_time == row.progress_time
    if row.step_ready_time is not None:
        assert plan.step_ready_time == row.step_ready_time


@pytest.mark.parametrize("step,n,want", [(ONE, 3, 1), (HALF, 3, 2), (HALF, 4, 2), (ALL, 3, 3),
                                         (kr.CanaryStep(percent=1), 10, 1), (kr.CanaryStep(replicas=5), 3, 3)])
def test_step_replicas(step, n, want):
    assert step_replicas(step, n) == want


# ------------------------------------------------------------------ history
def revs(*numbers: int) -> list[kr.Revision]:
    out = []
    for n in numbers:
        r = kr.Revision()
        r.metadata.name, r.spec.revision = f"web-{n}", n
        out.append(r)
    return out


@pytest.mark.parametrize("numbers,limit,keep,pruned", [
    ((1, 2, 3), 10, set(), []),
    ((1, 2, 3, 4), 2, {"web-4"}, ["web-1", "web-2"]),
    ((1, 2, 3, 4), 2, {"web-4", "web-1"}, ["web-2", "web-3"]),  # the current one (1) is kept, within the limit
    ((1, 2, 3, 4), 0, {"web-4", "web-1"}, ["web-2", "web-3"]),  # 0: only the current and the target
    ((1, 2, 3, 4), 1, {"web-4", "web-2"}, ["web-1", "web-3"]),  # the protected ones may exceed the limit
])
def test_history_to_prune(numbers, limit, keep, pruned):
    assert [r.metadata.name for r in rv.to_prune(revs(*numbers), limit, keep)] == pruned


def test_content_hash_is_the_content():
    a, b = deployment("web"), deployment("web", generation=7)
    assert rv.deployment_hash(a) == rv.deployment_hash(b), "the generation is not content"
    b.spec.table_entries.add(table="t", action="a")
    assert rv.deployment_hash(a) != rv.deployment_hash(b)
    c = deployment("web", digest=NEW_DIGEST)
    assert rv.deployment_hash(a) != rv.deployment_hash(c)
    p = placement(0, digest=DIGEST)
    assert rv.placement_hash(p) == rv.deployment_hash(a), "a placement of the same content has the same hash"


# ------------------------------------------------------------------ the reconciler, on etcd
@dataclass(frozen=True)
class RevisionRow:
    id: str
    deployment: kr.Deployment
    revisions: tuple[kr.Revision, ...] = ()
    placements: tuple[kr.Placement, ...] = ()
    nodes: tuple[str, ...] = ("node-a", "node-b", "node-c")
    pipeline_digest: str | None = None  # a stored pipeline "basic" with this digest (for a rollback)
    # expected
    writes: tuple = ()
    revisions_after: tuple[str, ...] = ()
    placements_after: dict[str, str] = field(default_factory=dict)
    progressing: tuple[str, str] | None = None
    spec_digest_after: str | None = None  # status.pipeline_digest of web after


def rollout(replicas: int = 3, strategy: str = "Canary", steps=(ONE, ALL), history: int | None = None,
            rollback: bool = False, **status) -> kr.Deployment:
    """web at generation 2 on NEW_DIGEST, rolling from web-1 (DIGEST) to web-2."""
    d = deployment("web", replicas, 2, digest=NEW_DIGEST, strategy=strategy)
    d.spec.strategy.steps.extend(steps)
    d.spec.strategy.auto_rollback = rollback
    if history is not None:
        d.spec.revision_history_limit = history
    d.status.current_revision = status.get("current", "web-1")
    d.status.target_revision = status.get("target", "")
    d.metadata.annotations.update(status.get("annotations", {}))
    if "stalled" in status:  # the rollout of web-2 began this long ago and nothing progressed since
        d.spec.strategy.progress_deadline_seconds = 5
        d.status.progress_time.FromNanoseconds(time.time_ns() - status["stalled"] * S)
    return d


def rev(n: int, digest: str = DIGEST) -> kr.Revision:
    d = deployment("web", generation=n, digest=digest)
    return rv.new_revision(d, n)


THREE_OLD = (placement(0, "node-a"), placement(1, "node-b"), placement(2, "node-c"))
STATUS = ("update", f"deployments/{NS}/web")

REVISION_ROWS = [
    RevisionRow("new-deployment-gets-revision-1", deployment("web", 2), nodes=("node-a", "node-b"),
                writes=(created("node-a", "web-0"), created("node-b", "web-1"), STATUS), revisions_after=("web-1",),
                placements_after={"web-0": "node-a/dev0 g1 aaaa Pending", "web-1": "node-b/dev0 g1 aaaa Pending"}),
    RevisionRow("same-content-no-new-revision", deployment("web", 1, 3), revisions=(rev(1),), nodes=("node-a",),
                placements=(placement(0, "node-a"),), writes=(updated("node-a", "web-0"), STATUS), revisions_after=("web-1",),
                placements_after={"web-0": "node-a/dev0 g3 aaaa Running"}),
    RevisionRow("canary-first-step-moves-one-replica", rollout(), revisions=(rev(1),), placements=THREE_OLD,
                writes=(updated("node-a", "web-0"), STATUS), revisions_after=("web-1", "web-2"),
                placements_after={"web-0": "node-a/dev0 g2 bbbb Running", "web-1": "node-b/dev0 g1 aaaa Running",
                                  "web-2": "node-c/dev0 g1 aaaa Running"},
                progressing=(cond.TRUE, "NewRevisionProgressing")),
    RevisionRow("canary-new-replica-beyond-the-step-gets-the-current-revision", rollout(replicas=3),
                revisions=(rev(1),), placements=THREE_OLD[:2],
                writes=(updated("node-a", "web-0"), created("node-c", "web-2"), STATUS), revisions_after=("web-1", "web-2"),
                placements_after={"web-0": "node-a/dev0 g2 bbbb Running", "web-1": "node-b/dev0 g1 aaaa Running",
                                  "web-2": "node-c/dev0 g1 aaaa Pending"}),
    RevisionRow("history-pruned-to-its-limit-current-kept", rollout(history=2), revisions=(rev(1), rev(2, "x"),
                                                                                          rev(3, "y")),
                placements=THREE_OLD, writes=(("delete", f"revisions/{NS}/web-2"), ("delete", f"revisions/{NS}/web-3"),
                                              updated("node-a", "web-0"), STATUS),
                revisions_after=("web-1", "web-4")),
    RevisionRow("paused-moves-no-replica", rollout(annotations={rv.PAUSED: "true"}), revisions=(rev(1),),
                placements=THREE_OLD, writes=(STATUS,), revisions_after=("web-1", "web-2"),
                placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running",
                                  "web-2": "node-c/dev0 g1 aaaa Running"},
                progressing=(cond.UNKNOWN, PAUSED)),
    RevisionRow("deadline-exceeded-without-auto-rollback-stops-there", rollout(target="web-2", stalled=60),
                revisions=(rev(1), rev(2, NEW_DIGEST)),
                placements=(placement(0, "node-a", generation=2, digest=NEW_DIGEST, phase="Installing"),
                            placement(1, "node-b"), placement(2, "node-c")),
                writes=(STATUS,), revisions_after=("web-1", "web-2"),
                placements_after={"web-0": "node-a/dev0 g2 bbbb Installing", "web-1": "node-b/dev0 g1 aaaa Running",
                                  "web-2": "node-c/dev0 g1 aaaa Running"},
                progressing=(cond.FALSE, DEADLINE)),
    RevisionRow("failed-canary-rolls-back-into-the-spec", rollout(rollback=True, target="web-2"),
                revisions=(rev(1), rev(2, NEW_DIGEST)), pipeline_digest=DIGEST,
                placements=(placement(0, "node-a", generation=2, digest=NEW_DIGEST, phase="Failed",
                                      reason="InstallFailed", message="refused"),
                            placement(1, "node-b"), placement(2, "node-c")),
                # the spec written back (generation 3), then its own pass: revision 3 (web-1's content), every
                # replica on it (the failed one afresh, Pending), the status
                writes=(STATUS, updated("node-a", "web-0"), updated("node-b", "web-1"), updated("node-c", "web-2"),
                        STATUS), revisions_after=("web-1", "web-2", "web-3"),
                placements_after={"web-0": "node-a/dev0 g3 aaaa Pending", "web-1": "node-b/dev0 g3 aaaa Running",
                                  "web-2": "node-c/dev0 g3 aaaa Running"},
                progressing=(cond.FALSE, ROLLED_BACK), spec_digest_after=DIGEST),
]


@pytest.mark.parametrize("row", REVISION_ROWS, ids=lambda r: r.id)
async def test_revisions_and_rollouts(row: RevisionRow, store: st.Store):
    await seed(store, ReconcilerRow(row.id, row.deployment, nodes=row.nodes, placements=row.placements))
    for r in row.revisions:
        await store.create(st.REVISIONS, r)
    if row.pipeline_digest is not None:
        pl = kr.Pipeline()
        pl.metadata.name, pl.metadata.namespace, pl.status.digest = "basic", NS, row.pipeline_digest
        await store.create(st.PIPELINES, pl)
    h = await Harness(store).start()
    try:
        before = await store.revision()
        await h.reconcile()
        got = await all_writes_since(store, before)
        assert got == list(row.writes), got
    finally:
        await h.stop()
    kept, _ = await store.list(st.REVISIONS)
    assert tuple(sorted(r.metadata.name for r in kept)) == row.revisions_after
    if row.placements_after:
        assert await placements_now(store) == row.placements_after
    d = await store.get(st.DEPLOYMENTS, NS, "web")
    if row.progressing is not None:
        c = cond.get(d.status.conditions, PROGRESSING)
        assert (c.status, c.reason) == row.progressing, c
    if row.spec_digest_after is not None:
        assert d.status.pipeline_digest == row.spec_digest_after
        assert d.metadata.generation == row.deployment.metadata.generation + 1
        assert d.status.current_revision == "web-1" and d.status.target_revision == "web-3"
        assert d.status.rollback_generation == d.metadata.generation and d.status.rolled_back_from == "web-2"


async def all_writes_since(store: st.Store, revision: int) -> list:
    """As the reconciler table's ``writes_since``, revisions included (creates of revisions left out:
    ``revisions_after`` says which exist)."""
    end = await store.put_raw(f"{st.ROOT}/test/sentinel", b"")
    out = []

    async def read() -> None:
        async for etype, kv, _ in store.watch_raw(f"{st.ROOT}/".encode(), revision + 1):
            key = kv.key.decode()
            if kv.mod_revision >= end:
                return
            if key.endswith("/test/sentinel") or key.startswith(st.NODE_LEASES):
                continue
            op = "delete" if etype == "DELETE" else "create" if kv.create_revision == kv.mod_revision else "update"
            if op == "create" and key.startswith(st.REVISIONS.prefix()):
                continue
            out.append((op, key[len(st.ROOT) + 1:]))
    await asyncio.wait_for(read(), 10)
    return out



# ------------------------------------------------------------------ the status of a rollout
def status_of(d: kr.Deployment, placements, plan_current: Rev | None = OLD):
    from services.controller.status import deployment_status
    live = {p.spec.replica: p for p in placements}
    plan = rollout_plan(d, live, NEW, plan_current, hash_of, NOW)
    names = {DIGEST: "web-1", NEW_DIGEST: "web-2"}
    return deployment_status(d, live, [], lambda p: True, plan, hash_of, lambda h: names.get(h, ""))


def test_replicas_held_on_the_old_revision_run_it_and_the_rollout_is_not_complete():
    s = status_of(canary(ONE, ALL), (new(0), old(1), old(2)))
    assert [(r.phase, r.revision) for r in s.replicas] == [("Running", "web-2"), ("Running", "web-1"),
                                                             ("Running", "web-1")]
    assert (s.ready_replicas, s.updated_replicas, s.phase) == (3, 1, cond.INSTALLING)
    assert (s.current_revision, s.target_revision, s.canary_step) == ("web-1", "web-2", 1)
    c = cond.get(s.conditions, PROGRESSING)
    assert (c.status, c.reason) == (cond.TRUE, "NewRevisionProgressing")
    assert cond.get(s.conditions, cond.INSTALLED).status == cond.UNKNOWN


def test_complete_makes_the_target_current():
    s = status_of(canary(ONE, ALL), (new(0), new(1), new(2)))
    assert (s.phase, s.updated_replicas, s.current_revision) == (cond.RUNNING, 3, "web-2")
    c = cond.get(s.conditions, PROGRESSING)
    assert (c.status, c.reason) == (cond.TRUE, "Complete")
    assert cond.get(s.conditions, cond.READY).status == cond.TRUE


def test_paused_and_stopped_say_so():
    s = status_of(canary(ONE_PAUSE, ALL), (new(0), old(1), old(2)))
    c = cond.get(s.conditions, PROGRESSING)
    assert (c.status, c.reason) == (cond.UNKNOWN, PAUSED) and "kubep4 rollout promote" in c.message
    s = status_of(canary(ONE, ALL), (new(0, "Failed", reason="InstallFailed", message="refused"), old(1), old(2)))
    c = cond.get(s.conditions, PROGRESSING)
    assert (c.status, c.reason) == (cond.FALSE, REPLICA_FAILED) and "refused" in c.message
    assert s.current_revision == "web-1", "a stopped rollout leaves the current revision"


def test_a_rolled_back_generation_stays_rolled_back_when_complete():
    d = canary(ONE, ALL)
    d.status.rollback_generation, d.status.rolled_back_from = 2, "web-7"
    s = status_of(d, (new(0), new(1), new(2)))
    c = cond.get(s.conditions, PROGRESSING)
    assert (c.status, c.reason) == (cond.FALSE, ROLLED_BACK) and "web-7" in c.message
    assert s.phase == cond.RUNNING and s.current_revision == "web-2"


def test_disruptive_when_a_replica_says_its_tables_were_emptied():
    s = status_of(canary(ONE, ALL), (new(0, disruptive=True), new(1), new(2)))
    c = cond.get(s.conditions, "Disruptive")
    assert (c.status, c.reason) == (cond.TRUE, "TablesEmptied") and "replica 0 on node-a/dev0" in c.message
    d = canary(ONE, ALL)
    d.status.CopyFrom(s)
    d.status.target_revision = "web-2"
    s = status_of(d, (new(0), new(1), new(2)))
    assert cond.get(s.conditions, "Disruptive").status == cond.FALSE
    assert cond.get(status_of(canary(ONE, ALL), (new(0), new(1), new(2))).conditions, "Disruptive") is None
