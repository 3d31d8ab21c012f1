"""kubep4-node-agent: flags / KUBEP4_* env -> Settings -> register, heartbeat, install."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import socket

import yaml
from google.protobuf import json_format

from kubep4 import config, serving, telemetry
from kubep4 import store as st
from kubep4.config import flag
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.informer import report_health
from services.node_agent import reads
from services.node_agent.agent import NodeAgent, Settings
from services.node_agent.faults import UPGRADE_METHODS
from services.node_agent.launcher import KINDS, launch_problems

log = logging.getLogger("kubep4.node_agent")


LAUNCH_KEYS = {"launch", "binary", "interfaces", "thrift_port", "controller_port", "args", "server_cert",
               "server_key"}


def parse_device(text: str) -> kr.Device:
    """name=dev0,address=127.0.0.1:9559,device_id=1,target=bmv2,arch=v1model,slots=1,labels=a:b;c:d,
    upgrade=save-commit|reconcile|recreate, role=P4RUNTIME_ROLE, and for P4Runtime over TLS ca=FILE[,cert=FILE,key=FILE]
    [,server_name=NAME]; a switch the agent runs for the device: launch=bmv2|reference|t4p4s with
    binary=PROGRAM, interfaces=0@veth0;1@veth1, thrift_port=N, controller_port=N (t4p4s), args=A;B (more
    arguments), server_cert=FILE,server_key=FILE (its own, for TLS). A t4p4s device needs no address."""
    fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    unknown = set(fields) - {"name", "address", "device_id", "target", "arch", "slots", "labels", "upgrade",
                             "ca", "cert", "key", "server_name", "role", *LAUNCH_KEYS}
    kind = fields.get("launch", "")
    if unknown or ("address" not in fields and kind != "t4p4s"):
        raise argparse.ArgumentTypeError(f"bad --device {text!r}: need address=HOST:PORT; "
                                         f"unknown keys {sorted(unknown)}" if unknown else
                                         f"bad --device {text!r}: address=HOST:PORT is required")
    labels = dict(kv.split(":", 1) for kv in fields.get("labels", "").split(";") if ":" in kv)
    upgrade = fields.get("upgrade", "")
    if upgrade and upgrade not in UPGRADE_METHODS:
        raise argparse.ArgumentTypeError(f"bad --device {text!r}: upgrade={upgrade} is not one of "
                                         f"{', '.join(UPGRADE_METHODS)}")
    if (fields.get("cert") or fields.get("key") or fields.get("server_name")) and not fields.get("ca"):
        raise argparse.ArgumentTypeError(f"bad --device {text!r}: cert, key and server_name are for TLS: "
                                         "give the device's ca=FILE too")
    if not kind and set(fields) & (LAUNCH_KEYS - {"launch"}):
        raise argparse.ArgumentTypeError(f"bad --device {text!r}: {', '.join(sorted(set(fields) & LAUNCH_KEYS))} "
                                         "are for a launched switch: give launch=bmv2|reference|t4p4s too")
    if kind and kind not in KINDS:
        raise argparse.ArgumentTypeError(f"bad --device {text!r}: launch={kind} is not one of {', '.join(KINDS)}")
    try:
        launch = kr.DeviceLaunch(kind=kind, binary=fields.get("binary", ""),
                                 interfaces=[i for i in fields.get("interfaces", "").split(";") if i],
                                 thrift_port=int(fields.get("thrift_port", 0)),
                                 controller_port=int(fields.get("controller_port", 0)),
                                 args=[a for a in fields.get("args", "").split(";") if a],
                                 server_cert=fields.get("server_cert", ""), server_key=fields.get("server_key", ""))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad --device {text!r}: {e}") from None
    tls = kr.DeviceTLS(ca_file=fields.get("ca", ""), cert_file=fields.get("cert", ""),
                       key_file=fields.get("key", ""), server_name=fields.get("server_name", ""))
    return kr.Device(name=fields.get("name", "dev0"), p4rt_address=fields.get("address", ""),
                     device_id=int(fields.get("device_id", 1)),
                     target=fields.get("target", "t4p4s" if kind == "t4p4s" else "bmv2"),
                     arch=fields.get("arch", "v1model"), pipeline_slots=int(fields.get("slots", 1)),
                     labels=labels, upgrade=upgrade, tls=tls, role=fields.get("role", ""), launch=launch)


def load_devices(path: str) -> list[kr.Device]:
    """A YAML file: `devices: [{name, p4rtAddress, deviceId, target, arch, pipelineSlots, labels}]`."""
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    return [json_format.ParseDict(d, kr.Device()) for d in doc.get("devices", [])]


def _pairs(parser: argparse.ArgumentParser, items: list[str], flag_name: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            parser.error(f"{flag_name} wants KEY=IMAGE, got {item!r}")
        out[key] = value
    return out


def published_address(listen: str, port: int, node_address: str) -> str:
    """Where the apiserver dials this node's read service: the listen host (the node's address when
    it listens on every interface) and the port it got."""
    host = listen.rpartition(":")[0]
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = node_address
    return f"{host}:{port}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kubep4-node-agent", description="KubeP4 node agent")
    config.etcd_flags(p)
    config.tls_flags(p)
    flag(p, "--allowed-clients", "KUBEP4_ALLOWED_CLIENTS", "kubep4-apiserver",
         help="with --tls-ca: the client certificate CNs the read service answers (comma-separated)")
    flag(p, "--node-name", "KUBEP4_NODE_NAME", socket.gethostname(), help="this node's name")
    flag(p, "--address", "KUBEP4_NODE_ADDRESS", socket.gethostname(), help="this node's address, as shown")
    flag(p, "--devices-file", "KUBEP4_DEVICES_FILE", "", help="YAML file listing the devices")
    p.add_argument("--device", action="append", type=parse_device, default=[],
                   help="name=dev0,address=HOST:PORT,device_id=1,target=bmv2,arch=v1model,slots=1,labels=k:v;k2:v2 "
                        "(repeatable; env KUBEP4_DEVICES: the same, separated by spaces)")
    flag(p, "--devices", "KUBEP4_DEVICES", "", help="devices as in --device, space-separated")
    flag(p, "--lease-ttl", "KUBEP4_LEASE_TTL", 10, type=int, help="heartbeat lease TTL, seconds")
    flag(p, "--resync", "KUBEP4_RESYNC", 5.0, type=float, help="seconds between device checks")
    flag(p, "--kubernetes-node", "KUBEP4_KUBERNETES_NODE", "", help="Kubernetes node this agent runs on")
    flag(p, "--health-listen", "KUBEP4_HEALTH_LISTEN", "", help="gRPC health endpoint (empty: none)")
    flag(p, "--read-listen", "KUBEP4_READ_LISTEN", "",
         help="serve live device values (counters, tables...) to the apiserver here (empty: no read service)")
    flag(p, "--read-address", "KUBEP4_READ_ADDRESS", "",
         help="host:port the apiserver dials for reads, published in the Node (default: --read-listen's; "
              "with --address's host when it listens on every interface)")
    flag(p, "--release-unreachable-after", "KUBEP4_RELEASE_UNREACHABLE_AFTER", 15.0, type=float,
         help="seconds a deleted placement waits for its unreachable device before it is released anyway "
              "(the device is cleared when it answers again)")
    flag(p, "--device-patience", "KUBEP4_DEVICE_PATIENCE", 0.0, type=float,
         help="seconds a device may not answer before its placements turn Unknown (DeviceUnreachable); "
              "0: at once, so status never claims what the agent cannot see")
    flag(p, "--retry-max", "KUBEP4_RETRY_MAX", 60.0, type=float,
         help="longest wait between tries of a failing device (the backoff starts at 0.5 s and doubles)")
    flag(p, "--status-report", "KUBEP4_STATUS_REPORT", 60.0, type=float,
         help="seconds between rewrites of the Node's status when nothing changed")
    p.add_argument("--no-prefetch", action="store_true",
                   help="do not load a new precompiled Pipeline's artifacts before a placement needs them")
    flag(p, "--max-write-batch", "KUBEP4_MAX_WRITE_BATCH", 1000, type=int,
         help="updates per P4Runtime Write; a larger install is sent in several")
    p.add_argument("--switch-image", action="append", default=[], metavar="DEVICE=IMAGE",
                   help="start this device's software switch in a container of IMAGE (BMv2 simple_switch_grpc "
                        "by default command) before connecting (repeatable)")
    flag(p, "--docker-url", "DOCKER_HOST", "", help="Docker engine URL (default: the environment's)")
    flag(p, "--launch-dir", "KUBEP4_LAUNCH_DIR", "",
         help="where launched switches keep their logs (DEVICE.log) and T4P4S switch programs "
              "(default: $TMPDIR/kubep4-launch-NODE)")
    flag(p, "--log-level", "KUBEP4_LOG_LEVEL", "INFO")
    args = p.parse_args(argv)
    config.setup_logging(args.log_level)
    devices = list(args.device) + [parse_device(t) for t in args.devices.split()]
    if args.devices_file:
        devices += load_devices(args.devices_file)
    if not devices:
        p.error("no devices: give --device, --devices or --devices-file")
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        p.error(f"device names must be unique on a node: {names}")
    for why in launch_problems(devices):  # a switch the agent cannot run fails the agent's start
        p.error(why)
    try:  # flags that need an extra fail at start, not later in the agent's loops
        if args.kubernetes_node:
            from services.node_agent import kube_resources  # noqa: F401
        if args.switch_image:
            from services.node_agent.docker_launcher import docker_sdk
            docker_sdk()
    except ImportError as e:
        p.error(str(e))
    try:
        etcd, service_tls = config.etcd_settings(args), config.tls_settings(args)
        read_credentials = service_tls.server_credentials()
        health_credentials = service_tls.health_credentials()
    except ValueError as e:
        p.error(str(e))
    allowed = frozenset(c.strip() for c in args.allowed_clients.split(",") if c.strip())
    settings = Settings(node_name=args.node_name, etcd=",".join(etcd.endpoints), etcd_tls=etcd.tls(),
                        devices=tuple(devices), address=args.address,
                        lease_ttl=args.lease_ttl, resync_seconds=args.resync,
                        kubernetes_node=args.kubernetes_node,
                        switch_images=_pairs(p, args.switch_image, "--switch-image"),
                        docker_url=args.docker_url, launch_dir=args.launch_dir,
                        release_unreachable_after=args.release_unreachable_after,
                        device_patience=args.device_patience, retry_max=args.retry_max,
                        status_report_seconds=args.status_report, prefetch=not args.no_prefetch,
                        max_write_batch=args.max_write_batch)

    async def run(stop: asyncio.Event) -> None:
        tel = telemetry.setup("kubep4-node-agent")
        health = servicer = None
        if args.health_listen:
            health, _, servicer = await serving.start_server(args.health_listen, lambda s: None, [],
                                                             credentials=health_credentials)
        read_server = device_reads = None
        read_address = ""
        if args.read_listen:
            read_server, read_port, device_reads = await reads.start(
                args.read_listen, devices, tel.server_interceptors(), read_credentials,
                allowed if service_tls.ca else None)
            read_address = args.read_address or published_address(args.read_listen, read_port, args.address)
            print(f"node reads listening on {args.read_listen.rpartition(':')[0]}:{read_port}", flush=True)
        async with st.Store(settings.etcd, tls=settings.etcd_tls) as store:
            agent = NodeAgent(store, dataclasses.replace(settings, read_address=read_address))
            task = asyncio.create_task(agent.run())
            reporting = asyncio.create_task(report_health(servicer, [agent.placements])) if servicer else None
            registered = asyncio.create_task(agent.registered.wait())
            await asyncio.wait({task, registered}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
            print(f"node agent started: {settings.node_name} with {len(devices)} device(s)", flush=True)
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            task.cancel()
            if reporting is not None:
                reporting.cancel()
            await asyncio.gather(task, *([reporting] if reporting else []), return_exceptions=True)
        if health is not None:
            await health.stop(1)
        if read_server is not None:
            await reads.stop(read_server, device_reads)
        tel.shutdown()

    serving.run(run)


if __name__ == "__main__":
    main()
