"""`kubep4 bench faults`: SIGKILL one process of a supervised local stack in the middle of a stream of
deployments, let the supervisor restart it, and check that nothing was lost, duplicated or stuck.

Per fault, a fresh stack (``LocalStack(supervise=True)``): the client creates ``count`` deployments
spread over ``seconds`` and deletes every ``delete_every``-th one again shortly after; halfway
through, the target is killed. A call that fails because of the fault (UNAVAILABLE, a deadline, an
internal error) is retried until it succeeds; AlreadyExists on a retried create (NotFound on a
retried delete) means the first attempt had been done but its answer lost, so it counts as
acknowledged. Then the checks run until they pass for ``settle`` seconds in a row or the timeout:

- through the API (list deployments): every acknowledged, undeleted deployment is there and Ready
  with as many replicas as asked; every deleted one is gone;
- on every device, read over P4Runtime by an independent client (kubep4.bench.p4read): the device
  of each replica of a Running deployment holds the pipeline's cookie and all that deployment's
  entries; no device holds entries of a deleted deployment, an entry twice, or an entry of a
  deployment on a device that is not one of its replicas'.

Each deployment has entries no other has (its own LPM prefixes), so every entry read from a device
names its owner. Each acknowledged deployment gets one verdict: running, deleted, lost, duplicated
or stuck (in that order of precedence: lost, duplicated, stuck).
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kubep4 import errors, manifest
from kubep4 import store as st
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.p4 import P4InfoIndex, cookie_for_digest, parse_p4info, to_p4_entry

from .p4read import stack_readers

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "basic", "deployment.yaml")
FAULTS = ("none", "apiserver", "admission", "controller", "agent", "device", "etcd")
WHAT = {
    "none": "no fault: the baseline",
    "apiserver": "SIGKILL the apiserver",
    "admission": "SIGKILL the admission service",
    "controller": "SIGKILL the leading controller (of 2)",
    "agent": "SIGKILL node-0's agent",
    "device": "SIGKILL node-0's reference devices (switch-0: its devices restart empty)",
    "etcd": "SIGKILL etcd (it restarts on the same data dir and ports)",
}
MOMENTS = ("mid", "quiet")  # the kill: halfway through the stream, or once everything converged
RETRIED = (errors.Unavailable, errors.DeadlineExceeded)
RETRIED_CODES = {"UNKNOWN", "INTERNAL", "ABORTED"}


@dataclass
class Op:
    name: str
    delete: bool                 # this one is deleted again after its create
    acknowledged: bool = False   # the create returned OK (or AlreadyExists on a retry)
    deleted: bool = False        # the delete returned OK (or NotFound on a retry)
    retries: int = 0
    error: str = ""


@dataclass
class Check:
    verdicts: dict[str, str] = field(default_factory=dict)   # name -> running|deleted|lost|duplicated|stuck
    problems: list[str] = field(default_factory=list)
    stray_entries: int = 0       # device entries no known deployment owns
    error: str = ""              # the check itself could not run (API or device not answering)

    def passed(self) -> bool:
        return not self.error and not self.stray_entries and \
            all(v in ("running", "deleted") for v in self.verdicts.values())


def deployment_for(template: kr.Deployment, i: int, replicas: int) -> kr.Deployment:
    """Deployment ``i``: two LPM entries with prefixes no other deployment has (10.a.b/24, 172.16+a.b/24)."""
    d = kr.Deployment()
    d.CopyFrom(template)
    d.metadata.name = f"fault-{i:03d}"
    d.spec.replicas = replicas
    a, b = divmod(i, 256)
    lpm = [e for e in template.spec.table_entries if e.match and e.match[0].WhichOneof("kind") == "lpm"][0]
    del d.spec.table_entries[:]
    for n, prefix in enumerate((f"10.{a}.{b}.0", f"172.{16 + a}.{b}.0")):
        e = d.spec.table_entries.add()
        e.CopyFrom(lpm)
        e.match[0].lpm.value = prefix
        e.params[-1].value = str(n + 1)
    return d


def expected_entries(pipeline: kr.Pipeline, deployments: list[kr.Deployment]) -> dict[str, dict[bytes, tuple]]:
    """name -> {entry key: action} of the P4Runtime entries each deployment should put on its devices."""
    index = P4InfoIndex(parse_p4info(pipeline.spec.artifacts.p4info))
    return {d.metadata.name: {_entry_key(p): _action(p) for p in (to_p4_entry(e, index) for e in d.spec.table_entries)}
            for d in deployments}


def _entry_key(e) -> bytes:
    """What identifies an entry on a device: table, match, priority."""
    return b"%d|%d|" % (e.table_id, e.priority) + b"|".join(
        sorted(m.SerializeToString(deterministic=True) for m in e.match))


def _action(e) -> tuple:
    a = e.action.action
    return a.action_id, tuple(sorted((p.param_id, int.from_bytes(p.value, "big")) for p in a.params))


async def _retry(call: Callable[[], Awaitable], done_already: type, op: Op, deadline: float) -> bool:
    """Call until OK; ``done_already`` on a retry means an earlier attempt had succeeded."""
    attempt = 0
    while True:
        try:
            await call()
            return True
        except done_already:
            if attempt:
                return True
            op.error = "already done on the first attempt"
            return False
        except errors.KubeP4Error as e:
            retryable = isinstance(e, RETRIED) or getattr(e.code, "name", "") in RETRIED_CODES
            if not retryable or time.monotonic() > deadline:
                op.error = f"{type(e).__name__}: {e}"
                return False
        attempt += 1
        op.retries += 1
        await asyncio.sleep(0.2)


async def _stream(client: AsyncClient, deployments: list[kr.Deployment], ops: list[Op], seconds: float,
                  delete_after: float, deadline: float) -> None:
    start = time.monotonic()

    async def one(i: int, d: kr.Deployment, op: Op) -> None:
        await asyncio.sleep(max(0.0, start + i * seconds / len(deployments) - time.monotonic()))
        op.acknowledged = await _retry(lambda: client.create(d), errors.AlreadyExists, op, deadline)
        if op.acknowledged and op.delete:
            await asyncio.sleep(delete_after)
            op.deleted = await _retry(lambda: client.delete("deployment", d.metadata.name), errors.NotFound,
                                      op, deadline)
    await asyncio.gather(*(one(i, d, op) for i, (d, op) in enumerate(zip(deployments, ops))))


async def check(client: AsyncClient, readers: dict, ops: list[Op], expected: dict[str, dict[bytes, tuple]],
                replicas: int) -> Check:
    """One pass of every check, through the API and on every device."""
    out = Check()
    try:
        api = {d.metadata.name: d for d in await client.list("deployments", "default")}
        keys = list(readers)
        got = await asyncio.gather(*(readers[k].pipeline() for k in keys), *(readers[k].entries() for k in keys))
    except Exception as e:  # noqa: BLE001 - not answering yet: not converged
        out.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return out
    cookies = {k: (c.cookie.cookie if c is not None else None) for k, c in zip(keys, got[:len(keys)])}
    owner = {key: name for name, entries in expected.items() for key in entries}
    held: dict[tuple[str, str], dict[str, Counter]] = {}   # device -> owner -> Counter(entry key)
    actions: dict[tuple[tuple[str, str], bytes], tuple] = {}
    for k, entries in zip(keys, got[len(keys):]):
        for e in entries:
            key = _entry_key(e)
            name = owner.get(key)
            if name is None:
                out.stray_entries += 1
                out.problems.append(f"{k[0]}/{k[1]} holds an entry no deployment owns")
                continue
            held.setdefault(k, {}).setdefault(name, Counter())[key] += 1
            actions[(k, key)] = _action(e)

    def devices_holding(name: str) -> set:
        return {k for k, owners in held.items() if name in owners}

    for op in ops:
        if not op.acknowledged:
            continue
        name, d = op.name, api.get(op.name)
        lost, dup, stuck = [], [], []
        if op.deleted:
            if d is not None:
                lost.append(f"still in the API ({d.status.phase}) after its delete")
            if devices_holding(name):
                lost.append(f"entries still on {sorted(devices_holding(name))} after its delete")
        elif d is None:
            lost.append("missing from the API")
        else:
            placed = [(r.node, r.device) for r in d.status.replicas]
            if len(placed) > d.spec.replicas or len(set(placed)) < len(placed):
                dup.append(f"{len(placed)} replicas listed for {d.spec.replicas}: {placed}")
            if extra := devices_holding(name) - set(placed):
                dup.append(f"entries on {sorted(extra)}, not one of its replicas' devices")
            for k in devices_holding(name):
                if any(n > 1 for n in held[k][name].values()):
                    dup.append(f"an entry twice on {k}")
            ready = d.status.phase == "Running" and d.status.observed_generation == d.metadata.generation \
                and d.status.ready_replicas == d.spec.replicas == replicas
            if not ready:
                stuck.append(f"{d.status.phase} ({d.status.ready_replicas}/{d.spec.replicas} ready)")
            else:
                cookie = cookie_for_digest(d.status.pipeline_digest)
                for k in set(placed):
                    if k not in readers:
                        lost.append(f"replica on unknown device {k}")
                        continue
                    if cookies[k] != cookie:
                        lost.append(f"{k[0]}/{k[1]} lacks its pipeline (cookie {cookies[k]})")
                    have = held.get(k, {}).get(name, Counter())
                    missing = [key for key in expected[name] if key not in have]
                    wrong = [key for key in expected[name] if key in have and actions[(k, key)] != expected[name][key]]
                    if missing or wrong:
                        lost.append(f"{k[0]}/{k[1]} misses {len(missing)} and has {len(wrong)} wrong "
                                    f"of its {len(expected[name])} entries")
        verdict = "lost" if lost else "duplicated" if dup else "stuck" if stuck else \
            "deleted" if op.deleted else "running"
        out.verdicts[name] = verdict
        out.problems += [f"{name}: {p}" for p in lost + dup + stuck]
    return out


async def _target(stack: LocalStack, fault: str) -> str:
    if fault == "controller":
        async with stack.store() as s:
            got = await s.get_raw(f"{st.ROOT}/leader/controller")
        if got is None:
            raise RuntimeError("no controller leads")
        return got[0].decode()
    return {"none": "", "agent": "agent-0", "device": "switch-0"}.get(fault, fault)


async def run_fault(fault: str, count: int = 60, seconds: float = 10.0, timeout: float = 60.0,
                    nodes: int = 2, devices_per_node: int = 2, replicas: int = 2, delete_every: int = 5,
                    delete_after: float = 1.0, settle: float = 2.0, data_dir: str | None = None, when: str = "mid",
                    progress=print, inspect: Callable[[LocalStack, dict], Awaitable[None]] | None = None) -> dict:
    """One fault on a fresh supervised stack, killed halfway through the stream (``when="mid"``) or once
    the stream has converged (``"quiet"``). ``inspect(stack, result)`` runs before the stack stops."""
    restarted: list[tuple[float, str]] = []
    data_dir = tempfile.mkdtemp(prefix=f"kubep4-faults-{fault}-", dir=data_dir)
    stack = LocalStack(nodes=nodes, devices_per_node=devices_per_node, controllers=2, data_dir=data_dir,
                       slots_per_device=max(1, count), resync_seconds=1.0, supervise=True,
                       report=lambda line: restarted.append((time.monotonic(), line)))
    progress(f"{fault} ({when}): {WHAT[fault]} (logs in {data_dir})")
    await asyncio.to_thread(stack.start)
    try:
        pipeline, template = manifest.load(EXAMPLE)
        deployments = [deployment_for(template, i, replicas) for i in range(count)]
        expected = expected_entries(pipeline, deployments)
        ops = [Op(d.metadata.name, delete=delete_every > 0 and i % delete_every == delete_every - 1)
               for i, d in enumerate(deployments)]
        readers = stack_readers(stack.device_ports, tls=stack.device_tls())
        async with stack.client(timeout=5.0) as client:
            await client.create(pipeline)
            t0 = time.monotonic()
            deadline = t0 + seconds / 2 + timeout
            stream = asyncio.create_task(_stream(client, deployments, ops, seconds, delete_after, deadline))

            async def converge(target: str) -> tuple[bool, float | None, Check]:
                streak, last = None, Check(error="not checked")
                while True:
                    back = not target or (stack.restarts.get(target, 0) >= 1 and _alive(stack, target))
                    last = await check(client, readers, ops, expected, replicas) if back else \
                        Check(error=f"{target} not restarted yet")
                    now = time.monotonic()
                    streak = (streak or now) if last.passed() else None
                    if streak is not None and now - streak >= settle:
                        return True, streak, last
                    if now > deadline:
                        return False, None, last
                    await asyncio.sleep(0.25)

            if when == "mid":
                await asyncio.sleep(seconds / 2)
            else:  # a quiet stack: everything converged, then the kill (a restart must not undo work)
                await stream
                quiet, _, before = await converge("")
                if not quiet:
                    raise RuntimeError(f"{fault}: the stack did not converge before the kill: "
                                       f"{before.error or before.problems[:3]}")
                deadline = time.monotonic() + timeout
            target = await _target(stack, fault)
            t_kill = time.monotonic()
            if target:
                await asyncio.to_thread(stack.kill, target)
            await stream
            t_stream = time.monotonic()
            settled, streak, last = await converge(target)
        counts = Counter(last.verdicts.values())
        restart_at = next((t for t, line in restarted if line.startswith(f"restarted {target} ")), None)
        result = {
            "fault": fault, "when": when, "target": target or "-", "what": WHAT[fault],
            "acknowledged": sum(op.acknowledged for op in ops),
            "unacknowledged": sum(not op.acknowledged for op in ops),
            "deleted": counts["deleted"], "running": counts["running"], "lost": counts["lost"],
            "duplicated": counts["duplicated"], "stuck": counts["stuck"], "stray_entries": last.stray_entries,
            "retried_calls": sum(op.retries for op in ops),
            "restarts": stack.restarts.get(target, 0) if target else 0,
            "restart_s": round(restart_at - t_kill, 2) if restart_at else None,
            "stream_end_s": round(t_stream - t_kill, 2),
            "converged": settled,
            "convergence_s": round(streak - t_kill, 2) if settled else None,
            "check_error": last.error,
            "problems": last.problems[:20],
            "errors": [f"{op.name}: {op.error}" for op in ops if op.error][:20],
            "supervisor": [line for _, line in restarted],
            "data_dir": data_dir,
        }
        if inspect is not None:
            await inspect(stack, result)
        return result
    finally:
        await asyncio.to_thread(stack.stop)


def _alive(stack: LocalStack, name: str) -> bool:
    if name == "etcd":
        return stack.etcd.proc is not None and stack.etcd.proc.poll() is None
    return stack.procs[name].alive()


def failed(r: dict) -> bool:
    return bool(r["lost"] or r["duplicated"] or r["stuck"] or r["stray_entries"] or r["unacknowledged"]
                or not r["converged"])


async def run(faults: list[str], progress=print, moments: tuple[str, ...] = ("mid",), **kw) -> dict:
    results = []
    for when in moments:
        for fault in faults:
            if fault == "none" and when != moments[0]:
                continue  # one baseline is enough
            r = await run_fault(fault, progress=progress, when=when, **kw)
            progress(render_row(r))
            results.append(r)
    return {"config": {**kw, "faults": faults, "moments": list(moments), "cpus": os.cpu_count()},
            "faults": results}


HEADER = (f"{'fault':<11} {'when':<5} {'target':<13} {'acked':>5} {'deleted':>7} {'running':>7} {'lost':>4} {'dup':>3} "
          f"{'stuck':>5} {'stray':>5} {'retried':>7} {'restart s':>9} {'converge s':>10} {'tail s':>6}")


def render_row(r: dict) -> str:
    restart = "-" if r["restart_s"] is None else f"{r['restart_s']:.1f}"
    converge = f"{r['convergence_s']:.1f}" if r["converged"] else "no"
    tail = f"{r['convergence_s'] - r['stream_end_s']:.1f}" if r["converged"] else "-"
    return (f"{r['fault']:<11} {r.get('when', 'mid'):<5} {r['target']:<13} {r['acknowledged']:>5} {r['deleted']:>7} {r['running']:>7} "
            f"{r['lost']:>4} {r['duplicated']:>3} {r['stuck']:>5} {r['stray_entries']:>5} {r['retried_calls']:>7} "
            f"{restart:>9} {converge:>10} {tail:>6}")


def render(result: dict) -> str:
    c = result["config"]
    lines = [f"KubeP4 fault benchmark: {c.get('nodes', 2)} nodes x {c.get('devices_per_node', 2)} reference devices, "
             f"2 controllers; {c.get('count', 60)} deployments over {c.get('seconds', 10.0)} s, one SIGKILL "
             f"halfway through (mid) or once everything converged (quiet)",
             "", HEADER]
    lines += [render_row(r) for r in result["faults"]]
    for r in result["faults"]:
        if failed(r):
            lines.append(f"\n{r['fault']} ({r.get('when', 'mid')}): " + ("; ".join(r["problems"][:8] + r["errors"][:4])
                                                 or r["check_error"] or "not converged"))
    return "\n".join(lines)


def main(args) -> int:
    faults = [f.strip() for f in args.faults.split(",") if f.strip()] if args.faults else list(FAULTS)
    unknown = [f for f in faults if f not in FAULTS] + \
        [m for m in args.when.split(",") if m.strip() and m.strip() not in MOMENTS]
    if unknown:
        print(f"Error: unknown fault {', '.join(unknown)} (choose from {', '.join(FAULTS)})")
        return 2
    result = asyncio.run(run(faults, count=args.count, seconds=args.seconds, timeout=args.timeout,
                             nodes=args.nodes, devices_per_node=args.devices_per_node, replicas=args.replicas,
                             delete_every=args.delete_every,
                             moments=tuple(m.strip() for m in args.when.split(",") if m.strip())))
    print()
    print(render(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nwrote {args.json}")
    return 1 if any(failed(r) for r in result["faults"]) else 0
