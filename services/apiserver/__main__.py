"""kubep4-apiserver: flags / KUBEP4_* env -> Settings -> serve."""
from __future__ import annotations

import argparse
import asyncio

from kubep4 import config, serving, telemetry
from kubep4.config import flag
from services.apiserver.server import Settings, create_server, shutdown


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kubep4-apiserver", description="KubeP4 public gRPC API")
    flag(p, "--listen", "KUBEP4_LISTEN", config.DEFAULT_API, help="gRPC listen address")
    flag(p, "--etcd", "KUBEP4_ETCD", config.DEFAULT_ETCD, help="etcd endpoint host:port")
    flag(p, "--admission", "KUBEP4_ADMISSION", config.DEFAULT_ADMISSION, help="admission service address")
    config.secret_flag(p, "--token", "KUBEP4_TOKEN", help="the bearer token to require (none: no authentication)")
    flag(p, "--etcd-quota-bytes", "KUBEP4_ETCD_QUOTA_BYTES", Settings.etcd_quota_bytes, type=int,
         help="etcd's --quota-backend-bytes (its default: 2 GiB)")
    flag(p, "--storage-guard", "KUBEP4_STORAGE_GUARD", Settings.storage_guard, type=float,
         help="refuse creates and updates above this fraction of etcd's quota (0: never)")
    flag(p, "--log-level", "KUBEP4_LOG_LEVEL", "INFO")
    args = p.parse_args(argv)
    config.setup_logging(args.log_level)
    settings = Settings(listen=args.listen, etcd=args.etcd, admission=args.admission,
                        token=config.read_secret(args, "--token"),
                        etcd_quota_bytes=args.etcd_quota_bytes, storage_guard=args.storage_guard)

    async def run(stop: asyncio.Event) -> None:
        tel = telemetry.setup("kubep4-apiserver")
        server, port, store, channel = await create_server(settings, tel)
        print(f"kubep4-apiserver listening on {settings.listen.rpartition(':')[0]}:{port}", flush=True)
        await stop.wait()
        await shutdown(server, store, channel)
        tel.shutdown()

    serving.run(run)


if __name__ == "__main__":
    main()
