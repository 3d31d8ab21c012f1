"""``kubep4-reftarget``: run P4Runtime reference devices until SIGTERM/SIGINT.

    kubep4-reftarget --device 1@127.0.0.1:9559 --device 2@127.0.0.1:9560

Prints ``device <id> listening on <host>:<port>`` per device once it serves.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from kubep4.config import flag
from kubep4.p4 import p4r
from kubep4.reftarget.device import MAX_BATCH
from kubep4.reftarget.server import serve

DEFAULT_DEVICE = "1@127.0.0.1:9559"


def parse_device(spec: str) -> tuple[int, str, int]:
    """``ID@HOST:PORT`` (IPv6 hosts in brackets) -> (device_id, host, port)."""
    try:
        ident, _, address = spec.partition("@")
        host, sep, port = address.rpartition(":")
        if not sep or not host or not ident:
            raise ValueError
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        device_id, port_no = int(ident), int(port)
        if device_id < 0 or not 0 <= port_no <= 65535:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DEVICE_ID@HOST:PORT, got {spec!r}") from None
    return device_id, host, port_no


ENTITY_KINDS = tuple(f.name for f in p4r.Entity.DESCRIPTOR.oneofs_by_name["entity"].fields)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubep4-reftarget",
                                description="In-memory P4Runtime reference target (no data plane).")
    p.add_argument("--device", action="append", type=parse_device, metavar="ID@HOST:PORT",
                   help=f"serve a device (repeatable; default {DEFAULT_DEVICE}; port 0 picks a free port)")
    flag(p, "--max-batch", "KUBEP4_REFTARGET_MAX_BATCH", MAX_BATCH, type=int,
         help="updates of a Write (entities of a Read) beyond which it is refused whole")
    p.add_argument("--unimplemented", action="append", default=[], metavar="KIND", choices=ENTITY_KINDS,
                   help="refuse writes and reads of this entity kind with UNIMPLEMENTED, as a switch "
                        "lacking it does (repeatable; e.g. register_entry, as a real BMv2)")
    # TLS as BMv2's simple_switch_grpc takes it
    p.add_argument("--grpc-server-ssl", action="store_true", help="serve P4Runtime over TLS only")
    p.add_argument("--grpc-server-cacert", metavar="FILE", help="CA that signs client certificates")
    p.add_argument("--grpc-server-cert", metavar="FILE", help="the server's certificate (PEM)")
    p.add_argument("--grpc-server-key", metavar="FILE", help="the server's private key (PEM)")
    p.add_argument("--grpc-server-with-client-auth", action="store_true",
                   help="refuse a client without a certificate signed by --grpc-server-cacert (mTLS)")
    p.add_argument("--wedge-on-reconcile", action="store_true",
                   help="stand in for BMv2 through PI: RECONCILE_AND_COMMIT of a program with an indexed "
                        "counter or meter fails and wedges the device until it restarts")
    p.add_argument("--log-level", default="WARNING", help="Python logging level for stderr (default WARNING)")
    return p


async def run(devices: list[tuple[int, str, int]], max_batch: int = MAX_BATCH,
              unimplemented: frozenset[str] = frozenset(), wedge_on_reconcile: bool = False,
              credentials=None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    target = await serve(devices, max_batch, unimplemented, wedge_on_reconcile, credentials)
    try:
        for device_id, host, _ in devices:
            print(f"device {device_id} listening on {target.address(device_id)}", flush=True)
        await stop.wait()
    finally:
        await target.stop(grace=1.0)


def tls_credentials(args: argparse.Namespace):
    """A maker of server credentials (one per device's port) from the BMv2-style flags; None for
    plaintext. The files are checked at once."""
    if not args.grpc_server_ssl:
        if args.grpc_server_cert or args.grpc_server_key or args.grpc_server_with_client_auth:
            raise ValueError("--grpc-server-cert/--grpc-server-key/--grpc-server-with-client-auth need "
                             "--grpc-server-ssl")
        return None
    if not (args.grpc_server_cert and args.grpc_server_key):
        raise ValueError("--grpc-server-ssl needs --grpc-server-cert and --grpc-server-key")
    from kubep4.tls import server_credentials

    def credentials():
        return server_credentials(args.grpc_server_cert, args.grpc_server_key, args.grpc_server_cacert,
                                  require_client_auth=args.grpc_server_with_client_auth)
    credentials()  # an unusable file is named now, before anything listens
    return credentials


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    devices = args.device or [parse_device(DEFAULT_DEVICE)]
    try:
        credentials = tls_credentials(args)
        asyncio.run(run(devices, args.max_batch, frozenset(args.unimplemented), args.wedge_on_reconcile,
                        credentials))
    except (OSError, ValueError) as e:
        print(f"kubep4-reftarget: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
