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
