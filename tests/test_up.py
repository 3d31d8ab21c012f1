"""`kubep4 up` as a newcomer runs it: the whole stack as processes, usable by the CLI, traced on request,
and stopped cleanly by SIGTERM."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

from kubep4.etcd_server import free_port

from .conftest import EXAMPLE, ROOT


def cli(api: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubep4.cli.main", "--api", api, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_up_runs_the_stack_traces_it_and_stops_on_sigterm(tmp_path):
    port, jaeger = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kubep4.cli.main", "up", "--nodes", "2",
                             "--devices-per-node", "2", "--port", str(port), "--traces",
                             "--jaeger-port", str(jaeger), "--data-dir", str(tmp_path / "stack")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready:"):
                ready.set()
    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(60), "".join(lines)
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
