"""Table tests of RollingUpdate's ``max_surge`` (docs/rollouts.md) on the real reconciler and a real
etcd, as the reconciler table does: objects in, one pass, the writes etcd received and the objects
they left. Surge placements are created up to the limit on devices the deployment does not use,
none without a free device (said so in Progressing), an old replica is updated only while enough
placements stay available and is not touched before its turn, and the surge placements are removed
once every replica runs the new revision. Last, a whole rollout with ``max_unavailable: 0,
max_surge: 1``, pass after pass with the agents' reports in between, never has fewer than
``spec.replicas`` placements available."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from kubep4 import conditions as cond
from kubep4 import store as st
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.controller import revisions as rv
from services.controller.deployments import SURGE_LABEL
from services.controller.status import PROGRESSING, REPLICA_FAILED, available

from .objects import DIGEST, NEW_DIGEST, NS, deployment, placement
from .test_deployment_reconciler_table import (
    STATUS,
    Harness,
    created,
    placements_now,
    seed,
    store,
    table_etcd,
    updated,
    writes_since,
)
from .test_deployment_reconciler_table import Row as ReconcilerRow

__all__ = ["store", "table_etcd"]


def rolling(replicas: int = 2, max_unavailable: int = 0, max_surge: int = 1, fresh: bool = False,
            paused: bool = False) -> kr.Deployment:
    """web at generation 2 on NEW_DIGEST, a RollingUpdate from web-1 (DIGEST) to web-2 (under way
    unless ``fresh``)."""
    d = deployment("web", replicas, 2, digest=NEW_DIGEST, strategy="RollingUpdate", max_unavailable=max_unavailable)
    d.spec.strategy.max_surge = max_surge
    d.status.current_revision = "web-1"
    d.status.target_revision = "" if fresh else "web-2"
    if paused:
        d.metadata.annotations[rv.PAUSED] = "true"
    return d


def back_to_v1() -> kr.Deployment:
    """web at generation 3 with web-1's content again (an undo, or a rollback) while rolling to web-2."""
    d = rolling()
    d.metadata.generation, d.status.pipeline_digest = 3, DIGEST
    return d


def old(i: int, node: str, phase: str = "Running") -> kr.Placement:
    return placement(i, node, generation=1, digest=DIGEST, phase=phase)


def new(i: int, node: str, phase: str = "Running", surge: bool = False) -> kr.Placement:
    p = placement(i, node, generation=2, digest=NEW_DIGEST, phase=phase)
    if surge:
        p.metadata.labels[SURGE_LABEL] = "true"
    return p


def revisions(fresh: bool = False) -> tuple[kr.Revision, ...]:
    one = rv.new_revision(deployment("web", generation=1, digest=DIGEST), 1)
    two = rv.new_revision(deployment("web", generation=2, digest=NEW_DIGEST), 2)
    return (one,) if fresh else (one, two)


OLD2 = (old(0, "node-a"), old(1, "node-b"))
ABC = ("node-a", "node-b", "node-c")


@dataclass(frozen=True)
class SurgeRow:
    id: str
    deployment: kr.Deployment
    placements: tuple[kr.Placement, ...]
    nodes: tuple[str, ...] = ABC
    fresh: bool = False
    # expected
    writes: tuple = ()
    placements_after: dict[str, str] = field(default_factory=dict)
    surge_after: tuple[int, ...] | None = None  # the replicas status.replicas marks surge
    ready: int | None = None               # status.ready_replicas
    progressing: tuple[str, str, str] | None = None  # (status, reason, words in the message)
    waiting: bool = False                  # requeued when a device is freed


ROWS = [
    SurgeRow("surge-created-on-the-free-device-old-replicas-untouched", rolling(fresh=True), OLD2, fresh=True,
             writes=(created("node-c", "web-2"), STATUS),
             placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running",
                               "web-2": "node-c/dev0 g2 bbbb Pending"},
             surge_after=(2,), ready=2,
             progressing=(cond.TRUE, "NewRevisionProgressing", "0/2 replicas run revision web-2; surge replicas: 0/1")),
    SurgeRow("surge-created-up-to-the-limit", rolling(max_surge=2, fresh=True), OLD2,
             nodes=("node-a", "node-b", "node-c", "node-d"), fresh=True,
             writes=(created("node-c", "web-2"), created("node-d", "web-3"), STATUS),
             placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running",
                               "web-2": "node-c/dev0 g2 bbbb Pending", "web-3": "node-d/dev0 g2 bbbb Pending"},
             surge_after=(2, 3), ready=2),
    SurgeRow("surge-limit-beyond-the-free-devices-places-what-fits-and-says-why", rolling(max_surge=2, fresh=True),
             OLD2, fresh=True, writes=(created("node-c", "web-2"), STATUS), surge_after=(2,), waiting=True,
             progressing=(cond.TRUE, "NewRevisionProgressing", "a surge replica waits for a free device")),
    SurgeRow("no-free-device-no-surge-and-no-replica-moves", rolling(fresh=True), OLD2, nodes=("node-a", "node-b"),
             fresh=True, writes=(STATUS,), waiting=True, ready=2,
             placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running"},
             progressing=(cond.TRUE, "NewRevisionProgressing",
                          "a surge replica waits for a free device: 0/2 devices are available: 2 Excluded")),
    SurgeRow("surge-not-yet-running-no-old-replica-moves", rolling(), OLD2 + (new(2, "node-c", "Installing", True),),
             writes=(STATUS,), surge_after=(2,), ready=2,
             placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running",
                               "web-2": "node-c/dev0 g2 bbbb Installing"}),
    SurgeRow("surge-running-one-old-replica-moves-the-other-waits-its-turn", rolling(),
             OLD2 + (new(2, "node-c", surge=True),), writes=(updated("node-a", "web-0"), STATUS), surge_after=(2,),
             ready=2,  # web-1 and the surge serve while web-0 changes
             placements_after={"web-0": "node-a/dev0 g2 bbbb Running", "web-1": "node-b/dev0 g1 aaaa Running",
                               "web-2": "node-c/dev0 g2 bbbb Running"}),
    SurgeRow("one-replica-updating-the-next-waits", rolling(),
             (new(0, "node-a", "Installing"), old(1, "node-b"), new(2, "node-c", surge=True)), writes=(STATUS,),
             placements_after={"web-0": "node-a/dev0 g2 bbbb Installing", "web-1": "node-b/dev0 g1 aaaa Running",
                               "web-2": "node-c/dev0 g2 bbbb Running"}, ready=2),
    SurgeRow("an-updated-replica-running-the-next-moves", rolling(),
             (new(0, "node-a"), old(1, "node-b"), new(2, "node-c", surge=True)),
             writes=(updated("node-b", "web-1"), STATUS), ready=2),
    SurgeRow("every-replica-on-the-target-surge-removed", rolling(),
             (new(0, "node-a"), new(1, "node-b"), new(2, "node-c", surge=True)),
             writes=(updated("node-c", "web-2"), STATUS), surge_after=(), ready=2,
             placements_after={"web-0": "node-a/dev0 g2 bbbb Running", "web-1": "node-b/dev0 g2 bbbb Running",
                               "web-2": "node-c/dev0 g2 bbbb Running deleting"},
             progressing=(cond.TRUE, "Complete", "revision web-2 runs on 2/2 replicas")),
    SurgeRow("max-unavailable-1-moves-one-while-the-surge-installs", rolling(max_unavailable=1, fresh=True), OLD2,
             fresh=True, writes=(created("node-c", "web-2"), updated("node-a", "web-0"), STATUS), surge_after=(2,),
             ready=1),
    SurgeRow("an-unavailable-old-replica-costs-nothing-to-update", rolling(),
             (old(0, "node-a", "Failed"), old(1, "node-b"), new(2, "node-c", "Installing", True)),
             writes=(updated("node-a", "web-0"), STATUS),
             placements_after={"web-0": "node-a/dev0 g2 bbbb Pending", "web-1": "node-b/dev0 g1 aaaa Running",
                               "web-2": "node-c/dev0 g2 bbbb Installing"}),
    SurgeRow("paused-adds-no-surge", rolling(fresh=True, paused=True), OLD2, fresh=True, writes=(STATUS,),
             placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running"},
             progressing=(cond.UNKNOWN, "Paused", "paused by kubep4 rollout pause")),
    SurgeRow("a-failed-surge-stops-the-rollout", rolling(), OLD2 + (new(2, "node-c", "Failed", True),),
             writes=(STATUS,), surge_after=(2,),
             placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running",
                               "web-2": "node-c/dev0 g2 bbbb Failed"},
             progressing=(cond.FALSE, REPLICA_FAILED, "replica 2 of revision web-2 failed on node-c/dev0")),
    SurgeRow("back-to-the-current-content-surge-removed-replicas-move-as-without-max-surge",
             back_to_v1(), (new(0, "node-a"), old(1, "node-b"), new(2, "node-c", surge=True)),
             writes=(updated("node-c", "web-2"), updated("node-a", "web-0"), STATUS), surge_after=(),
             placements_after={"web-0": "node-a/dev0 g3 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running",
                               "web-2": "node-c/dev0 g2 bbbb Running deleting"}),
    SurgeRow("without-max-surge-a-rolling-update-moves-one-as-before", rolling(max_surge=0, fresh=True), OLD2,
             fresh=True, writes=(updated("node-a", "web-0"), STATUS)),
]


async def seed_row(store: st.Store, row: SurgeRow) -> None:
    await seed(store, ReconcilerRow(row.id, row.deployment, nodes=row.nodes, placements=row.placements))
    for r in revisions(row.fresh):
        await store.create(st.REVISIONS, r)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
async def test_surge(row: SurgeRow, store: st.Store):
    await seed_row(store, row)
    h = await Harness(store).start()
    try:
        before = await store.revision()
        await h.reconcile()
        assert await writes_since(store, before) == list(row.writes)
        assert h.controller.cache.assumed == 0, "every assumed slot was written or forgotten"
        assert (("default", "web") in h.controller.deployments.waiting) == row.waiting
    finally:
        await h.stop()
    if row.placements_after:
        assert await placements_now(store) == row.placements_after
    d = await store.get(st.DEPLOYMENTS, NS, "web")
    if row.surge_after is not None:
        assert tuple(r.replica for r in d.status.replicas if r.surge) == row.surge_after
    assert all(r.replica >= d.spec.replicas for r in d.status.replicas if r.surge)
    assert [r.replica for r in d.status.replicas if not r.surge] == list(range(d.spec.replicas))
    assert d.status.ready_replicas <= d.spec.replicas
    if row.ready is not None:
        assert d.status.ready_replicas == row.ready
    if row.progressing is not None:
        c = cond.get(d.status.conditions, PROGRESSING)
        assert (c.status, c.reason) == row.progressing[:2] and row.progressing[2] in c.message, c


async def test_a_rollout_with_max_unavailable_0_and_max_surge_1_never_has_fewer_available(store: st.Store):
    """Pass after pass, with the node agents' reports in between (one placement verified, or a
    removed one deleted, each time): at every point at least spec.replicas placements are available
    (verified for the generation they carry, not being removed); at the end both replicas run web-2
    and no surge placement is left."""
    row = SurgeRow("whole", rolling(fresh=True), OLD2, fresh=True)
    await seed_row(store, row)
    h = await Harness(store).start()
    history = []
    try:
        async def look() -> list[kr.Placement]:
            ps, _ = await store.list(st.PLACEMENTS)
            up = [p for p in ps if available(p) and not p.metadata.HasField("deletion_timestamp")]
            history.append(sorted(f"{p.metadata.name}:{p.spec.pipeline_digest[-4:]}" for p in up))
            assert len(up) >= 2, history
            return ps
        for _ in range(30):
            await look()  # after the agents' report
            await h.reconcile()
            ps = await look()  # after the controller's pass
            # the agents: a placement being removed is cleared and deleted, else one not verified is
            gone = [p for p in ps if p.metadata.HasField("deletion_timestamp")]
            todo = [p for p in ps if not available(p)]
            if gone:
                await store.delete(st.PLACEMENTS, NS, gone[0].metadata.name, shard=gone[0].spec.node)
            elif todo:
                p = min(todo, key=lambda q: q.spec.replica)

                def running(q: kr.Placement) -> kr.Placement:
                    q.status.phase, q.status.observed_generation = "Running", q.spec.deployment_generation
                    return q
                await store.mutate(st.PLACEMENTS, NS, p.metadata.name, running, shard=p.spec.node)
            else:
                break
            await h.settle()
    finally:
        await h.stop()
    assert await placements_now(store) == {"web-0": "node-a/dev0 g2 bbbb Running",
                                           "web-1": "node-b/dev0 g2 bbbb Running"}
    assert history[0] == ["web-0:aaaa", "web-1:aaaa"] and history[-1] == ["web-0:bbbb", "web-1:bbbb"]
    assert ["web-0:aaaa", "web-1:aaaa", "web-2:bbbb"] in history, "the surge served with both old replicas"
    d = await store.get(st.DEPLOYMENTS, NS, "web")
    assert d.status.phase == cond.RUNNING and not [r for r in d.status.replicas if r.surge]
    assert (d.status.current_revision, d.status.ready_replicas, d.status.updated_replicas) == ("web-2", 2, 2)
