"""`kubep4 bench scale`: the real control plane against many hollow nodes (kubemark's idea).

etcd, admission, the apiserver and one controller run as real processes (kubep4.localstack.LocalStack
with no node agents); one more process (kubep4.bench.hollow) runs ``--nodes`` hollow node agents —
the real NodeAgent, each registering its Node, holding its heartbeat lease, watching only its own
placement shard, installing into in-memory devices and writing placement status as a real agent
does. Deployments (one replica each, of one precompiled pipeline, with the example's three table
entries) are created at ``--rate`` per second through the apiserver with the SDK (kubep4.client).

Reported: create -> Running latency as the client sees it (from the CreateDeployment call to the
watch event saying Running); the real controller's scheduling decisions from its own "schedule"
spans (OTLP, collected here): how many per second it made over the run (bounded by the creation
rate) and how many it could make (decisions / time spent in them: the spans are serialised under the
controller's scheduling lock); CPU seconds and RSS of every process from /proc (over the measured
phase: from the first create until the last deployment is Running); etcd's database size; and the
placement watch events the hollow nodes received, per deployment and per node (none about another
node's placements, when the shards hold).
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from kubep4.bench import deploy as bd
from kubep4.bench import hollow
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack, Proc
from kubep4.otlp_receiver import OTLPReceiver, Span

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEPT_SPANS = {"schedule", "controller reconcile"}
MIB = 1 << 20


class _ControllerSpans(OTLPReceiver):
    """Keeps only the controller spans the benchmark reads (20,000 deployments make ~10^6 spans)."""

    def add(self, span: Span) -> None:
        if span.name in KEPT_SPANS and span.service == "kubep4-controller":
            super().add(span)


@dataclass
class _Stack(LocalStack):
    """The local stack, with tracing on for the controller alone (the other services do not pay for it)."""
    controller_env: dict[str, str] = field(default_factory=dict)
    controller_profile: str = ""  # run the controller under cProfile, its stats written here when it stops

    def _add(self, name, module, args, marker, env=None):
        if name.startswith("controller"):
            env = {**(env or {}), **self.controller_env}
        proc = super()._add(name, module, args, marker, env)
        if name.startswith("controller") and self.controller_profile:
            proc.argv[1:1] = ["-m", "cProfile", "-o", self.controller_profile]
        return proc


def profile_summary(path: str, top: int = 25) -> list[dict]:
    """The functions the controller spent most time in (cProfile): own time and cumulative time."""
    import pstats
    stats = pstats.Stats(path)
    rows = []
    for (filename, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():
        if "epoll" in func:  # the event loop waiting: idle, not work
            continue
        where = filename.replace(ROOT + os.sep, "")
        rows.append({"function": f"{where}:{line}({func})", "calls": calls, "own_s": round(tottime, 3),
                     "cumulative_s": round(cumtime, 3)})
    return sorted(rows, key=lambda r: -r["own_s"])[:top]


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("-dirty" if dirty else "") if head else ""


def _process_figures(pids: dict[str, int], cpu: dict[str, float], total: dict[str, float]) -> dict:
    out = {}
    for name, pid in pids.items():
        mem = bd.proc_memory(pid)
        out[name] = {"cpu_s": round(cpu.get(name, 0.0), 2), "cpu_s_total": round(total.get(name, 0.0), 2),
                     "rss_mib": round(mem.get("rss", 0) / MIB, 1), "peak_rss_mib": round(mem.get("peak_rss", 0) / MIB, 1)}
    return out


def _decisions(receiver: OTLPReceiver | None) -> dict:
    if receiver is None:
        return {}
    spans = receiver.spans()
    sched = [s for s in spans if s.name == "schedule"]
    reconciles = [s for s in spans if s.name == "controller reconcile"]
    if not sched:
        return {"decisions": 0}
    wall = (max(s.end_ns for s in sched) - min(s.start_ns for s in sched)) / 1e9
    busy = sum(s.duration_ns for s in sched) / 1e9
    durations = bd.percentiles([s.duration_ns / 1e6 for s in sched])
    return {"decisions": len(sched),
            "decisions_per_s": len(sched) / wall if wall > 0 else 0.0,
            "decision_capacity_per_s": len(sched) / busy if busy > 0 else 0.0,
            "schedule_ms": {k: round(v, 3) for k, v in durations.items()},
            "reconciles": len(reconciles),
            "reconcile_ms_mean": round(sum(s.duration_ns for s in reconciles) / 1e6 / len(reconciles), 3)
            if reconciles else 0.0}


async def _wait_nodes(client: AsyncClient, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        nodes = await client.list("node")
        ready = sum(1 for n in nodes if n.status.phase == "Ready")
        if ready >= want:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {ready} of {want} hollow nodes Ready after {timeout:.0f}s")
        await asyncio.sleep(0.5)


def _etcd_db_file(stack: LocalStack) -> int:
    try:
        return os.path.getsize(os.path.join(stack.etcd.data_dir, "data", "member", "snap", "db"))
    except (OSError, TypeError):
        return 0


async def run(nodes: int = 50, devices_per_node: int = 2, deployments: int = 200, rate: float = 50.0,
              slots: int = 0, traces: bool = True, timeout: float = 120.0, etcd_dir: str | None = None,
              lease_ttl: int = 30, progress=print, progress_every: float = 5.0, profile: str = "") -> dict:
    devices = nodes * devices_per_node
    slots = slots or max(1, math.ceil(deployments / max(1, devices)))
    receiver = await _ControllerSpans().start() if traces else None
    controller_env = {}
    if receiver:
        controller_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "500",
                          "OTEL_BSP_MAX_QUEUE_SIZE": "262144", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2048",
                          "OTEL_METRIC_EXPORT_INTERVAL": "600000"}
    env = {"KUBEP4_LOG_LEVEL": os.environ.get("KUBEP4_BENCH_LOG_LEVEL", "WARNING")}
    data_dir = tempfile.mkdtemp(prefix="kubep4-scale-", dir=etcd_dir)
    profile = os.path.abspath(profile) if profile else ""
    # plaintext: the hollow fleet plays thousands of nodes, each of which would need an etcd identity
    stack = _Stack(nodes=0, data_dir=data_dir, env=env, controller_env=controller_env, controller_profile=profile,
                   secure=False)
    result: dict = {"config": {"nodes": nodes, "devices_per_node": devices_per_node, "slots_per_device": slots,
                               "deployments": deployments, "rate": rate, "traces": traces,
                               "lease_ttl": lease_ttl, "commit": git_commit(), "data_dir": data_dir}}
    t_start = time.monotonic()
    progress(f"starting etcd, admission, apiserver, controller (logs in {data_dir})")
    await asyncio.to_thread(stack.start)
    stats_path = os.path.join(data_dir, "hollow-stats.json")
    fleet = Proc("hollow", [sys.executable, "-m", "kubep4.bench.hollow", "--etcd", stack.etcd.endpoint,
                            "--nodes", str(nodes), "--devices-per-node", str(devices_per_node),
                            "--slots", str(slots), "--lease-ttl", str(lease_ttl), "--stats", stats_path],
                 stack._env(), os.path.join(data_dir, "hollow.log"), hollow.READY)
    stack.procs["hollow"] = fleet  # stack.stop() stops it too
    try:
        result["startup_s"] = {"stack": round(time.monotonic() - t_start, 2)}
        progress(f"starting {nodes} hollow nodes x {devices_per_node} devices ({slots} slot(s) each)")
        t0 = time.monotonic()
        fleet.start()
        await asyncio.to_thread(fleet.wait_ready, max(60.0, nodes * 0.1))
        async with stack.client(timeout=60.0) as client:
            await _wait_nodes(client, nodes, max(60.0, nodes * 0.05))
            result["startup_s"]["hollow_nodes"] = round(time.monotonic() - t0, 2)
            (pipeline,), template = bd._pipelines(1)
            pipeline.metadata.name = "scale"
            await client.create(pipeline)
            waiter = bd._Waiter(client)
            await waiter.start()
            result.update(await _measure(client, waiter, template, stack, deployments, rate, timeout, progress,
                                         progress_every))
            waiter.task.cancel()
            async with stack.store() as store:
                db = await store.db_size()
            result["etcd"] = {"db_bytes": db, "db_mib": round(db / MIB, 1),
                              "db_file_mib": round(_etcd_db_file(stack) / MIB, 1)}
        if receiver:
            await asyncio.sleep(1.5)  # the controller's last span batch
            result["controller_decisions"] = _decisions(receiver)
        await asyncio.to_thread(fleet.stop, 120.0)
        with open(stats_path) as f:
            stats = json.load(f)
        running = result["running"] or 1
        result["watch"] = {
            "events": stats["events"], "events_per_deployment": stats["events"] / running,
            "foreign_events": stats["foreign"],
            # the same writes delivered to every node, as one unsharded placements watch per agent would
            "unsharded_events_per_deployment": stats["events"] * nodes / running,
            "per_node": stats["per_node"]}
        if stats["added"] > 1 and stats["last_added"] > stats["first_added"]:
            result["placements_per_s"] = (stats["added"] - 1) / (stats["last_added"] - stats["first_added"])
    finally:
        await asyncio.to_thread(stack.stop)
        if receiver:
            await receiver.stop()
    if profile and os.path.exists(profile):
        result["controller_profile"] = {"file": profile, "top_own_time": profile_summary(profile)}
    return result


async def _measure(client: AsyncClient, waiter: bd._Waiter, template: kr.Deployment, stack: LocalStack,
                   count: int, rate: float, timeout: float, progress, progress_every: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    created = 0
    sem = asyncio.Semaphore(64)  # creates in flight at most: past that the apiserver is the limit
    pending: set[asyncio.Task] = set()

    async def one(name: str) -> None:
        nonlocal created
        d = kr.Deployment()
        d.CopyFrom(template)
        d.metadata.name = name
        d.spec.pipeline = "scale"
        d.spec.replicas = 1
        running, _ = waiter.expect(name)
        async with sem:
            t0 = time.perf_counter()
            try:
                await client.create(d)
            except Exception as e:  # report, do not stop the benchmark
                errors.append(f"{name}: {e}")
                running.cancel()
                return
        created += 1
        t1, _ = await running
        latencies.append((t1 - t0) * 1000)

    pids = bd.stack_pids(stack)
    cpu0 = bd.cpu_snapshot(pids)
    start = time.perf_counter()
    last_report = start
    interval = 1.0 / rate if rate > 0 else 0.0

    def report(now: float) -> None:
        cpu = bd.cpu_between(cpu0, bd.cpu_snapshot(pids))
        progress(f"{now - start:6.1f}s: created {created}/{count}, Running {len(latencies)}, "
                 f"CPU s controller {cpu.get('controller-0', 0):.1f} apiserver {cpu.get('apiserver', 0):.1f} "
                 f"etcd {cpu.get('etcd', 0):.1f} hollow {cpu.get('hollow', 0):.1f}")

    for i in range(count):
        due = start + i * interval
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        now = time.perf_counter()
        if now - last_report >= progress_every:
            last_report = now
            report(now)
        task = asyncio.create_task(one(f"scale-{i}"))
        pending.add(task)
        task.add_done_callback(pending.discard)
    create_wall = time.perf_counter() - start
    done_before, stalled_since = -1, time.perf_counter()
    while pending:  # until every deployment is Running, or nothing moved for ``timeout`` seconds
        await asyncio.wait(pending, timeout=min(progress_every, 1.0))
        now = time.perf_counter()
        if len(latencies) != done_before:
            done_before, stalled_since = len(latencies), now
        elif now - stalled_since > timeout:
            errors.append(f"{len(pending)} deployment(s) not Running {timeout:.0f}s after the last progress")
            for t in pending:
                t.cancel()
            break
        if now - last_report >= progress_every:
            last_report = now
            report(now)
    wall = time.perf_counter() - start
    cpu = bd.cpu_between(cpu0, bd.cpu_snapshot(pids))
    total = bd.cpu_snapshot(pids)
    procs = _process_figures(pids, cpu, total)
    return {"created": created, "running": len(latencies), "error_count": len(errors), "errors": errors[:20],
            "create_rate_achieved": created / create_wall if create_wall > 0 else 0.0,
            "wall_s": round(wall, 2), "deployments_per_s": len(latencies) / wall if wall > 0 else 0.0,
            "latency_ms": bd.percentiles(latencies),
            "cpu_ms_per_deployment": 1000 * sum(cpu.values()) / max(1, len(latencies)),
            "controller": procs.get("controller-0", {}), "apiserver": procs.get("apiserver", {}),
            "processes": procs}


def render(r: dict) -> str:
    c = r["config"]
    lat = r.get("latency_ms") or {"p50": 0, "p95": 0, "p99": 0, "max": 0}
    lines = [f"KubeP4 scale benchmark: {c['nodes']} hollow nodes x {c['devices_per_node']} devices "
             f"({c['slots_per_device']} slot(s) each), {c['deployments']} deployments at {c['rate']:g}/s "
             f"(commit {c['commit'] or '?'})",
             f"startup: stack {r['startup_s']['stack']:.1f}s, hollow nodes {r['startup_s'].get('hollow_nodes', 0):.1f}s",
             f"created {r['created']} (at {r['create_rate_achieved']:.1f}/s), Running {r['running']}, "
             f"errors {r['error_count']}, in {r['wall_s']:.1f}s",
             f"create->Running ms: p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
             f"max {lat['max']:.1f}"]
    d = r.get("controller_decisions")
    if d:
        if d.get("decisions"):
            sm = d["schedule_ms"]
            lines.append(f"controller: {d['decisions']} scheduling decisions, {d['decisions_per_s']:.1f}/s over "
                         f"the run, capacity {d['decision_capacity_per_s']:.1f}/s (schedule span p50 "
                         f"{sm['p50']:.2f} ms, p99 {sm['p99']:.2f} ms); {d['reconciles']} reconciles, "
                         f"mean {d['reconcile_ms_mean']:.2f} ms")
        else:
            lines.append("controller: no schedule spans received")
    if "placements_per_s" in r:
        lines.append(f"placements created (as the hollow nodes saw them): {r['placements_per_s']:.1f}/s")
    lines.append(f"CPU per deployment, every process: {r['cpu_ms_per_deployment']:.1f} ms")
    lines.append(f"{'process':<14} {'cpu s':>8} {'rss MiB':>8} {'peak MiB':>9}")
    for name, p in r["processes"].items():
        lines.append(f"{name:<14} {p['cpu_s']:>8.1f} {p['rss_mib']:>8.1f} {p['peak_rss_mib']:>9.1f}")
    e = r.get("etcd", {})
    if e:
        lines.append(f"etcd database: {e['db_mib']:.1f} MiB (db file {e['db_file_mib']:.1f} MiB)")
    w = r.get("watch")
    if w:
        lines.append(f"placement watch events at the hollow nodes: {w['events']} ({w['events_per_deployment']:.2f} "
                     f"per deployment; {w['foreign_events']} about another node's placements); an unsharded watch "
                     f"would deliver {w['unsharded_events_per_deployment']:.0f} per deployment")
    prof = r.get("controller_profile")
    if prof:
        lines += [f"controller profile ({prof['file']}; cProfile slows it down: its timings are not the run's), "
                  "by own time:", f"  {'own s':>8} {'cum s':>8} {'calls':>9}  function"]
        lines += [f"  {x['own_s']:>8.2f} {x['cumulative_s']:>8.2f} {x['calls']:>9}  {x['function']}"
                  for x in prof["top_own_time"][:15]]
    if r["errors"]:
        lines += ["errors:", *(f"  {x}" for x in r["errors"][:5])]
    return "\n".join(lines)


def main(args) -> int:
    result = asyncio.run(run(args.nodes, args.devices_per_node, args.deployments, args.rate, args.slots,
                             not args.no_traces, args.timeout, args.etcd_dir, args.lease_ttl,
                             profile=args.profile_controller or ""))
    print(render(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0 if result["running"] == args.deployments and not result["error_count"] else 1
