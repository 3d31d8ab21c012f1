"""Scheduling benchmark: the builtin P4-aware policy against the Kubernetes model.

Builds simulated clusters (mixed targets and architectures, 1-4 devices per
node with 1-4 pipeline slots, zone/rack node labels, some NotReady nodes), a
stream of deployments (1-5 replicas, a handful of pipelines per target so
pipeline conflicts matter, some label selectors, some deletions along the way)
and runs every policy over the same stream. Everything but the timings is
deterministic for a given seed.

Reported per (cluster size, policy):

* ``decisions_per_s``: schedule calls (including the commit of successes) per
  second of wall clock spent inside them (``time.perf_counter``); the index is
  built before the clock starts (``index_build_s``), views are built lazily and
  are included.
* ``success_rate``: replicas scheduled *and* installable / replicas requested.
* ``failures``: ``{"unschedulable": {reason: n}, "install": {reason: n}}``; an
  unschedulable request is filed under the most advanced filter reason any
  candidate reached (e.g. ``NoFreeSlot`` when matching devices exist but are
  full); install failures are Kubernetes-model placements that cannot run
  (``PipelineConflict``, or no device of the chosen node fits).
* ``pipeline_reuse_rate``: successful placements onto a device already running
  the pipeline (no pipeline install needed).
* ``balance``: used-slot fraction over the devices of Ready nodes at the end of
  the stream: ``mean``, ``stddev``, ``cv`` (stddev / mean), ``max_min``.
* ``spread``: among deployments with at least two placed replicas, the fraction
  whose replicas are all on distinct nodes.

Run: ``python -m kubep4.bench.schedule [--sizes 100,1000,5000]
[--deployments N] [--seed S] [--json FILE]``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from kubep4.gen.kubep4.v1 import resources_pb2 as pb
from kubep4.labels import parse as parse_selector
from services.controller.scheduling import (
    REASONS,
    Decision,
    DeviceState,
    Request,
    devices_from,
    make_scheduler,
)

__all__ = ["DEFAULT_SIZES", "main", "make_cluster", "make_stream", "render_table", "run"]

T = TypeVar("T")

DEFAULT_SIZES = (100, 1000, 5000)
DEFAULT_POLICIES = ("builtin", "kubernetes")

# (target, arch, weight): the mix of devices in the cluster and of deployments.
TARGETS: tuple[tuple[tuple[str, str], float], ...] = (
    (("bmv2", "v1model"), 0.35),
    (("tofino", "tna"), 0.25),
    (("tofino", "t2na"), 0.10),
    (("dpdk", "psa"), 0.20),
    (("bmv2", "psa"), 0.10),
)
PIPELINES_PER_TARGET = 5          # distinct digests per (target, arch); popularity is skewed
ZONES = ("zone-a", "zone-b", "zone-c", "zone-d")
NODES_PER_RACK = 20
NOT_READY_FRACTION = 0.03
DEVICES_PER_NODE = ((1, 0.35), (2, 0.30), (3, 0.20), (4, 0.15))
SLOTS_PER_DEVICE = ((1, 0.25), (2, 0.30), (3, 0.20), (4, 0.25))
REPLICAS = ((1, 0.35), (2, 0.25), (3, 0.20), (4, 0.10), (5, 0.10))
DEPLOYMENTS_PER_NODE = 2.0        # default stream length: deployments = this * nodes
CHURN = 0.15                      # after each deployment, probability of deleting a live one


def _pick(rng: random.Random, weighted: Sequence[tuple[T, float]]) -> T:
    """Weighted choice over (value, weight) pairs."""
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def make_cluster(n_nodes: int, seed: int = 0) -> list[pb.Node]:
    """``n_nodes`` simulated Nodes (deterministic for a seed)."""
    rng = random.Random(f"cluster-{seed}-{n_nodes}")
    nodes = []
    for i in range(n_nodes):
        node = pb.Node()
        node.metadata.name = f"node-{i:05d}"
        node.metadata.labels["zone"] = ZONES[i % len(ZONES)]
        node.metadata.labels["rack"] = f"rack-{i // NODES_PER_RACK:03d}"
        node.metadata.labels["role"] = "spine" if i % 10 == 0 else "leaf"
        node.status.phase = "NotReady" if rng.random() < NOT_READY_FRACTION else "Ready"
        primary = _pick(rng, TARGETS)
        for j in range(_pick(rng, DEVICES_PER_NODE)):
            target, arch = primary if rng.random() < 0.7 else _pick(rng, TARGETS)
            dev = node.spec.devices.add(name=f"dev{j}", target=target, arch=arch,
                                        pipeline_slots=_pick(rng, SLOTS_PER_DEVICE),
                                        device_id=j + 1, p4rt_address=f"10.{i // 250}.{i % 250}.{j + 1}:9559")
            dev.labels["speed"] = "400g" if rng.random() < 0.3 else "100g"
            if rng.random() < 0.05:
                dev.labels["maintenance"] = "true"
        nodes.append(node)
    return nodes


def _digest(target: str, arch: str, k: int) -> str:
    return "sha256:" + hashlib.sha256(f"{target}/{arch}/pipeline-{k}".encode()).hexdigest()


# (selector text, weight); "" = no selector. {zone}/{zone2}/{rack} are filled per deployment.
SELECTORS: tuple[tuple[str, float], ...] = (
    ("", 0.55),
    ("zone={zone}", 0.12),
    ("zone in ({zone},{zone2})", 0.08),
    ("speed=400g", 0.07),
    ("role=leaf,!maintenance", 0.08),
    ("rack notin ({rack}),speed!=400g", 0.05),
    ("role=spine", 0.05),
)


@dataclass(frozen=True)
class DeploymentSpec:
    namespace: str
    name: str
    target: str
    arch: str
    digest: str
    replicas: int
    selector: str


def make_stream(n_nodes: int, n_deployments: int, seed: int = 0) -> list[tuple[str, object]]:
    """The event stream: ``("create", DeploymentSpec)`` and ``("delete", index of a created deployment)``."""
    rng = random.Random(f"stream-{seed}-{n_nodes}-{n_deployments}")
    racks = max(1, math.ceil(n_nodes / NODES_PER_RACK))
    events: list[tuple[str, object]] = []
    live: list[int] = []
    popularity = [1.0 / (k + 1) for k in range(PIPELINES_PER_TARGET)]  # Zipf-like
    for i in range(n_deployments):
        target, arch = _pick(rng, TARGETS)
        k = rng.choices(range(PIPELINES_PER_TARGET), weights=popularity)[0]
        zone, zone2 = rng.sample(ZONES, 2)
        selector = _pick(rng, SELECTORS).format(zone=zone, zone2=zone2,
                                                     rack=f"rack-{rng.randrange(racks):03d}")
        spec = DeploymentSpec(namespace=rng.choice(("default", "team-a", "team-b")), name=f"dep-{i:05d}",
                              target=target, arch=arch, digest=_digest(target, arch, k),
                              replicas=_pick(rng, REPLICAS), selector=selector)
        events.append(("create", spec))
        live.append(i)
        if live and rng.random() < CHURN:
            events.append(("delete", live.pop(rng.randrange(len(live)))))
    return events


def _furthest_reason(filtered: dict[str, int]) -> str:
    present = [r for r in REASONS if filtered.get(r)]
    return present[-1] if present else "NoDevices"


def _run_policy(policy: str, nodes: list[pb.Node], events: list[tuple[str, object]]) -> dict:
    devices = devices_from(nodes)
    sched = make_scheduler(policy)
    t0 = time.perf_counter()
    sched.prepare(devices)
    build_s = time.perf_counter() - t0

    selectors: dict[str, pb.LabelSelector | None] = {}
    placed: dict[int, list[DeviceState]] = {}   # created index -> devices of placed replicas
    unsched: dict[str, int] = {}
    install: dict[str, int] = {}
    requests = scheduled = reused = 0
    spread_total = spread_ok = 0
    elapsed = 0.0
    clock = time.perf_counter
    created = 0
    for kind, payload in events:
        if kind == "delete":
            for d in placed.pop(payload, []):  # type: ignore[call-overload]
                sched.release(d)
            continue
        spec: DeploymentSpec = payload  # type: ignore[assignment]
        sel = selectors.get(spec.selector)
        if sel is None and spec.selector not in selectors:
            sel = selectors[spec.selector] = parse_selector(spec.selector) if spec.selector else None
        mine: list[DeviceState] = []
        for r in range(spec.replicas):
            req = Request(namespace=spec.namespace, deployment=spec.name, replica=r, target=spec.target,
                          arch=spec.arch, selector=sel, pipeline_digest=spec.digest,
                          avoid_nodes=frozenset(d.node for d in mine))
            requests += 1
            t = clock()
            dec: Decision = sched.schedule(req, devices, commit=True)
            elapsed += clock() - t
            if dec.scheduled:
                assert dec.device is not None
                scheduled += 1
                if dec.device.used > 1:
                    reused += 1
                mine.append(dec.device)
            elif dec.failure:
                install[dec.failure] = install.get(dec.failure, 0) + 1
            else:
                reason = _furthest_reason(dec.filtered)
                unsched[reason] = unsched.get(reason, 0) + 1
        if len(mine) >= 2:
            spread_total += 1
            spread_ok += len({d.node for d in mine}) == len(mine)
        placed[created] = mine
        created += 1

    fractions = [d.used / d.slots for d in devices if d.node_ready]
    mean = sum(fractions) / len(fractions) if fractions else 0.0
    std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions)) if fractions else 0.0
    ready_slots = sum(d.slots for d in devices if d.node_ready)
    return {
        "policy": policy,
        "nodes": len(nodes),
        "devices": len(devices),
        "ready_slots": ready_slots,
        "deployments": created,
        "requests": requests,
        "scheduled": scheduled,
        "failed": requests - scheduled,
        "success_rate": scheduled / requests if requests else 1.0,
        "failures": {"unschedulable": dict(sorted(unsched.items())),
                     "install": dict(sorted(install.items()))},
        "pipeline_reuse_rate": reused / scheduled if scheduled else 0.0,
        "decisions_per_s": requests / elapsed if elapsed > 0 else float("inf"),
        "schedule_s": elapsed,
        "index_build_s": build_s,
        "balance": {"mean": mean, "stddev": std, "cv": std / mean if mean else 0.0,
                    "max_min": (max(fractions) - min(fractions)) if fractions else 0.0},
        "spread": spread_ok / spread_total if spread_total else 1.0,
        "multi_replica_deployments": spread_total,
    }


def run(sizes: Sequence[int] = DEFAULT_SIZES, deployments: int | None = None, seed: int = 0,
        policies: Sequence[str] = DEFAULT_POLICIES) -> dict:
    """Run every policy over the same cluster and stream for each size.

    ``deployments`` is the number of deployments created per size (default
    ``DEPLOYMENTS_PER_NODE * size``). Returns ``{"seed", "policies", "sizes",
    "results": [per (size, policy) dict with "size" and the metrics above]}``.
    """
    results = []
    for size in sizes:
        nodes = make_cluster(size, seed)
        n_dep = deployments if deployments is not None else max(1, round(DEPLOYMENTS_PER_NODE * size))
        events = make_stream(size, n_dep, seed)
        for policy in policies:
            res = _run_policy(policy, nodes, events)
            results.append({"size": size, **res})
    return {"seed": seed, "policies": list(policies), "sizes": list(sizes), "deployments": deployments,
            "results": results}


def render_table(result: dict) -> str:
    """A fixed-width text table of :func:`run`'s result, failure breakdowns below it."""
    head = ("nodes", "devices", "policy", "requests", "decisions/s", "success", "unsched", "install-fail",
            "reuse", "util", "load sd", "load cv", "max-min", "spread")
    rows = [head]
    notes = []
    for r in result["results"]:
        uns, ins = r["failures"]["unschedulable"], r["failures"]["install"]
        bal = r["balance"]
        rows.append((str(r["size"]), str(r["devices"]), r["policy"], str(r["requests"]),
                     f"{r['decisions_per_s']:,.0f}", f"{r['success_rate']:.1%}", str(sum(uns.values())),
                     str(sum(ins.values())), f"{r['pipeline_reuse_rate']:.1%}", f"{bal['mean']:.2f}",
                     f"{bal['stddev']:.3f}", f"{bal['cv']:.3f}", f"{bal['max_min']:.2f}",
                     f"{r['spread']:.1%}"))
        for label, fails in (("unschedulable (furthest reason)", uns), ("install failures", ins)):
            if fails:
                detail = ", ".join(f"{n} {k}" for k, n in fails.items())
                notes.append(f"{r['size']:>7} {r['policy']:<11} {label}: {detail}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 2 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    if notes:
        lines.append("")
        lines.extend(notes)
    lines.append("")
    lines.append("util = mean used-slot fraction of Ready devices; load sd/cv/max-min over the same "
                 "fractions; "
                 "spread = multi-replica deployments on distinct nodes")
    return "\n".join(lines)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kubep4 bench schedule", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=_sizes, default=DEFAULT_SIZES, help="node counts, e.g. 100,1000,5000")
    ap.add_argument("--deployments", type=int, default=None,
                    help=f"deployments per size (default {DEPLOYMENTS_PER_NODE} x nodes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policies", default=",".join(DEFAULT_POLICIES), help="comma-separated policies")
    ap.add_argument("--json", metavar="FILE", help="also write the result as JSON ('-' for stdout only)")
    args = ap.parse_args(argv)
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    result = run(sizes=args.sizes, deployments=args.deployments, seed=args.seed, policies=policies)
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(render_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
