"""`kubep4 bench compile`: wall time per compiler backend and program, saying plainly which backends
are unavailable on this machine (p4c, T4P4S and P4LLVM run locally or in a container)."""
from __future__ import annotations

import asyncio
import glob
import json
import os
import statistics

from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import digest_of

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


async def run(programs: list[str], repeat: int = 3, compiler=None) -> dict:
    from services.node_agent.compiler import BACKENDS, CompileError, Compiler
    import tempfile
    compiler = compiler or Compiler(cache_dir=tempfile.mkdtemp(prefix="kubep4-bench-compile-"))
    available = compiler.availability()
    result = {"backends": {name: {"available": how is not None, "how": how or
                                  f"unavailable: {BACKENDS[name].binary} not on PATH and no container image "
                                  "configured (or no Docker engine)"} for name, how in available.items()},
              "runs": []}
    for path in programs:
        with open(path) as f:
            source = f.read()
        for backend, how in available.items():
            row = {"program": os.path.relpath(path, ROOT), "backend": backend}
            if how is None:
                row["status"] = "unavailable"
                result["runs"].append(row)
                continue
            times, error = [], None
            for i in range(repeat):
                src = kr.P4Source(program=source, backend=backend, arch="v1model", target="bmv2")
                digest = digest_of(source.encode(), backend.encode(), str(i).encode())  # no cache hits
                try:
                    r = await compiler.compile(src, digest, "v1model", "bmv2")
                except CompileError as e:
                    error = str(e)
                    break
                times.append(r.seconds)
            if error:
                row.update(status="failed", error=error[:500])
            else:
                row.update(status="ok", seconds_mean=statistics.fmean(times), seconds_min=min(times),
                           samples=times)
            result["runs"].append(row)
    return result


def render(result: dict) -> str:
    lines = ["compiler backends on this machine:"]
    for name, b in result["backends"].items():
        lines.append(f"  {name:<7} {b['how']}")
    lines += ["", f"{'program':<28} {'backend':<7} {'status':<11} {'mean s':>8} {'min s':>8}"]
    for r in result["runs"]:
        if r["status"] == "ok":
            lines.append(f"{r['program']:<28} {r['backend']:<7} {'ok':<11} {r['seconds_mean']:>8.3f} "
                         f"{r['seconds_min']:>8.3f}")
        else:
            lines.append(f"{r['program']:<28} {r['backend']:<7} {r['status']:<11} {'-':>8} {'-':>8}"
                         + (f"  {r['error'][:80]}" if r.get("error") else ""))
    return "\n".join(lines)


def main(args) -> int:
    programs = args.programs or sorted(glob.glob(os.path.join(ROOT, "examples", "*", "*.p4")))
    result = asyncio.run(run(programs, args.repeat))
    print(render(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
