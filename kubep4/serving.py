"""What every KubeP4 gRPC service shares: server construction, health, reflection, signals."""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kubep4.config import GRPC_OPTIONS

log = logging.getLogger(__name__)

# gRPC's Python server sets SO_REUSEPORT by default: a second server on a port another one holds would
# bind without a word and the kernel would spread clients over both.  Every KubeP4 server turns it off.
SERVER_OPTIONS = [*GRPC_OPTIONS, ("grpc.so_reuseport", 0)]


class ListenError(OSError):
    """A server cannot bind its listen address (most often: another process holds the port)."""


def _bind_problem(listen: str) -> str:
    """Why ``listen`` cannot be bound, found by binding a plain socket (gRPC only says "Failed to bind")."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit():
        return "not a host:port address"
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(addr)
    except socket.gaierror as e:
        return f"cannot resolve {host!r} ({e.strerror})"
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return f"port {port} is already in use (is another instance running?)"
        return os.strerror(e.errno) if e.errno else str(e)
    return "gRPC could not bind it"


def bind(server: grpc.aio.Server, listen: str) -> int:
    """``server.add_insecure_port(listen)``, raising :class:`ListenError` naming the address and the cause."""
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError:  # grpcio >= 1.60 raises "Failed to bind to address ..."
        port = 0
    if not port:
        raise ListenError(f"cannot listen on {listen}: {_bind_problem(listen)}")
    return port


async def start_server(listen: str, register: Callable[[grpc.aio.Server], None], service_names: list[str],
                       interceptors: list | None = None) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A grpc.aio server on ``listen`` (port 0 picks one) with health checking and reflection.

    The port is exclusive (no SO_REUSEPORT): :class:`ListenError` when another process holds it.
    """
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors or [])
    register(server)
    health_servicer = health.aio.HealthServicer()
    for name in ["", *service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        port = bind(server, listen)
    except ListenError:
        await server.stop(None)
        raise
    await server.start()
    return server, port, health_servicer


async def run_all(*coros: Awaitable) -> None:
    """Run coroutines together until one fails or this is cancelled; then cancel the rest and wait."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _program() -> str:
    """The program's name: ``kubep4-apiserver``, or ``apiserver`` under ``python -m services.apiserver``."""
    path = sys.argv[0] if sys.argv and sys.argv[0] else "kubep4"
    name = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if name == "__main__.py" else name


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop_event)`` until it returns; SIGTERM / SIGINT set the stop event.

    A :class:`ListenError` ends the process with status 1 and a one-line message, no traceback.
    """
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(runner())
    except KeyboardInterrupt:
        pass
    except ListenError as e:
        print(f"{_program()}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
