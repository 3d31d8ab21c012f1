"""`kubep4 up` as a newcomer runs it: the whole stack as processes, secure by default (the client config
it writes is what the CLI and the SDK use), traced on request, restarting what dies (etcd included),
and stopped cleanly by SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from kubep4.client import Client
from kubep4.etcd_server import free_port

from .conftest import EXAMPLE, ROOT, example_objects


@pytest.fixture(autouse=True)
def client_config(tmp_path, monkeypatch):
    """`kubep4 up` writes its context into $KUBEP4_CONFIG: here, never the user's ~/.kubep4/config."""
    path = tmp_path / "kubep4-config"
    monkeypatch.setenv("KUBEP4_CONFIG", str(path))
    for var in ("KUBEP4_API", "KUBEP4_TOKEN", "KUBEP4_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    return path


def cli(api: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubep4.cli.main", "--api", api, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def up(*args: str) -> tuple[subprocess.Popen, list[str]]:
    """`kubep4 up ARGS` as a process, once it says ready; its output lines keep coming into the list."""
    proc = subprocess.Popen([sys.executable, "-m", "kubep4.cli.main", "up", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready:"):
                ready.set()
    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(60):
        proc.kill()
        raise AssertionError("".join(lines))
    return proc, lines


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (got := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return got


def test_up_runs_the_stack_traces_it_and_stops_on_sigterm(tmp_path):
    port, jaeger = free_port(), free_port()
    proc, lines = up("--nodes", "2", "--devices-per-node", "2", "--port", str(port), "--traces",
                     "--jaeger-port", str(jaeger), "--data-dir", str(tmp_path / "stack"))
    try:
        out = "".join(lines)
        assert f"apiserver   127.0.0.1:{port}" in out and "node-1" in out and "query API" in out
        api = f"127.0.0.1:{port}"

        r = cli(api, "get", "nodes", "-o", "wide")
        assert r.returncode == 0, r.stderr
        rows = r.stdout.splitlines()[1:]
        assert [row.split()[:2] for row in rows] == [["node-0", "Ready"], ["node-1", "Ready"]]
        assert all("dev0(bmv2/v1model),dev1(bmv2/v1model)" in row for row in rows)

        assert cli(api, "apply", "-f", str(EXAMPLE)).returncode == 0
        r = cli(api, "wait", "deployment", "basic", "--for=Ready", "--timeout=30s")
        assert r.returncode == 0, r.stderr
        assert "2/2 ready" in r.stdout

        deadline = time.monotonic() + 20
        while True:  # spans are exported in batches
            r = cli(api, "trace", "deployment", "basic", "--jaeger", f"http://127.0.0.1:{jaeger}", "-o", "json")
            if r.returncode == 0 and {h["hop"] for h in json.loads(r.stdout)["hops"]} >= {"node_agent install"}:
                break
            assert time.monotonic() < deadline, r.stdout + r.stderr
            time.sleep(0.2)
        services = {h["service"] for h in json.loads(r.stdout)["hops"]}
        assert services == {"kubep4-apiserver", "kubep4-admission", "kubep4-controller", "kubep4-node-agent"}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
    assert "".join(lines).rstrip().endswith("stopped")
    # every process it started is gone: nothing listens on the API port any more
    assert cli(f"127.0.0.1:{port}", "get", "nodes").returncode == 1


def pids_with(arg: str) -> list[int]:
    """Processes whose command line holds ``arg``."""
    out = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if arg.encode() in f.read().split(b"\0"):
                    out.append(int(d))
        except (OSError, ValueError):
            continue
    return out


def test_up_restarts_a_killed_etcd_and_keeps_every_deployment(tmp_path):
    port, data = free_port(), tmp_path / "stack"
    proc, lines = up("--nodes", "2", "--devices-per-node", "2", "--port", str(port), "--data-dir", str(data))
    api = f"127.0.0.1:{port}"
    try:
        assert cli(api, "apply", "-f", str(EXAMPLE)).returncode == 0
        assert cli(api, "wait", "deployment", "basic", "--for=Ready", "--timeout=30s").returncode == 0
        [etcd] = pids_with(str(data / "etcd" / "data"))  # etcd's --data-dir
        os.kill(etcd, signal.SIGKILL)
        wait_for(lambda: any(x.startswith("restarted etcd (exit -9), 1 restart") for x in lines), 60,
                 "the restart line: " + "".join(lines))
        assert pids_with(str(data / "etcd" / "data")) not in ([], [etcd])

        def answers():
            r = cli(api, "get", "deployments")
            return r.returncode == 0 and r
        rows = wait_for(answers, 60, "the apiserver to answer again").stdout.splitlines()[1:]
        assert [row.split()[1:5] for row in rows] == [["basic", "basic", "2/2", "Running"]], rows
        _, d = example_objects()
        d.metadata.name = "after"
        with Client() as c:  # the services re-watched etcd and act on a new deployment (the config's server)
            c.create(d)
            assert c.wait_ready("after", timeout=40).status.ready_replicas == 2
            assert {x.metadata.name: x.status.phase for x in c.list("deployments")} == {
                "basic": "Running", "after": "Running"}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0 and "".join(lines).rstrip().endswith("stopped")
    assert pids_with(str(data / "etcd" / "data")) == []


def test_up_insecure_is_plaintext_and_says_so(tmp_path, client_config):
    port = free_port()
    proc, lines = up("--nodes", "1", "--port", str(port), "--insecure", "--data-dir", str(tmp_path / "stack"))
    try:
        assert any("WARNING: --insecure" in x for x in lines)
        assert not client_config.exists(), "no credentials to write"
        with Client(f"127.0.0.1:{port}") as c:  # a plaintext client is answered
            assert [n.metadata.name for n in c.list("nodes")] == ["node-0"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_up_secure_refuses_a_plaintext_client_and_takes_an_odd_etcd_cluster(tmp_path, client_config):
    bad = subprocess.run([sys.executable, "-m", "kubep4.cli.main", "up", "--etcd-members", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "odd number" in bad.stdout
    port = free_port()
    proc, lines = up("--nodes", "1", "--port", str(port), "--etcd-members", "3", "--data-dir", str(tmp_path / "s"))
    try:
        assert "context kubep4-local" in "".join(lines)
        with Client() as c:  # the config kubep4 up wrote: its CA and the admin's certificate
            assert c.whoami().user == "admin"
        with pytest.raises(Exception), Client(f"127.0.0.1:{port}", timeout=5) as c:
            c.list("nodes")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
