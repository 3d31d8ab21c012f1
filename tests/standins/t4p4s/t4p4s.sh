#!/usr/bin/env python3
"""STAND-IN for T4P4S's t4p4s.sh (P4ELTE/t4p4s), run from its own directory as the real one is.

  ./t4p4s.sh PROG.p4 model=v1model p4
      runs `p4test PROG.p4 --toJSON build/last/cache/PROG.p4.json.cached --p4v 16 -D __TARGET_V1__
      -I examples/include` (the p4test on PATH), then writes C into build/PROG@std-v1model/srcgen/
  ./t4p4s.sh PROG.p4 model=v1model c macro=T4P4S_RTE_OFFLOADS=0
      "compiles" that C into the switch build/PROG@std-v1model/build/PROG, printing the gcc warning
      the real build of basic.p4 prints (-Wint-conversion in the generated update_checksum call)

Like the real script it exits 1 even when a phase succeeds: only its output files tell. It makes
no P4Info. The switch it writes is a stand-in too (a script that says so), not a DPDK program.
Every invocation appends a line to $KUBEP4_STANDIN_LOG when it is set.
"""
import os
import pathlib
import subprocess
import sys

args = sys.argv[1:]
if "--version" in args:
    print("t4p4s STAND-IN (the command line of P4ELTE/t4p4s)")
    sys.exit(1)
src = pathlib.Path(args[0])
opts = dict(a.split("=", 1) if "=" in a else (a, "") for a in args[1:])
model = opts.get("model", "v1model")
name = src.stem
tree = pathlib.Path("build") / f"{name}@std-{model}"
if os.environ.get("KUBEP4_STANDIN_LOG"):
    with open(os.environ["KUBEP4_STANDIN_LOG"], "a") as f:
        f.write(f"t4p4s.sh {src.name} {' '.join(args[1:])}\n")
print(f"[COMPILE  P4] {src} @std-{model}")
if "p4" in opts:
    cache = pathlib.Path("build") / "last" / "cache" / f"{name}.p4.json.cached"
    cache.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["p4test", str(src), "--toJSON", str(cache), "--p4v", "16", "-D", "__TARGET_V1__",
                        "-I", "examples/include"])
    if r.returncode != 0:
        print(f"P4 to C compilation failed: p4test exited {r.returncode}")
        sys.exit(1)
    (tree / "srcgen").mkdir(parents=True, exist_ok=True)
    for part in ("dataplane", "controlplane", "tables", "actions"):
        (tree / "srcgen" / f"{part}.c").write_text(f"/* STAND-IN: T4P4S would generate {part}.c here */\n")
    sys.exit(1)  # as the real script does, even on success
if "c" in opts:
    if not (tree / "srcgen").is_dir():
        print("no generated C: run the p4 phase first")
        sys.exit(1)
    print(f"{tree}/srcgen/dataplane.c:1042:31: warning: passing argument 2 of 'update_checksum' makes "
          "pointer from integer without a cast [-Wint-conversion]", file=sys.stderr)
    binary = tree / "build" / name
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/bin/sh\necho 'STAND-IN T4P4S switch: not a DPDK program'\nexit 1\n")
    binary.chmod(0o755)
    sys.exit(1)
print("nothing to do: give p4 or c")
sys.exit(1)
