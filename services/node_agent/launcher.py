"""Software switches the node agent runs per device, as KubeVirt's virt-launcher runs a VM.

One interface for every way a switch is run, a :class:`Launcher` (``start``, ``stop``, ``alive``):

* :class:`SwitchProcess`: a local process (BMv2's ``simple_switch_grpc``, the reference target,
  a T4P4S switch program) with its output kept in a log file per device. It runs in its own
  process group (``stop`` ends the whole group) under ``setpriv --pdeathsig KILL`` when util-linux
  is installed, the way ``kubep4.compilers.run`` runs compilers: the kernel kills the switch when
  the agent dies, even by SIGKILL, so no switch is orphaned.
* :class:`ContainerSwitch`: a container through the Docker SDK (``--switch-image``), the
  ``docker_launcher.SwitchContainer`` behind the same interface.

:class:`LaunchedSwitches` keeps them running with ``kubep4.supervisor`` (restart on exit with
back-off, reported in one line) and tells the agent after each restart, so the device is
reconciled at once (an empty switch is given its pipeline and entries again).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.supervisor import Child, Supervisor

log = logging.getLogger(__name__)

BMV2, T4P4S, REFERENCE = "bmv2", "t4p4s", "reference"
KINDS = (BMV2, T4P4S, REFERENCE)
BMV2_BINARY = "simple_switch_grpc"
T4P4S_CONTROLLER_PORT = 11111  # T4P4S_CTL_PORT of its examples
# how the T4P4S switch starts without hugepages on virtual devices (issue 15, facts from real builds)
T4P4S_ARGS = ("-c", "0x1", "-n", "4", "--no-huge", "-m", "1024", "--no-pci", "--no-telemetry",
              "--file-prefix", "{name}", "--vdev=net_null0", "--vdev=net_null1", "--",
              "-p", "0x3", "--config", "(0,0,0),(1,0,0)")


class LaunchError(Exception):
    """A switch could not be started (missing binary, it exited, it never became ready)."""


class NotRunnable(LaunchError):
    """The program cannot be executed at all (missing, not executable, not a program for this node)."""


class Launcher(Protocol):
    """A software switch for one device."""
    name: str

    def start(self, timeout: float = 20.0, cancel: threading.Event | None = None) -> None:
        """Start it and return once it is ready; raise LaunchError if it is not."""

    def stop(self) -> None:
        """Stop it (and everything it started); a stopped switch is not restarted."""

    def alive(self) -> bool: ...


def with_pdeathsig(argv: list[str]) -> list[str]:
    """``argv`` under ``setpriv --pdeathsig KILL`` (it execs in place: the switch itself gets the
    parent-death signal), as kubep4.compilers.run does for compilers; as it is without setpriv."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


def tcp_ready(address: str) -> Callable[[], bool]:
    """A readiness check: ``HOST:PORT`` accepts a TCP connection (a gRPC server listens)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"

    def ready() -> bool:
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return True
        except OSError:
            return False
    return ready


@dataclass
class SwitchProcess:
    """A switch process with its output in ``log_path`` (appended across restarts)."""
    name: str
    argv: list[str]
    log_path: str
    ready: Callable[[], bool] = lambda: True
    env: dict[str, str] | None = None
    cwd: str | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)
    starts: int = 0

    def start(self, timeout: float = 20.0, cancel: threading.Event | None = None) -> None:
        if self.alive():
            return
        os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
        with open(self.log_path, "ab", buffering=0) as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} kubep4 node agent starts {self.name}: "
                      f"{' '.join(self.argv)}\n".encode())
            try:
                self.popen = subprocess.Popen(with_pdeathsig(self.argv), stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                              start_new_session=True)
            except OSError as e:
                raise NotRunnable(f"{self.name}: cannot run {self.argv[0]}: {e}") from None
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.popen.poll() is not None:
                raise LaunchError(f"{self.name}: {self.argv[0]} exited with {self.popen.returncode}; "
                                  f"log: {self.log_path}\n{_tail(self.log_path)}")
            if cancel is not None and cancel.is_set():
                self.kill()
                raise LaunchError(f"{self.name}: start cancelled")
            if time.monotonic() > deadline:
                self.kill()
                raise LaunchError(f"{self.name}: {self.argv[0]} not ready after {timeout}s; log: {self.log_path}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL its process group and reap it."""
        if self.popen is None:
            return
        self._signal_group(signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM its process group, SIGKILL after ``grace`` seconds."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # whatever is left in its group


@dataclass
class ContainerSwitch:
    """``docker_launcher.SwitchContainer`` as a Launcher (``--switch-image``)."""
    name: str
    container: object  # a docker_launcher.SwitchContainer

    def start(self, timeout: float = 20.0, cancel: threading.Event | None = None) -> None:
        self.container.start()

    def stop(self) -> None:
        self.container.stop()

    def alive(self) -> bool:
        return self.container.container_id is not None


# ------------------------------------------------------------ command lines
def bmv2_argv(dev: kr.Device, thrift_port: int) -> list[str]:
    """simple_switch_grpc's command line for the device, with BMv2's real flags: target-independent
    ones, then ``--`` and simple_switch_grpc's own (gRPC address, TLS)."""
    launch = dev.launch
    argv = [launch.binary or BMV2_BINARY, "--device-id", str(dev.device_id), "--thrift-port", str(thrift_port)]
    for iface in launch.interfaces:
        argv += ["-i", iface]
    argv += [*launch.args, "--no-p4", "--", "--grpc-server-addr", dev.p4rt_address, *_tls_flags(dev)]
    return argv


def reference_argv(dev: kr.Device) -> list[str]:
    """The reference target serving the device at its address (its TLS flags are BMv2's)."""
    binary = [dev.launch.binary] if dev.launch.binary else [sys.executable, "-m", "kubep4.reftarget"]
    return [*binary, "--device", f"{dev.device_id}@{dev.p4rt_address}", *dev.launch.args, *_tls_flags(dev),
            "--log-level", "INFO"]


def t4p4s_argv(binary: str, dev: kr.Device) -> list[str]:
    """A T4P4S switch program's start command (DPDK EAL arguments, then its own after ``--``)."""
    args = list(dev.launch.args) or [a.format(name=f"kubep4-{dev.name}") for a in T4P4S_ARGS]
    return [binary, *args]


def _tls_flags(dev: kr.Device) -> list[str]:
    if not dev.tls.ca_file:
        return []
    flags = ["--grpc-server-ssl", "--grpc-server-cacert", dev.tls.ca_file, "--grpc-server-cert",
             dev.launch.server_cert, "--grpc-server-key", dev.launch.server_key]
    if dev.tls.cert_file:  # the agent shows a client certificate: the switch asks for one
        flags.append("--grpc-server-with-client-auth")
    return flags


def problem(dev: kr.Device) -> str:
    """Why the device's launch cannot work as given ("" when it can)."""
    launch = dev.launch
    if launch.kind not in KINDS:
        return f"launch={launch.kind} is not one of {', '.join(KINDS)}"
    if launch.kind == BMV2 and not shutil.which(launch.binary or BMV2_BINARY):
        return (f"launch=bmv2 needs {launch.binary or BMV2_BINARY} on PATH (BMv2's simple_switch_grpc: "
                "https://github.com/p4lang/behavioral-model, or the p4lang/behavioral-model image)")
    if launch.kind != T4P4S and dev.tls.ca_file and not (launch.server_cert and launch.server_key):
        return "a launched switch serving TLS needs its own certificate: give server_cert=FILE,server_key=FILE"
    return ""


def launch_problems(devices: list[kr.Device]) -> list[str]:
    """Why the agent cannot run these devices' switches, one line per problem (device by name)."""
    out = [f"device {d.name}: {why}" for d in devices if d.launch.kind and (why := problem(d))]
    ports: dict[int, str] = {}
    for d in devices:
        if d.launch.kind == T4P4S:  # the port is compiled into the switch: one controller per port
            port = d.launch.controller_port or T4P4S_CONTROLLER_PORT
            if port in ports:
                out.append(f"devices {ports[port]} and {d.name}: both T4P4S switches connect to controller "
                           f"port {port} (T4P4S_CTL_PORT is fixed when the switch is built): give each its own")
            ports[port] = d.name
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def switch_for(dev: kr.Device, launch_dir: str) -> SwitchProcess:
    """The process that serves a bmv2 or reference device (T4P4S switches are per pipeline: drivers)."""
    log_path = os.path.join(launch_dir, f"{dev.name}.log")
    if dev.launch.kind == BMV2:
        argv = bmv2_argv(dev, dev.launch.thrift_port or free_port())
    else:
        argv = reference_argv(dev)
    return SwitchProcess(dev.name, argv, log_path, tcp_ready(dev.p4rt_address))


# ------------------------------------------------------------ supervision
class LaunchedSwitches:
    """Every switch the agent launched, kept running by one Supervisor; ``on_restart(name)`` is
    called (from the supervisor's thread) after each restart."""

    def __init__(self, on_restart: Callable[[str], None], report: Callable[[str], None] | None = None,
                 ready_timeout: float = 20.0):
        self.switches: dict[str, Launcher] = {}
        self.on_restart = on_restart
        self.report = report or (lambda line: log.warning("%s", line))
        self.ready_timeout = ready_timeout
        self.supervisor: Supervisor | None = None

    def add(self, switch: Launcher) -> None:
        self.switches[switch.name] = switch

    def _child(self, s: Launcher) -> Child:
        def start(timeout: float, cancel: threading.Event) -> None:
            s.start(timeout, cancel)
            self.on_restart(s.name)
        exit_code = getattr(s, "exit_code", lambda: None)
        kill = getattr(s, "kill", s.stop)
        return Child(s.name, s.alive, exit_code, start, kill)

    def start(self) -> None:
        """Start every switch (blocking), then supervise them."""
        try:
            for s in self.switches.values():
                s.start(self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        self.supervisor = Supervisor([self._child(s) for s in self.switches.values()], self.report,
                                     ready_timeout=self.ready_timeout).start()

    def restart(self, name: str) -> bool:
        """Kill the switch of device ``name`` so that its supervisor starts it afresh (a wedged
        device); False when the agent did not launch it as a process of its own."""
        s = self.switches.get(name)
        if s is None or not hasattr(s, "kill") or self.supervisor is None:
            return False
        s.kill()
        return True

    def stop(self) -> None:
        """No restart after this; every switch stopped (its process group gone)."""
        if self.supervisor is not None:
            self.supervisor.stop()
        for s in self.switches.values():
            try:
                s.stop()
            except Exception as e:  # one that cannot be stopped must not keep the others running
                log.warning("switch %s: stop failed: %s", s.name, e)


def _tail(path: str, n: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""
