"""kubep4-controller: flags / KUBEP4_* env -> Settings -> leader election -> reconcile."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from dataclasses import dataclass

from kubep4 import config, serving, telemetry
from kubep4 import store as st
from kubep4.config import flag
from kubep4.informer import report_health
from services.controller.controller import Controller
from services.controller.leader import LeaderElector
from services.controller.placement import Placer

log = logging.getLogger("kubep4.controller")


@dataclass(frozen=True)
class Settings:
    etcd: str
    identity: str
    leader_ttl: int = 5
    placement: str = "builtin"
    workers: int = 4
    health_listen: str = ""
    health_tls: object = None  # grpc server credentials of the health endpoint (None: plaintext)
    etcd_tls: object = None    # a kubep4.tls.ClientTLS for etcd, None for plaintext
    kube_namespace: str = "kubep4"
    kube_image: str = "registry.k8s.io/pause:3.9"
    kubeconfig: str = ""
    gc_interval: float = 60.0


def _placer(settings: Settings) -> Placer:
    if settings.placement == "builtin":
        return Placer()
    from services.controller.kube_placement import kubernetes_placer
    return kubernetes_placer(settings)


async def _close(placer) -> None:
    close = getattr(placer, "close", None)
    if close is not None:
        result = close()
        if asyncio.iscoroutine(result):
            await result


async def run(settings: Settings, stop: asyncio.Event) -> None:
    tel = telemetry.setup("kubep4-controller")
    health_server = health = None
    if settings.health_listen:
        health_server, port, health = await serving.start_server(settings.health_listen, lambda s: None, [],
                                                                 credentials=settings.health_tls)
        log.info("health on port %d", port)
    print(f"controller started ({settings.identity})", flush=True)
    async with st.Store(settings.etcd, tls=settings.etcd_tls) as store:
        elector = LeaderElector(store, settings.identity, settings.leader_ttl)
        while not stop.is_set():
            acquire = asyncio.create_task(elector.acquire())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({acquire, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                acquire.cancel()
                break
            print(f"controller {settings.identity} is leading", flush=True)
            store.fence = (elector.key, elector.lease_id)  # a deposed leader's writes are refused by etcd
            placer = _placer(settings)  # one per term: its watches start with the term and end with it
            controller = Controller(store, placer, settings.workers, settings.gc_interval)
            running = asyncio.create_task(controller.run())
            keeping = asyncio.create_task(elector.keep())
            tasks = {running, keeping, stopper}
            if health is not None:  # NOT_SERVING while the leader's caches cannot list or watch
                tasks.add(asyncio.create_task(report_health(
                    health, controller.view.informers)))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            store.fence = None
            await _close(placer)
            if running in done and not running.cancelled() and running.exception() is not None:
                log.error("controller failed: %r; giving up the lease", running.exception())
                await elector.release()  # let a healthy controller take over at once
            elif not stop.is_set():
                log.warning("leadership lost; campaigning again")
        await elector.release()
    if health_server is not None:
        await health_server.stop(1)
    tel.shutdown()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kubep4-controller", description="KubeP4 controller (leader-elected)")
    config.etcd_flags(p)
    config.tls_flags(p, ca=False)
    flag(p, "--id", "KUBEP4_CONTROLLER_ID", f"{socket.gethostname()}-{os.getpid()}", help="identity in elections")
    flag(p, "--leader-ttl", "KUBEP4_LEADER_TTL", 5, type=int, help="leader lease TTL, seconds")
    flag(p, "--placement", "KUBEP4_PLACEMENT", "builtin", help="builtin | kubernetes", choices=["builtin", "kubernetes"])
    flag(p, "--workers", "KUBEP4_WORKERS", 4, type=int, help="concurrent reconciles")
    flag(p, "--health-listen", "KUBEP4_HEALTH_LISTEN", "", help="gRPC health endpoint (empty: none)")
    flag(p, "--gc-interval", "KUBEP4_GC_INTERVAL", 60.0, type=float, help="seconds between artifact collections")
    flag(p, "--kube-namespace", "KUBEP4_KUBE_NAMESPACE", "kubep4", help="namespace of placement pods")
    flag(p, "--kube-image", "KUBEP4_KUBE_IMAGE", Settings.kube_image, help="image of placement pods")
    flag(p, "--kubeconfig", "KUBECONFIG", "", help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    flag(p, "--log-level", "KUBEP4_LOG_LEVEL", "INFO")
    args = p.parse_args(argv)
    config.setup_logging(args.log_level)
    if args.placement == "kubernetes":  # fail at start, not after winning the election
        try:
            from services.controller.kube_placement import load_configuration  # needs the kube extra
            load_configuration(kubeconfig=args.kubeconfig or None)
        except Exception as e:  # no kubeconfig, unreadable file: say so, no traceback
            p.error(str(e))
    try:
        etcd, service_tls = config.etcd_settings(args), config.tls_settings(args)
        health_tls = service_tls.health_credentials()
    except ValueError as e:
        p.error(str(e))
    settings = Settings(etcd=",".join(etcd.endpoints), etcd_tls=etcd.tls(), health_tls=health_tls, identity=args.id, leader_ttl=args.leader_ttl, placement=args.placement,
                        workers=args.workers, health_listen=args.health_listen, kube_namespace=args.kube_namespace,
                        kube_image=args.kube_image, kubeconfig=args.kubeconfig, gc_interval=args.gc_interval)
    serving.run(lambda stop: run(settings, stop))


if __name__ == "__main__":
    main()
