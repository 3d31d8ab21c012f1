"""The local stack: etcd and every KubeP4 service as separate processes on loopback.

Used by `kubep4 up`, the end-to-end tests, `kubep4 bench deploy` and `kubep4 bench faults`.
With ``supervise=True`` (what `kubep4 up` uses) a child that exits is restarted with back-off
(kubep4.supervisor); by default a child that exits stays down, as some tests want.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubep4.config import SECRET_ENVS
from kubep4.etcd_server import EtcdServer, free_port
from kubep4.supervisor import Child, Supervisor, print_line

HOST = "127.0.0.1"


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: str
    ready_marker: str
    popen: subprocess.Popen | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.ready.clear()
        log = open(self.log_path, "ab", buffering=0)
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        threading.Thread(target=self._pump, args=(self.popen, log), daemon=True, name=f"log-{self.name}").start()

    def _pump(self, popen: subprocess.Popen, log) -> None:
        for line in iter(popen.stdout.readline, b""):
            log.write(line)
            if self.ready_marker.encode() in line:
                self.ready.set()
        log.close()

    def wait_ready(self, timeout: float, cancel: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if cancel is not None and cancel.is_set():
                raise RuntimeError(f"{self.name}: start cancelled")
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; log: {self.log_path}\n"
                                   + _tail(self.log_path))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout}s; log: {self.log_path}\n"
                                   + _tail(self.log_path))

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait()

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def child(self) -> Child:
        def start(timeout: float, cancel: threading.Event) -> None:
            self.start()
            self.wait_ready(timeout, cancel)
        return Child(self.name, self.alive, self.exit_code, start, self.kill)


def _tail(path: str, n: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


@dataclass
class LocalStack:
    nodes: int = 1
    devices_per_node: int = 1
    controllers: int = 1
    builders: int = 1           # compile source Pipelines once per digest (services/builder)
    builder_claim_ttl: int = 10  # the builders' claim lease, seconds
    api_port: int = 0           # 0: a free port
    data_dir: str | None = None
    lease_ttl: int = 10         # node heartbeat lease, seconds
    leader_ttl: int = 5         # controller leader lease, seconds
    resync_seconds: float = 2.0  # node agents' periodic device check
    env: dict[str, str] = field(default_factory=dict)
    slots_per_device: int = 1
    switch_args: tuple[str, ...] = ()  # more flags for every reference switch (--unimplemented KIND, ...)
    device_options: str = ""  # more --device keys for every device ("upgrade=reconcile,role=kubep4")
    procs: dict[str, Proc] = field(default_factory=dict)
    etcd: EtcdServer | None = None
    device_ports: dict[str, list[int]] = field(default_factory=dict)  # node -> P4Runtime ports
    supervise: bool = False     # restart a child that exits (with back-off) until stop()
    report: Callable[[str], None] = print_line  # where the supervisor's restart lines go
    supervisor: Supervisor | None = None

    @property
    def restarts(self) -> dict[str, int]:
        """Restarts per child (``etcd`` included) since start(); empty when not supervised."""
        return dict(self.supervisor.restarts) if self.supervisor else {}

    @property
    def api(self) -> str:
        return f"{HOST}:{self.api_port}"

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env, **(extra or {})}
        return env

    def _add(self, name: str, module: str, args: list[str], marker: str, env: dict | None = None) -> Proc:
        child_env = self._env(env)
        if name != "apiserver":  # only the apiserver checks the token: no other child holds it
            for secret in SECRET_ENVS:
                child_env.pop(secret, None)
        proc = Proc(name, [sys.executable, "-m", module, *args], child_env,
                    os.path.join(self.data_dir, f"{name}.log"), marker)
        self.procs[name] = proc
        return proc

    def start(self, timeout: float = 30.0) -> "LocalStack":
        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="kubep4-stack-")
        os.makedirs(self.data_dir, exist_ok=True)
        try:
            self.etcd = EtcdServer(data_dir=os.path.join(self.data_dir, "etcd")).start()
            etcd = self.etcd.endpoint
            adm_port = free_port()
            self.api_port = self.api_port or free_port()
            self._add("admission", "services.admission", ["--listen", f"{HOST}:{adm_port}"], "listening on")
            self._add("apiserver", "services.apiserver", ["--listen", self.api, "--etcd", etcd,
                                                          "--admission", f"{HOST}:{adm_port}"], "listening on")
            for i in range(self.controllers):
                self._add(f"controller-{i}", "services.controller",
                          ["--etcd", etcd, "--id", f"controller-{i}", "--leader-ttl", str(self.leader_ttl)],
                          "controller started")
            for i in range(self.builders):  # one work dir each: a builder clears what dead ones left in it
                self._add(f"builder-{i}", "services.builder",
                          ["--etcd", etcd, "--id", f"builder-{i}", "--claim-ttl", str(self.builder_claim_ttl),
                           "--work-dir", os.path.join(self.data_dir, f"builder-{i}")], "builder started")
            device_id = 1
            for n in range(self.nodes):
                node = f"node-{n}"
                ports = [free_port() for _ in range(self.devices_per_node)]
                self.device_ports[node] = ports
                dev_args, agent_args = [], ["--etcd", etcd, "--node-name", node, "--lease-ttl",
                                            str(self.lease_ttl), "--resync", str(self.resync_seconds),
                                            "--read-listen", f"{HOST}:0"]  # live values, for ReadDeployment
                for d, port in enumerate(ports):
                    dev_args += ["--device", f"{device_id}@{HOST}:{port}"]
                    agent_args += ["--device", f"name=dev{d},address={HOST}:{port},device_id={device_id},"
                                               f"target=bmv2,arch=v1model,slots={self.slots_per_device}"
                                   + (f",{self.device_options}" if self.device_options else "")]
                    device_id += 1
                self._add(f"switch-{n}", "kubep4.reftarget", [*dev_args, *self.switch_args, "--log-level", "INFO"],
                          "listening on")
                self._add(f"agent-{n}", "services.node_agent", agent_args, "node agent started")
            for proc in self.procs.values():
                proc.start()
            for proc in self.procs.values():
                proc.wait_ready(timeout)
            if self.supervise:
                self.supervisor = Supervisor([self._etcd_child(), *(p.child() for p in self.procs.values())],
                                             self.report).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _etcd_child(self) -> Child:
        etcd = self.etcd

        def alive() -> bool:
            return etcd.proc is not None and etcd.proc.poll() is None

        def exit_code() -> int | None:
            return None if etcd.proc is None else etcd.proc.poll()

        def start(timeout: float, cancel: threading.Event) -> None:
            etcd.start(timeout)  # the same data dir and client/peer ports (kept from the first start)

        return Child("etcd", alive, exit_code, start, lambda: self._kill_etcd(wait=True))

    def _kill_etcd(self, wait: bool) -> None:
        proc = self.etcd.proc if self.etcd else None
        if proc is not None and proc.poll() is None:
            proc.kill()
            if wait:
                proc.wait()

    def kill(self, name: str) -> None:
        """SIGKILL one child by name (``etcd``, ``apiserver``, ``agent-0``, ``switch-1``...)."""
        if name == "etcd":
            self._kill_etcd(wait=True)
        else:
            self.procs[name].kill()

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()  # first: stopping the children must not restart them
        for proc in reversed(list(self.procs.values())):
            proc.signal(signal.SIGTERM)
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        if self.etcd is not None:
            self.etcd.stop()

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Stop and start one service (not counted as a supervisor restart)."""
        proc = self.procs[name]
        with self.supervisor.holding(name) if self.supervisor else contextlib.nullcontext():
            proc.stop()
            proc.start()
            proc.wait_ready(timeout)

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def describe(self) -> str:
        lines = [f"etcd        {self.etcd.endpoint}", f"apiserver   {self.api}   (export KUBEP4_API={self.api})"]
        for node, ports in self.device_ports.items():
            lines.append(f"{node:<11} P4Runtime devices on " + ", ".join(f"{HOST}:{p}" for p in ports))
        lines.append(f"logs        {self.data_dir}")
        return "\n".join(lines)
