"""The controller's scheduler cache, fed event by event (nodes and placements coming and going, slots
assumed and forgotten), decides exactly as the reference full scan over a device list rebuilt from
scratch out of the same nodes and placements. Pure: no etcd."""
from __future__ import annotations

import random

import pytest

from kubep4.gen.kubep4.v1 import resources_pb2 as pb
from services.controller.scheduling import BuiltinScheduler, KubernetesDefaultScheduler, devices_from
from services.controller.scheduling.cache import SchedulerCache

from .test_scheduler import D1, D2, _outcome, _random_nodes, req


def placement(name: str, node: str, device: str, digest: str) -> pb.Placement:
    p = pb.Placement()
    p.metadata.namespace, p.metadata.name = "default", name
    p.spec.node, p.spec.device, p.spec.pipeline_digest = node, device, digest
    return p


def reference(nodes: dict[str, pb.Node], placed: dict, assumed: dict, cls) -> tuple:
    """A full scan over a freshly built device list: what the cache must agree with."""
    used = list(placed.values()) + [w for k, w in assumed.items() if k not in placed or placed[k][:2] != w[:2]]
    return devices_from([nodes[n] for n in sorted(nodes)], used), cls(indexed=False)


@pytest.mark.parametrize("cls", [BuiltinScheduler, KubernetesDefaultScheduler], ids=lambda c: c.name)
def test_event_fed_cache_decides_like_a_full_scan(cls):
    digests = [D1, D2, "sha256:" + "3" * 64]
    for seed in range(6):
        rng = random.Random(seed)
        pool = _random_nodes(rng, rng.choice([5, 40]))
        cache = SchedulerCache(cls(), rebuild_gap=0)  # exact: every change rebuilds before a decision
        nodes: dict[str, pb.Node] = {}
        placed: dict[tuple, tuple] = {}
        assumed: dict[tuple, tuple] = {}
        objects: dict[tuple, pb.Placement] = {}
        for n in pool[: len(pool) // 2]:
            nodes[n.metadata.name] = n
            cache.node_changed(None, n)
        for step in range(200):
            r = rng.random()
            if r < 0.1 and len(nodes) < len(pool):  # a node registers
                n = rng.choice([n for n in pool if n.metadata.name not in nodes])
                nodes[n.metadata.name] = n
                cache.node_changed(None, n)
            elif r < 0.15 and nodes:  # a node goes away (its placements stay until moved)
                name = rng.choice(sorted(nodes))
                cache.node_changed(nodes.pop(name), None)
            elif r < 0.3 and placed:  # a placement is deleted
                key = rng.choice(sorted(placed))
                del placed[key]
                cache.placement_changed(objects.pop(key), None)
            elif r < 0.4 and assumed:  # an assumption is forgotten (its write failed)
                key = rng.choice(sorted(assumed))
                del assumed[key]
                cache.forget(key)
            else:  # a decision, assumed, and usually written (observed) at once
                request = req(target=rng.choice(["bmv2", "tofino", ""]), arch="",
                              selector=rng.choice(["", "zone=a", "rack in (r1,r2)"]), digest=rng.choice(digests),
                              replica=step)
                devices, slow = reference(nodes, placed, assumed, cls)
                want = slow.schedule(request, devices)
                got = cache.schedule(request)
                assert _outcome(got) == _outcome(want), (seed, step)
                if got.scheduled:
                    key = ("default", f"p{seed}-{step}")
                    where = (got.device.node, got.device.device, request.pipeline_digest)
                    cache.assume(key, *where)
                    assumed[key] = where
                    if rng.random() < 0.8:
                        p = placement(key[1], *where)
                        cache.placement_changed(None, p)
                        objects[key], placed[key] = p, where
                        cache.forget(key)
                        del assumed[key]
    assert cache.rebuilds < 200, "usage changes update the index in place"


def test_assume_then_observe_counts_a_slot_once():
    n = pb.Node()
    n.metadata.name = "n1"
    n.status.phase = "Ready"
    n.spec.devices.add(name="d0", target="bmv2", arch="v1model", pipeline_slots=2)
    cache = SchedulerCache()
    cache.node_changed(None, n)
    cache.assume(("default", "a-0"), "n1", "d0", D1)
    cache.placement_changed(None, placement("a-0", "n1", "d0", D1))
    assert [(d.used, d.pipeline_digest) for d in cache.devices()] == [(1, D1)]
    cache.forget(("default", "a-0"))
    assert [(d.used, d.pipeline_digest) for d in cache.devices()] == [(1, D1)]
    cache.placement_changed(placement("a-0", "n1", "d0", D1), None)
    assert [(d.used, d.pipeline_digest) for d in cache.devices()] == [(0, "")]
    assert cache.assumed == 0


def test_readiness_comes_from_the_callback():
    n = pb.Node()
    n.metadata.name = "n1"
    n.status.phase = "Ready"
    n.spec.devices.add(name="d0", target="bmv2", arch="v1model")
    live = {"n1"}
    cache = SchedulerCache(ready=lambda node: node in live)
    cache.node_changed(None, n)
    assert cache.schedule(req()).scheduled
    live.clear()
    cache.readiness_changed("n1")
    decision = cache.schedule(req())
    assert not decision.scheduled and decision.filtered == {"NodeNotReady": 1}


def _node(name: str, devices: int = 1, ready: bool = True) -> pb.Node:
    n = pb.Node()
    n.metadata.name = name
    n.status.phase = "Ready" if ready else "NotReady"
    for i in range(devices):
        n.spec.devices.add(name=f"d{i}", target="bmv2", arch="v1model")
    return n


def test_paced_rebuilds_never_place_on_a_node_that_changed_meanwhile():
    """A registration storm must not rebuild the device list per decision, and a paced (stale) list
    must not put a replica on a node that left or whose devices changed since."""
    cache = SchedulerCache(rebuild_gap=3600)
    a, b = _node("a"), _node("b")
    cache.node_changed(None, a)
    cache.node_changed(None, b)
    first = cache.schedule(req())
    assert first.device.node == "a" and cache.rebuilds == 1
    for i in range(20):  # a storm of new nodes: no rebuild, decisions keep coming from the list
        cache.node_changed(None, _node(f"new-{i:02d}"))
        assert cache.schedule(req()).scheduled
    assert cache.rebuilds == 1
    cache.node_changed(a, None)  # the node the decisions land on leaves: rebuilt before deciding
    decision = cache.schedule(req())
    assert decision.device.node != "a" and cache.rebuilds == 2


def test_a_paced_list_still_counts_every_slot_taken():
    cache = SchedulerCache(rebuild_gap=3600)
    cache.node_changed(None, _node("a"))
    cache.node_changed(None, _node("b"))
    d = cache.schedule(req())
    cache.node_changed(None, _node("c"))  # the list is stale now, and not rebuilt yet
    cache.assume(("default", "x-0"), d.device.node, d.device.device, D1)
    again = cache.schedule(req())
    assert again.device.key != d.device.key, "the assumed slot is taken even on a stale list"
