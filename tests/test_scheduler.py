"""Scheduler policies on hand-made clusters, selector semantics, and index == full scan."""
from __future__ import annotations

import random

import pytest

from kubep4.gen.kubep4.v1 import resources_pb2 as pb
from kubep4.labels import parse as parse_selector
from services.controller import scheduling as sched
from services.controller.scheduling import (
    ARCH_LABEL_PREFIX,
    TARGET_LABEL_PREFIX,
    BuiltinScheduler,
    Decision,
    DeviceState,
    KubernetesDefaultScheduler,
    Request,
    devices_from,
    make_scheduler,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


# ----------------------------------------------------------------- helpers

def dev(name: str, target: str = "bmv2", arch: str = "v1model", slots: int = 1, **labels: str) -> pb.Device:
    return pb.Device(name=name, target=target, arch=arch, pipeline_slots=slots, labels=labels)


def node(name: str, *devices: pb.Device, ready: bool = True, **labels: str) -> pb.Node:
    n = pb.Node()
    n.metadata.name = name
    n.metadata.labels.update(labels)
    n.spec.devices.extend(devices)
    n.status.phase = "Ready" if ready else "NotReady"
    return n


def req(target: str = "bmv2", arch: str = "v1model", selector: str = "", digest: str = D1,
        avoid: tuple[str, ...] = (), exclude: tuple[tuple[str, str], ...] = (), replica: int = 0) -> Request:
    return Request(namespace="default", deployment="web", replica=replica, target=target, arch=arch,
                   selector=parse_selector(selector) if selector else None, pipeline_digest=digest,
                   avoid_nodes=frozenset(avoid), exclude_devices=frozenset(exclude))


def where(decision: Decision) -> tuple[str, str] | None:
    return decision.device.key if decision.device is not None else None


BOTH = [BuiltinScheduler, KubernetesDefaultScheduler]
BOTH_MODES = [pytest.param(cls, indexed, id=f"{cls.name}-{'index' if indexed else 'scan'}")
              for cls in BOTH for indexed in (True, False)]
BUILTIN_MODES = [pytest.param(indexed, id="index" if indexed else "scan") for indexed in (True, False)]


# ----------------------------------------------------------------- devices_from

def test_devices_from_merges_labels_and_counts_placements():
    nodes = [node("n1", dev("d0", slots=2, zone="override", speed="100g"),
                  dev("d1", "tofino", "tna", slots=0), zone="a", rack="r1"),
             node("n2", dev("d0"), ready=False)]
    placement = pb.Placement()
    placement.spec.node, placement.spec.device, placement.spec.pipeline_digest = "n2", "d0", D2
    devices = devices_from(nodes, [("n1", "d0", D1), ("n1", "d0", D1), placement, ("gone", "d9", D1)])
    assert [d.key for d in devices] == [("n1", "d0"), ("n1", "d1"), ("n2", "d0")]
    d0, d1, n2d0 = devices
    assert d0.labels == {"zone": "override", "rack": "r1", "speed": "100g"}
    assert (d0.used, d0.slots, d0.pipeline_digest, d0.free) == (2, 2, D1, 0)
    assert (d1.slots, d1.used, d1.pipeline_digest, d1.target, d1.arch) == (1, 0, "", "tofino", "tna")
    assert (n2d0.node_ready, n2d0.used, n2d0.pipeline_digest) == (False, 1, D2)
    assert DeviceState.from_nodes(nodes) == devices_from(nodes)


def test_devices_from_rejects_duplicate_device_names():
    with pytest.raises(ValueError, match="twice"):
        devices_from([node("n1", dev("d0"), dev("d0"))])


def test_request_for_deployment():
    dep = pb.Deployment()
    dep.metadata.name = "web"
    dep.spec.replicas = 3
    dep.spec.target, dep.spec.arch = "tofino", "tna"
    dep.spec.selector.match_labels["zone"] = "a"
    dep.status.pipeline_digest = D1
    r = Request.for_deployment(dep, 2, avoid_nodes=["n1"], exclude_devices=[("n2", "d0")])
    assert (r.namespace, r.deployment, r.replica, r.target, r.arch, r.pipeline_digest) == (
        "default", "web", 2, "tofino", "tna", D1)
    assert r.selector == dep.spec.selector and r.avoid_nodes == {"n1"} and r.exclude_devices == {("n2", "d0")}
    assert Request.for_deployment(dep, 0, pipeline_digest=D2).pipeline_digest == D2
    dep.spec.ClearField("selector")
    assert Request.for_deployment(dep, 0).selector is None
    hash(r)  # requests are hashable even with a selector message


# ----------------------------------------------------------------- builtin policy

def _reason_cluster() -> list[DeviceState]:
    """One device failing each filter (in filter order) plus one feasible device."""
    return devices_from([
        node("n0", dev("notready"), ready=False),
        node("n1", dev("target", "tofino", "tna")),
        node("n2", dev("arch", "bmv2", "psa")),
        node("n3", dev("selector", zone="b")),
        node("n4", dev("excluded", zone="a")),
        node("n5", dev("full", slots=1, zone="a")),
        node("n6", dev("conflict", slots=2, zone="a")),
        node("n7", dev("ok", slots=2, zone="a")),
    ], [("n5", "full", D1), ("n6", "conflict", D2)])


@pytest.mark.parametrize("indexed", BUILTIN_MODES)
def test_builtin_filter_reasons(indexed):
    devices = _reason_cluster()
    d = BuiltinScheduler(indexed=indexed).schedule(
        req(selector="zone=a", exclude=(("n4", "excluded"),)), devices)
    assert where(d) == ("n7", "ok") and d.scheduled and d.node == "n7"
    assert d.filtered == {"NodeNotReady": 1, "TargetMismatch": 1, "ArchMismatch": 1, "SelectorMismatch": 1,
                          "Excluded": 1, "NoFreeSlot": 1, "PipelineConflict": 1}
    assert (d.candidates, d.feasible, d.message) == (8, 1, "")


@pytest.mark.parametrize("indexed", BUILTIN_MODES)
def test_builtin_unschedulable_message(indexed):
    nodes = [node(f"n{i}", dev("d0", "tofino", "tna"), dev("d1", "tofino", "tna")) for i in range(4)]
    nodes += [node(f"m{i}", dev("d0", slots=1)) for i in range(4)]
    devices = devices_from(nodes, [(f"m{i}", "d0", D1) for i in range(4)])
    d = BuiltinScheduler(indexed=indexed).schedule(req(), devices)
    assert d.device is None and not d.scheduled and d.score == 0.0 and d.feasible == 0
    assert d.message == "0/12 devices are available: 8 TargetMismatch, 4 NoFreeSlot."
    assert d.filtered == {"TargetMismatch": 8, "NoFreeSlot": 4}
    assert BuiltinScheduler(indexed=indexed).schedule(req(), []).message == "0/0 devices are available."


# (cluster, placements, request kwargs, expected (node, device)) -- the right answer is known.
BUILTIN_CASES = {
    "reuse beats empty": (
        [node("a", dev("d0", slots=4)), node("b", dev("d0", slots=4))], [("b", "d0", D1)], {}, ("b", "d0")),
    "spread beats reuse": (
        [node("a", dev("d0", slots=4)), node("b", dev("d0", slots=4))], [("b", "d0", D1)],
        {"avoid": ("b",)}, ("a", "d0")),
    "avoided node when nothing else fits": (
        [node("a", dev("d0", slots=4)), node("b", dev("d0", slots=1))], [("b", "d0", D1), ("a", "d0", D1)],
        {"avoid": ("a",)}, ("a", "d0")),
    "avoided reuse beats avoided empty": (
        [node("a", dev("d0", slots=4), dev("d1", slots=4))], [("a", "d1", D1)], {"avoid": ("a",)},
        ("a", "d1")),
    "equal load falls back to names": (
        [node("a", dev("d0", slots=4)), node("b", dev("d0", slots=2))],
        [("a", "d0", D1), ("a", "d0", D1), ("b", "d0", D1)], {}, ("a", "d0")),     # 2/4 == 1/2
    "least loaded strict": (
        [node("a", dev("d0", slots=4)), node("b", dev("d0", slots=3))],
        [("a", "d0", D1), ("a", "d0", D1), ("b", "d0", D1)], {}, ("b", "d0")),     # 1/3 < 2/4
    "name tie-break": (
        [node("c", dev("d0")), node("b", dev("d1")), node("a", dev("z"))],
        [], {}, ("a", "z")),
    "conflict skipped": (
        [node("a", dev("d0", slots=4)), node("b", dev("d0", slots=1))], [("a", "d0", D2)], {}, ("b", "d0")),
    "empty target/arch match any": (
        [node("a", dev("d0", "tofino", "tna")), node("b", dev("d0", "dpdk", "psa", slots=2))],
        [("b", "d0", D1)], {"target": "", "arch": ""}, ("b", "d0")),
    "selector over node labels": (
        [node("a", dev("d0"), zone="x"), node("b", dev("d0"), zone="y")], [], {"selector": "zone=y"},
        ("b", "d0")),
    "device label overrides node label": (
        [node("a", dev("d0", zone="y"), zone="x"), node("b", dev("d0"), zone="x")], [],
        {"selector": "zone=y"},
        ("a", "d0")),
    "excluded device": (
        [node("a", dev("d0"), dev("d1"))], [], {"exclude": (("a", "d0"),)}, ("a", "d1")),
}


@pytest.mark.parametrize("indexed", BUILTIN_MODES)
@pytest.mark.parametrize("case", list(BUILTIN_CASES))
def test_builtin_choice(case, indexed):
    nodes, placements, kwargs, expected = BUILTIN_CASES[case]
    devices = devices_from(nodes, placements)
    assert where(BuiltinScheduler(indexed=indexed).schedule(req(**kwargs), devices)) == expected


def test_builtin_score_orders_like_the_ranking():
    devices = devices_from([node("a", dev("d0", slots=4)), node("b", dev("d0", slots=4))], [("b", "d0", D1)])
    s = BuiltinScheduler()
    assert s.schedule(req(), devices).score == pytest.approx(4 + 2 + 0.75)          # spread, reuse, 1/4 used
    assert s.schedule(req(avoid=("b",)), devices).score == pytest.approx(4 + 0 + 1)  # empty device on a
    assert s.schedule(req(avoid=("a", "b")), devices).score == pytest.approx(0 + 2 + 0.75)


@pytest.mark.parametrize("indexed", BUILTIN_MODES)
def test_builtin_stream_spreads_reuses_and_releases(indexed):
    devices = devices_from([node(n, dev("d0", slots=2), dev("d1", slots=2)) for n in ("a", "b", "c")])
    s = BuiltinScheduler(indexed=indexed)
    placed = []
    for r in range(3):
        d = s.schedule(req(replica=r, avoid=tuple(p[0] for p in placed)), devices, commit=True)
        assert d.committed
        placed.append(d.device.key)
    assert placed == [("a", "d0"), ("b", "d0"), ("c", "d0")]          # one replica per node
    # A second deployment of the same pipeline reuses the installed devices first.
    d = s.schedule(req(), devices)
    assert where(d) == ("a", "d0") and d.committed is False
    assert s.commit(d) and not s.commit(d)                             # idempotent
    assert (devices[0].used, devices[0].pipeline_digest) == (2, D1)
    # Another pipeline cannot join a used device: it gets an empty one.
    assert where(s.schedule(req(digest=D2), devices, commit=True)) == ("a", "d1")
    s.release(("a", "d0"), devices)
    s.release(devices[0])
    assert (devices[0].used, devices[0].pipeline_digest) == (0, "")  # emptied: pipeline forgotten
    s.release(devices[0])                                              # no-op at zero
    assert where(s.schedule(req(digest=D2), devices)) == ("a", "d1")  # reuse D2 beats empty a/d0
    assert where(s.schedule(req(digest=D2, avoid=("a",)), devices)) == ("b", "d1")
    with pytest.raises(KeyError):
        s.release(("zz", "d0"), devices)


def test_commit_ignores_failures_and_index_follows_external_changes_after_invalidate():
    devices = devices_from([node("a", dev("d0"))])
    s = BuiltinScheduler()
    d = s.schedule(req(), devices, commit=True)
    assert d.committed
    none = s.schedule(req(), devices)
    assert none.device is None and not s.commit(none)
    devices[0].used = 0                      # changed behind the scheduler's back
    devices[0].pipeline_digest = ""
    s.invalidate()
    assert where(s.schedule(req(), devices)) == ("a", "d0")


# ----------------------------------------------------------------- Kubernetes model

@pytest.mark.parametrize("indexed", BUILTIN_MODES)
def test_kubernetes_picks_node_whose_only_free_slot_conflicts(indexed):
    # n1 is the least allocated node, but its only free slot is on a device running D2.
    devices = devices_from([
        node("n1", dev("d0", slots=4)),
        node("n2", dev("d0", slots=2), dev("d1", slots=2)),
    ], [("n1", "d0", D2), ("n2", "d0", D1), ("n2", "d0", D1), ("n2", "d1", D1)])
    k = KubernetesDefaultScheduler(indexed=indexed).schedule(req(digest=D1), devices)
    assert k.node == "n1" and where(k) == ("n1", "d0")
    assert k.failure == "PipelineConflict" and not k.scheduled
    assert "PipelineConflict" in k.message and D2 in k.message
    assert k.score == 50 + 2 * 100            # LeastAllocated (4-2)/4, no replica anywhere
    assert not KubernetesDefaultScheduler(indexed=indexed).commit(k)
    assert devices[0].used == 1
    # The P4-aware policy reuses D1's free slot on n2/d1 instead.
    b = BuiltinScheduler(indexed=indexed).schedule(req(digest=D1), devices)
    assert where(b) == ("n2", "d1") and b.scheduled
    assert b.filtered == {"PipelineConflict": 1, "NoFreeSlot": 1}


@pytest.mark.parametrize("indexed", BUILTIN_MODES)
def test_kubernetes_least_allocated_and_soft_spread(indexed):
    k = KubernetesDefaultScheduler(indexed=indexed)
    # Plain LeastAllocated: (4-1)*100//4 = 75 beats (2-1)*100//2 = 50.
    devices = devices_from([node("a", dev("d0", slots=2)), node("b", dev("d0", slots=4))])
    d = k.schedule(req(), devices)
    assert (d.node, d.score, d.feasible, d.candidates) == ("b", 75 + 200, 2, 2)
    # Spread beats allocation: a hosts a replica -> raw 3 vs 2, PTS 66 vs 100; 50 + 132 < 25 + 200.
    devices = devices_from([node("a", dev("d0", slots=4)), node("b", dev("d0", slots=4))],
                           [("a", "d0", D1), ("b", "d0", D1), ("b", "d0", D1)])
    d = k.schedule(req(avoid=("a",)), devices)
    assert (d.node, d.score) == ("b", 25 + 200)
    # ... but it is soft: a much emptier node with a replica still wins (98 + 132 > 0 + 200).
    devices = devices_from([node("a", dev("d0", slots=100)), node("b", dev("d0", slots=2))],
                           [("a", "d0", D1), ("b", "d0", D1)])
    d = k.schedule(req(avoid=("a",)), devices)
    assert (d.node, d.score) == ("a", 98 + 132)
    # ... while the builtin policy always spreads.
    assert BuiltinScheduler(indexed=indexed).schedule(req(avoid=("a",)), devices).node == "b"


@pytest.mark.parametrize("indexed", BUILTIN_MODES)
def test_kubernetes_filters_nodes_and_reports_in_nodes(indexed):
    devices = devices_from([
        node("n0", dev("d0"), ready=False),
        node("n1", dev("d0", "tofino", "tna"), dev("d1", "tofino", "tna")),
        node("n2", dev("d0", "bmv2", "psa")),
        node("n3", dev("d0"), zone="b"),
        node("n4", dev("d0", slots=1), zone="a"),
    ], [("n4", "d0", D1)])
    d = KubernetesDefaultScheduler(indexed=indexed).schedule(req(selector="zone=a"), devices)
    assert d.device is None and d.failure == "" and d.node == ""
    assert d.filtered == {"NodeNotReady": 1, "TargetMismatch": 1, "ArchMismatch": 1, "SelectorMismatch": 1,
                          "NoFreeSlot": 1}
    assert d.message == ("0/5 nodes are available: 1 NodeNotReady, 1 TargetMismatch, 1 ArchMismatch, "
                         "1 SelectorMismatch, 1 NoFreeSlot.")


@pytest.mark.parametrize("indexed", BUILTIN_MODES)
@pytest.mark.parametrize("devices_spec, placements, kwargs, reason", [
    # Union labels: target-bmv2 from d0 and arch-psa from d1 make the node "fit" bmv2/psa.
    ([dev("d0", "bmv2", "v1model", slots=2), dev("d1", "dpdk", "psa", slots=2)], [],
     {"target": "bmv2", "arch": "psa"}, "ArchMismatch"),
    # Pooled slots: the node has a free slot, but on a device of another target.
    ([dev("d0", "bmv2", "v1model", slots=1), dev("d1", "tofino", "tna", slots=4)], [("d0", D1)], {},
     "NoFreeSlot"),
    # Union labels: speed=400g comes from another device of the node.
    ([dev("d0", slots=2), dev("d1", "tofino", "tna", speed="400g")], [], {"selector": "speed=400g"},
     "SelectorMismatch"),
    # The only fitting device is excluded.
    ([dev("d0", slots=2)], [], {"exclude": (("n1", "d0"),)}, "Excluded"),
])
def test_kubernetes_agent_cannot_place(devices_spec, placements, kwargs, reason, indexed):
    devices = devices_from([node("n1", *devices_spec)], [("n1", d, g) for d, g in placements])
    d = KubernetesDefaultScheduler(indexed=indexed).schedule(req(**kwargs), devices, commit=True)
    assert (d.node, d.device, d.failure, d.scheduled, d.committed) == ("n1", None, reason, False, False)
    assert reason in d.message
    assert BuiltinScheduler(indexed=indexed).schedule(req(**kwargs), devices).device is None


def test_kubernetes_node_labels():
    devices = devices_from([node("n1", dev("d0", "bmv2", "v1model", zone="a"),
                                 dev("d1", "dpdk", "psa", zone="b"), rack="r1")])
    (n,) = sched.kubernetes._aggregate_nodes(devices)
    assert n.labels == {"zone": "a", "rack": "r1", TARGET_LABEL_PREFIX + "bmv2": "true",
                        ARCH_LABEL_PREFIX + "v1model": "true", TARGET_LABEL_PREFIX + "dpdk": "true",
                        ARCH_LABEL_PREFIX + "psa": "true"}
    assert n.alloc == 2


@pytest.mark.parametrize("indexed", BUILTIN_MODES)
def test_kubernetes_first_fit_in_spec_order_and_commit(indexed):
    devices = devices_from([node("n1", dev("d1", slots=1), dev("d0", slots=2))])
    k = KubernetesDefaultScheduler(indexed=indexed)
    first = k.schedule(req(), devices, commit=True)
    assert where(first) == ("n1", "d1") and first.committed
    second = k.schedule(req(digest=D2), devices, commit=True)
    assert where(second) == ("n1", "d0") and second.scheduled
    third = k.schedule(req(digest=D1), devices, commit=True)   # d0 runs D2 now
    assert where(third) == ("n1", "d0") and third.failure == "PipelineConflict" and not third.committed
    k.release(devices[0])
    assert where(k.schedule(req(digest=D1), devices)) == ("n1", "d1")


def test_make_scheduler():
    assert isinstance(make_scheduler(), BuiltinScheduler)
    assert isinstance(make_scheduler("kubernetes", indexed=False), KubernetesDefaultScheduler)
    with pytest.raises(ValueError, match="unknown scheduling policy"):
        make_scheduler("random")


# ----------------------------------------------------------------- index == full scan

TARGET_ARCHES = [("bmv2", "v1model"), ("tofino", "tna"), ("bmv2", "psa"), ("dpdk", "psa")]
SELECTORS = ["", "zone=a", "zone in (a,b)", "speed", "!speed", "speed!=400g", "zone notin (c),rack",
             "rack=r1,speed=100g", "zone=a,zone=b", "role=spine"]


def _random_nodes(rng: random.Random, n: int) -> list[pb.Node]:
    nodes = []
    for i in range(n):
        labels = {"zone": rng.choice("abc")}
        if rng.random() < 0.5:
            labels["rack"] = rng.choice(["r1", "r2", "r3"])
        if rng.random() < 0.1:
            labels["role"] = "spine"
        devices = []
        for j in range(rng.randint(0, 4)):
            target, arch = rng.choice(TARGET_ARCHES)
            extra = {}
            if rng.random() < 0.5:
                extra["speed"] = rng.choice(["100g", "400g"])
            if rng.random() < 0.2:
                extra["zone"] = rng.choice("abcd")
            devices.append(dev(f"d{j}", target, arch, slots=rng.randint(0, 4), **extra))
        nodes.append(node(f"n{rng.randrange(1000):03d}-{i}", *devices, ready=rng.random() < 0.9, **labels))
    return nodes


def _outcome(d: Decision) -> tuple:
    return (where(d), d.score, d.candidates, d.feasible, d.filtered, d.message, d.node, d.failure)


@pytest.mark.parametrize("thresholds", [
    pytest.param(None, id="default"),
    pytest.param((0, 0, 100, 100), id="always-own-views"),
    pytest.param((2, 5, 3, 5), id="driven-small-caches"),
    pytest.param((0, 1000, 100, 100), id="always-driven"),
    pytest.param((4, 20, 1, 1), id="thrashing"),
])
@pytest.mark.parametrize("cls", BOTH, ids=lambda c: c.name)
def test_indexed_equals_full_scan_on_random_clusters(cls, thresholds, monkeypatch):
    if thresholds is not None:
        for name, value in zip(("_SCAN_MAX", "_SKIP_MAX", "_MAX_OWN_VIEWS", "_MAX_PLANS"), thresholds):
            monkeypatch.setattr(sched.index, name, value)
    digests = [D1, D2, "sha256:" + "3" * 64]
    for seed in range(12):
        rng = random.Random(seed)
        nodes = _random_nodes(rng, rng.choice([3, 30, 150]))
        fast_devices, slow_devices = devices_from(nodes), devices_from(nodes)
        fast, slow = cls(), cls(indexed=False)
        keys = [d.key for d in fast_devices]
        names = sorted({d.node for d in fast_devices})
        live: list[tuple[str, str]] = []
        for step in range(150):
            if live and rng.random() < 0.3:
                key = live.pop(rng.randrange(len(live)))
                fast.release(key)
                slow.release(key, slow_devices)
                continue
            target, arch = rng.choice(TARGET_ARCHES + [("bmv2", ""), ("", "psa"), ("", "")])
            r = req(target=target, arch=arch, selector=rng.choice(SELECTORS), digest=rng.choice(digests),
                    avoid=tuple(rng.sample(names, min(len(names), rng.randint(0, 3)))),
                    exclude=tuple(rng.sample(keys, min(len(keys), rng.randint(0, 2))))
                    if rng.random() < 0.3 else ())
            a = fast.schedule(r, fast_devices, commit=True)
            b = slow.schedule(r, slow_devices, commit=True)
            assert _outcome(a) == _outcome(b), (seed, step, r)
            assert a.committed == b.committed
            if a.committed:
                live.append(a.device.key)
            if a.device is None and a.failure == "":
                assert a.message.startswith("0/")
        assert [(d.used, d.pipeline_digest) for d in fast_devices] == \
               [(d.used, d.pipeline_digest) for d in slow_devices]
