"""`kubep4 bench deploy`: create -> Running latency of precompiled pipelines on the full local stack,
per-hop breakdown from the traces, throughput, and the direct-push floor.

Each deployment uses its own pipeline revision (distinct digest, so every install really pushes a
pipeline) with one replica. Workers create a deployment, wait for Running (measured, as the client
sees it through a watch), then delete it and wait until its device is free (not measured).
The floor is a bare P4Runtime client doing what the node agent does for one install — arbitration,
SetForwardingPipelineConfig (VERIFY_AND_COMMIT) and the same Writes — against the same kind of device.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field

from kubep4 import manifest
from kubep4.client import AsyncClient
from kubep4.extras import MissingExtra
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.otlp_receiver import OTLPReceiver
from kubep4.p4 import P4InfoIndex, cookie_for_digest, digest_of, p4r, parse_p4info, to_p4_entry
from kubep4.p4runtime_client import DeviceConnection

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "basic", "deployment.yaml")


def percentiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)

    def q(p: float) -> float:
        k = max(0, min(len(s) - 1, int(round(p * (len(s) - 1)))))
        return s[k]
    return {"n": len(s), "p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "max": s[-1], "mean": statistics.fmean(s)}


@dataclass
class Phase:
    name: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class _Waiter:
    """One watch over all deployments, resolving a future when a deployment is Running (or gone)."""

    def __init__(self, client: AsyncClient):
        self.client = client
        self.running: dict[str, asyncio.Future] = {}
        self.gone: dict[str, asyncio.Future] = {}
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        synced = asyncio.get_running_loop().create_future()

        async def run():
            async for etype, d, _ in self.client.watch("deployment", "default"):
                if etype == "SYNCED" and not synced.done():
                    synced.set_result(None)
                name = d.metadata.name
                if etype == "DELETED":
                    f = self.gone.pop(name, None)
                    if f and not f.done():
                        f.set_result(time.perf_counter())
                elif d.status.phase == "Running" and d.status.observed_generation == d.metadata.generation:
                    f = self.running.pop(name, None)
                    if f and not f.done():
                        f.set_result((time.perf_counter(), d.status.phase))
        self.task = asyncio.create_task(run())
        await synced

    def expect(self, name: str) -> tuple[asyncio.Future, asyncio.Future]:
        loop = asyncio.get_running_loop()
        self.running[name] = loop.create_future()
        self.gone[name] = loop.create_future()
        return self.running[name], self.gone[name]


def _pipelines(count: int) -> tuple[list[kr.Pipeline], kr.Deployment]:
    pipeline, deployment = manifest.load(EXAMPLE)
    out = []
    for i in range(count):
        p = kr.Pipeline()
        p.CopyFrom(pipeline)
        p.metadata.name = f"bench-{i}"
        # a distinct revision per deployment (trailing whitespace keeps the BMv2 JSON valid)
        p.spec.artifacts.device_config = pipeline.spec.artifacts.device_config + b" " * (i + 1)
        out.append(p)
    return out, deployment


async def _run_phase(client: AsyncClient, waiter: _Waiter, template: kr.Deployment, names: list[str],
                     concurrency: int, phase: Phase, timeout: float) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for n in names:
        queue.put_nowait(n)

    async def worker():
        while not queue.empty():
            name = queue.get_nowait()
            d = kr.Deployment()
            d.CopyFrom(template)
            d.metadata.name = name
            d.spec.pipeline = name
            d.spec.replicas = 1
            running, gone = waiter.expect(name)
            t0 = time.perf_counter()
            try:
                created = await client.create(d)
                t1, status = await asyncio.wait_for(running, timeout)
            except Exception as e:  # report, do not stop the benchmark
                phase.errors.append(f"{name}: {e}")
                continue
            if status != "Running":
                phase.errors.append(f"{name}: {status}")
            else:
                phase.latencies_ms.append((t1 - t0) * 1000)
                tp = created.metadata.trace_context.get("traceparent", "")
                if tp:
                    phase.trace_ids.append(tp.split("-")[1])
            await client.delete("deployment", name)
            try:
                await asyncio.wait_for(gone, timeout)
            except asyncio.TimeoutError:
                phase.errors.append(f"{name}: not deleted after {timeout}s")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.wall_s = time.perf_counter() - start


async def measure_floor(address: str, device_id: int, pipelines: list[kr.Pipeline], entries: list,
                        election_base: int, tls=None) -> list[float]:
    """Direct push, no control plane: arbitration + SetForwardingPipelineConfig + Write, per pipeline,
    by the node agent's own P4Runtime client on a fresh connection each time (over TLS with ``tls``,
    as the agent talks to a secure stack's devices)."""
    info = parse_p4info(pipelines[0].spec.artifacts.p4info)
    index = P4InfoIndex(info)
    updates = [p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=to_p4_entry(e, index)))
               for e in entries]
    p4info = info.SerializeToString()
    out = []
    for i, p in enumerate(pipelines):
        conn = DeviceConnection(address, device_id, (1 << 64) + election_base + i, tls=tls)
        t0 = time.perf_counter()
        try:
            await conn.connect()
            digest = digest_of(p.spec.artifacts.p4info, p.spec.artifacts.device_config)
            await conn.set_pipeline(p4info, p.spec.artifacts.device_config, cookie_for_digest(digest))
            await conn.write(updates)
            out.append((time.perf_counter() - t0) * 1000)
        finally:
            await conn.close()
    return out


def hop_breakdown(receiver: OTLPReceiver, trace_ids: list[str], e2e_ms: list[float]) -> list[dict]:
    """Per span name: mean time per deployment (summed within a trace) and share of create -> Running."""
    per_name: dict[tuple[str, str], list[float]] = defaultdict(list)
    for tid in trace_ids:
        sums: dict[tuple[str, str], float] = defaultdict(float)
        for s in receiver.spans(tid):
            sums[(s.name, s.service)] += s.duration_ns / 1e6
        for k, v in sums.items():
            per_name[k].append(v)
    mean_e2e = statistics.fmean(e2e_ms) if e2e_ms else 0.0
    rows = [{"hop": name, "service": svc, "mean_ms": statistics.fmean(v), "p50_ms": statistics.median(v),
             "share": (statistics.fmean(v) / mean_e2e) if mean_e2e else 0.0, "traces": len(v)}
            for (name, svc), v in per_name.items() if name != "deployment"]
    return sorted(rows, key=lambda r: -r["mean_ms"])


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, all its threads (/proc/<pid>/stat); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces; fields 14, 15: utime, stime
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_memory(pid: int) -> dict[str, int]:
    """Resident set size now and at its peak, in bytes (/proc/<pid>/status VmRSS, VmHWM)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[{"VmRSS": "rss", "VmHWM": "peak_rss"}[key]] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def stack_pids(stack: LocalStack) -> dict[str, int]:
    """Every process of the local stack by name: etcd and each service and reference device."""
    pids = {"etcd": stack.etcd.proc.pid} if stack.etcd is not None and stack.etcd.proc is not None else {}
    pids.update({name: p.popen.pid for name, p in stack.procs.items() if p.alive()})
    return pids


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu for name, pid in pids.items() if (cpu := proc_cpu_seconds(pid)) is not None}


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used between two snapshots."""
    return {name: after[name] - before[name] for name in after if name in before}


async def run(nodes: int = 2, devices_per_node: int = 4, count: int = 50, concurrency: int = 8,
              traces: bool = True, etcd_dir: str | None = None, timeout: float = 30.0,
              progress=print, secure: bool = True, switch: str = "reference") -> dict:
    receiver = await OTLPReceiver().start() if traces else None
    env = {"KUBEP4_LOG_LEVEL": os.environ.get("KUBEP4_BENCH_LOG_LEVEL", "WARNING")}
    if receiver:
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200",
                    "OTEL_BSP_MAX_QUEUE_SIZE": "65536", "OTEL_METRIC_EXPORT_INTERVAL": "60000"})
    data_dir = tempfile.mkdtemp(prefix="kubep4-bench-", dir=etcd_dir)
    stack = LocalStack(nodes=nodes, devices_per_node=devices_per_node, data_dir=data_dir, env=env,
                       resync_seconds=30.0, secure=secure, switch=switch)
    progress(f"starting the local stack: {nodes} nodes x {devices_per_node} reference devices (logs in {data_dir})")
    await asyncio.to_thread(stack.start)
    result: dict = {"config": {"nodes": nodes, "devices_per_node": devices_per_node, "count": count, "secure": secure, "switch": switch,
                               "concurrency": concurrency, "traces": traces, "etcd_data_dir": data_dir},
                    "phases": {}}
    try:
        total = 1 + 2 * count
        pipelines, template = _pipelines(total)
        async with stack.client(timeout=timeout) as client:
            for p in pipelines:
                await client.create(p)
            waiter = _Waiter(client)
            await waiter.start()
            progress("warm-up: 1 deployment (connects the node agents to their devices)")
            warm = Phase("warmup", 1)
            await _run_phase(client, waiter, template, [pipelines[0].metadata.name], 1, warm, timeout)
            phases = [Phase("sequential", 1), Phase("concurrent", concurrency)]
            names = [p.metadata.name for p in pipelines[1:]]
            pids = stack_pids(stack)  # CPU of every process of the stack, over the measured phases only
            cpu_start = cpu_before = cpu_snapshot(pids)
            for ph, chunk in zip(phases, (names[:count], names[count:])):
                progress(f"{ph.name}: {count} deployments, concurrency {ph.concurrency}")
                await _run_phase(client, waiter, template, chunk, ph.concurrency, ph, timeout)
                cpu_after = cpu_snapshot(pids)
                cpu = cpu_between(cpu_before, cpu_after)
                cpu_before = cpu_after
                result["phases"][ph.name] = {
                    "concurrency": ph.concurrency, "latency_ms": percentiles(ph.latencies_ms),
                    "deployments_per_s": len(ph.latencies_ms) / ph.wall_s if ph.wall_s else 0.0,
                    "cpu_ms_per_deployment": 1000 * sum(cpu.values()) / len(chunk),
                    "errors": ph.errors[:20], "error_count": len(ph.errors), "samples_ms": ph.latencies_ms}
            cpu = cpu_between(cpu_start, cpu_before)
            measured = 2 * count
            # each deployment's whole life: create, schedule, install, Running, delete, device freed
            result["cpu_ms_per_deployment"] = 1000 * sum(cpu.values()) / measured
            result["cpu_ms_per_deployment_by_process"] = {
                name: 1000 * v / measured for name, v in sorted(cpu.items(), key=lambda kv: -kv[1])}
            waiter.task.cancel()
        progress("floor: the same pushes by a bare P4Runtime client")
        free_port = stack.device_ports["node-0"][0]
        floor = await measure_floor(f"127.0.0.1:{free_port}", 1, pipelines[:count], list(template.spec.table_entries),
                                    int(time.time() * 1000) + 10_000, tls=stack.device_tls())
        result["floor"] = {"latency_ms": percentiles(floor)}
        seq = result["phases"]["sequential"]["latency_ms"]
        if seq:
            result["ratio_p50"] = seq["p50"] / result["floor"]["latency_ms"]["p50"]
            result["ratio_p99"] = seq["p99"] / result["floor"]["latency_ms"]["p99"]
        if receiver:
            await asyncio.sleep(1.0)  # the last span batches
            result["hops"] = hop_breakdown(receiver, phases[0].trace_ids, phases[0].latencies_ms)
    finally:
        await asyncio.to_thread(stack.stop)
        if receiver:
            await receiver.stop()
    return result


def render(result: dict) -> str:
    c = result["config"]
    lines = [f"KubeP4 deploy benchmark: {c['nodes']} nodes x {c['devices_per_node']} reference devices, "
             f"{c['count']} deployments per phase, traces {'on' if c['traces'] else 'off'}", "",
             f"{'phase':<12} {'conc':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'deploy/s':>9} {'errors':>6}"]
    for name, ph in result["phases"].items():
        lat = ph["latency_ms"] or {"p50": 0, "p95": 0, "p99": 0, "max": 0}
        lines.append(f"{name:<12} {ph['concurrency']:>4} {lat['p50']:>8.1f} {lat['p95']:>8.1f} {lat['p99']:>8.1f} "
                     f"{lat['max']:>8.1f} {ph['deployments_per_s']:>9.1f} {ph['error_count']:>6}")
    fl = result["floor"]["latency_ms"]
    lines.append(f"{'floor':<12} {1:>4} {fl['p50']:>8.1f} {fl['p95']:>8.1f} {fl['p99']:>8.1f} {fl['max']:>8.1f}")
    if "ratio_p50" in result:
        lines.append(f"\ncontrol-plane overhead: sequential p50 is {result['ratio_p50']:.1f}x the direct push, "
                     f"p99 {result['ratio_p99']:.1f}x")
    if "cpu_ms_per_deployment" in result:
        by = result.get("cpu_ms_per_deployment_by_process", {})
        per_phase = ", ".join(f"{n} {ph['cpu_ms_per_deployment']:.1f}" for n, ph in result["phases"].items()
                              if "cpu_ms_per_deployment" in ph)
        lines.append(f"CPU per deployment (create to delete, every process of the stack): "
                     f"{result['cpu_ms_per_deployment']:.1f} ms ({per_phase}); by process: "
                     + ", ".join(f"{n} {v:.1f}" for n, v in by.items()))
    if result.get("hops"):
        lines += ["", "per hop (sequential phase, mean per deployment; spans overlap, shares do not add up):",
                  f"{'hop':<38} {'service':<18} {'mean ms':>8} {'p50 ms':>8} {'share':>6}"]
        for h in result["hops"][:18]:
            lines.append(f"{h['hop']:<38} {h['service']:<18} {h['mean_ms']:>8.2f} {h['p50_ms']:>8.2f} "
                         f"{100 * h['share']:>5.1f}%")
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError as e:  # the plot extra
        raise MissingExtra("matplotlib", "--plot") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot(result: dict, path: str) -> None:
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    for name, ph in result["phases"].items():
        xs = sorted(ph["samples_ms"])
        if not xs:
            continue
        a.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=name)
    a.set_xlabel("create -> Running (ms)")
    a.set_ylabel("fraction of deployments")
    a.set_title("Deployment latency (CDF)")
    a.legend()
    hops = [h for h in result.get("hops", []) if h["hop"] in HOP_ORDER]
    bottom = 0.0
    for h in sorted(hops, key=lambda h: HOP_ORDER.index(h["hop"])):
        b.bar(["KubeP4 (sequential)"], [h["mean_ms"]], bottom=[bottom], label=f"{h['hop']} ({h['service']})")
        bottom += h["mean_ms"]
    b.bar(["direct push (floor)"], [result["floor"]["latency_ms"]["p50"]], color="grey", label="floor p50")
    b.set_ylabel("ms")
    b.set_title("Per-hop breakdown (mean, leaf hops)")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


HOP_ORDER = ["admission review", "etcd txn create", "etcd watch delivery", "schedule", "placement write",
             "p4runtime arbitration", "SetForwardingPipelineConfig", "p4runtime write", "status write-back",
             "status write"]


def main(args) -> int:
    if args.plot:
        _pyplot()  # a missing extra is said before the run, not after it
    if args.switch == "bmv2" and not shutil.which("simple_switch_grpc"):
        print("Error: --switch bmv2 needs BMv2's simple_switch_grpc on PATH, and it is not there "
              "(https://github.com/p4lang/behavioral-model)", file=sys.stderr)
        return 2
    result = asyncio.run(run(args.nodes, args.devices_per_node, args.count, args.concurrency, not args.no_traces,
                             args.etcd_dir, args.timeout, secure=not args.insecure, switch=args.switch))
    print(render(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
