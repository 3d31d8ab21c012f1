"""Start and stop a real etcd server (tests and `kubep4 up`)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
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


@dataclass
class EtcdServer:
    """An etcd process on loopback with its own data dir. ``endpoint`` is host:port."""

    data_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    peer_port: int = 0
    binary: str = "etcd"
    log_path: str | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)
    _own_dir: bool = field(default=False, init=False)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "EtcdServer":
        exe = shutil.which(self.binary) or (self.binary if os.path.exists(self.binary) else None)
        if exe is None:
            raise RuntimeError("etcd not found on PATH (Debian: apt-get install etcd-server)")
        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="kubep4-etcd-")
            self._own_dir = True
        self.port = self.port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)
        client = f"http://{self.host}:{self.port}"
        peer = f"http://{self.host}:{self.peer_port}"
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path or os.path.join(self.data_dir, "etcd.log"), "ab")
        self.proc = subprocess.Popen(
            [exe, "--name", "kubep4", "--data-dir", os.path.join(self.data_dir, "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"kubep4={peer}", "--log-level", "warn",
             # keep an hour of history (watch resume), then compact: history would fill the quota
             "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}; see {self.data_dir}/etcd.log")
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=1) as r:
                    if b'"true"' in r.read():
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd did not become healthy within {timeout}s")

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

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
