"""Software switches launched per device by the node agent (issue 15, item 3; docs/switches.md).

Real processes on loopback: the local stack (secure: the launched switches serve P4Runtime over
mTLS), the reference target as the launched binary or behind the simple_switch_grpc stand-in
(tests/standins/bmv2, named as such: no BMv2 can be installed here), SIGKILL, /proc, and an
independent P4Runtime reader. No timing thresholds.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from kubep4.bench.p4read import stack_readers
from kubep4.localstack import LocalStack
from services.node_agent.__main__ import parse_device
from services.node_agent.launcher import bmv2_argv, launch_problems

from .conftest import ROOT, eventually, example_objects

STANDINS = ROOT / "tests" / "standins" / "bmv2"


def processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, argv) of every process now (from /proc)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if argv:
            out[int(pid)] = (ppid, argv)
    return out


def switch_pids(port: int) -> list[int]:
    """The processes serving a reference device on ``port`` (the launched binary, or what the
    stand-in exec'd into)."""
    return [pid for pid, (_, argv) in processes().items()
            if "kubep4.reftarget" in argv and any(a.endswith(f"@127.0.0.1:{port}") for a in argv)]


def log_of(path) -> str:
    with open(path, errors="replace") as f:
        return f.read()


async def deploy(c) -> None:
    p, d = example_objects()
    d.spec.replicas = 1
    await c.apply(p)
    await c.create(d)
    await c.wait_ready(d.metadata.name, timeout=60)


async def held_entries(reader, n: int = 3):
    async def check():
        try:
            got = await reader.entries()
        except Exception:  # noqa: BLE001 - the switch is coming back
            return None
        return got if len(got) == n else None
    return await eventually(check, 60, 0.1, f"the device to hold {n} entries")


async def test_a_launched_switch_is_started_restarted_when_killed_and_stopped_with_the_agent(tmp_path):
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), resync_seconds=0.5,
                    switch="launched-reference", env={"KUBEP4_LOG_LEVEL": "INFO"}) as s:
        port = s.device_ports["node-0"][0]
        agent = s.procs["agent-0"].popen.pid
        assert "switch-0" not in s.procs, "the stack runs no switch of its own"
        [pid] = switch_pids(port)
        assert processes()[pid][0] == agent, "the agent started the switch (its parent)"
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            await deploy(c)
            before = {e.SerializeToString(deterministic=True) for e in await held_entries(reader)}

            os.kill(pid, signal.SIGKILL)
            new = await eventually(lambda: [p for p in switch_pids(port) if p != pid] or None, 60, 0.1,
                                   "the agent to start the switch again")
            assert processes()[new[0]][0] == agent
            after = {e.SerializeToString(deterministic=True) for e in await held_entries(reader)}
            assert after == before, "the restarted (empty) switch was given its entries again"

            async def running_again():
                d = await c.get("deployment", "basic")
                r = d.status.replicas[0] if d.status.replicas else None
                return d if d.status.phase == "Running" and r is not None and r.phase == "Running" else None
            await eventually(running_again, 60, 0.1, "the deployment Running again")

        log = log_of(tmp_path / "launch-node-0" / "dev0.log")
        assert log.count("kubep4 node agent starts dev0") == 2, log
        assert "restarted dev0 (exit -9)" in log_of(s.procs["agent-0"].log_path)

        s.procs["agent-0"].stop()  # SIGTERM: the agent stops what it launched
        assert switch_pids(port) == []


async def test_a_launched_switch_dies_with_an_agent_killed_by_sigkill(tmp_path):
    if not shutil.which("setpriv"):
        pytest.skip("util-linux setpriv (--pdeathsig) is not installed")
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), switch="launched-reference") as s:
        port = s.device_ports["node-0"][0]
        [pid] = switch_pids(port)
        s.kill("agent-0")

        def gone():
            return pid not in processes() or None
        await eventually(gone, 30, 0.05, "the switch to die with its agent")
        assert switch_pids(port) == []


async def test_bmv2_devices_are_launched_with_bmv2s_command_line(tmp_path):
    record = tmp_path / "standin.jsonl"
    env = {"PATH": f"{STANDINS}{os.pathsep}{os.environ['PATH']}", "KUBEP4_STANDIN_LOG": str(record)}
    with LocalStack(nodes=1, devices_per_node=2, data_dir=str(tmp_path / "stack"), switch="bmv2", env=env) as s:
        readers = stack_readers(s.device_ports, tls=s.device_tls())
        async with s.client() as c:
            await deploy(c)
            held = [len(await r.entries()) for r in readers.values()]
            assert sorted(held) == [0, 3]
        calls = [json.loads(line) for line in record.read_text().splitlines()]
        assert [c["tool"] for c in calls] == ["simple_switch_grpc", "simple_switch_grpc"]
        pki = s.pki
        cert = pki["switch-node-0"]
        for i, (call, port) in enumerate(zip(sorted(calls, key=lambda c: c["argv"][1]), s.device_ports["node-0"])):
            argv = call["argv"]
            thrift = argv[argv.index("--thrift-port") + 1]
            assert argv == ["--device-id", str(i + 1), "--thrift-port", thrift, "--no-p4", "--",
                            "--grpc-server-addr", f"127.0.0.1:{port}", "--grpc-server-ssl",
                            "--grpc-server-cacert", pki.ca.cert, "--grpc-server-cert", cert.cert,
                            "--grpc-server-key", cert.key, "--grpc-server-with-client-auth"]
        thrifts = {c["argv"][c["argv"].index("--thrift-port") + 1] for c in calls}
        assert len(thrifts) == 2, "each BMv2 gets its own Thrift port (9090 would clash)"
        assert "STAND-IN simple_switch_grpc" in log_of(tmp_path / "stack" / "launch-node-0" / "dev0.log")


def test_bmv2_argv_has_interfaces_and_no_tls_when_plaintext():
    dev = parse_device("name=sw1,address=127.0.0.1:9559,device_id=7,launch=bmv2,interfaces=0@veth0;1@veth2")
    assert bmv2_argv(dev, 9091) == ["simple_switch_grpc", "--device-id", "7", "--thrift-port", "9091",
                                    "-i", "0@veth0", "-i", "1@veth2", "--no-p4", "--",
                                    "--grpc-server-addr", "127.0.0.1:9559"]


def test_launch_keys_are_checked():
    with pytest.raises(Exception, match="launch=qemu is not one of bmv2, t4p4s, reference"):
        parse_device("address=127.0.0.1:1,launch=qemu")
    with pytest.raises(Exception, match="are for a launched switch"):
        parse_device("address=127.0.0.1:1,interfaces=0@veth0")
    t4 = parse_device("name=t1,launch=t4p4s")  # its switch connects to us: no address
    assert (t4.launch.kind, t4.p4rt_address, t4.target) == ("t4p4s", "", "t4p4s")
    no_bmv2 = parse_device("name=sw1,address=127.0.0.1:1,launch=bmv2,binary=/nonexistent/simple_switch_grpc")
    assert launch_problems([no_bmv2]) == [
        "device sw1: launch=bmv2 needs /nonexistent/simple_switch_grpc on PATH (BMv2's simple_switch_grpc: "
        "https://github.com/p4lang/behavioral-model, or the p4lang/behavioral-model image)"]
    assert "both T4P4S switches connect to controller port 11111" in " ".join(
        launch_problems([t4, parse_device("name=t2,launch=t4p4s")]))
    tls = parse_device("name=sw1,address=127.0.0.1:1,launch=reference,ca=/ca.pem")
    assert launch_problems([tls]) == ["device sw1: a launched switch serving TLS needs its own certificate: "
                                      "give server_cert=FILE,server_key=FILE"]


def test_an_agent_refuses_to_start_without_the_switch_binary():
    r = subprocess.run([sys.executable, "-m", "services.node_agent", "--etcd", "127.0.0.1:1",
                        "--device", "name=sw1,address=127.0.0.1:9559,launch=bmv2,binary=/nonexistent/ssg"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "device sw1: launch=bmv2 needs /nonexistent/ssg on PATH" in r.stderr


def test_up_switch_bmv2_refuses_without_bmv2(tmp_path):
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not os.path.exists(os.path.join(p, "simple_switch_grpc")))
    r = subprocess.run([sys.executable, "-m", "kubep4.cli.main", "up", "--switch", "bmv2",
                        "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PATH": path, "KUBEP4_CONFIG": str(tmp_path / "config")})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--switch bmv2 needs BMv2's simple_switch_grpc on PATH" in r.stdout
    assert "behavioral-model" in r.stdout
    assert not (tmp_path / "etcd").exists(), "nothing was started"


def test_up_switch_bmv2_runs_the_agents_launched_switches(tmp_path, monkeypatch):
    from .test_up import up
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")  # the simple_switch_grpc stand-in
    monkeypatch.setenv("KUBEP4_CONFIG", str(tmp_path / "kubep4-config"))  # never the user's client config
    proc, lines = up("--switch", "bmv2", "--nodes", "1", "--port", "0", "--data-dir", str(tmp_path / "stack"))
    try:
        out = "".join(lines)
        assert "(simple_switch_grpc, launched by its agent)" in out, out
        assert "STAND-IN simple_switch_grpc" in log_of(tmp_path / "stack" / "launch-node-0" / "dev0.log")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("kubep4 up did not stop within 60 s of SIGTERM:\n" + "".join(lines)) from None
    assert not [pid for pid, (_, argv) in processes().items() if "kubep4.reftarget" in argv
                and any(str(tmp_path) in a for a in argv)], "no switch left after kubep4 up stopped"
