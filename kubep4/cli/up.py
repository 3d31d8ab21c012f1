"""`kubep4 up`: run the whole stack as local processes until Ctrl-C / SIGTERM.

Like a kubelet, it restarts a process that exits (etcd included), with back-off, and says so in one
line (kubep4.supervisor); only Ctrl-C or SIGTERM stops the stack."""
from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time

from kubep4 import clientconfig
from kubep4.localstack import LocalStack
from kubep4.otlp_receiver import OTLPReceiver


class TraceCollector:
    """An OTLP receiver and Jaeger-style query API on a background event loop."""

    def __init__(self, query_port: int):
        self.query_port = query_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="trace-collector")
        self.receiver = OTLPReceiver()
        self._runner = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result()
        self._runner = asyncio.run_coroutine_threadsafe(
            self.receiver.serve_query_api(port=self.query_port), self.loop).result()

    @property
    def endpoint(self) -> str:
        return self.receiver.endpoint

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result()
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)


def register(sub) -> None:
    u = sub.add_parser("up", help="run etcd and every service locally (Ctrl-C stops them)")
    u.add_argument("--nodes", type=int, default=2, help="node agents (default 2)")
    u.add_argument("--devices-per-node", type=int, default=1, help="reference devices per node (default 1)")
    u.add_argument("--controllers", type=int, default=1, help="controllers, leader-elected (default 1)")
    u.add_argument("--port", type=int, default=50051, help="apiserver port (default 50051)")
    u.add_argument("--data-dir", help="etcd data and logs (default: a new temporary dir)")
    u.add_argument("--traces", action="store_true",
                   help="collect every service's spans here and serve them like Jaeger's query API "
                        "(for `kubep4 trace` on a machine with no Jaeger)")
    u.add_argument("--jaeger-port", type=int, default=16686, help="port of that query API (default 16686)")
    u.add_argument("--etcd-members", type=int, default=1,
                   help="etcd members on loopback (3: a cluster that survives losing any one; default 1)")
    u.add_argument("--switch", choices=("reference", "bmv2"), default="reference",
                   help="the devices' switches: the reference target (default), or BMv2's simple_switch_grpc "
                        "launched by each node agent per device (it must be on PATH)")
    u.add_argument("--insecure", action="store_true",
                   help="plaintext everywhere, no certificates, etcd without auth: for debugging only")
    u.set_defaults(fn=run, local=True)


def run(args) -> int:
    if args.switch == "bmv2" and not shutil.which("simple_switch_grpc"):
        print("Error: --switch bmv2 needs BMv2's simple_switch_grpc on PATH, and it is not there: install "
              "behavioral-model (https://github.com/p4lang/behavioral-model, built with --with-pi and "
              "the gRPC target, or Debian/Ubuntu's p4lang packages) and put its bin directory on PATH; "
              "or run `kubep4 up` without --switch for the reference target")
        return 2
    collector = TraceCollector(args.jaeger_port) if args.traces else None
    env = {}
    if collector is not None:
        collector.start()
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    if args.etcd_members < 1 or args.etcd_members % 2 == 0:
        print(f"Error: --etcd-members {args.etcd_members}: give an odd number (1, 3, 5): an even one "
              "survives no more losses than the odd number below it")
        return 2
    stack = LocalStack(nodes=args.nodes, devices_per_node=args.devices_per_node, controllers=args.controllers,
                       api_port=args.port, data_dir=args.data_dir, env=env, supervise=True,
                       secure=not args.insecure, etcd_members=args.etcd_members, switch=args.switch)
    # the handler only appends: it runs on the main thread between any two bytecodes, and a lock it
    # took there (threading.Event.set) could be the one the interrupted code holds: a deadlock
    signals: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: signals.append(signum))
    print("starting the KubeP4 local stack...", flush=True)
    try:
        stack.start()
    except RuntimeError as e:
        print(f"Error: {e}")
        return 1
    print(stack.describe())
    if stack.pki is not None:
        config = clientconfig.path_from()
        stack.write_client_config(config)
        print(f"client      {config}: context kubep4-local (the CLI and the SDK use it; --insecure: none)")
    else:
        print("WARNING: --insecure: every port is plaintext and open to anyone on this host", flush=True)
    if collector is not None:
        print(f"traces      OTLP in at {collector.endpoint}; query API at http://127.0.0.1:{args.jaeger_port} "
              f"(kubep4 trace deployment NAME)")
    print("ready: try `kubep4 apply -f examples/basic/deployment.yaml`; Ctrl-C stops everything "
          "(a process that exits is restarted)", flush=True)
    while not signals:  # the supervisor restarts what exits; only a signal ends this
        time.sleep(0.2)
    print("stopping...", flush=True)
    stack.stop()
    if collector is not None:
        collector.stop()
    print("stopped")
    return 0
