"""`kubep4 bench compile` runs every available backend over the example programs and says plainly which
are missing and why (no timings asserted). Only STAND-INS exist here (tests/standins): it says so."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import ROOT

STANDINS = ROOT / "tests" / "standins"
PROGRAMS = ["examples/basic/basic.p4", "examples/basic-v2/basic.p4", "examples/multipath/multipath.p4"]


def run_cli(*args: str, path: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("T4P4S_DIR", "KUBEP4_STANDIN_LOG")}
    return subprocess.run([sys.executable, "-m", "kubep4.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**env, "PATH": path})


def test_bench_compile_says_which_backends_are_missing_and_why(tmp_path):
    out = tmp_path / "compile.json"
    r = run_cli("bench", "compile", "--repeat", "1", "--json", str(out), path="/usr/bin:/bin")
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert {b: v["available"] for b, v in result["backends"].items()} == \
        {"p4c": False, "t4p4s": False, "p4llvm": False}
    assert "p4c is not on PATH" in r.stdout and "t4p4s.sh is not on PATH" in r.stdout
    assert "does not build against any LLVM a current distribution ships" in r.stdout
    assert {x["status"] for x in result["runs"]} == {"unavailable"}
    assert sorted({x["program"] for x in result["runs"]}) == sorted(PROGRAMS)


def test_bench_compile_with_the_stand_ins(tmp_path):
    out = tmp_path / "compile.json"
    r = run_cli("bench", "compile", "--repeat", "2", "--json", str(out),
                path=f"{STANDINS}:{STANDINS / 't4p4s'}:/usr/bin:/bin")
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    for backend in ("p4c", "t4p4s"):
        b = result["backends"][backend]
        assert b["available"] and b["how"].startswith("local:") and b["stand_in"]
    assert not result["backends"]["p4llvm"]["available"]
    assert "a STAND-IN from tests/standins, not the compiler" in r.stdout
    runs = {(x["program"], x["backend"]): x for x in result["runs"]}
    for program in PROGRAMS:
        p4c, t4p4s = runs[(program, "p4c")], runs[(program, "t4p4s")]
        assert p4c["status"] == "ok" and len(p4c["samples"]) == 2 and [p["name"] for p in p4c["phases"]] == ["p4c"]
        assert [p["name"] for p in t4p4s["phases"]] == ["p4c --p4runtime-files (P4Info)", "t4p4s P4->C",
                                                        "t4p4s C->binary"]
        assert all(p["peak_rss_kb"] > 0 and p["seconds_median"] > 0 for p in t4p4s["phases"])
        assert any("forwarding through this build is unverified" in n for n in t4p4s["notes"])
        assert runs[(program, "p4llvm")]["status"] == "unavailable"
