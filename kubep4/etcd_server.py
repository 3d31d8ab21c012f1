"""Start and stop real etcd servers (tests and `kubep4 up`): one plaintext member as ever, or with
TLS (client certificates required), or a cluster of N members on loopback with peer TLS too.

    EtcdServer(data_dir=d).start()                          # http://127.0.0.1:<port>, as before
    EtcdServer(data_dir=d, tls=EtcdTLS(cert, key, ca)).start()  # https, --client-cert-auth
    EtcdCluster(3, data_dir=d, tls=EtcdTLS(...)).start()    # members kubep4-0..2, one data dir each

Each member is its own process, stopped by its PID (``stop``: SIGTERM; ``kill``: SIGKILL, as a
crash). ``EtcdCluster.leader()`` says which member leads.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, and never one this process handed out before.

    Callers pick several ports before any of their servers binds (a whole local stack): once
    closed, a port can come back from the kernel at once, and two servers would be given the
    same one (servers bind exclusively, so the second would stop at start).
    """
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass(frozen=True)
class EtcdTLS:
    """The files an etcd member serves with: its certificate and key (used for clients and peers,
    so issue it for both client and server use) and the CA whose certificates it accepts.
    ``client_cert_auth``: refuse clients without a certificate of that CA (with auth enabled, etcd
    then takes the certificate's CN as the user)."""
    cert: str
    key: str
    ca: str
    client_cert_auth: bool = True


@dataclass
class EtcdServer:
    """An etcd process on loopback with its own data dir. ``endpoint`` is host:port.

    ``tls``: serve clients over https (and peers, unless ``peer_tls`` says otherwise). A member of
    a cluster is given its ``name`` and the ``initial_cluster`` by ``EtcdCluster``."""

    data_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    peer_port: int = 0
    binary: str = "etcd"
    log_path: str | None = None
    tls: EtcdTLS | None = None
    peer_tls: EtcdTLS | None = None
    name: str = "kubep4"
    initial_cluster: str | None = None  # name=peer-url,...; None: this member alone
    cluster_token: str = "etcd-cluster"
    extra_args: tuple[str, ...] = ()  # more etcd flags (--max-txn-ops 1000 ...)
    proc: subprocess.Popen | None = field(default=None, init=False)
    _own_dir: bool = field(default=False, init=False)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def peer_url(self) -> str:
        return f"{'https' if (self.peer_tls or self.tls) else 'http'}://{self.host}:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _args(self, exe: str) -> list[str]:
        client, peer = self.client_url, self.peer_url
        args = [exe, "--name", self.name, "--data-dir", os.path.join(self.data_dir, "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", self.initial_cluster or f"{self.name}={peer}", "--log-level", "warn",
                # keep an hour of history (watch resume), then compact: history would fill the quota
                "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h"]
        if self.initial_cluster:
            args += ["--initial-cluster-state", "new", "--initial-cluster-token", self.cluster_token]
        if self.tls:
            args += ["--cert-file", self.tls.cert, "--key-file", self.tls.key,
                     "--trusted-ca-file", self.tls.ca]
            if self.tls.client_cert_auth:
                args.append("--client-cert-auth")
        peer_tls = self.peer_tls or self.tls
        if peer_tls:
            args += ["--peer-cert-file", peer_tls.cert, "--peer-key-file", peer_tls.key,
                     "--peer-trusted-ca-file", peer_tls.ca, "--peer-client-cert-auth"]
        return args + list(self.extra_args)

    def spawn(self) -> "EtcdServer":
        """Start the process without waiting for it to serve (a cluster starts every member first:
        none is healthy before a quorum is up)."""
        exe = shutil.which(self.binary) or (self.binary if os.path.exists(self.binary) else None)
        if exe is None:
            raise RuntimeError("etcd not found on PATH (Debian: apt-get install etcd-server)")
        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="kubep4-etcd-")
            self._own_dir = True
        self.port = self.port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path or os.path.join(self.data_dir, "etcd.log"), "ab")
        self.proc = subprocess.Popen(self._args(exe), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        return self

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.tls.ca)
        ctx.load_cert_chain(self.tls.cert, self.tls.key)  # the member's own cert is also a client cert
        return ctx

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=1, context=self._ssl()) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 20.0) -> "EtcdServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"etcd {self.name} exited with {code}; see {self.data_dir}/etcd.log")
            if self.healthy():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd {self.name} did not become healthy within {timeout}s")

    def start(self, timeout: float = 20.0) -> "EtcdServer":
        return self.spawn().wait_healthy(timeout)

    def status(self) -> dict:
        """Maintenance Status: member_id, leader, raft term... Over gRPC with TLS (etcd's HTTP
        gateway refuses a client certificate once auth is on), over its HTTP gateway without."""
        if self.tls:
            import grpc
            from aetcd.rpc import rpc_pb2, rpc_pb2_grpc
            from google.protobuf import json_format
            creds = grpc.ssl_channel_credentials(*(open(f, "rb").read() for f in (self.tls.ca, self.tls.key,
                                                                                  self.tls.cert)))
            try:
                with grpc.secure_channel(self.endpoint, creds) as ch:
                    r = rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=2)
            except grpc.RpcError as e:
                raise OSError(f"etcd {self.name}: status: {e.code().name}") from None
            return json_format.MessageToDict(r, preserving_proto_field_name=True)
        req = urllib.request.Request(f"{self.client_url}/v3/maintenance/status", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=2, context=self._ssl()) as r:
            return json.loads(r.read())

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait for exit (so the port can be reused); SIGKILL if it hangs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: no clean shutdown, no leadership handed over."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the member hangs, its connections open but silent (a frozen process, a dead link)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.resume()  # a paused member would not hear SIGTERM
        self.stop()
        if self._own_dir and self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


@dataclass
class EtcdCluster:
    """``size`` etcd members on loopback, each in ``<data_dir>/<name>``, peers over TLS when
    ``tls`` is given. ``endpoints`` are the members' host:port; ``endpoint`` all of them
    comma-separated (what ``--etcd`` takes)."""

    size: int = 3
    data_dir: str | None = None
    tls: EtcdTLS | None = None
    host: str = "127.0.0.1"
    binary: str = "etcd"
    extra_args: tuple[str, ...] = ()  # more etcd flags, for every member
    members: list[EtcdServer] = field(default_factory=list, init=False)
    _own_dir: bool = field(default=False, init=False)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def endpoint(self) -> str:
        return ",".join(self.endpoints)

    def start(self, timeout: float = 30.0) -> "EtcdCluster":
        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="kubep4-etcd-cluster-")
            self._own_dir = True
        token = f"kubep4-{os.getpid()}-{time.monotonic_ns()}"
        self.members = [EtcdServer(data_dir=os.path.join(self.data_dir, f"kubep4-{i}"), host=self.host,
                                   port=free_port(self.host), peer_port=free_port(self.host),
                                   binary=self.binary, tls=self.tls, name=f"kubep4-{i}", cluster_token=token,
                                   extra_args=self.extra_args)
                        for i in range(self.size)]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        try:
            for m in self.members:
                m.initial_cluster = initial
                m.spawn()
            for m in self.members:
                m.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def leader(self) -> int:
        """The index of the member that leads now (asked of the running members)."""
        for m in self.members:
            if m.proc is None or m.proc.poll() is not None:
                continue
            try:
                s = m.status()
            except OSError:
                continue
            if s.get("leader") and s["leader"] == s["header"]["member_id"]:
                return self.members.index(m)
        raise RuntimeError("no etcd member leads")

    def kill(self, index: int) -> None:
        """SIGKILL one member."""
        self.members[index].kill()

    def stop(self) -> None:
        for m in self.members:
            m.resume()
            m.stop()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
