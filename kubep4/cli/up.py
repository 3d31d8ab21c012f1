"""`kubep4 up`: run the whole stack as local processes until Ctrl-C / SIGTERM."""
from __future__ import annotations

import signal
import threading

from kubep4.localstack import LocalStack


def register(sub) -> None:
    u = sub.add_parser("up", help="run etcd and every service locally (Ctrl-C stops them)")
    u.add_argument("--nodes", type=int, default=2, help="node agents (default 2)")
    u.add_argument("--devices-per-node", type=int, default=1, help="reference devices per node (default 1)")
    u.add_argument("--controllers", type=int, default=1, help="controllers, leader-elected (default 1)")
    u.add_argument("--port", type=int, default=50051, help="apiserver port (default 50051)")
    u.add_argument("--data-dir", help="etcd data and logs (default: a new temporary dir)")
    u.set_defaults(fn=run, local=True)


def run(args) -> int:
    stack = LocalStack(nodes=args.nodes, devices_per_node=args.devices_per_node, controllers=args.controllers,
                       api_port=args.port, data_dir=args.data_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("starting the KubeP4 local stack...", flush=True)
    try:
        stack.start()
    except RuntimeError as e:
        print(f"Error: {e}")
        return 1
    print(stack.describe())
    print("ready: try `kubep4 apply -f examples/basic/deployment.yaml`; Ctrl-C stops everything", flush=True)
    while not stop.wait(0.5):
        dead = [p.name for p in stack.procs.values() if not p.alive()]
        if dead:
            print(f"stopping: {', '.join(dead)} exited (see logs in {stack.data_dir})")
            break
    print("stopping...", flush=True)
    stack.stop()
    print("stopped")
    return 0
