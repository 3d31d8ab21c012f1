"""kubep4-builder: flags / KUBEP4_* env -> compile every source Pipeline once per digest.

Several builders may run: a digest is claimed in etcd by the one compiling it (see builder.py).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket

from kubep4 import config, serving, telemetry
from kubep4 import store as st
from kubep4.compilers import Limits, Toolchain
from kubep4.config import flag
from kubep4.informer import report_health
from services.builder.builder import Builder

log = logging.getLogger("kubep4.builder")


def _pairs(parser: argparse.ArgumentParser, items: list[str], flag_name: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            parser.error(f"{flag_name} wants BACKEND=IMAGE, got {item!r}")
        out[key] = value
    return out


async def run(args: argparse.Namespace, etcd: config.EtcdSettings, toolchain: Toolchain,
              stop: asyncio.Event, health_tls=None) -> None:
    tel = telemetry.setup("kubep4-builder")
    health_server = health = None
    if args.health_listen:
        health_server, port, health = await serving.start_server(args.health_listen, lambda s: None, [],
                                                                 credentials=health_tls)
        log.info("health on port %d", port)
    for backend, (how, why) in toolchain.availability().items():
        log.info("backend %s: %s", backend, how or f"unavailable: {why}")
    async with st.Store(**etcd.store_args()) as store:
        builder = Builder(store, toolchain, args.id, workers=args.workers, claim_ttl=args.claim_ttl,
                          work_dir=args.work_dir)
        print(f"builder started ({args.id})", flush=True)
        tasks = {asyncio.create_task(builder.run()), asyncio.create_task(stop.wait())}
        if health is not None:  # NOT_SERVING while the Pipeline informer cannot list or watch
            tasks.add(asyncio.create_task(report_health(health, [builder.pipelines])))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        failed = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    if health_server is not None:
        await health_server.stop(1)
    tel.shutdown()
    if failed:  # exit non-zero: the supervisor (kubep4 up, Kubernetes) restarts it
        log.error("builder failed: %r", failed[0])
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kubep4-builder",
                                description="KubeP4 builder: compiles source Pipelines once per digest")
    config.etcd_flags(p)
    config.tls_flags(p, ca=False)  # the health endpoint's certificate
    flag(p, "--id", "KUBEP4_BUILDER_ID", f"{socket.gethostname()}-{os.getpid()}",
         help="identity in build claims (a restart under the same one takes over its claims at once)")
    flag(p, "--workers", "KUBEP4_BUILDER_WORKERS", 2, type=int, help="compiles at once")
    flag(p, "--claim-ttl", "KUBEP4_BUILDER_CLAIM_TTL", 10, type=int,
         help="TTL of the lease holding this builder's claims, seconds (a dead builder's claims go after it)")
    flag(p, "--work-dir", "KUBEP4_BUILDER_WORK_DIR", "", help="where compiles run (default: TMPDIR/kubep4-builder)")
    flag(p, "--compile-timeout", "KUBEP4_COMPILE_TIMEOUT", 600.0, type=float,
         help="seconds a compile phase may take (wall clock and CPU)")
    flag(p, "--compile-memory-mb", "KUBEP4_COMPILE_MEMORY_MB", 4096, type=int,
         help="address-space limit of each compiler process, MiB")
    flag(p, "--max-device-config", "KUBEP4_MAX_DEVICE_CONFIG", 4 << 20, type=int,
         help="largest T4P4S switch program stored as a device config, bytes")
    p.add_argument("--compiler-image", action="append", default=[], metavar="BACKEND=IMAGE",
                   help="run a compiler backend in this container image when it is not on PATH (repeatable)")
    flag(p, "--docker-url", "KUBEP4_DOCKER_URL", "", help="Docker engine (default: the environment's)")
    flag(p, "--health-listen", "KUBEP4_HEALTH_LISTEN", "", help="gRPC health endpoint (empty: none)")
    flag(p, "--log-level", "KUBEP4_LOG_LEVEL", "INFO")
    args = p.parse_args(argv)
    config.setup_logging(args.log_level)
    try:
        etcd = config.etcd_settings(args)
        health_tls = config.tls_settings(args).health_credentials()
    except ValueError as e:
        p.error(str(e))
    if args.workers < 1:
        p.error("--workers must be at least 1")
    toolchain = Toolchain(images=_pairs(p, args.compiler_image, "--compiler-image"),
                          docker_url=args.docker_url or None,
                          limits=Limits(seconds=args.compile_timeout, memory_bytes=args.compile_memory_mb << 20),
                          max_device_config=args.max_device_config)
    serving.run(lambda stop: run(args, etcd, toolchain, stop, health_tls))


if __name__ == "__main__":
    main()
