"""The node agent: registers its node and devices, and makes each device match its placements.

Per device the desired state is: the pipeline of its placements (cookie derived
from the pipeline digest) plus the union of their deployments' table entries.
Reconciles are level-triggered: on placement events, when a device's stream
breaks, and on a periodic cookie check (a rebooted switch has no pipeline).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import grpc
from opentelemetry import trace

from kubep4 import store as st
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.informer import Informer, WorkQueue, run_workers
from kubep4.p4 import EntryError, P4InfoIndex, cookie_for_digest, parse_p4info, to_p4_entry
from kubep4.serving import run_all
from kubep4.telemetry import WRITTEN_AT, extract_context, record_delivery
from services.node_agent.compiler import CompileError, Compiler
from services.node_agent.p4runtime_client import DeviceConnection, P4RuntimeError, entry_key

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.node_agent")
PIPELINE_CACHE_SIZE = 32  # compiled/loaded pipelines kept in memory


@dataclass(frozen=True)
class Settings:
    node_name: str
    etcd: str
    devices: tuple[kr.Device, ...]
    address: str = ""
    lease_ttl: int = 10
    resync_seconds: float = 5.0
    kubernetes_node: str = ""
    compile_cache: str = ""
    compiler_images: dict = field(default_factory=dict)   # backend -> image
    switch_images: dict = field(default_factory=dict)     # device name -> software switch image
    docker_url: str = ""
    release_unreachable_after: float = 15.0  # seconds a deletion waits for an unreachable device


@dataclass
class _Pipeline:
    digest: str
    p4info: bytes
    device_config: bytes
    index: P4InfoIndex


def _copy(m):
    out = type(m)()
    out.CopyFrom(m)
    return out


class NodeAgent:
    def __init__(self, store: st.Store, settings: Settings):
        self.store = store
        self.settings = settings
        self.node = settings.node_name
        self.devices = {d.name: d for d in settings.devices}
        # election ids grow with wall-clock time so a restarted agent out-ranks its previous self
        self.election_id = int(time.time() * 1000)
        self.connections: dict[str, DeviceConnection] = {}
        self.queue: WorkQueue[str] = WorkQueue()
        self.placements = Informer(store, st.PLACEMENTS, self._on_placement)
        self._where: dict[tuple[str, str], str] = {}
        self._delivered: dict[tuple[str, str], str] = {}  # placement key -> device, for placements on this node
        self._pipelines: OrderedDict[str, _Pipeline] = OrderedDict()  # by digest, least recently used first
        # devices whose entries we may have written; at start that is all of them, since a previous
        # run may have left entries of placements deleted while this agent was down
        self._dirty: set[str] = set(self.devices)
        self._clear_failing_since: dict[str, float] = {}
        self._cookies: dict[str, int | None] = {}  # device -> pipeline cookie it last reported
        self._departed: set[str] = set()  # devices a placement left (moved away or deleted)
        self.compiler = Compiler(**({"cache_dir": settings.compile_cache} if settings.compile_cache else {}),
                                 images=dict(settings.compiler_images), docker_url=settings.docker_url or None)
        self.switches: list = []  # containers this agent launched (virt-launcher style)
        self.lease_id = 0
        self.registered = asyncio.Event()

    # ------------------------------------------------------------ registration and heartbeat
    async def register(self) -> None:
        node = kr.Node()
        node.metadata.name = self.node
        node.spec.address = self.settings.address
        node.spec.devices.extend(self.settings.devices)
        node.spec.kubernetes_node = self.settings.kubernetes_node
        node.status.phase = "Ready"
        node.status.last_heartbeat.GetCurrentTime()
        await self._take_lease()  # first, so the node is never seen without its heartbeat
        try:
            await self.store.create(st.NODES, node)
        except st.AlreadyExists:
            def refresh(n: kr.Node) -> kr.Node:
                n.spec.CopyFrom(node.spec)
                n.status.last_heartbeat.GetCurrentTime()
                return n
            await self.store.mutate(st.NODES, "", self.node, refresh)
        self.registered.set()

    async def _take_lease(self) -> None:
        self.lease_id = await self.store.grant_lease(self.settings.lease_ttl)
        await self.store.put_raw(st.NODE_LEASES + self.node, str(self.election_id).encode(), self.lease_id)

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_ttl / 3)
            try:
                if await self.store.keepalive(self.lease_id) <= 0:
                    log.warning("heartbeat lease expired; taking a new one")
                    await self._take_lease()
            except st.Unavailable as e:
                log.warning("heartbeat: %s", e)

    async def resync(self) -> None:
        """Periodic check that every device still runs what it should (a rebooted switch has nothing)."""
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            for name in self.devices:
                self.queue.add(name)

    # ------------------------------------------------------------ events
    def _on_placement(self, etype: str, p: kr.Placement) -> None:
        key = (p.metadata.namespace, p.metadata.name)
        before = self._where.get(key)
        if etype != "DELETED" and p.spec.node == self.node:
            self._where[key] = p.spec.device
            written = p.metadata.trace_context.get(WRITTEN_AT)
            if etype != "SYNC" and written and self._delivered.get(key) != written:
                self._delivered[key] = written
                record_delivery(tracer, p.metadata.trace_context, time.time_ns(), "etcd watch delivery",
                                {"kubep4.watcher": f"node-agent {self.node}", "kubep4.kind": "placement"})
            self.queue.add(p.spec.device)
        else:
            self._where.pop(key, None)
        if before is not None and (etype == "DELETED" or p.spec.node != self.node or p.spec.device != before):
            self._departed.add(before)  # its entries must go even if the device's other placements are fine
            self.queue.add(before)

    def _on_broken(self, device: str) -> None:
        log.warning("device %s: stream broken; will reconnect and verify", device)
        self.queue.add(device)

    async def launch_switches(self) -> None:
        """Start the software switches configured as containers, one per device, before connecting."""
        from services.node_agent.docker_launcher import SwitchContainer
        for name, image in self.settings.switch_images.items():
            dev = self.devices.get(name)
            if dev is None:
                raise ValueError(f"--switch-image names unknown device {name!r}")
            port = int(dev.p4rt_address.rpartition(":")[2])
            switch = SwitchContainer(image=image, name=f"kubep4-{self.node}-{name}", grpc_port=port,
                                     device_id=dev.device_id, base_url=self.settings.docker_url or None)
            await asyncio.to_thread(switch.start)
            self.switches.append(switch)
            log.info("device %s: started %s in container %s", name, image, switch.container_id[:12])

    async def run(self, workers: int = 4) -> None:
        await self.launch_switches()
        await self.register()
        for name in self.devices:  # converge every device from what etcd and the device say
            self.queue.add(name)
        loops = [self.heartbeat(), self.placements.run(), self.resync(),
                 run_workers(self.queue, self.reconcile_device, workers, "device")]
        if self.settings.kubernetes_node:  # advertise slots and target/arch labels, as a device plugin would
            from services.node_agent import kube_resources
            loops.append(kube_resources.keep_advertised(self.settings.kubernetes_node, list(self.devices.values())))
        try:
            await run_all(*loops)
        finally:
            for c in self.connections.values():
                await c.close()
            for switch in self.switches:
                await asyncio.to_thread(switch.stop)

    # ------------------------------------------------------------ device reconcile
    async def _connection(self, name: str) -> DeviceConnection:
        conn = self.connections.get(name)
        if conn is not None and conn.connected:
            return conn
        dev = self.devices[name]
        if conn is None:
            conn = DeviceConnection(dev.p4rt_address, dev.device_id, self.election_id,
                                    on_broken=lambda: self._on_broken(name))
            self.connections[name] = conn
        await conn.connect()
        return conn

    async def _pipeline(self, p: kr.Placement) -> _Pipeline:
        cached = self._pipelines.get(p.spec.pipeline_digest)
        if cached is not None:
            self._pipelines.move_to_end(p.spec.pipeline_digest)
            return cached
        with tracer.start_as_current_span("load pipeline", attributes={"kubep4.pipeline": p.spec.pipeline}):
            pl = await self.store.get(st.PIPELINES, p.metadata.namespace, p.spec.pipeline)
            if pl.status.digest != p.spec.pipeline_digest:
                raise CompileError(f"pipeline {p.spec.pipeline} has digest {pl.status.digest}, "
                                   f"placement wants {p.spec.pipeline_digest}")
            if pl.spec.p4info_ref.digest:
                p4info, config = await asyncio.gather(self.store.get_blob(pl.spec.p4info_ref),
                                                      self.store.get_blob(pl.spec.device_config_ref))
            else:
                result = await self.compiler.compile(pl.spec.source, pl.status.digest, pl.spec.arch,
                                                     pl.spec.target)
                p4info, config = result.p4info, result.device_config
            out = _Pipeline(pl.status.digest, p4info, config, P4InfoIndex(parse_p4info(p4info)))
        self._pipelines[out.digest] = out
        while len(self._pipelines) > PIPELINE_CACHE_SIZE:
            self._pipelines.popitem(last=False)
        return out

    async def reconcile_device(self, name: str) -> float | None:
        if name not in self.devices:
            return None
        mine = [p for p in self.placements.items() if p.spec.node == self.node and p.spec.device == name]
        active = sorted((p for p in mine if not p.metadata.HasField("deletion_timestamp")),
                        key=lambda p: p.metadata.creation_timestamp.ToNanoseconds())
        leaving = [p for p in mine if p.metadata.HasField("deletion_timestamp")]
        if not active:
            return await self._clear(name, leaving)
        # the pipeline the device already runs wins; a newcomer with another one is the one that fails
        running = self._cookies.get(name)
        digest = next((p.spec.pipeline_digest for p in active if cookie_for_digest(p.spec.pipeline_digest) == running),
                      active[0].spec.pipeline_digest)
        conflicting = [p for p in active if p.spec.pipeline_digest != digest]
        active = [p for p in active if p.spec.pipeline_digest == digest]
        for p in conflicting:
            await self._set_status(p, "Failed", f"device {name} runs another pipeline ({digest[:19]})")
        cookie = cookie_for_digest(digest)
        stale = [p for p in active if not (p.status.phase == "Running" and p.status.cookie == cookie
                                           and p.status.observed_generation == p.spec.deployment_generation)]
        ctx = extract_context((stale or active)[0].metadata.trace_context)
        with tracer.start_as_current_span("node_agent install", context=ctx, attributes={
                "kubep4.node": self.node, "kubep4.device": name, "kubep4.placements": len(active)}) as span:
            try:
                conn = await self._connection(name)
                device_cookie = await conn.get_cookie()
                self._cookies[name] = device_cookie
                span.set_attribute("p4rt.cookie_matched", device_cookie == cookie)
                if device_cookie == cookie and not stale and not leaving and name not in self._departed:
                    span.set_attribute("kubep4.noop", True)
                    return None
                # "Installing" is reported while the install goes on, not before it starts
                installing = asyncio.gather(*(self._set_status(p, "Installing", "") for p in stale))
                try:
                    pipeline = await self._pipeline(active[0])
                    entries, rejected = self._device_entries(name, active, pipeline)
                    pushed = device_cookie != cookie
                    if pushed:  # VERIFY_AND_COMMIT replaces the pipeline and empties every table
                        self._cookies.pop(name, None)
                        await conn.set_pipeline(pipeline.p4info, pipeline.device_config, cookie)
                        self._cookies[name] = cookie
                    self._dirty.add(name)
                    await conn.sync_entries(entries, known_empty=pushed)  # leaving placements' entries go
                    self._departed.discard(name)
                finally:
                    await installing
                await self._release(leaving)
            except (P4RuntimeError, CompileError, EntryError, st.NotFound) as e:
                span.record_exception(e)
                for p in active:
                    await self._set_status(p, "Failed", str(e))
                if isinstance(e, P4RuntimeError) and e.code in (grpc.StatusCode.UNAVAILABLE,
                                                               grpc.StatusCode.DEADLINE_EXCEEDED,
                                                               grpc.StatusCode.ALREADY_EXISTS):
                    await self._drop(name)
                return 2.0
            for p in active:
                why = rejected.get((p.metadata.namespace, p.metadata.name))
                await (self._set_status(p, "Failed", why) if why else self._set_status(p, "Running", "", cookie))
        return None  # a refused placement waits for its deployment to change (a new placement event)

    def _device_entries(self, device: str, active: list[kr.Placement], pipeline: _Pipeline
                        ) -> tuple[list, dict[tuple[str, str], str]]:
        """The union of the placements' entries, and the placements refused with the reason: an entry
        that does not fit the pipeline, or one whose match another deployment on the device already uses
        with another action. A refused placement fails alone; its neighbours are installed."""
        owners: dict[tuple, tuple[kr.Placement, object]] = {}
        rejected: dict[tuple[str, str], str] = {}
        for p in active:
            try:
                mine = self._entries(p, pipeline)
            except EntryError as e:
                rejected[(p.metadata.namespace, p.metadata.name)] = str(e)
                continue
            for e in mine:
                other = owners.get(entry_key(e))
                if other is not None and other[0].spec.deployment != p.spec.deployment and \
                        other[1].action.SerializeToString(deterministic=True) != \
                        e.action.SerializeToString(deterministic=True):
                    rejected[(p.metadata.namespace, p.metadata.name)] = (
                        f"an entry of table id {e.table_id} has the same match as one of deployment "
                        f"{other[0].spec.deployment} on device {device}, with another action")
                    break
            else:
                for e in mine:
                    owners.setdefault(entry_key(e), (p, e))
        return [e for _, e in owners.values()], rejected

    @staticmethod
    def _entries(p: kr.Placement, pipeline: _Pipeline) -> list:
        """The placement's own entries (those of the generation it realises) for the device."""
        out = []
        for i, e in enumerate(p.spec.table_entries):
            try:
                out.append(to_p4_entry(e, pipeline.index))
            except EntryError as err:
                raise EntryError(f"spec.table_entries[{i}].{err.field}", err.description) from None
        return out

    async def _clear(self, name: str, leaving: list[kr.Placement]) -> float | None:
        """No placement wants the device: remove our table entries, then let the placements go."""
        if leaving or name in self._dirty:
            with tracer.start_as_current_span("node_agent clear", attributes={"kubep4.device": name}):
                try:
                    conn = await self._connection(name)
                    await conn.sync_entries([])
                    self._departed.discard(name)
                    self._dirty.discard(name)
                    self._clear_failing_since.pop(name, None)
                except P4RuntimeError as e:
                    await self._drop(name)
                    since = self._clear_failing_since.setdefault(name, time.monotonic())
                    if leaving and time.monotonic() - since < self.settings.release_unreachable_after:
                        log.warning("device %s: cannot clear yet: %s", name, e)
                        return 2.0
                    # an unreachable device must not hold deletions hostage: let the placements go,
                    # and clear the device when it answers again (it stays dirty)
                    log.warning("device %s: unreachable (%s); released %d placement(s), will clear it when "
                                "it is back", name, e, len(leaving))
                    await self._release(leaving)
                    return 5.0
        await self._release(leaving)
        return None

    async def _release(self, leaving: list[kr.Placement]) -> None:
        """The device no longer holds these placements: let them go (the controller waits for it)."""
        for p in leaving:
            try:
                await self.store.delete(st.PLACEMENTS, p.metadata.namespace, p.metadata.name)
            except st.NotFound:
                pass

    async def _drop(self, name: str) -> None:
        conn = self.connections.pop(name, None)
        if conn is not None:
            await conn.close()

    async def _set_status(self, p: kr.Placement, phase: str, message: str, cookie: int = 0) -> None:
        with tracer.start_as_current_span("status write-back", attributes={"kubep4.phase": phase}):
            def update(cur: kr.Placement) -> kr.Placement | None:
                if cur.spec != p.spec:
                    return None  # moved or rolled to another generation meanwhile: that gets its own pass
                s = cur.status
                gen = p.spec.deployment_generation if phase == "Running" else s.observed_generation
                if (s.phase, s.message, s.cookie, s.observed_generation) == (phase, message, cookie or s.cookie, gen):
                    return None
                if s.phase != phase:
                    s.last_transition_time.GetCurrentTime()
                s.phase, s.message, s.observed_generation = phase, message[:1000], gen
                if cookie:
                    s.cookie = cookie
                return cur
            cached = self.placements.get((p.metadata.namespace, p.metadata.name))
            updated = await self.store.mutate(st.PLACEMENTS, p.metadata.namespace, p.metadata.name, update,
                                              current=cached)
            if updated is not None:
                self.placements.observe(updated)
