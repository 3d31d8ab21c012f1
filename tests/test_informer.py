"""Informer caches against a real etcd: own writes are recorded at once, and never resurrect a delete."""
from __future__ import annotations

import asyncio

import pytest

from kubep4 import store as st
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.informer import Informer, WorkQueue

from .conftest import eventually


def placement(name: str) -> kr.Placement:
    p = kr.Placement()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.spec.node, p.spec.device, p.spec.deployment = "n", "d", "x"
    return p


async def test_observe_after_the_watch_saw_the_delete_leaves_no_ghost(store):
    events = []
    inf = Informer(store, st.PLACEMENTS, lambda t, o: events.append((t, o.metadata.name)))
    task = asyncio.create_task(inf.run())
    try:
        await inf.synced.wait()
        created = await store.create(st.PLACEMENTS, placement("p-0"))
        marked = kr.Placement()
        marked.CopyFrom(created)
        marked.metadata.deletion_timestamp.GetCurrentTime()
        stored = await store.update(st.PLACEMENTS, marked)
        await store.delete(st.PLACEMENTS, "default", "p-0", shard="n")  # another process releases it at once
        await eventually(lambda: ("DELETED", "p-0") in events, what="the delete event")
        inf.observe(stored)  # the writer's late bookkeeping of its update
        assert inf.get(("default", "p-0")) is None

        newer = await store.create(st.PLACEMENTS, placement("p-1"))
        inf.observe(newer)  # ahead of the watch: visible at once
        assert inf.get(("default", "p-1")) is not None
    finally:
        task.cancel()


async def test_deleted_event_hands_on_the_last_known_state(store):
    seen = []
    inf = Informer(store, st.PLACEMENTS, lambda t, o: seen.append((t, o.spec.deployment)))
    task = asyncio.create_task(inf.run())
    try:
        await inf.synced.wait()
        await store.create(st.PLACEMENTS, placement("p-0"))
        await store.delete(st.PLACEMENTS, "default", "p-0", shard="n")
        await eventually(lambda: ("DELETED", "x") in seen, what="a DELETED event with the object")
    finally:
        task.cancel()


async def test_work_queue_deduplicates_and_requeues_keys_changed_while_processing():
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    key = await q.get()
    assert key == "a"
    q.add("a")  # changed while being processed: must run again after
    assert len(q) == 1
    q.done("a")
    assert len(q) == 2
    assert [await q.get(), await q.get()] == ["b", "a"]


async def test_retries_do_not_multiply():
    """Each failing pass asks for a retry; extra triggers must not start extra retry chains."""
    q: WorkQueue[str] = WorkQueue()
    runs = 0

    async def worker():
        nonlocal runs
        while True:
            key = await q.get()
            runs += 1
            q.done(key)
            q.add_after(key, 0.05)  # "failed: retry in 50 ms"

    task = asyncio.create_task(worker())
    try:
        for _ in range(20):  # a burst of events for the same key
            q.add("k")
            await asyncio.sleep(0.005)
        before = runs
        await asyncio.sleep(0.5)
        # one chain: about 10 retries in 0.5 s; twenty chains would make about 200
        assert runs - before <= 15
    finally:
        task.cancel()


async def test_a_failing_list_is_retried_not_a_silent_stall(store):
    """Whatever breaks a list (here: a handler that fails on the first pass) is logged, recorded in
    ``error`` and retried with back-off until the informer syncs."""
    await store.create(st.PLACEMENTS, placement("p-0"))
    calls = []

    def handler(etype, obj):
        calls.append(etype)
        if len(calls) == 1:
            raise RuntimeError("boom")
    inf = Informer(store, st.PLACEMENTS, handler)
    task = asyncio.create_task(inf.run())
    try:
        await eventually(lambda: inf.error.startswith("RuntimeError: boom") or inf.synced.is_set(),
                         what="the failure to be recorded")
        await asyncio.wait_for(inf.synced.wait(), 10)
        assert inf.error == "" and calls.count("SYNC") == 2 and inf.get(("default", "p-0")) is not None
    finally:
        task.cancel()


def on(node: str, name: str, device: str = "d") -> kr.Placement:
    p = placement(name)
    p.spec.node, p.spec.device = node, device
    return p


async def test_a_node_sees_only_its_own_placements_and_a_move_is_one_delete_and_one_add(store):
    """Placements live under their node: an agent's informer gets no event for another node's."""
    seen = {"a": [], "b": []}
    infs = {n: Informer(store, st.PLACEMENTS, lambda t, o, n=n: seen[n].append((t, o.metadata.name)), shard=n)
            for n in seen}
    tasks = [asyncio.create_task(i.run()) for i in infs.values()]
    try:
        await asyncio.gather(*(i.synced.wait() for i in infs.values()))
        created = await store.create(st.PLACEMENTS, on("a", "p-0"))
        for i in range(5):
            await store.create(st.PLACEMENTS, on("b", f"q-{i}"))
        moved = kr.Placement()
        moved.CopyFrom(created)
        moved.spec.node = "b"
        stored = await store.move(st.PLACEMENTS, moved, from_shard="a")
        await eventually(lambda: ("ADDED", "p-0") in seen["b"] and ("DELETED", "p-0") in seen["a"],
                         what="the move to reach both nodes' watches")
        assert seen["a"] == [("ADDED", "p-0"), ("DELETED", "p-0")]  # nothing of b's five
        assert [e for e in seen["b"] if e[1] == "p-0"] == [("ADDED", "p-0")]
        assert (await store.get(st.PLACEMENTS, "default", "p-0", shard="b")).spec.node == "b"
        with pytest.raises(st.NotFound):
            await store.get(st.PLACEMENTS, "default", "p-0", shard="a")
        stale = kr.Placement()
        stale.CopyFrom(stored)
        stale.spec.node = "a"
        stale.metadata.resource_version -= 1
        with pytest.raises(st.Conflict):  # a move is guarded by the resource_version like any write
            await store.move(st.PLACEMENTS, stale, from_shard="b")
    finally:
        for t in tasks:
            t.cancel()


async def test_indexes_follow_every_change_of_the_cache(store):
    inf = Informer(store, st.PLACEMENTS, indexes={"device": lambda p: (p.spec.node, p.spec.device)})
    task = asyncio.create_task(inf.run())
    try:
        await inf.synced.wait()
        a = await store.create(st.PLACEMENTS, on("n", "p-0", "d0"))
        await store.create(st.PLACEMENTS, on("n", "p-1", "d0"))
        await eventually(lambda: len(inf.by("device", ("n", "d0"))) == 2, what="both indexed")
        changed = kr.Placement()
        changed.CopyFrom(a)
        changed.spec.device = "d1"
        inf.observe(await store.update(st.PLACEMENTS, changed))  # our own write, before the watch
        assert [p.metadata.name for p in inf.by("device", ("n", "d0"))] == ["p-1"]
        assert [p.metadata.name for p in inf.by("device", ("n", "d1"))] == ["p-0"]
        await store.delete(st.PLACEMENTS, "default", "p-1", shard="n")
        await eventually(lambda: inf.by("device", ("n", "d0")) == [], what="the delete to unindex")
        assert inf.by("device", ("x", "none")) == []
    finally:
        task.cancel()


async def test_a_list_reads_in_pages_at_one_revision(store):
    """Store.list pages through etcd (no answer outgrows a message) and every page is read at the
    first page's revision: a write between pages is not half-seen."""
    for i in range(7):
        await store.create(st.PLACEMENTS, on("n", f"p-{i}"))
    items, rev = await store.list(st.PLACEMENTS, page=2)
    assert [p.metadata.name for p in items] == [f"p-{i}" for i in range(7)]
    assert rev == await store.revision() and all(p.metadata.resource_version <= rev for p in items)

    real_range = store._range
    written = []

    async def range_then_write(*a, **kw):  # another writer gets in between two pages
        r = await real_range(*a, **kw)
        if not written:
            written.append(await store.create(st.PLACEMENTS, on("n", "p-9")))
        return r
    store._range = range_then_write
    try:
        items, rev2 = await store.list(st.PLACEMENTS, page=3)
    finally:
        store._range = real_range
    assert rev2 == rev and len(items) == 7 and "p-9" not in {p.metadata.name for p in items}
    assert len((await store.list(st.PLACEMENTS))[0]) == 8


async def test_health_says_not_serving_while_an_informer_fails(store):
    from grpc_health.v1 import health, health_pb2

    from kubep4.informer import report_health
    hs = health.aio.HealthServicer()
    inf = Informer(store, st.PLACEMENTS)
    reporting = asyncio.create_task(report_health(hs, [inf], period=0.05))

    async def status():
        r = await hs.Check(health_pb2.HealthCheckRequest(service=""), None)
        return r.status
    try:
        inf.error = "TooLarge: the list outgrew the message limit"
        await eventually(lambda: _is(status(), health_pb2.HealthCheckResponse.NOT_SERVING), what="NOT_SERVING")
        inf.error = ""
        await eventually(lambda: _is(status(), health_pb2.HealthCheckResponse.SERVING), what="SERVING")
    finally:
        reporting.cancel()


async def _is(awaitable, want) -> bool:
    return await awaitable == want


async def test_listeners_follow_every_change_of_the_cache(store):
    """A derived cache (the scheduler's) sees (old, new) for watch events, our own observe/forget, and a
    relist that drops what disappeared meanwhile."""
    seen: list[tuple[str | None, str | None]] = []
    inf = Informer(store, st.NODES, key=lambda o: o.metadata.name)
    inf.add_listener(lambda old, new: seen.append((old and old.metadata.name, new and new.metadata.name)))

    def node(name: str) -> kr.Node:
        n = kr.Node()
        n.metadata.name = name
        return n
    await store.create(st.NODES, node("a"))
    task = asyncio.create_task(inf.run())
    try:
        await eventually(lambda: inf.synced.is_set(), what="sync")
        assert seen == [(None, "a")]
        stored = await store.create(st.NODES, node("b"))
        inf.observe(stored)  # our own write first, then its watch event
        await eventually(lambda: len(seen) >= 3, what="the watch event")
        assert seen[1:] == [(None, "b"), ("b", "b")]
        inf.forget(stored)
        assert seen[-1] == ("b", None)
        await store.delete(st.NODES, "", "a")
        await eventually(lambda: seen[-1] == ("a", None), what="the delete")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("causes, own, again", [
    ([5], [5], False),          # only our own write's event: no second pass
    ([5, 6], [5], True),        # someone else's too
    ([None], [], True),         # an event without a revision (a delete, a timer)
    ([5, None], [5], True),
    ([], [5], False),           # nothing came meanwhile
])
async def test_a_key_is_processed_again_only_for_events_it_did_not_cause(causes, own, again):
    q: WorkQueue[str] = WorkQueue()
    q.add("k")
    assert await q.get() == "k"
    for c in causes:
        q.add("k", cause=c)
    for r in own:
        q.wrote("k", r)
    q.done("k")
    assert len(q) == (1 if again else 0)


async def test_the_event_of_an_own_write_coming_after_the_pass_asks_nothing():
    q: WorkQueue[str] = WorkQueue()
    q.add("k")
    assert await q.get() == "k"
    q.wrote("k", 7)
    q.done("k")
    q.add("k", cause=7)   # our write's event, late
    assert len(q) == 0
    q.add("k", cause=8)   # someone else's
    assert len(q) == 1
