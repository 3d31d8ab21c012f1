"""The local stack: etcd and every KubeP4 service as separate processes on loopback.

Used by `kubep4 up`, the end-to-end tests, `kubep4 bench deploy` and `kubep4 bench faults`.
With ``supervise=True`` (what `kubep4 up` uses) a child that exits is restarted with back-off
(kubep4.supervisor); by default a child that exits stays down, as some tests want.
"""
from __future__ import annotations

import asyncio
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

from kubep4 import devpki
from kubep4.config import SECRET_ENVS
from kubep4.etcd_server import EtcdCluster, EtcdServer, EtcdTLS, free_port
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


def _kill_member(member: EtcdServer) -> None:
    """SIGKILL an etcd member and reap it, keeping its exit status for the supervisor's report."""
    proc = member.proc
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def _run_in_thread(coro) -> None:
    """Run a coroutine to its end on an event loop of its own (the caller's may be running)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coro)
        except BaseException as e:  # handed to the caller
            failure.append(e)
    t = threading.Thread(target=run, name="localstack-setup")
    t.start()
    t.join()
    if failure:
        raise failure[0]


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
    # the switches: "reference" (the stack runs the reference target, one process per node),
    # "bmv2" (each agent launches simple_switch_grpc per device: Device.launch) or "launched-reference"
    # (each agent launches the reference target per device)
    switch: str = "reference"
    device_options: str = ""  # more --device keys for every device ("upgrade=reconcile,role=kubep4")
    # TLS on every hop, mTLS between services, etcd with client certificates and auth on, a role per
    # component (kubep4.devpki, kubep4.etcd_auth); False: plaintext everywhere (kubep4 up --insecure)
    secure: bool = True
    etcd_members: int = 1       # 3: an etcd cluster on loopback (TLS between members too when secure)
    # secure: API clients show a certificate (the admin's); False: the API serves TLS to anyone and
    # identities come from tokens (KUBEP4_TOKEN, a token file)
    api_client_certs: bool = True
    pki: devpki.StackPKI | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    etcd: EtcdServer | EtcdCluster | None = None
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

    def _etcd_args(self, component: str) -> list[str]:
        """--etcd with every member, and the component's client certificate when secure."""
        return ["--etcd", self.etcd.endpoint, *(self.pki.etcd_flags(component) if self.pki else [])]

    def _tls_args(self, component: str) -> list[str]:
        return self.pki.service_flags(component) if self.pki else []

    def _launch_keys(self, node: str) -> str:
        """The --device keys that make the node's agent launch each device's switch ("" when the
        stack runs them): launch=KIND, the switch's own certificate when secure, switch_args."""
        if self.switch == "reference":
            return ""
        kind = {"bmv2": "bmv2", "launched-reference": "reference"}.get(self.switch)
        if kind is None:
            raise ValueError(f"switch={self.switch!r}: one of reference, bmv2, launched-reference")
        keys = [f"launch={kind}"]
        if self.pki:
            cert = self.pki[f"switch-{node}"]
            keys.append(f"server_cert={cert.cert},server_key={cert.key}")
        if self.switch_args:
            keys.append("args=" + ";".join(self.switch_args))
        return ",".join(keys)

    def start(self, timeout: float = 30.0) -> "LocalStack":
        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="kubep4-stack-")
        os.makedirs(self.data_dir, exist_ok=True)
        node_names = [f"node-{n}" for n in range(self.nodes)]
        try:
            etcd_tls = None
            if self.secure:
                self.pki = devpki.make(os.path.join(self.data_dir, "pki"), node_names)
                etcd_tls = EtcdTLS(self.pki["etcd"].cert, self.pki["etcd"].key, self.pki.ca.cert)
            etcd_dir = os.path.join(self.data_dir, "etcd")
            self.etcd = (EtcdCluster(self.etcd_members, etcd_dir, etcd_tls) if self.etcd_members > 1
                         else EtcdServer(data_dir=etcd_dir, tls=etcd_tls)).start()
            if self.secure:
                self._enable_etcd_auth(node_names)
            adm_port = free_port()
            self.api_port = self.api_port or free_port()
            self._add("admission", "services.admission", ["--listen", f"{HOST}:{adm_port}",
                                                          *self._tls_args("admission")], "listening on")
            api_tls = ["--tls-cert", self.pki["apiserver"].cert, "--tls-key", self.pki["apiserver"].key,
                       "--tls-ca", self.pki.ca.cert] if self.pki else []
            if self.pki and self.api_client_certs:
                api_tls += ["--client-ca", self.pki.ca.cert]
            self._add("apiserver", "services.apiserver", ["--listen", self.api, *self._etcd_args("apiserver"),
                                                          "--admission", f"{HOST}:{adm_port}", *api_tls],
                      "listening on")
            for i in range(self.controllers):
                self._add(f"controller-{i}", "services.controller",
                          [*self._etcd_args("controller"), "--id", f"controller-{i}",
                           "--leader-ttl", str(self.leader_ttl)], "controller started")
            for i in range(self.builders):  # one work dir each: a builder clears what dead ones left in it
                self._add(f"builder-{i}", "services.builder",
                          [*self._etcd_args("builder"), "--id", f"builder-{i}",
                           "--claim-ttl", str(self.builder_claim_ttl),
                           "--work-dir", os.path.join(self.data_dir, f"builder-{i}")], "builder started")
            device_id = 1
            for n in range(self.nodes):
                node = f"node-{n}"
                ports = [free_port() for _ in range(self.devices_per_node)]
                self.device_ports[node] = ports
                agent = f"agent-{node}"
                dev_args, agent_args = [], [*self._etcd_args(agent), *self._tls_args(agent), "--node-name", node,
                                            "--lease-ttl", str(self.lease_ttl), "--resync", str(self.resync_seconds),
                                            "--read-listen", f"{HOST}:0"]  # live values, for ReadDeployment
                extra = [self.device_options] if self.device_options else []
                if self.pki:
                    extra.append(self.pki.device_keys(agent))
                launched = self._launch_keys(node)
                if launched:
                    extra.append(launched)
                # launched switches' logs and T4P4S programs (device_options may ask for launch=t4p4s)
                agent_args += ["--launch-dir", os.path.join(self.data_dir, f"launch-{node}")]
                for d, port in enumerate(ports):
                    dev_args += ["--device", f"{device_id}@{HOST}:{port}"]
                    agent_args += ["--device", ",".join([f"name=dev{d},address={HOST}:{port},device_id={device_id},"
                                                         f"target=bmv2,arch=v1model,slots={self.slots_per_device}",
                                                         *extra])]
                    device_id += 1
                if not launched:
                    switch_tls = self.pki.switch_flags(f"switch-{node}") if self.pki else []
                    self._add(f"switch-{n}", "kubep4.reftarget", [*dev_args, *switch_tls, *self.switch_args,
                                                                 "--log-level", "INFO"], "listening on")
                self._add(f"agent-{n}", "services.node_agent", agent_args, "node agent started")
            for proc in self.procs.values():
                proc.start()
            for proc in self.procs.values():
                proc.wait_ready(timeout)
            if self.pki:
                self.write_client_config(self.client_config_path)
            if self.supervise:
                self.supervisor = Supervisor([*(self._etcd_child(n, m) for n, m in self.etcd_members_by_name().items()),
                                              *(p.child() for p in self.procs.values())], self.report).start()
        except BaseException:
            self.stop()
            raise
        return self

    # ------------------------------------------------------------ etcd
    def etcd_members_by_name(self) -> dict[str, EtcdServer]:
        """``etcd`` alone, or ``etcd-0``, ``etcd-1``... of a cluster."""
        if isinstance(self.etcd, EtcdCluster):
            return {f"etcd-{i}": m for i, m in enumerate(self.etcd.members)}
        return {"etcd": self.etcd} if self.etcd is not None else {}

    def _etcd_child(self, name: str, member: EtcdServer) -> Child:
        def alive() -> bool:
            return member.proc is not None and member.proc.poll() is None

        def exit_code() -> int | None:
            return None if member.proc is None else member.proc.poll()

        def start(timeout: float, cancel: threading.Event) -> None:
            member.start(timeout)  # the same data dir and client/peer ports (kept from the first start)

        return Child(name, alive, exit_code, start, lambda: _kill_member(member))

    def _enable_etcd_auth(self, nodes: list[str]) -> None:
        """A role per component, then auth on (as root, with its certificate): from here on each
        component's certificate CN is its etcd user."""
        from kubep4 import etcd_auth
        from kubep4.store import Store

        async def enable() -> None:
            async with Store(self.etcd.endpoint, tls=self.pki.client_tls("etcd-root")) as store:
                await etcd_auth.enable(store, nodes)
        _run_in_thread(enable())  # start() may be called from a running event loop (tests)

    def store(self):
        """A Store on this stack's etcd, as root when secure (for tests and benchmarks that look
        at etcd directly)."""
        from kubep4.store import Store
        return Store(self.etcd.endpoint, tls=self.pki.client_tls("etcd-root") if self.pki else None)

    # ------------------------------------------------------------ clients
    @property
    def client_config_path(self) -> str:
        return os.path.join(self.data_dir, "config")

    def client_args(self) -> dict:
        """AsyncClient's arguments for this stack's admin (with its client certificate when secure)."""
        if not self.pki:
            return {}
        if not self.api_client_certs:
            return {"ca": self.pki.ca.cert}
        admin = self.pki["admin"]
        return {"ca": self.pki.ca.cert, "cert": admin.cert, "key": admin.key}

    def cli_env(self) -> dict[str, str]:
        """The environment for a `kubep4` CLI process that talks to this stack as its admin (the
        client config it wrote, when secure)."""
        env = {k: v for k, v in os.environ.items() if k not in ("KUBEP4_API", "KUBEP4_CONTEXT")}
        if self.pki:
            env["KUBEP4_CONFIG"] = self.client_config_path
        return env

    def client(self, **kw):
        """An AsyncClient of this stack's apiserver, as its admin."""
        from kubep4.client import AsyncClient
        return AsyncClient(self.api, **{**self.client_args(), **kw})

    def device_tls(self):
        """How an independent P4Runtime client reaches this stack's devices (None: plaintext)."""
        return self.pki.client_tls("observer") if self.pki else None

    def write_client_config(self, path: str, context: str = "kubep4-local") -> None:
        """Add (or replace) this stack's cluster, admin user and context in the client config at
        ``path`` and make it current (kubep4.clientconfig)."""
        from kubep4 import clientconfig as cc
        config = cc.ClientConfig.load(path)
        admin = self.pki["admin"]
        config.clusters[context] = cc.Cluster(context, server=self.api, certificate_authority=self.pki.ca.cert)
        config.users[context] = cc.User(context, client_certificate=admin.cert, client_key=admin.key) \
            if self.api_client_certs else cc.User(context)
        config.contexts[context] = cc.Context(context, cluster=context, user=context)
        config.current_context = context
        config.save()

    def kill(self, name: str) -> None:
        """SIGKILL one child by name (``etcd`` or ``etcd-1``, ``apiserver``, ``agent-0``, ``switch-1``...)."""
        members = self.etcd_members_by_name()
        if name in members:
            _kill_member(members[name])
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
        api = f"apiserver   {self.api}   " + ("(TLS; the client config has the admin's certificate)" if self.pki
                                              else f"(export KUBEP4_API={self.api})")
        lines = [f"etcd        {self.etcd.endpoint}" + (" (TLS, client certificates, auth on)" if self.pki else ""),
                 api]
        how = {"bmv2": " (simple_switch_grpc, launched by its agent)",
               "launched-reference": " (the reference target, launched by its agent)"}.get(self.switch, "")
        for node, ports in self.device_ports.items():
            lines.append(f"{node:<11} P4Runtime devices on " + ", ".join(f"{HOST}:{p}" for p in ports) + how)
        lines.append(f"logs        {self.data_dir}")
        return "\n".join(lines)
