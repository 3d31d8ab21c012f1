"""Hollow nodes for `kubep4 bench scale`: many node agents in one process, with in-memory devices.

kubemark's idea applied to KubeP4: each hollow node *is* the real node agent
(services.node_agent.agent.NodeAgent) — the same registration (Node object, then its heartbeat lease
under /kubep4/leases/nodes/<node>), the same keep-alive loop, the same informer over its own placement
shard only (/kubep4/placements/<node>/...), the same device reconcile, status write-back
(``Running`` with observed_generation and cookie) and release of a placement with a
deletion_timestamp, the same Node status reports (NodeStatusReporter). Only the P4Runtime connection is
replaced: MemoryDevice drives an in-memory reference device (kubep4.reftarget.device.Device, the
device logic of the reference target without its gRPC server), so an install costs the control plane
what it costs with a real device, minus the device.

One asyncio loop runs them all (``python -m kubep4.bench.hollow``); every node counts the placement
watch events its informer delivers, and how many were about another node's placements (none, when the
shard holds). The counts are written as JSON to ``--stats`` when the process is stopped.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections import Counter

from google.rpc import code_pb2

from kubep4 import config, serving
from kubep4 import store as st
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import p4r
from kubep4.reftarget import device as refdev
from kubep4.reftarget.server import grpc_code
from services.node_agent.agent import NodeAgent, Settings
from services.node_agent.faults import NotPrimary, P4RuntimeError  # the agent's P4Runtime client's errors

log = logging.getLogger("kubep4.bench.hollow")
READY = "hollow nodes started"


class PipelineCache:
    """Validated pipelines shared by every in-memory device of the process, by cookie: 20,000 devices
    running one program hold one parsed P4Info, not 20,000 copies (a committed pipeline is read-only)."""

    def __init__(self) -> None:
        self._by_cookie: dict[int, tuple[p4r.ForwardingPipelineConfig, object]] = {}

    def get(self, p4info: bytes, device_config: bytes, cookie: int) -> tuple[p4r.ForwardingPipelineConfig, object]:
        hit = self._by_cookie.get(cookie)
        if hit is not None and hit[0].p4_device_config == device_config:
            return hit
        cfg = p4r.ForwardingPipelineConfig(p4_device_config=device_config)
        cfg.p4info.ParseFromString(p4info)
        cfg.cookie.cookie = cookie
        hit = self._by_cookie[cookie] = (cfg, refdev.validate_config(cfg))
        return hit


class MemoryDevice:
    """What services.node_agent.p4runtime_client.DeviceConnection offers the agent, on an in-memory
    reference device: arbitration as primary, the pipeline cookie, SetForwardingPipelineConfig
    (VERIFY_AND_COMMIT), Write (one p4.v1.Error per update when some fail) and Read."""

    def __init__(self, device_id: int, election_id: int, pipelines: PipelineCache):
        self.device = refdev.Device(device_id)
        self.device_id = device_id
        self.election_id = p4r.Uint128(high=election_id >> 64, low=election_id & ((1 << 64) - 1))
        self.pipelines = pipelines
        self.session: refdev.Session | None = None
        self.is_primary = False
        self.primary_election_id: int | None = None

    @property
    def connected(self) -> bool:
        return self.session is not None and self.is_primary

    def raise_election_id(self, above: int) -> None:
        if above >= refdev.election_id_of(self.election_id):
            self.election_id = refdev.uint128(above + 1)

    async def connect(self, timeout: float = 5.0) -> None:
        await self.close()
        self.session = refdev.Session()
        notes = self.device.arbitrate(self.session, p4r.MasterArbitrationUpdate(device_id=self.device_id,
                                                                               election_id=self.election_id))
        mine = next(m for s, m in notes if s is self.session)
        self.is_primary = mine.status.code == 0
        self.primary_election_id = refdev.election_id_of(mine.election_id)
        if not self.is_primary:
            raise NotPrimary(f"memory:{self.device_id}", self.device_id, self.primary_election_id)

    async def close(self) -> None:
        if self.session is not None:
            self.device.close_session(self.session)
        self.session, self.is_primary = None, False

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except refdev.P4RuntimeError as e:
            raise P4RuntimeError(f"memory:{self.device_id} {what}: {e.message}", grpc_code(e.code)) from None

    async def get_cookie(self) -> int | None:
        pipeline = self.device.pipeline
        return None if pipeline is None else pipeline.cookie

    async def set_pipeline(self, p4info: bytes, device_config: bytes, cookie: int,
                           action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT) -> None:
        self._call("SetForwardingPipelineConfig", self.device.check_primary, "", self.election_id)
        if action != p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT:
            raise P4RuntimeError(f"memory:{self.device_id}: only VERIFY_AND_COMMIT is simulated")
        cfg, index = self._call("SetForwardingPipelineConfig", self.pipelines.get, p4info, device_config, cookie)
        self.device._commit(cfg, index)  # what VERIFY_AND_COMMIT does, on the shared (read-only) pipeline

    async def write(self, updates: list[p4r.Update]) -> None:
        if not updates:
            return
        self._call("Write", self.device.check_primary, "", self.election_id)
        results = self._call("Write", self.device.write, updates)
        if any(r is not None for r in results):
            failed = sum(r is not None for r in results)
            raise P4RuntimeError(f"memory:{self.device_id} Write: UNKNOWN: {failed} of {len(results)} updates failed",
                                 grpc_code(code_pb2.UNKNOWN), [refdev.update_error(r) for r in results])

    async def read_entries(self, default_tables=()) -> list[p4r.TableEntry]:
        if self.device.pipeline is None:
            return []
        entities = [p4r.Entity(table_entry=p4r.TableEntry(table_id=0))]
        entities += [p4r.Entity(table_entry=p4r.TableEntry(table_id=t, is_default_action=True))
                     for t in sorted(set(default_tables))]
        return [e.table_entry for e in self._call("Read", self.device.read, entities)]


class Counts:
    """Placement watch events delivered to one hollow node's informer."""

    __slots__ = ("events", "foreign", "types")

    def __init__(self) -> None:
        self.events = 0    # ADDED / MODIFIED / DELETED delivered by the watch (not the list's SYNC)
        self.foreign = 0   # of those, about a placement of another node
        self.types: Counter = Counter()


class HollowNode(NodeAgent):
    """The real node agent with in-memory devices, counting what its placement watch delivers."""

    def __init__(self, store: st.Store, settings: Settings, pipelines: PipelineCache, fleet: "Fleet"):
        super().__init__(store, settings)
        for name, d in self.devices.items():
            self._dev[name].conn = MemoryDevice(d.device_id, self.election_id, pipelines)
        self.counts = Counts()
        self.fleet = fleet
        self._handle = self.placements.handler
        self.placements.handler = self._counted

    def _counted(self, etype: str, p: kr.Placement) -> None:
        if etype != "SYNC":
            c = self.counts
            c.events += 1
            c.types[etype] += 1
            # a DELETED event may carry only the key (the agent had forgotten the placement already):
            # no node to judge by, and the key is under this node's prefix, or the watch would not see it
            if p.spec.node and p.spec.node != self.node:
                c.foreign += 1
            if etype == "ADDED":
                self.fleet.added(time.time())
        self._handle(etype, p)


class Fleet:
    """Many hollow nodes on a few etcd clients, started in batches."""

    def __init__(self, etcd: str, nodes: int, devices_per_node: int, slots: int = 1, prefix: str = "hollow-",
                 lease_ttl: int = 30, resync_seconds: float = 60.0, status_report_seconds: float = 60.0,
                 nodes_per_client: int = 250, batch: int = 100):
        self.etcd, self.count, self.devices_per_node, self.slots = etcd, nodes, devices_per_node, slots
        self.prefix, self.lease_ttl, self.resync_seconds = prefix, lease_ttl, resync_seconds
        self.status_report_seconds = status_report_seconds
        self.nodes_per_client, self.batch = nodes_per_client, batch
        self.pipelines = PipelineCache()
        self.stores: list[st.Store] = []
        self.nodes: list[HollowNode] = []
        self.tasks: list[asyncio.Task] = []
        self.first_added = self.last_added = 0.0
        self.added_count = 0

    def added(self, t: float) -> None:
        self.first_added = self.first_added or t
        self.last_added = t
        self.added_count += 1

    def settings(self, i: int) -> Settings:
        devices = tuple(kr.Device(name=f"dev{d}", p4rt_address=f"memory:{i}/{d}",
                                  device_id=i * self.devices_per_node + d + 1, target="bmv2", arch="v1model",
                                  pipeline_slots=self.slots) for d in range(self.devices_per_node))
        return Settings(node_name=f"{self.prefix}{i}", etcd=self.etcd, devices=devices, address=f"hollow-{i}",
                        prefetch=False,  # the hollow devices share parsed pipelines (kubemark fakes the heavy part)
                        lease_ttl=self.lease_ttl, resync_seconds=self.resync_seconds,
                        status_report_seconds=self.status_report_seconds)

    async def start(self, progress=lambda s: None) -> None:
        for i in range(self.count):
            if i % self.nodes_per_client == 0:
                store = st.Store(self.etcd)
                await store.connect()
                self.stores.append(store)
            self.nodes.append(HollowNode(self.stores[-1], self.settings(i), self.pipelines, self))
        for start in range(0, self.count, self.batch):
            batch = self.nodes[start:start + self.batch]
            runners = [asyncio.create_task(n.run(workers=1), name=n.node) for n in batch]
            self.tasks += runners
            ready = asyncio.ensure_future(asyncio.gather(*(n.registered.wait() for n in batch),
                                                         *(n.placements.synced.wait() for n in batch)))
            await asyncio.wait([ready, *runners], return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                ready.cancel()
                self.check()
                raise RuntimeError("a hollow node stopped while starting")
            if (start // self.batch) % 10 == 9:
                progress(f"hollow nodes: {start + len(batch)}/{self.count} registered")

    def check(self) -> None:
        """Raise what killed a hollow node, if one died."""
        for t in self.tasks:
            if t.done() and not t.cancelled() and t.exception():
                raise t.exception()

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for s in self.stores:
            await s.close()

    def stats(self) -> dict:
        per_node = {n.node: {"events": n.counts.events, "foreign": n.counts.foreign, **n.counts.types}
                    for n in self.nodes}
        return {"nodes": len(self.nodes), "events": sum(v["events"] for v in per_node.values()),
                "foreign": sum(v["foreign"] for v in per_node.values()), "added": self.added_count,
                "first_added": self.first_added, "last_added": self.last_added, "per_node": per_node}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m kubep4.bench.hollow", description="many hollow node agents")
    p.add_argument("--etcd", required=True)
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--devices-per-node", type=int, default=2)
    p.add_argument("--slots", type=int, default=1, help="pipeline slots per device")
    p.add_argument("--prefix", default="hollow-", help="node names are PREFIX<i>")
    p.add_argument("--lease-ttl", type=int, default=30, help="heartbeat lease TTL, seconds (refreshed every third)")
    p.add_argument("--resync", type=float, default=60.0, help="seconds between device checks")
    p.add_argument("--status-report", type=float, default=60.0, help="seconds between Node status rewrites")
    p.add_argument("--stats", help="write the watch-event counts here (JSON) when stopped")
    p.add_argument("--log-level", default=os.environ.get("KUBEP4_LOG_LEVEL", "WARNING"))
    args = p.parse_args(argv)
    config.setup_logging(args.log_level)

    async def run(stop: asyncio.Event) -> None:
        fleet = Fleet(args.etcd, args.nodes, args.devices_per_node, args.slots, args.prefix, args.lease_ttl,
                      args.resync, args.status_report)
        try:
            t0 = time.monotonic()
            await fleet.start(lambda s: print(s, flush=True))
            print(f"{READY}: {args.nodes} nodes x {args.devices_per_node} devices in "
                  f"{time.monotonic() - t0:.1f}s", flush=True)
            while not stop.is_set():
                fleet.check()
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
        finally:
            await fleet.stop()
            if args.stats:
                with open(args.stats + ".tmp", "w") as f:
                    json.dump(fleet.stats(), f)
                os.replace(args.stats + ".tmp", args.stats)

    serving.run(run)


if __name__ == "__main__":
    main()
