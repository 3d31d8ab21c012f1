"""What every KubeP4 gRPC service shares: server construction, health, reflection, signals."""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kubep4.config import GRPC_OPTIONS

log = logging.getLogger(__name__)


async def start_server(listen: str, register: Callable[[grpc.aio.Server], None], service_names: list[str],
                       interceptors: list | None = None) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A grpc.aio server on ``listen`` (port 0 picks one) with health checking and reflection."""
    server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=interceptors or [])
    register(server)
    health_servicer = health.aio.HealthServicer()
    for name in ["", *service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")
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


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop_event)`` until it returns; SIGTERM / SIGINT set the stop event."""
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
