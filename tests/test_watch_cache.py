"""A client watch never goes back in time: the apiserver's watch cache may lag behind the list a
watcher started from, and the events it then delivers live that are older than the list are not
handed on (test_e2e's rolling update saw a deployment's pre-update copy after its update, 2 runs in 8)."""
from __future__ import annotations

from kubep4 import store as st
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.apiserver.watch_cache import Subscriber, WatchCache


def event(name: str, revision: int) -> st.Event:
    d = kr.Deployment()
    d.metadata.namespace, d.metadata.name, d.metadata.resource_version = "default", name, revision
    return st.Event("MODIFIED", d, revision)


def test_a_subscriber_takes_nothing_older_than_its_start():
    sub = Subscriber("default", "web", limit=10, start=28)
    for rev in (26, 27, 28, 29):
        assert sub.offer(event("web", rev))
    got = [sub.queue.get_nowait().revision for _ in range(sub.queue.qsize())]
    assert got == [28, 29]


def test_a_lagging_cache_replays_and_delivers_only_from_the_start():
    cache = WatchCache(store=None, kind=st.DEPLOYMENTS)
    cache.complete_after = cache.revision = 20
    cache.events.extend([event("web", 21), event("web", 22)])
    sub = cache.subscribe("default", "web", start=24, limit=10)  # listed at 23; the cache is at 22
    assert sub is not None
    for ev in (event("web", 23), event("web", 24)):  # what the cache's watch delivers next, live
        for s in list(cache.subscribers):
            s.offer(ev)
    assert [sub.queue.get_nowait().revision for _ in range(sub.queue.qsize())] == [24]
