"""Knative-style table tests of the Deployment reconciler against a real etcd: objects in, writes out.

Each row seeds etcd directly (Nodes with their heartbeat leases as their agents register them, a
Deployment as the apiserver stores it, Placements as the controller and the agents left them),
builds the real Controller, waits for its informers to hold exactly what etcd holds (no worker loop
runs), calls ``reconcile(("default", "web"))`` until it returns (see ``Harness.reconcile``), and asserts the writes etcd received during that
call (read back with a watch from the revision before it) and the objects they left. Faults are
induced between sync and reconcile: an object changed behind the informers' back (Conflict) and a
leader fence that no longer holds (NotLeader); those rows also check that a fresh controller
converges from whatever the failed pass left.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from kubep4 import conditions as cond
from kubep4 import store as st
from kubep4.etcd_server import EtcdServer
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.controller.controller import Controller

from ..conftest import eventually
from .objects import DIGEST, NEW_DIGEST, NS, deployment, node, placement

pytestmark = pytest.mark.timeout(60)

KEY = (NS, "web")
Write = tuple[str, str]  # ("create" | "update" | "delete", key below /kubep4/)
SENTINEL = f"{st.ROOT}/test/sentinel"


# ------------------------------------------------------------------ one etcd for the whole table
@pytest.fixture(scope="module")
def table_etcd(tmp_path_factory):
    server = EtcdServer(data_dir=str(tmp_path_factory.mktemp("etcd") / "data")).start()
    yield server
    server.cleanup()


@pytest.fixture
async def store(table_etcd):
    """A Store on the table's etcd, emptied for each row."""
    async with st.Store(table_etcd.endpoint) as s:
        await s.client.delete_prefix(f"{st.ROOT}/".encode())
        yield s


async def writes_since(store: st.Store, revision: int) -> list[Write]:
    """Every write under /kubep4/ after ``revision``, in etcd's order (leases, revisions and the sentinel
    left out).
    A sentinel put marks the end, so the events of a last multi-key transaction are all read."""
    end = await store.put_raw(SENTINEL, b"")
    out: list[Write] = []

    async def read() -> None:
        async for etype, kv, _prev in store.watch_raw(f"{st.ROOT}/".encode(), revision + 1):
            key = kv.key.decode()
            if kv.mod_revision >= end:
                return
            if key == SENTINEL or key.startswith(st.NODE_LEASES) or key.startswith(st.REVISIONS.prefix()):
                continue  # revisions: their own rows (test_revisions_table.py)
            op = "delete" if etype == "DELETE" else "create" if kv.create_revision == kv.mod_revision else "update"
            out.append((op, key[len(st.ROOT) + 1:]))
    await asyncio.wait_for(read(), 10)
    return out


def created(node_: str, name: str) -> Write:
    return ("create", f"placements/{node_}/{NS}/{name}")


def updated(node_: str, name: str) -> Write:
    return ("update", f"placements/{node_}/{NS}/{name}")


def deleted(node_: str, name: str) -> Write:
    return ("delete", f"placements/{node_}/{NS}/{name}")


STATUS: Write = ("update", f"deployments/{NS}/web")        # the deployment's status write
GONE: Write = ("delete", f"deployments/{NS}/web")          # the finalized deployment's delete


def describe(p: kr.Placement) -> str:
    """A placement's key fields: "node/device g<generation> <digest tail> <phase>[ deleting]"."""
    return (f"{p.spec.node}/{p.spec.device} g{p.spec.deployment_generation} {p.spec.pipeline_digest[-4:]} "
            f"{p.status.phase}" + (" deleting" if p.metadata.HasField("deletion_timestamp") else ""))


# ------------------------------------------------------------------ the controller under test
class Harness:
    """The real Controller with its informers and lease watch running, its workers not."""

    def __init__(self, store: st.Store) -> None:
        self.store = store
        self.controller = Controller(store)
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> Harness:
        self.tasks = [asyncio.create_task(t) for t in self.controller.view.tasks()]
        await self.controller.view.wait_synced(20)
        await self.settle()
        return self

    async def settle(self) -> None:
        """Wait until every informer holds exactly what etcd holds (keys and resource versions)."""
        view = self.controller.view

        async def caught_up() -> bool:
            for inf in view.informers:
                objs, _ = await self.store.list(inf.kind)
                etcd = {inf.key(o): o.metadata.resource_version for o in objs}
                if {k: o.metadata.resource_version for k, o in inf.cache.items()} != etcd:
                    return False
            kvs, _ = await self.store.list_raw(st.NODE_LEASES)
            return {k[len(st.NODE_LEASES):] for k, _ in kvs} == view.leases.live
        await eventually(caught_up, 20, 0.01, "the informers to catch up with etcd")

    async def stop(self) -> None:
        """Stop watching: from now on the caches are frozen (what a slow watch would show)."""
        for t in self.tasks:
            t.cancel()
        if self.tasks:  # a watch that does not let go fails the row, rather than hanging it
            _, pending = await asyncio.wait(self.tasks, timeout=10)
            assert not pending, f"informer tasks did not stop when cancelled: {pending}"
        self.tasks = []

    async def reconcile(self) -> float | None:
        """One pass, as the work queue would run it: ``reconcile(key)`` until it returns, that is until
        it asks for no requeue sooner than a second (a short delay defers a write nobody could see yet:
        a Scheduled status the agents would overwrite within milliseconds). Returns its last answer."""
        for _ in range(20):
            delay = await self.controller.deployments.reconcile(KEY)
            if delay is None or delay >= 1.0:
                return delay
            await asyncio.sleep(delay)
        raise AssertionError("reconcile keeps asking to be called again")


# ------------------------------------------------------------------ what rows do to etcd
Action = Callable[[st.Store], Awaitable[None]]


def agent_reports_running(name: str, node_: str, generation: int) -> Action:
    """The node agent verified the placement on its device for that generation."""
    async def act(store: st.Store) -> None:
        def running(p: kr.Placement) -> kr.Placement:
            p.status.phase, p.status.observed_generation = "Running", generation
            return p
        assert await store.mutate(st.PLACEMENTS, NS, name, running, shard=node_) is not None
    return act


def agent_touches(name: str, node_: str) -> Action:
    """The node agent rewrote the placement's status (a re-verification with a new message)."""
    async def act(store: st.Store) -> None:
        def touch(p: kr.Placement) -> kr.Placement:
            p.status.message = "verified again"
            return p
        assert await store.mutate(st.PLACEMENTS, NS, name, touch, shard=node_) is not None
    return act


async def user_relabels_web(store: st.Store) -> None:
    """A metadata-only change of the deployment (no new generation), as the apiserver writes it."""
    def relabel(d: kr.Deployment) -> kr.Deployment:
        d.metadata.labels["team"] = "blue"
        return d
    assert await store.mutate(st.DEPLOYMENTS, NS, "web", relabel) is not None


async def fence_without_leader_key(store: st.Store) -> None:
    store.fence = (f"{st.ROOT}/leader/controller", 0x1234)  # nobody holds the key under that lease


async def fence_revoked_lease(store: st.Store) -> None:
    lease = await store.grant_lease(60)
    key = f"{st.ROOT}/leader/controller"
    assert await store.put_if_absent(key, b"me", lease)
    store.fence = (key, lease)
    await store.revoke_lease(lease)  # our term ended (its key went with it)


async def fence_held_lease(store: st.Store) -> None:
    lease = await store.grant_lease(60)
    key = f"{st.ROOT}/leader/controller"
    assert await store.put_if_absent(key, b"me", lease)
    store.fence = (key, lease)


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Row:
    id: str
    deployment: kr.Deployment | None         # "web" (None: already gone)
    nodes: tuple[str, ...] = ("node-a", "node-b")  # registered, holding their heartbeat lease
    dead: tuple[str, ...] = ()               # registered, NotReady, no lease
    slots: int = 1                           # pipeline slots of every node's one device, dev0
    placements: tuple[kr.Placement, ...] = ()
    others: tuple[kr.Deployment, ...] = ()   # other deployments (their placements are in `placements`)
    warmup: int = 0                          # passes before the measured one (converging, unmeasured)
    agent: Action | None = None              # an agent's write before the measured pass, seen by the informers
    fault: Action | None = None              # a write behind the informers' back (they are stopped first)
    # expected of the measured pass
    writes: tuple[Write, ...] = ()
    raises: type[Exception] | None = None
    returns: float | None = None
    placements_after: dict[str, str] = field(default_factory=dict)  # name -> describe(placement)
    phase: str | None = None                 # web's status.phase after ("": web is gone)
    scheduled: tuple[str, str, str] | None = None  # web's Scheduled condition (status, reason, message)
    # faulted rows: a fresh controller's pass afterwards
    recover: tuple[Write, ...] | None = None
    recovered_phase: str | None = None


def web(replicas: int = 1, generation: int = 1, **kw) -> kr.Deployment:
    return deployment("web", replicas, generation, **kw)


def running(replica: int, node_: str, generation: int = 1, deployment_: str = "web", **kw) -> kr.Placement:
    return placement(replica, node_, deployment=deployment_, generation=generation, **kw)


THREE_RUNNING = (running(0, "node-a"), running(1, "node-b"), running(2, "node-c"))
NO_FIT = "0/2 devices are available: 2 TargetMismatch."

ROWS = [
    # ---- scheduling a new deployment, and the level-triggered no-op
    Row("new-2-replicas-spread-over-2-nodes", web(2),
        writes=(created("node-a", "web-0"), created("node-b", "web-1"), STATUS),
        placements_after={"web-0": "node-a/dev0 g1 aaaa Pending", "web-1": "node-b/dev0 g1 aaaa Pending"},
        phase=cond.SCHEDULED_PHASE, scheduled=(cond.TRUE, "Scheduled", "2/2 replicas placed")),
    Row("converged-second-pass-writes-nothing", web(2), warmup=1,
        placements_after={"web-0": "node-a/dev0 g1 aaaa Pending", "web-1": "node-b/dev0 g1 aaaa Pending"},
        phase=cond.SCHEDULED_PHASE),
    Row("running-placements-only-the-status-is-written", web(2),
        placements=(running(0, "node-a"), running(1, "node-b")), writes=(STATUS,),
        placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running"},
        phase=cond.RUNNING),
    Row("running-converged-writes-nothing", web(2), warmup=1,
        placements=(running(0, "node-a"), running(1, "node-b")),
        placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running"},
        phase=cond.RUNNING),
    # ---- scale down (the apiserver bumped the generation: the kept replica is updated too)
    Row("scale-down-on-live-node-marks-for-deletion", web(1, 2),
        placements=(running(0, "node-a"), running(1, "node-b")),
        writes=(updated("node-b", "web-1"), updated("node-a", "web-0"), STATUS),
        placements_after={"web-0": "node-a/dev0 g2 aaaa Running",
                          "web-1": "node-b/dev0 g1 aaaa Running deleting"},
        phase=cond.INSTALLING),
    Row("scale-down-on-dead-node-deletes", web(1, 2), nodes=("node-a",), dead=("node-c",),
        placements=(running(0, "node-a"), running(1, "node-c")),
        writes=(deleted("node-c", "web-1"), updated("node-a", "web-0"), STATUS),
        placements_after={"web-0": "node-a/dev0 g2 aaaa Running"}, phase=cond.INSTALLING),
    # ---- moves off lost devices
    Row("placement-on-node-without-lease-moves", web(2), dead=("node-c",),
        placements=(running(0, "node-a"), running(1, "node-c")),
        writes=(deleted("node-c", "web-1"), created("node-b", "web-1"), STATUS),  # one txn: the move
        placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Pending"},
        phase=cond.INSTALLING),
    Row("placement-on-unregistered-device-moves-on-its-node", web(1), nodes=("node-a",),
        placements=(placement(0, "node-a", "dev9"),),
        writes=(updated("node-a", "web-0"), STATUS),  # same node: same key
        placements_after={"web-0": "node-a/dev0 g1 aaaa Pending"}, phase=cond.SCHEDULED_PHASE),
    # ---- rollout budget: 3 replicas Running at generation 1, the deployment now at generation 2
    Row("rolling-1-updates-one-replica", web(3, 2, strategy="RollingUpdate", max_unavailable=1),
        nodes=("node-a", "node-b", "node-c"), placements=THREE_RUNNING,
        writes=(updated("node-a", "web-0"), STATUS),
        placements_after={"web-0": "node-a/dev0 g2 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running",
                          "web-2": "node-c/dev0 g1 aaaa Running"},
        phase=cond.INSTALLING),
    Row("rolling-1-waits-until-the-updated-replica-runs",
        web(3, 2, strategy="RollingUpdate", max_unavailable=1), nodes=("node-a", "node-b", "node-c"),
        placements=THREE_RUNNING, warmup=1,
        placements_after={"web-0": "node-a/dev0 g2 aaaa Running", "web-1": "node-b/dev0 g1 aaaa Running",
                          "web-2": "node-c/dev0 g1 aaaa Running"},
        phase=cond.INSTALLING),
    Row("rolling-1-next-replica-once-the-first-runs",
        web(3, 2, strategy="RollingUpdate", max_unavailable=1), nodes=("node-a", "node-b", "node-c"),
        placements=THREE_RUNNING, warmup=1, agent=agent_reports_running("web-0", "node-a", 2),
        writes=(updated("node-b", "web-1"), STATUS),
        placements_after={"web-0": "node-a/dev0 g2 aaaa Running", "web-1": "node-b/dev0 g2 aaaa Running",
                          "web-2": "node-c/dev0 g1 aaaa Running"},
        phase=cond.INSTALLING),
    Row("rolling-2-updates-two-replicas", web(3, 2, strategy="RollingUpdate", max_unavailable=2),
        nodes=("node-a", "node-b", "node-c"), placements=THREE_RUNNING,
        writes=(updated("node-a", "web-0"), updated("node-b", "web-1"), STATUS),
        placements_after={"web-0": "node-a/dev0 g2 aaaa Running", "web-1": "node-b/dev0 g2 aaaa Running",
                          "web-2": "node-c/dev0 g1 aaaa Running"},
        phase=cond.INSTALLING),
    Row("recreate-updates-every-replica", web(3, 2), nodes=("node-a", "node-b", "node-c"),
        placements=THREE_RUNNING,
        writes=(updated("node-a", "web-0"), updated("node-b", "web-1"), updated("node-c", "web-2"), STATUS),
        placements_after={"web-0": "node-a/dev0 g2 aaaa Running", "web-1": "node-b/dev0 g2 aaaa Running",
                          "web-2": "node-c/dev0 g2 aaaa Running"},
        phase=cond.INSTALLING),
    # ---- pipeline blocking: web moves to a new pipeline; node-a/dev0 (2 slots) also runs "other"
    Row("pipeline-change-on-shared-device-moves-the-replica", web(1, 2, digest=NEW_DIGEST), slots=2,
        placements=(running(0, "node-a"), running(0, "node-a", deployment_="other")),
        others=(deployment("other"),),
        writes=(deleted("node-a", "web-0"), created("node-b", "web-0"), STATUS),
        placements_after={"web-0": "node-b/dev0 g2 bbbb Pending", "other-0": "node-a/dev0 g1 aaaa Running"},
        phase=cond.SCHEDULED_PHASE),
    Row("pipeline-change-on-own-device-replaces-in-place", web(1, 2, digest=NEW_DIGEST), slots=2,
        placements=(running(0, "node-a"),),
        writes=(updated("node-a", "web-0"), STATUS),
        placements_after={"web-0": "node-a/dev0 g2 bbbb Running"}, phase=cond.INSTALLING),
    Row("pipeline-change-on-device-shared-with-own-replicas-in-place", web(2, 2, digest=NEW_DIGEST),
        nodes=("node-a",), slots=2, placements=(running(0, "node-a"), running(1, "node-a")),
        writes=(updated("node-a", "web-0"), updated("node-a", "web-1"), STATUS),
        placements_after={"web-0": "node-a/dev0 g2 bbbb Running", "web-1": "node-a/dev0 g2 bbbb Running"},
        phase=cond.INSTALLING),
    # blocked and no other device: the replica stays on the old pipeline, the neighbour is untouched,
    # the deployment waits (requeued in 10 s) and says why: Scheduled False with the scheduler's message
    Row("pipeline-change-shared-device-nowhere-to-go-stays", web(1, 2, digest=NEW_DIGEST),
        nodes=("node-a",), slots=2, placements=(running(0, "node-a"), running(0, "node-a", deployment_="other")),
        others=(deployment("other"),), writes=(STATUS,), returns=10.0,
        placements_after={"web-0": "node-a/dev0 g1 aaaa Running", "other-0": "node-a/dev0 g1 aaaa Running"},
        phase=cond.INSTALLING, scheduled=(cond.FALSE, "Unschedulable", "0/1 devices are available: 1 Excluded.")),
    # ---- unschedulable
    Row("no-device-fits-unschedulable", web(1, target="tofino"), writes=(STATUS,), returns=10.0,
        phase=cond.UNSCHEDULABLE, scheduled=(cond.FALSE, "Unschedulable", NO_FIT)),
    Row("some-replicas-fit-unschedulable", web(3),
        writes=(created("node-a", "web-0"), created("node-b", "web-1"), STATUS), returns=10.0,
        placements_after={"web-0": "node-a/dev0 g1 aaaa Pending", "web-1": "node-b/dev0 g1 aaaa Pending"},
        phase=cond.UNSCHEDULABLE,
        scheduled=(cond.FALSE, "Unschedulable", "0/2 devices are available: 2 NoFreeSlot.")),
    # ---- deletion
    Row("deleting-marks-live-placements-deletes-dead-ones", web(2, deleting=True), nodes=("node-a",),
        dead=("node-c",), placements=(running(0, "node-a"), running(1, "node-c")),
        writes=(updated("node-a", "web-0"), deleted("node-c", "web-1")), returns=5.0,
        placements_after={"web-0": "node-a/dev0 g1 aaaa Running deleting"}, phase=cond.PENDING),
    Row("deleting-waits-for-the-agents", web(2, deleting=True),
        placements=(running(0, "node-a", deleting=True), running(1, "node-b", deleting=True)), returns=5.0,
        placements_after={"web-0": "node-a/dev0 g1 aaaa Running deleting",
                          "web-1": "node-b/dev0 g1 aaaa Running deleting"}, phase=cond.PENDING),
    Row("deleting-with-no-placements-left-deletes-the-deployment", web(2, deleting=True),
        writes=(GONE,), phase=""),
    Row("deployment-gone-orphans-deleted", None, placements=(running(0, "node-a"), running(1, "node-b")),
        writes=(deleted("node-a", "web-0"), deleted("node-b", "web-1")), phase=""),
    # ---- induced faults
    Row("conflict-deployment-changed-behind-the-informer", web(2), fault=user_relabels_web,
        raises=st.Conflict, writes=(created("node-a", "web-0"), created("node-b", "web-1")),
        placements_after={"web-0": "node-a/dev0 g1 aaaa Pending", "web-1": "node-b/dev0 g1 aaaa Pending"},
        phase=cond.PENDING, recover=(STATUS,), recovered_phase=cond.SCHEDULED_PHASE),
    Row("conflict-placement-changed-behind-the-informer", web(1, 2), placements=(running(0, "node-a"),),
        fault=agent_touches("web-0", "node-a"), raises=st.Conflict,
        placements_after={"web-0": "node-a/dev0 g1 aaaa Running"}, phase=cond.PENDING,
        recover=(updated("node-a", "web-0"), STATUS), recovered_phase=cond.INSTALLING),
    Row("conflict-on-a-move-forgets-the-assumed-slot", web(1), nodes=("node-a",), dead=("node-c",),
        placements=(running(0, "node-c"),), fault=agent_touches("web-0", "node-c"), raises=st.Conflict,
        placements_after={"web-0": "node-c/dev0 g1 aaaa Running"}, phase=cond.PENDING,
        recover=(deleted("node-c", "web-0"), created("node-a", "web-0"), STATUS),
        recovered_phase=cond.SCHEDULED_PHASE),
    Row("notleader-no-leader-key", web(2), fault=fence_without_leader_key, raises=st.NotLeader,
        phase=cond.PENDING, recover=(created("node-a", "web-0"), created("node-b", "web-1"), STATUS),
        recovered_phase=cond.SCHEDULED_PHASE),
    Row("notleader-revoked-lease", web(1, 2), placements=(running(0, "node-a"),), fault=fence_revoked_lease,
        raises=st.NotLeader, placements_after={"web-0": "node-a/dev0 g1 aaaa Running"}, phase=cond.PENDING,
        recover=(updated("node-a", "web-0"), STATUS), recovered_phase=cond.INSTALLING),
    Row("notleader-revoked-lease-while-deleting", web(1, deleting=True), nodes=(), dead=("node-c",),
        placements=(running(0, "node-c"),), fault=fence_revoked_lease, raises=st.NotLeader,
        placements_after={"web-0": "node-c/dev0 g1 aaaa Running"}, phase=cond.PENDING,
        recover=(deleted("node-c", "web-0"), GONE), recovered_phase=""),
    Row("fenced-by-a-held-lease-writes-go-through", web(2), fault=fence_held_lease,
        writes=(created("node-a", "web-0"), created("node-b", "web-1"), STATUS),
        placements_after={"web-0": "node-a/dev0 g1 aaaa Pending", "web-1": "node-b/dev0 g1 aaaa Pending"},
        phase=cond.SCHEDULED_PHASE),
]


async def seed(store: st.Store, row: Row) -> None:
    for name in row.nodes:  # as an agent registers: its lease first, then its Node
        lease = await store.grant_lease(60)
        await store.put_raw(st.NODE_LEASES + name, b"1", lease)
        await store.create(st.NODES, node(name, slots=row.slots))
    for name in row.dead:
        n = node(name, slots=row.slots)
        n.status.phase = "NotReady"
        await store.create(st.NODES, n)
    for d in ((row.deployment,) if row.deployment is not None else ()) + row.others:
        await store.create(st.DEPLOYMENTS, d)
    for p in row.placements:
        await store.create(st.PLACEMENTS, p)


async def web_now(store: st.Store) -> kr.Deployment | None:
    try:
        return await store.get(st.DEPLOYMENTS, NS, "web")
    except st.NotFound:
        return None


async def placements_now(store: st.Store) -> dict[str, str]:
    return {p.metadata.name: describe(p) for p in (await store.list(st.PLACEMENTS))[0]}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
async def test_deployment_reconciler(row: Row, store: st.Store):
    await seed(store, row)
    h = await Harness(store).start()
    try:
        for _ in range(row.warmup):
            await h.reconcile()
            await h.settle()
        if row.agent is not None:
            await row.agent(store)
            await h.settle()
        if row.fault is not None:
            await h.stop()
            await row.fault(store)
        before = await store.revision()
        if row.raises is not None:
            with pytest.raises(row.raises):
                await h.reconcile()
        else:
            assert await h.reconcile() == row.returns
        store.fence = None
        assert await writes_since(store, before) == list(row.writes)
        assert h.controller.cache.assumed == 0, "every assumed slot was written or forgotten"
        if row.raises is None:  # waiting for a device: requeued when one is freed
            assert (KEY in h.controller.deployments.waiting) == (row.returns == 10.0)
    finally:
        store.fence = None
        await h.stop()

    assert await placements_now(store) == row.placements_after
    d = await web_now(store)
    if row.phase is not None:
        assert (d.status.phase if d is not None else "") == row.phase
    if row.scheduled is not None:
        c = cond.get(d.status.conditions, cond.SCHEDULED)
        assert (c.status, c.reason, c.message) == row.scheduled
        if row.scheduled[0] == cond.FALSE and row.phase == cond.UNSCHEDULABLE:  # replicas with no device say why
            assert {r.message for r in d.status.replicas if r.phase == "Unschedulable"} == {row.scheduled[2]}
    if d is not None and row.raises is None and d.status.phase != cond.PENDING:
        assert d.status.observed_generation == d.metadata.generation
        placed = {p.metadata.name: p for p in (await store.list(st.PLACEMENTS))[0]
                  if p.spec.deployment == "web" and not p.metadata.HasField("deletion_timestamp")}
        for p in placed.values():  # what the controller wrote carries the deployment's pipeline
            if p.spec.deployment_generation == d.metadata.generation:
                assert p.spec.pipeline_digest == d.status.pipeline_digest

    if row.recover is not None:  # a fresh controller (the next leader) converges from what is left
        h = await Harness(store).start()
        try:
            before = await store.revision()
            await h.reconcile()
            assert await writes_since(store, before) == list(row.recover)
            assert h.controller.cache.assumed == 0
        finally:
            await h.stop()
        if row.recovered_phase is not None:
            d = await web_now(store)
            assert (d.status.phase if d is not None else "") == row.recovered_phase


def test_rows_are_distinct():
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert DIGEST != NEW_DIGEST

