"""The supervisor keeps the local stack running: a SIGKILLed service or etcd comes back, with the
state it had; a stopped stack restarts nothing; a failed start is retried after a back-off."""
from __future__ import annotations

import subprocess
import threading

from kubep4.localstack import LocalStack
from kubep4.supervisor import Child, Supervisor

from .conftest import eventually, example_objects


def deployment(name: str):
    p, d = example_objects()
    d.metadata.name = name
    d.spec.replicas = 1
    return p, d


async def test_killed_apiserver_and_etcd_are_restarted_and_nothing_is_lost(tmp_path):
    lines: list[str] = []
    with LocalStack(nodes=1, devices_per_node=2, data_dir=str(tmp_path), supervise=True,
                    report=lines.append) as s:
        async with s.client() as c:
            p, before = deployment("before")
            await c.apply(p)
            await c.create(before)
            await c.wait_ready("before", timeout=30)
        etcd_port = s.etcd.port
        s.kill("apiserver")
        s.kill("etcd")

        def restarted():
            return s.restarts["apiserver"] >= 1 and s.restarts["etcd"] >= 1 and \
                any(x.startswith("restarted apiserver (exit -9)") for x in lines) and \
                any(x.startswith("restarted etcd (exit -9)") for x in lines)
        await eventually(restarted, 60, 0.1, f"apiserver and etcd restarted (report: {lines})")
        assert s.etcd.port == etcd_port  # same port, same data dir

        async def api_back():
            try:
                async with s.client(timeout=5) as c:
                    return await c.get("deployment", "before")
            except Exception:  # Unavailable until the services have reconnected to etcd
                return None
        got = await eventually(api_back, 60, 0.2, "the API to answer again")
        assert got.status.phase == "Running"
        async with s.client() as c:
            _, after = deployment("after")
            await c.create(after)
            ready = await c.wait_ready("after", timeout=40)
            assert ready.status.ready_replicas == 1
            assert (await c.get("deployment", "before")).status.phase == "Running"
        assert all(proc.alive() for proc in s.procs.values())
        assert {k: v for k, v in s.restarts.items() if v} == {"apiserver": s.restarts["apiserver"],
                                                                "etcd": s.restarts["etcd"]}


def test_a_stopped_stack_restarts_nothing(tmp_path):
    lines: list[str] = []
    s = LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), supervise=True,
                   report=lines.append).start()
    s.supervisor.stop()  # what stop() does first; from here on an exit is final
    s.kill("agent-0")
    s.stop()
    assert not s.supervisor.running()
    assert not any(proc.alive() for proc in s.procs.values()) and s.etcd.proc is None
    assert s.restarts == dict.fromkeys(["etcd", *s.procs], 0)
    assert lines == []


def test_a_failed_start_is_reported_and_retried_after_a_back_off():
    procs: list[subprocess.Popen] = []
    attempts = []
    lines: list[str] = []
    done = threading.Event()

    def start(timeout: float, cancel: threading.Event) -> None:
        attempts.append(timeout)
        if len(attempts) == 2:
            raise RuntimeError("sleeper not ready after 3s\nlog tail")
        procs.append(subprocess.Popen(["sleep", "600"]))

    def kill() -> None:
        if procs and procs[-1].poll() is None:
            procs[-1].kill()
            procs[-1].wait()

    def report(line: str) -> None:
        lines.append(line)
        if line.startswith("restarted"):
            done.set()

    child = Child("sleeper", lambda: bool(procs) and procs[-1].poll() is None,
                  lambda: procs[-1].poll(), start, kill)
    start(0, threading.Event())  # the first start is the caller's
    sup = Supervisor([child], report, initial_backoff=0.01, max_backoff=0.04, ready_timeout=3).start()
    try:
        kill()
        assert done.wait(30), lines
    finally:
        sup.stop()
        kill()
    assert lines == ["restart of sleeper failed (sleeper not ready after 3s), 1 restart; next try in 0.0s",
                     "restarted sleeper (exit -9), 2 restarts"]
    assert sup.restarts == {"sleeper": 2} and attempts == [0, 3, 3]


def test_restart_delays_double_from_half_a_second_up_to_ten():
    b = Supervisor([]).backoff()
    assert [b.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    b.reset()
    assert b.next() == 0.5
