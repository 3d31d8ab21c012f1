"""`kubep4 bench deploy | schedule | scale | compile | faults`."""
from __future__ import annotations


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks: deploy latency, scheduling at scale, compile time, faults")
    bs = b.add_subparsers(dest="bench", required=True)
    d = bs.add_parser("deploy", help="create->Running latency on the local stack, per hop, against the floor")
    d.add_argument("--nodes", type=int, default=2)
    d.add_argument("--devices-per-node", type=int, default=4)
    d.add_argument("--count", type=int, default=50, help="deployments per phase (default 50)")
    d.add_argument("--concurrency", type=int, default=8, help="workers in the concurrent phase (default 8)")
    d.add_argument("--no-traces", action="store_true", help="no tracing (no per-hop breakdown)")
    d.add_argument("--switch", choices=("reference", "bmv2"), default="reference",
                   help="the devices: reference targets, or real BMv2 switches the agents launch "
                        "(simple_switch_grpc on PATH)")
    d.add_argument("--insecure", action="store_true",
                   help="plaintext everywhere (the default is the secure stack: TLS on every hop, etcd auth)")
    d.add_argument("--etcd-dir", help="parent dir for etcd's data (e.g. /dev/shm to take disk fsync out)")
    d.add_argument("--timeout", type=float, default=30.0)
    d.add_argument("--json", metavar="FILE")
    d.add_argument("--plot", metavar="FILE.png")
    d.set_defaults(fn=_deploy, local=True)
    s = bs.add_parser("schedule", help="the schedulers alone on simulated clusters (100 to 5,000 nodes)",
                      add_help=False)
    s.set_defaults(fn=_schedule, local=True, args=[])  # its own flags pass through (see cli.main)
    c = bs.add_parser("compile", help="compile the example programs with every available backend: medians, "
                                      "phases, peak RSS, and which backends are missing")
    c.add_argument("--programs", nargs="*", help="P4 files (default: the three example programs)")
    c.add_argument("--repeat", type=int, default=3, help="runs per program and backend (default 3)")
    c.add_argument("--timeout", type=float, default=600.0, help="seconds a compile phase may take (default 600)")
    c.add_argument("--compiler-image", action="append", default=[], metavar="BACKEND=IMAGE",
                   help="run a backend in this container image when it is not on PATH")
    c.add_argument("--json", metavar="FILE")
    c.set_defaults(fn=_compile, local=True)
    sc = bs.add_parser("scale", help="the real apiserver, etcd and controller against many hollow nodes "
                                     "(kubemark style): latency, decisions/s, CPU, RSS, etcd size, watch events")
    sc.add_argument("--nodes", type=int, default=50, help="hollow nodes (default 50)")
    sc.add_argument("--devices-per-node", type=int, default=2, help="in-memory devices per node (default 2)")
    sc.add_argument("--slots", type=int, default=0,
                    help="pipeline slots per device (default: enough for every deployment)")
    sc.add_argument("--deployments", type=int, default=200, help="deployments created, 1 replica each (default 200)")
    sc.add_argument("--rate", type=float, default=50.0, help="deployments created per second (default 50; 0: at once)")
    sc.add_argument("--lease-ttl", type=int, default=30,
                    help="hollow nodes' heartbeat lease TTL, seconds, refreshed every third (default 30)")
    sc.add_argument("--no-traces", action="store_true", help="no controller spans (no decisions/s figure)")
    sc.add_argument("--etcd-dir", help="parent dir for etcd's data (e.g. /dev/shm to take disk fsync out)")
    sc.add_argument("--timeout", type=float, default=120.0,
                    help="give up when no deployment became Running for this many seconds (default 120)")
    sc.add_argument("--profile-controller", metavar="FILE.pstats",
                    help="run the controller under cProfile and report where its time went (slows it down)")
    sc.add_argument("--json", metavar="FILE")
    sc.set_defaults(fn=_scale, local=True)
    f = bs.add_parser("faults", help="SIGKILL each service (and etcd) mid-stream: lost, duplicated, stuck, "
                                     "convergence time")
    f.add_argument("--faults", help="comma-separated, from none,apiserver,admission,controller,agent,device,etcd "
                                    "(default: all)")
    f.add_argument("--when", default="mid,quiet",
                   help="when each kill lands: mid (halfway through the stream), quiet (once everything "
                        "converged: a restart must not undo work); comma-separated (default mid,quiet)")
    f.add_argument("--count", type=int, default=60, help="deployments created per fault (default 60)")
    f.add_argument("--seconds", type=float, default=10.0, help="over how long they are created (default 10)")
    f.add_argument("--delete-every", type=int, default=5, help="delete every Nth again shortly after (default 5)")
    f.add_argument("--replicas", type=int, default=2, help="replicas per deployment (default 2)")
    f.add_argument("--nodes", type=int, default=2)
    f.add_argument("--devices-per-node", type=int, default=2)
    f.add_argument("--timeout", type=float, default=60.0, help="seconds from the kill to convergence (default 60)")
    f.add_argument("--json", metavar="FILE")
    f.set_defaults(fn=_faults, local=True)


def _deploy(args) -> int:
    from kubep4.bench import deploy
    return deploy.main(args)


def _schedule(args) -> int:
    from kubep4.bench import schedule as bench_schedule
    return bench_schedule.main(args.args)


def _scale(args) -> int:
    from kubep4.bench import scale
    return scale.main(args)


def _faults(args) -> int:
    from kubep4.bench import faults
    return faults.main(args)


def _compile(args) -> int:
    from kubep4.bench import compile as bench_compile
    return bench_compile.main(args)
