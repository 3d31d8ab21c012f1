"""`kubep4 bench compile`: every available compiler backend over the example programs, N runs each:
the median wall time of the compile and of each phase (T4P4S: P4Info from p4c, P4->C, C->binary),
the peak RSS of each phase's largest process (/proc VmHWM), and which backends are missing and why.

The compiles are the builder's own (kubep4.compilers: the same command lines, limits and output
checks), each in a fresh directory, so nothing is cached between runs. A backend whose version
says STAND-IN is one of tests/standins: its figures measure the stand-in, not a compiler, and the
output says so.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile

from kubep4.compilers import BACKENDS, CompileFailed, Limits, Toolchain
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROGRAMS = ("examples/basic/basic.p4", "examples/basic-v2/basic.p4", "examples/multipath/multipath.p4")
TARGET = {"p4c": "bmv2", "t4p4s": "t4p4s", "p4llvm": "bmv2"}


async def run(programs: list[str], repeat: int = 3, toolchain: Toolchain | None = None) -> dict:
    toolchain = toolchain or Toolchain()
    available = toolchain.availability()
    result: dict = {"repeat": repeat, "backends": {}, "runs": []}
    for name, (how, why) in available.items():
        entry = {"available": how is not None, "how": how or f"unavailable: {why}"}
        if how is not None:
            entry["version"] = await toolchain.version(name, how)
            entry["stand_in"] = "STAND-IN" in entry["version"]
        result["backends"][name] = entry
    with tempfile.TemporaryDirectory(prefix="kubep4-bench-compile-") as scratch:
        for path in programs:
            with open(path) as f:
                program = f.read()
            for backend in BACKENDS:
                row: dict = {"program": os.path.relpath(path, ROOT), "backend": backend}
                result["runs"].append(row)
                if available[backend][0] is None:
                    row["status"] = "unavailable"
                    continue
                samples, phases, rss, notes = [], {}, {}, set()
                try:
                    for i in range(repeat):
                        work = tempfile.mkdtemp(prefix=f"{backend}-{i}-", dir=scratch)
                        out = await toolchain.compile(kr.P4Source(program=program, backend=backend, arch="v1model",
                                                                  target=TARGET[backend]), "v1model",
                                                      TARGET[backend], work, name=f"kubep4_bench_{i}")
                        samples.append(out.seconds)
                        for ph in out.phases:
                            phases.setdefault(ph.name, []).append(ph.seconds)
                            rss[ph.name] = max(rss.get(ph.name, 0), ph.peak_rss_kb)
                        notes.update(_notes(backend, out))
                except CompileFailed as e:
                    row.update(status="failed", error=str(e)[:500])
                    continue
                row.update(status="ok", samples=samples, seconds_median=statistics.median(samples),
                           phases=[{"name": n, "seconds_median": statistics.median(v), "peak_rss_kb": rss[n]}
                                   for n, v in phases.items()],
                           notes=sorted(notes))
    return result


def _notes(backend: str, out) -> list[str]:
    notes = []
    if out.device_config_unavailable:
        notes.append(f"no device config: {out.device_config_unavailable}")
    if backend == "t4p4s":
        notes.append("the output is a switch program (started per pipeline), not a device config for a running switch")
        if any(d.kind == "int-conversion" for d in out.diagnostics):
            notes.append("gcc warned -Wint-conversion in T4P4S's generated update_checksum call: "
                         "forwarding through this build is unverified")
    return notes


def render(result: dict) -> str:
    lines = [f"compiler backends on this machine ({result['repeat']} run(s) per program, medians):"]
    missing = []
    for name, b in result["backends"].items():
        if b["available"]:
            lines.append(f"  {name:<7} {b['how']}  ({b['version']})"
                         + ("  <- a STAND-IN from tests/standins, not the compiler: its times are the "
                            "stand-in's" if b.get("stand_in") else ""))
        else:
            missing.append(f"  {name:<7} {b['how']}")
    if missing:
        lines += ["missing:", *missing]
    lines += ["", f"{'program':<34} {'backend':<7} {'status':<11} {'median s':>9}  phases (median s, peak RSS)"]
    for r in result["runs"]:
        if r["status"] == "ok":
            phases = ", ".join(f"{p['name']} {p['seconds_median']:.3f} s {p['peak_rss_kb'] / 1024:.0f} MB"
                               for p in r["phases"])
            lines.append(f"{r['program']:<34} {r['backend']:<7} {'ok':<11} {r['seconds_median']:>9.3f}  {phases}")
            lines += [f"{'':<34} {'':<7} note: {n}" for n in r["notes"]]
        else:
            lines.append(f"{r['program']:<34} {r['backend']:<7} {r['status']:<11} {'-':>9}"
                         + (f"  {r['error'][:120]}" if r.get("error") else ""))
    lines.append("\npeak RSS: the largest VmHWM of the phase's processes (/proc, sampled every 10 ms; not "
                 "RUSAGE_CHILDREN, whose ru_maxrss includes the forked copy of this process)")
    return "\n".join(lines)


def main(args) -> int:
    programs = args.programs or [os.path.join(ROOT, p) for p in PROGRAMS]
    images = {}
    for item in getattr(args, "compiler_image", None) or []:
        backend, _, image = item.partition("=")
        images[backend] = image
    toolchain = Toolchain(images=images, limits=Limits(seconds=args.timeout))
    result = asyncio.run(run(programs, args.repeat, toolchain))
    print(render(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
