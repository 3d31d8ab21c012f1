"""`kubep4 bench deploy | schedule | compile`."""
from __future__ import annotations


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks: deploy latency, scheduling at scale, compile time")
    bs = b.add_subparsers(dest="bench", required=True)
    d = bs.add_parser("deploy", help="create->Running latency on the local stack, per hop, against the floor")
    d.add_argument("--nodes", type=int, default=2)
    d.add_argument("--devices-per-node", type=int, default=4)
    d.add_argument("--count", type=int, default=50, help="deployments per phase (default 50)")
    d.add_argument("--concurrency", type=int, default=8, help="workers in the concurrent phase (default 8)")
    d.add_argument("--no-traces", action="store_true", help="no tracing (no per-hop breakdown)")
    d.add_argument("--etcd-dir", help="parent dir for etcd's data (e.g. /dev/shm to take disk fsync out)")
    d.add_argument("--timeout", type=float, default=30.0)
    d.add_argument("--json", metavar="FILE")
    d.add_argument("--plot", metavar="FILE.png")
    d.set_defaults(fn=_deploy, local=True)
    s = bs.add_parser("schedule", help="the schedulers alone on simulated clusters (100 to 5,000 nodes)",
                      add_help=False)
    s.set_defaults(fn=_schedule, local=True, args=[])  # its own flags pass through (see cli.main)
    c = bs.add_parser("compile", help="compile the example programs with every available backend")
    c.add_argument("--programs", nargs="*", help="P4 files (default: examples/*/*.p4)")
    c.add_argument("--repeat", type=int, default=3)
    c.add_argument("--json", metavar="FILE")
    c.set_defaults(fn=_compile, local=True)


def _deploy(args) -> int:
    from kubep4.bench import deploy
    return deploy.main(args)


def _schedule(args) -> int:
    from services.controller import bench_schedule
    return bench_schedule.main(args.args)


def _compile(args) -> int:
    from kubep4.bench import compile as bench_compile
    return bench_compile.main(args)
