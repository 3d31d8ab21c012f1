"""The benchmark commands run in small configurations and produce well-formed output (no timings asserted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import ROOT


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubep4.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_bench_deploy_small(tmp_path):
    out = tmp_path / "deploy.json"
    png = tmp_path / "deploy.png"
    r = run_cli("bench", "deploy", "--nodes", "1", "--devices-per-node", "2", "--count", "3",
                "--concurrency", "2", "--json", str(out), "--plot", str(png))
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    for phase, conc in (("sequential", 1), ("concurrent", 2)):
        ph = result["phases"][phase]
        assert ph["concurrency"] == conc and ph["error_count"] == 0
        assert ph["latency_ms"]["n"] == 3 and len(ph["samples_ms"]) == 3
        lat = ph["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert ph["deployments_per_s"] > 0
    assert result["floor"]["latency_ms"]["n"] == 3
    assert result["ratio_p50"] > 0
    # CPU of every process of the stack over the measured phases, per deployment (from /proc)
    assert result["cpu_ms_per_deployment"] > 0
    by_process = result["cpu_ms_per_deployment_by_process"]
    assert {"etcd", "admission", "apiserver", "controller-0", "agent-0", "switch-0"} <= set(by_process)
    assert abs(sum(by_process.values()) - result["cpu_ms_per_deployment"]) < 1e-6
    assert all(ph["cpu_ms_per_deployment"] > 0 for ph in result["phases"].values())
    hops = {h["hop"] for h in result["hops"]}
    assert {"admission review", "schedule", "SetForwardingPipelineConfig", "p4runtime write"} <= hops
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "control-plane overhead" in r.stdout and "per hop" in r.stdout and "CPU per deployment" in r.stdout


def test_bench_schedule_small(tmp_path):
    out = tmp_path / "schedule.json"
    r = run_cli("bench", "schedule", "--sizes", "20", "--deployments", "30", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result and "builtin" in r.stdout and "kubernetes" in r.stdout


def test_bench_deploy_on_bmv2_switches_the_agents_launch(tmp_path):
    """--switch bmv2: refused clearly without simple_switch_grpc; with the BMv2 stand-in on PATH
    (tests/standins/bmv2: it execs the reference target, no BMv2 can be installed here) the agents
    launch one per device and the run is measured on them."""
    without = {"PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                       if not os.path.exists(os.path.join(p, "simple_switch_grpc")))}
    r = run_cli("bench", "deploy", "--switch", "bmv2", "--count", "1", env=without)
    assert r.returncode == 2 and "simple_switch_grpc" in r.stderr
    out = tmp_path / "deploy.json"
    standin = {"PATH": f"{ROOT / 'tests' / 'standins' / 'bmv2'}{os.pathsep}{os.environ['PATH']}",
               "KUBEP4_STANDIN_LOG": str(tmp_path / "argv.log")}
    r = run_cli("bench", "deploy", "--switch", "bmv2", "--nodes", "1", "--devices-per-node", "1", "--count", "2",
                "--concurrency", "1", "--no-traces", "--json", str(out), env=standin)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["config"]["switch"] == "bmv2" and result["phases"]["sequential"]["error_count"] == 0
    assert "--grpc-server-addr" in (tmp_path / "argv.log").read_text(), "the agent launched it as BMv2"
