"""The kubep4 CLI as a user runs it: a subprocess against a real apiserver."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import yaml

from .conftest import EXAMPLE, ROOT


async def kubep4(api: str, *args: str) -> subprocess.CompletedProcess:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kubep4.cli.main", "--api", api, *args,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out, err = await proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def test_apply_example_and_print_it_back(front):
    r = await kubep4(front.api, "apply", "-f", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["pipeline/basic created", "deployment/basic created"]

    r = await kubep4(front.api, "get", "deployment", "basic", "-o", "yaml")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    want = yaml.safe_load_all(EXAMPLE.read_text())
    want_deployment = [d for d in want if d["kind"] == "Deployment"][0]
    assert doc["apiVersion"] == "kubep4.io/v1alpha1" and doc["kind"] == "Deployment"
    assert doc["metadata"]["name"] == "basic" and doc["metadata"]["labels"] == {"app": "basic-forwarding"}
    assert doc["spec"]["tableEntries"] == want_deployment["spec"]["tableEntries"]
    assert doc["spec"]["replicas"] == 2 and doc["status"]["phase"] == "Pending"

    r = await kubep4(front.api, "get", "deployments")
    assert r.returncode == 0
    header, row = r.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "PIPELINE", "READY", "PHASE", "AGE"]
    assert row.split()[:5] == ["default", "basic", "basic", "0/2", "Pending"]

    r = await kubep4(front.api, "get", "pipeline", "basic", "-o", "json")
    assert json.loads(r.stdout)["status"]["digest"].startswith("sha256:")

    r = await kubep4(front.api, "apply", "-f", str(EXAMPLE))
    assert r.stdout.splitlines() == ["pipeline/basic unchanged", "deployment/basic unchanged"]

    r = await kubep4(front.api, "describe", "deployment", "basic")
    assert "Conditions:" in r.stdout and "Admitted" in r.stdout


async def test_errors_name_the_field_without_traceback(front, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("prefixLen: 24", "prefixLen: 40", 1)
                   .replace("../", "").replace("p4infoFile: basic", f"p4infoFile: {EXAMPLE.parent}/basic")
                   .replace("deviceConfigFile: basic", f"deviceConfigFile: {EXAMPLE.parent}/basic"))
    r = await kubep4(front.api, "apply", "-f", str(bad))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "INVALID_ARGUMENT" in r.stderr
    assert "spec.table_entries[0].match[0].lpm.prefix_len: must be between 0 and 32" in r.stderr

    r = await kubep4(front.api, "get", "deployment", "nope")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr and "Traceback" not in r.stderr

    missing = tmp_path / "missing.yaml"
    missing.write_text("apiVersion: kubep4.io/v1alpha1\nkind: Pipeline\nmetadata: {name: x}\n"
                       "spec: {artifacts: {p4infoFile: nothere.txt}}\n")
    r = await kubep4(front.api, "apply", "-f", str(missing))
    assert r.returncode == 1 and "spec.artifacts.p4infoFile" in r.stderr and "Traceback" not in r.stderr

    r = await kubep4("127.0.0.1:1", "get", "deployments")
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr and "Traceback" not in r.stderr


async def test_wait_times_out_with_the_phase(front):
    assert (await kubep4(front.api, "apply", "-f", str(EXAMPLE))).returncode == 0
    r = await kubep4(front.api, "wait", "deployment", "basic", "--for=Ready", "--timeout=1s")
    assert r.returncode == 1
    assert "DEADLINE_EXCEEDED" in r.stderr and "phase Pending" in r.stderr
