"""Store.create_all: several objects in one etcd transaction, all or none (a multi-replica
deployment's placements are written this way)."""
from __future__ import annotations

import pytest

from kubep4 import store as st
from kubep4.gen.kubep4.v1 import resources_pb2 as kr


def placement(name: str, node: str) -> kr.Placement:
    p = kr.Placement()
    p.metadata.namespace, p.metadata.name = "default", name
    p.spec.node, p.spec.device = node, "dev0"
    return p


async def test_create_all_writes_every_object_at_one_revision(store):
    before = await store.revision()
    stored = await store.create_all(st.PLACEMENTS, [placement("web-0", "a"), placement("web-1", "b")])
    assert {p.metadata.resource_version for p in stored} == {before + 1}
    assert all(p.metadata.uid and p.metadata.generation == 1 for p in stored)
    listed, _ = await store.list(st.PLACEMENTS)
    assert sorted((p.spec.node, p.metadata.name) for p in listed) == [("a", "web-0"), ("b", "web-1")]


async def test_create_all_is_all_or_none(store):
    await store.create(st.PLACEMENTS, placement("web-1", "b"))
    before = await store.revision()
    with pytest.raises(st.AlreadyExists, match="web-1"):
        await store.create_all(st.PLACEMENTS, [placement("web-0", "a"), placement("web-1", "b")])
    assert await store.revision() == before
    listed, _ = await store.list(st.PLACEMENTS)
    assert [p.metadata.name for p in listed] == ["web-1"]


async def test_create_all_refuses_the_same_key_twice(store):
    with pytest.raises(ValueError):
        await store.create_all(st.PLACEMENTS, [placement("web-0", "a"), placement("web-0", "a")])


async def test_a_watch_that_delivers_another_prefix_is_refused(store, monkeypatch):
    """aetcd pairs a watch-create answer with whichever create is pending, so after a create timed out
    under load a new watch can receive another watch's events (seen at 5,000 hollow nodes: node agents
    got other nodes' placements). The store never hands such an event on: the watch fails, and the
    informer watching it lists and watches again. Simulated here: aetcd's watch yields a foreign key."""
    from types import SimpleNamespace

    class Foreign:
        def __aiter__(self):
            return self

        async def __anext__(self):
            return SimpleNamespace(kind="PUT", kv=SimpleNamespace(key=b"/kubep4/placements/node-10/default/x"),
                                   prev_kv=None)

        async def cancel(self):
            return None

    await store.connect()

    async def watch(*args, **kwargs):
        return Foreign()
    monkeypatch.setattr(store.client, "watch", watch)
    with pytest.raises(st.Unavailable, match="misrouted"):
        async for _ in store.watch(st.PLACEMENTS, shard="node-1"):
            pass
