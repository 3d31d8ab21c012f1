"""The node agent: registers its node and devices, and keeps each device equal to its placements.

Per device the desired state is the pipeline of its placements (cookie derived from the
pipeline digest) plus the union of their table entries; the actual state is what the device
answers to GetForwardingPipelineConfig and Read. Reconciles are level-triggered, as KubeVirt's
virt-handler does for VMs: on placement events, when a device's stream breaks or mastership
changes, and on a periodic resync. Each reads the device and converges it: installs what is
missing, modifies what differs, deletes what no placement owns. Nothing is done before the
placement view has synced, so a restarted agent never clears a device it should keep.

A placement is Running only once the device was found (or made) to hold its pipeline and
entries; a device that stops answering turns its placements Unknown (DeviceUnreachable)
at once (or after ``device_patience`` seconds). Failures back off per device and desired state: a status
write cannot reset the backoff, only a change of the placements' spec (or regaining primary).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import grpc
from google.rpc import code_pb2
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from kubep4 import store as st
from kubep4.backoff import Backoff
from kubep4.entities import to_p4_entities
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.informer import Informer, WorkQueue, run_workers
from kubep4.p4 import EntryError, P4InfoIndex, cookie_for_digest, p4r, parse_p4info

SetAction = p4r.SetForwardingPipelineConfigRequest.Action
from kubep4.p4runtime_client import BROKEN, NO_PRIMARY, PRIMARY, DeviceConnection, P4RuntimeError, device_tls
from kubep4.serving import run_all
from kubep4.telemetry import WRITTEN_AT, extract_context, record_delivery
from services.node_agent import entries as ent
from services.node_agent import faults
from services.node_agent.compiler import CompileError
from services.node_agent.node_status import NOT_PRIMARY, REACHABLE, UNREACHABLE, WEDGED, NodeStatusReporter

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.node_agent")
meter = metrics.get_meter("kubep4.node_agent")
PIPELINE_CACHE_SIZE = 32  # compiled/loaded pipelines kept in memory
INSTALLING_AFTER = 0.05   # seconds a write may take before its placements are reported Installing


@dataclass(frozen=True)
class Settings:
    node_name: str
    etcd: str
    devices: tuple[kr.Device, ...]
    address: str = ""
    read_address: str = ""  # where this agent serves live reads of its devices (empty: nowhere)
    etcd_tls: object = None  # a kubep4.tls.ClientTLS for etcd, None for plaintext
    lease_ttl: int = 10
    resync_seconds: float = 5.0
    kubernetes_node: str = ""
    switch_images: dict = field(default_factory=dict)     # device name -> software switch image
    docker_url: str = ""
    launch_dir: str = ""  # logs (one per device) and T4P4S switch programs of launched switches
    release_unreachable_after: float = 15.0  # seconds a deletion waits for an unreachable device
    device_patience: float = 0.0   # seconds a device may not answer before its placements say so
    retry_initial: float = 0.5     # backoff of a failing device: first delay ...
    retry_max: float = 60.0        # ... doubling up to this
    status_report_seconds: float = 60.0  # the Node's status is rewritten at least this often
    prefetch: bool = True  # load a new precompiled Pipeline's artifacts before a placement needs them
    max_write_batch: int = 1000  # updates per P4Runtime Write; more are sent in several


@dataclass
class _Pipeline:
    digest: str
    p4info: bytes
    device_config: bytes
    index: P4InfoIndex
    protected_tables: frozenset[int] = frozenset()  # const tables and tables with initial entries
    meter_tables: frozenset[int] = frozenset()  # tables with a direct meter (their configs are read too)


@dataclass
class _Device:
    """What the agent knows of one device between reconciles."""
    conn: DeviceConnection
    backoff: Backoff
    cookie: int | None = None                   # as the device last answered
    expected: dict[tuple, bytes] | None = None  # entries last written or verified (None: not known yet)
    expected_cookie: int | None = None
    failed: tuple | None = None                 # the desired state that failed, and how
    fault: faults.Fault | None = None
    retry_at: float = 0.0
    unreachable_since: float | None = None
    failing_since: float | None = None          # first failure since the last success
    protected: frozenset[int] = frozenset()     # tables of its pipeline whose entries the program installs
    refused: dict = field(default_factory=dict)  # placement key -> (spec, why): an entry the device refused
    disruptive: str | None = None  # the digest last installed by a disruptive fallback


class NodeAgent:
    def __init__(self, store: st.Store, settings: Settings):
        self.store = store
        self.settings = settings
        self.node = settings.node_name
        self.devices = {d.name: d for d in settings.devices}
        # election ids grow with wall-clock time so a restarted agent out-ranks its previous self
        self.election_id = int(time.time() * 1000)
        self._dev = {name: _Device(DeviceConnection(d.p4rt_address, d.device_id, self.election_id,
                                                    on_event=lambda ev, name=name: self._on_stream(name, ev),
                                                    tls=device_tls(d), role=d.role),
                                   Backoff(settings.retry_initial, settings.retry_max))
                     for name, d in self.devices.items()}
        self.queue: WorkQueue[str] = WorkQueue()
        # only this node's placements: their keys are under the node's name
        self.placements = Informer(store, st.PLACEMENTS, self._on_placement, shard=self.node,
                                   indexes={"device": lambda p: p.spec.device})
        self.status = NodeStatusReporter(store, self.node, list(self.devices), settings.status_report_seconds)
        self._where: dict[tuple[str, str], str] = {}  # placement key -> device, for placements on this node
        self._seen: dict[tuple[str, str], tuple] = {}  # placement key -> (spec, leaving) last queued for
        self._delivered: dict[tuple[str, str], str] = {}  # placement key -> written-at stamp recorded
        self._pipelines: OrderedDict[str, _Pipeline] = OrderedDict()  # by digest, least recently used first
        self._loading: dict[str, asyncio.Task] = {}  # digest -> its load in flight (one per digest)
        # new Pipelines one of our devices could run: their artifacts are fetched before a placement asks
        self.pipelines = Informer(store, st.PIPELINES, self._on_pipeline) if settings.prefetch else None
        self.switches = None  # the switches this agent launched (launcher.LaunchedSwitches), once started
        # devices not driven over P4Runtime (T4P4S): their drivers, by device name (drivers/)
        from services.node_agent.drivers import drivers_for
        self.drivers = drivers_for(self)
        self.lease_id = 0
        self.registered = asyncio.Event()
        self.repairs = meter.create_counter(
            "kubep4_device_drift_repairs_total", unit="1",
            description="Changes made to a device that differed from what the agent last verified on it")

    # ------------------------------------------------------------ registration and heartbeat
    async def register(self) -> None:
        node = kr.Node()
        node.metadata.name = self.node
        node.spec.address = self.settings.address
        node.spec.read_address = self.settings.read_address
        node.spec.devices.extend(self.settings.devices)
        node.spec.kubernetes_node = self.settings.kubernetes_node
        node.status.phase = "Ready"
        node.status.last_heartbeat.GetCurrentTime()
        node.status.devices.extend(self.status.devices.values())
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
        """Periodic check of every device against its placements (drift, reboots, lost entries)."""
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            for name in self.devices:
                self.queue.add(name)

    # ------------------------------------------------------------ events
    def _on_placement(self, etype: str, p: kr.Placement) -> None:
        key = (p.metadata.namespace, p.metadata.name)
        here = p.spec.device if etype != "DELETED" and p.spec.node == self.node else None
        before = self._where.pop(key, None)
        if here is not None:
            self._where[key] = here
        if before is not None and before != here:
            self.queue.add(before)  # it left that device: its entries must go
        if here is None:
            self._delivered.pop(key, None)
            self._seen.pop(key, None)
            return
        written = p.metadata.trace_context.get(WRITTEN_AT)
        if etype != "SYNC" and written and self._delivered.get(key) != written:
            self._delivered[key] = written
            record_delivery(tracer, p.metadata.trace_context, time.time_ns(), "etcd watch delivery",
                            {"kubep4.watcher": f"node-agent {self.node}", "kubep4.kind": "placement"})
        seen = (p.spec.SerializeToString(deterministic=True), p.metadata.HasField("deletion_timestamp"))
        if self._seen.get(key) == seen and etype != "SYNC":
            return  # only its status changed (our own writes): nothing new for the device
        self._seen[key] = seen
        self.queue.add(here)

    def _on_stream(self, name: str, event: str) -> None:
        """The device's stream broke or mastership changed: verify the device again."""
        dev = self._dev[name]
        if event == NO_PRIMARY:  # nobody holds the device: take it with an election id above the last
            dev.conn.raise_election_id(dev.conn.primary_election_id or 0)
        if event in (PRIMARY, NO_PRIMARY):  # what we waited for: try at once
            dev.failed = None
            dev.backoff.reset()
        elif event == BROKEN and dev.fault is not None and dev.fault.reason == faults.DEVICE_WEDGED:
            dev.failed = None  # it may have restarted: a wedged device is tried again when it is back
        self.queue.add(name)

    async def launch_switches(self) -> None:
        """Start each device's software switch before connecting (virt-launcher style): a container
        (--switch-image) or a local process (Device.launch: bmv2, reference), supervised and restarted
        on exit; after a restart the device is reconciled at once. T4P4S switches are started by
        their driver, per pipeline."""
        from services.node_agent import launcher as ln
        from services.node_agent.docker_launcher import SwitchContainer
        loop = asyncio.get_running_loop()
        self.switches = ln.LaunchedSwitches(lambda name: loop.call_soon_threadsafe(self.queue.add, name))
        for name, image in self.settings.switch_images.items():
            dev = self.devices.get(name)
            if dev is None:
                raise ValueError(f"--switch-image names unknown device {name!r}")
            port = int(dev.p4rt_address.rpartition(":")[2])
            self.switches.add(ln.ContainerSwitch(name, SwitchContainer(
                image=image, name=f"kubep4-{self.node}-{name}", grpc_port=port, device_id=dev.device_id,
                base_url=self.settings.docker_url or None)))
        for name, dev in self.devices.items():
            if dev.launch.kind in (ln.BMV2, ln.REFERENCE) and name not in self.settings.switch_images:
                self.switches.add(ln.switch_for(dev, self.launch_dir))
        await asyncio.to_thread(self.switches.start)
        for name, switch in self.switches.switches.items():
            log.info("device %s: started its switch (%s)", name, getattr(switch, "argv", ["container"])[0])

    @property
    def launch_dir(self) -> str:
        return self.settings.launch_dir or os.path.join(tempfile.gettempdir(), f"kubep4-launch-{self.node}")

    async def run(self, workers: int = 4) -> None:
        await self.launch_switches()
        try:
            await self.register()
        except BaseException:  # never registered: the switches it launched go now
            await asyncio.to_thread(self.switches.stop)
            raise
        loops = [self.heartbeat(), self.placements.run(), self.status.run(), self._converge_all(workers)]
        if self.pipelines is not None:
            loops.append(self.pipelines.run())
        if self.settings.kubernetes_node:  # advertise slots and target/arch labels, as a device plugin would
            from services.node_agent import kube_resources
            loops.append(kube_resources.keep_advertised(self.settings.kubernetes_node, list(self.devices.values())))
        try:
            await run_all(*loops)
        finally:
            for t in list(self._loading.values()):
                t.cancel()
            for d in self._dev.values():
                await d.conn.close()
            for driver in self.drivers.values():
                await driver.close()
            if self.switches is not None:
                await asyncio.to_thread(self.switches.stop)

    async def _converge_all(self, workers: int) -> None:
        """Only once the placements are known: a device is never judged against an empty view."""
        await self.placements.synced.wait()
        for name in self.devices:
            self.queue.add(name)
        await asyncio.gather(self.resync(), run_workers(self.queue, self.reconcile_device, workers, "device"))

    # ------------------------------------------------------------ device reconcile
    def _placements_on(self, name: str) -> list[kr.Placement]:
        return self.placements.by("device", name)

    async def reconcile_device(self, name: str) -> float | None:
        if name not in self.devices:
            return None
        dev = self._dev[name]
        mine = self._placements_on(name)
        wanted = tuple(sorted((p.metadata.namespace, p.metadata.name, p.spec.SerializeToString(deterministic=True),
                               p.metadata.HasField("deletion_timestamp")) for p in mine))
        if dev.failed == wanted:  # this very state failed before: wait out its backoff
            if dev.fault.permanent and not any(p.metadata.HasField("deletion_timestamp") for p in mine):
                return None  # until the spec changes
            wait = dev.retry_at - time.monotonic()
            if wait > 0:
                return wait
        # the placements the device already runs come first (they win a clash), then the oldest
        active = sorted((p for p in mine if not p.metadata.HasField("deletion_timestamp")),
                        key=lambda p: (p.status.phase != "Running", p.metadata.creation_timestamp.ToNanoseconds()))
        leaving = [p for p in mine if p.metadata.HasField("deletion_timestamp")]
        try:
            driver = self.drivers.get(name)
            if driver is not None:  # not P4Runtime (a T4P4S switch): its own driver
                await driver.converge(dev, active, leaving)
            elif active:
                await self._converge(name, dev, active, leaving)
            else:
                await self._clear(name, dev, leaving)
        except Exception as e:  # classified: temporary faults back off, permanent ones wait for a new spec
            if not isinstance(e, (P4RuntimeError, CompileError, EntryError, st.StoreError, faults.DeviceWedged,
                                  faults.UpgradeRefused)):
                log.exception("device %s: unexpected failure", name)
            return await self._failed(name, dev, wanted, active, leaving, faults.classify(e))
        dev.failed = dev.fault = None
        dev.backoff.reset()
        dev.unreachable_since = dev.failing_since = None
        self.status.set(name, REACHABLE, dev.cookie, len(active), verified=True)
        return None

    async def _converge(self, name: str, dev: _Device, active: list[kr.Placement],
                        leaving: list[kr.Placement]) -> None:
        conn = dev.conn
        if not conn.connected:
            await conn.connect()
        dev.cookie = await conn.get_cookie()
        # the pipeline the device already runs wins; a newcomer with another one is the one that fails
        digest = next((p.spec.pipeline_digest for p in active if cookie_for_digest(p.spec.pipeline_digest) == dev.cookie),
                      active[0].spec.pipeline_digest)
        for p in active:
            if p.spec.pipeline_digest != digest:
                await self._set_status(p, "Failed", f"device {name} runs another pipeline ({digest[:19]})",
                                       reason="PipelineConflict")
        active = [p for p in active if p.spec.pipeline_digest == digest]
        cookie = cookie_for_digest(digest)
        stale = [p for p in active if not self._holds(p, cookie)]
        # a generation installed for the first time is part of its deployment's trace; a check, or a
        # repair (a device that lost what it held, a placement back from Unknown or NotPrimary), is
        # a trace of its own
        new = [p for p in stale if p.status.observed_generation != p.spec.deployment_generation
               or p.status.cookie != cookie]
        with self._span("node_agent install", new, name) if new else contextlib.nullcontext():
            pipeline = await self._pipeline(active[0])
            protected = dev.protected = pipeline.protected_tables
            push = dev.cookie != cookie
            repairs = None
            for _ in range(3):  # again after a Write that some updates failed (each time fewer)
                desired, rejected, claimed, owner_of = self._device_entries(name, active, pipeline, cookie, dev)
                # what the device should hold as far as we know: what we last wrote, or after a
                # restart of ours what the placements claiming Running say (those leaving too)
                if dev.expected is not None and dev.expected_cookie == cookie:
                    expected = dev.expected
                else:
                    expected = {**await self._claimed(leaving, cookie), **claimed}
                wanted = ent.reads(desired, expected, pipeline.meter_tables)
                plan = None if push else ent.plan(await conn.read(wanted), desired, expected, protected)
                if not push and not plan.updates:
                    break
                with contextlib.nullcontext() if new else self._span("node_agent repair", active, name, link=True):
                    if push:  # the device lacks the pipeline: no placement may claim Running meanwhile
                        await asyncio.gather(*(self._set_status(p, "Installing", "") for p in active))
                        plan = await self._change_pipeline(name, dev, active, pipeline, cookie, desired, expected,
                                                           stale, owner_of)
                        push = False
                        if plan is None:  # written before the commit: check the device as it now runs
                            continue
                    repairs = plan.repairs if repairs is None else repairs
                    if await self._write(name, dev, plan, stale, owner_of):
                        break
            else:
                raise P4RuntimeError(f"device {name}: writes kept failing in part", grpc.StatusCode.ABORTED)
            dev.expected, dev.expected_cookie = ent.snapshot(desired), cookie
            self._record_repairs(name, repairs or {})
        await self._release(leaving)
        for p in active:
            why = rejected.get((p.metadata.namespace, p.metadata.name))
            if why:
                await self._set_status(p, "Failed", why[1], reason=why[0])
            else:
                await self._set_status(p, "Running", "", cookie, disruptive=dev.disruptive == digest)

    async def _change_pipeline(self, name: str, dev: _Device, active: list[kr.Placement], pipeline: _Pipeline,
                               cookie: int, desired: list[p4r.Entity], expected: dict[tuple, bytes],
                               stale: list[kr.Placement], owner_of) -> ent.Plan | None:
        """Give the device the placements' pipeline, by the way the deployment and the device allow
        (docs/rollouts.md, "Per-device pipeline change"), and return the plan of what is left to write;
        None when it was all written before the pipeline was committed (VERIFY_AND_SAVE, Writes, COMMIT).

        A device with no pipeline, or a deployment that asks for Recreate, gets VERIFY_AND_COMMIT. A
        hitless change is RECONCILE_AND_COMMIT (the entries that still fit stay) or VERIFY_AND_SAVE +
        Writes + COMMIT (the new entities are in place at the swap), as the device declares; when the
        device cannot, VERIFY_AND_COMMIT only with ``fallback: Recreate`` (the placements are marked
        disruptive), else the placements fail. A device answering that it is wedged is reported so and
        not tried again until its stream breaks (a restart)."""
        conn, spec = dev.conn, active[0].spec
        running = dev.cookie
        method = self.devices[name].upgrade or faults.SAVE_COMMIT
        hitless = running is not None and (spec.pipeline_upgrade or "Reconcile") == "Reconcile"
        kept = dev.expected if dev.expected is not None and dev.expected_cookie == running else {}
        dev.expected = dev.cookie = None
        dev.disruptive = None
        try:
            if hitless and method == faults.RECONCILE:
                try:
                    await conn.set_pipeline(pipeline.p4info, pipeline.device_config, cookie,
                                            action=SetAction.RECONCILE_AND_COMMIT)
                    dev.cookie = cookie
                    # what the device kept is ours to diff as before: nothing of it is drift
                    held = {**kept, **expected}
                    return ent.plan(await conn.read(ent.reads(desired, held, pipeline.meter_tables)), desired,
                                    held, pipeline.protected_tables)
                except P4RuntimeError as e:
                    if e.code != grpc.StatusCode.INVALID_ARGUMENT:
                        raise
                    self._no_hitless_way(name, spec, f"RECONCILE_AND_COMMIT refused: {e}")
            elif hitless and method == faults.SAVE_COMMIT:
                await conn.set_pipeline(pipeline.p4info, pipeline.device_config, cookie,
                                        action=SetAction.VERIFY_AND_SAVE)
                # Reads and Writes now address the saved pipeline: empty, with its initial defaults
                plan = ent.plan(await conn.read(ent.reads(desired, {}, pipeline.meter_tables)), desired, {},
                                pipeline.protected_tables, fresh=True)
                await self._write(name, dev, plan, stale, owner_of)
                await conn.set_pipeline(b"", b"", cookie, action=SetAction.COMMIT)
                dev.cookie = cookie
                self._record_repairs(name, plan.repairs)
                return None
            elif hitless:
                self._no_hitless_way(name, spec, f"device {name} declares no hitless way to change its pipeline")
            await conn.set_pipeline(pipeline.p4info, pipeline.device_config, cookie)
        except P4RuntimeError as e:
            if faults.wedged(e):
                raise faults.DeviceWedged(f"device {name} is wedged ({e}): it takes no pipeline change "
                                          "until it restarts") from None
            raise
        dev.cookie = cookie
        if hitless:
            dev.disruptive = active[0].spec.pipeline_digest
        # VERIFY_AND_COMMIT left every table empty, with the P4Info's default actions, and every
        # counter, meter and register at zero
        wanted = ent.reads(desired, expected)
        plan = ent.plan(await conn.read(wanted) if len(wanted) > 1 else [], desired, expected,
                        pipeline.protected_tables, fresh=True)
        if expected:  # it held our pipeline: a reboot, or someone else's push
            plan.repairs[ent.PIPELINE] += 1
        return plan

    @staticmethod
    def _no_hitless_way(name: str, spec: kr.PlacementSpec, why: str) -> None:
        """Without ``fallback: Recreate`` a pipeline change the device cannot make hitless fails."""
        if spec.fallback != "Recreate":
            raise faults.UpgradeRefused(f"{why}; the deployment allows no disruptive change "
                                        "(strategy.fallback: Recreate)")
        log.warning("device %s: %s; falling back to VERIFY_AND_COMMIT (disruptive)", name, why)

    async def _write(self, name: str, dev: _Device, plan: ent.Plan, stale: list[kr.Placement],
                     owner_of: dict[tuple, tuple[kr.Placement, str]]) -> bool:
        """Write the plan. False when some updates failed for a reason worth another pass: a race
        with another writer (read again), or an entry the device refuses for what it is (its
        placement is refused alone, and the device converged without it)."""
        # "Installing" only for a write that takes a while: one that is done in a few
        # milliseconds would have its status overwritten before anyone could read it
        installing = asyncio.create_task(self._installing_after(INSTALLING_AFTER, stale))
        try:
            dev.expected = None  # a failed write leaves the device somewhere in between
            for batch in self._batches(plan):
                try:
                    await dev.conn.write(batch)
                except P4RuntimeError as e:
                    if len(e.errors) != len(batch) or not self._refused(name, dev, batch, e.errors, owner_of):
                        raise
                    return False  # what depends on the refused updates waits for the next pass
            return True
        finally:
            installing.cancel()
            await asyncio.gather(installing, return_exceptions=True)

    async def _clear(self, name: str, dev: _Device, leaving: list[kr.Placement]) -> None:
        """No placement wants the device: delete every entry on it, then let the placements go."""
        span = self._span("node_agent clear", leaving, name) if leaving else contextlib.nullcontext()
        with span:
            conn = dev.conn
            if not conn.connected:
                await conn.connect()
            dev.cookie = await conn.get_cookie()
            expected = dev.expected or {}
            if dev.expected is None or dev.expected_cookie != dev.cookie:  # after a restart of ours
                expected = await self._claimed(leaving, dev.cookie)
            plan = ent.plan(await conn.read(ent.reads([], expected)), [], expected,
                            dev.protected if dev.expected_cookie == dev.cookie else frozenset())
            if plan.updates:
                repair = contextlib.nullcontext() if leaving else self._span("node_agent repair", [], name, link=True)
                with repair:
                    dev.expected = None
                    for batch in self._batches(plan):
                        await conn.write(batch)
            dev.expected, dev.expected_cookie = {}, dev.cookie
            self._record_repairs(name, plan.repairs)
        await self._release(leaving)

    async def _failed(self, name: str, dev: _Device, wanted: tuple, active: list[kr.Placement],
                      leaving: list[kr.Placement], fault: faults.Fault) -> float | None:
        now = time.monotonic()
        first = dev.failed != wanted or dev.fault != fault
        if dev.failed != wanted:
            dev.backoff.reset()  # a new desired state starts afresh
        dev.failed, dev.fault = wanted, fault
        dev.failing_since = dev.failing_since or now
        delay = dev.backoff.next()
        if fault.unreachable:  # probing a device that is down costs nothing: notice its return soon
            delay = min(delay, max(self.settings.resync_seconds, self.settings.retry_initial))
        (log.warning if first else log.info)("device %s: %s: %s%s", name, fault.reason, fault.message,
                                             "" if fault.permanent else f"; next try in {delay:.1f}s")
        if fault.reason == faults.NOT_PRIMARY:
            if dev.conn.is_primary:  # refused although the stream says primary: arbitrate afresh
                await dev.conn.close()
            self.status.set(name, NOT_PRIMARY, dev.cookie, len(active), fault.message)
            for p in active:
                await self._set_status(p, "Failed", fault.message, reason=fault.reason)
            # the device announces a mastership change on the open stream; the retry is a safety net
        elif fault.unreachable:
            await dev.conn.close()
            dev.cookie = None
            since = dev.unreachable_since = dev.unreachable_since or now
            self.status.set(name, UNREACHABLE, None, len(active), fault.message)
            waited = now - since
            if waited >= self.settings.device_patience:
                # the message stays the same from try to try: a retry writes nothing to etcd
                for p in active:
                    await self._set_status(p, "Unknown", f"device {name} on node {self.node} does not answer: "
                                                         f"{fault.message}", reason=fault.reason)
            else:
                delay = min(delay, self.settings.device_patience - waited)
        else:
            wedged = fault.reason == faults.DEVICE_WEDGED
            self.status.set(name, WEDGED if wedged else REACHABLE, dev.cookie, len(active), fault.message)
            reason = faults.INSTALL_RETRYING if fault.reason == faults.INSTALL_FAILED and not fault.permanent \
                else fault.reason
            for p in active:
                await self._set_status(p, "Failed", fault.message, reason=reason)
            if wedged and first and self.switches is not None and self.switches.restart(name):
                # a switch we launched: restart it (its supervisor starts it afresh; the broken stream
                # brings the device back to us, empty, and it is installed again)
                log.warning("device %s is wedged: restarting the switch this agent launched", name)
        if leaving:
            waited = now - dev.failing_since
            if waited >= self.settings.release_unreachable_after:
                # a device that does not take our writes must not hold deletions hostage: let the
                # placements go; the device is cleared when it does (every check reads it whole)
                log.warning("device %s: %s; released %d placement(s), will clear it when it is back",
                            name, fault.reason, len(leaving))
                await self._release(leaving)
            else:
                delay = min(delay, self.settings.release_unreachable_after - waited)
        if fault.permanent and not leaving:
            return None  # until the placements' spec changes
        dev.retry_at = now + delay
        return delay

    # ------------------------------------------------------------ helpers
    async def _installing_after(self, delay: float, placements: list[kr.Placement]) -> None:
        await asyncio.sleep(delay)
        await asyncio.gather(*(self._set_status(p, "Installing", "") for p in placements))

    @staticmethod
    def _holds(p: kr.Placement, cookie: int) -> bool:
        s = p.status
        return s.phase == "Running" and s.cookie == cookie and s.observed_generation == p.spec.deployment_generation

    def _span(self, name: str, placements: list[kr.Placement], device: str, link: bool = False):
        attrs = {"kubep4.node": self.node, "kubep4.device": device, "kubep4.placements": len(placements)}
        if not link:  # inside the (first) placement's deployment trace
            ctx = extract_context(placements[0].metadata.trace_context)
            return tracer.start_as_current_span(name, context=ctx, attributes=attrs)
        links = []
        for p in placements:
            sc = trace.get_current_span(extract_context(p.metadata.trace_context)).get_span_context()
            if sc.is_valid:
                links.append(trace.Link(sc, {"kubep4.placement": f"{p.metadata.namespace}/{p.metadata.name}"}))
        return tracer.start_as_current_span(name, context=otel_context.Context(), links=links, attributes=attrs)

    def _record_repairs(self, device: str, repairs) -> None:
        repairs = {k: v for k, v in repairs.items() if v}
        if not repairs:
            return
        log.warning("device %s: repaired drift: %s", device, ", ".join(f"{v} {k}" for k, v in sorted(repairs.items())))
        for kind, n in repairs.items():
            self.repairs.add(n, {"device": f"{self.node}/{device}", "kind": kind})

    # ------------------------------------------------------------ pipelines
    def _on_pipeline(self, etype: str, pl: kr.Pipeline) -> None:
        """Prefetch: a new or changed precompiled Pipeline that one of our devices could run is loaded
        now, so the install that follows finds it in memory (sources are compiled when placed)."""
        digest = pl.status.digest
        if etype not in ("ADDED", "MODIFIED") or not digest or not pl.spec.p4info_ref.digest:
            return
        if digest in self._pipelines or digest in self._loading:
            return
        if not any((not pl.spec.target or d.target == pl.spec.target) and (not pl.spec.arch or d.arch == pl.spec.arch)
                   for d in self.devices.values()):
            return
        task = self._load(pl.metadata.namespace, pl.metadata.name, digest, prefetch=True)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failed prefetch is retried on use

    async def _pipeline(self, p: kr.Placement) -> _Pipeline:
        cached = self._pipelines.get(p.spec.pipeline_digest)
        if cached is not None:
            self._pipelines.move_to_end(p.spec.pipeline_digest)
            return cached
        return await asyncio.shield(self._load(p.metadata.namespace, p.spec.pipeline, p.spec.pipeline_digest))

    def _load(self, namespace: str, name: str, digest: str, prefetch: bool = False) -> asyncio.Task:
        """The load of pipeline ``digest``: one task per digest, shared by every caller (single-flight)."""
        task = self._loading.get(digest)
        if task is None:
            task = self._loading[digest] = asyncio.create_task(self._fetch(namespace, name, digest, prefetch))
            task.add_done_callback(lambda t: self._loading.pop(digest, None))
        return task

    async def _fetch(self, namespace: str, name: str, digest: str, prefetch: bool) -> _Pipeline:
        with tracer.start_as_current_span("load pipeline", attributes={"kubep4.pipeline": name,
                                                                        "kubep4.prefetch": prefetch}):
            pl = await self.store.get(st.PIPELINES, namespace, name)
            if pl.status.digest != digest:
                raise CompileError(f"pipeline {name} has digest {pl.status.digest}, "
                                   f"placement wants {digest}", temporary=True)
            if not pl.spec.p4info_ref.digest or not pl.spec.device_config_ref.digest:
                # a source Pipeline is compiled by the builder, which then sets both refs: none to load yet
                compiled = next((c for c in pl.status.conditions if c.type == "Compiled"), None)
                why = f"{compiled.reason}: {compiled.message}" if compiled is not None else pl.status.phase
                if pl.status.phase == "Failed":
                    raise CompileError(f"pipeline {name} did not compile ({why})")
                if pl.status.compile.device_config_unavailable:
                    raise CompileError(f"pipeline {name} has no device config: "
                                       f"{pl.status.compile.device_config_unavailable}")
                raise CompileError(f"pipeline {name} is not compiled yet ({why or 'Pending'})", temporary=True)
            p4info, config = await asyncio.gather(self.store.get_blob(pl.spec.p4info_ref),
                                                  self.store.get_blob(pl.spec.device_config_ref))
            info = parse_p4info(p4info)
            out = _Pipeline(pl.status.digest, p4info, config, P4InfoIndex(info), frozenset(
                t.preamble.id for t in info.tables if t.is_const_table or t.has_initial_entries),
                frozenset(m.direct_table_id for m in info.direct_meters))
        self._pipelines[out.digest] = out
        while len(self._pipelines) > PIPELINE_CACHE_SIZE:
            self._pipelines.popitem(last=False)
        return out

    def _device_entries(self, device: str, active: list[kr.Placement], pipeline: _Pipeline, cookie: int,
                        dev: _Device) -> tuple[list[p4r.Entity], dict[tuple[str, str], tuple[str, str]],
                                                dict[tuple, bytes], dict[tuple, kr.Placement]]:
        """The union of the placements' entities; the placements refused, with reason and message (an
        entity that does not fit the pipeline, or one whose key another deployment on the device
        already uses with another value: a refused placement fails alone, its neighbours are
        installed, and so is one whose entity the device itself refused); the entities that
        placements claiming Running say the device holds; and the placement owning each entity."""
        owners: dict[tuple, tuple[kr.Placement, str, p4r.Entity]] = {}
        rejected: dict[tuple[str, str], tuple[str, str]] = {}
        claimed: dict[tuple, bytes] = {}
        for p in active:
            key = (p.metadata.namespace, p.metadata.name)
            refused = dev.refused.get(key)
            if refused is not None and refused[0] == p.spec.SerializeToString(deterministic=True):
                rejected[key] = (refused[2], refused[1])
                continue
            dev.refused.pop(key, None)  # its spec changed: a new try
            try:
                mine = self._entities(p, pipeline)
            except EntryError as e:
                rejected[key] = ("InvalidEntry", str(e))
                continue
            for path, e in mine:
                other = owners.get(ent.entity_key(e))
                if other is not None and (other[0].metadata.namespace, other[0].spec.deployment) != \
                        (p.metadata.namespace, p.spec.deployment) and \
                        ent.entity_value(other[2]) != ent.entity_value(e):
                    rejected[key] = ("EntryConflict", (
                        f"its {path} has the key of {other[1]} of deployment "
                        f"{other[0].metadata.namespace}/{other[0].spec.deployment} on device {device}, "
                        "with another value"))
                    break
            else:
                for path, e in mine:
                    owners.setdefault(ent.entity_key(e), (p, path, e))
                if self._holds(p, cookie):
                    claimed.update(ent.snapshot([e for _, e in mine]))
        return ([e for _, _, e in owners.values()], rejected, claimed,
                {k: (p, path) for k, (p, path, _) in owners.items()})

    @staticmethod
    def _entities(p: kr.Placement, pipeline: _Pipeline) -> list[tuple[str, p4r.Entity]]:
        """The placement's own entities (those of the generation it realises) for the device, each
        with its path in the placement (``spec.table_entries[3]``)."""
        try:
            return [(f"spec.{path}", e) for path, e in to_p4_entities(p.spec, pipeline.index)]
        except EntryError as err:
            raise EntryError(f"spec.{err.field}", err.description) from None

    async def _claimed(self, placements: list[kr.Placement], cookie: int | None) -> dict[tuple, bytes]:
        """What these placements, those claiming Running on ``cookie``, say the device holds (after a
        restart of ours, the only account of what we wrote: a departed placement's default
        actions and members are still ours to remove)."""
        out: dict[tuple, bytes] = {}
        for p in placements:
            if cookie is None or not self._holds(p, cookie):
                continue
            try:
                out.update(ent.snapshot([e for _, e in self._entities(p, await self._pipeline(p))]))
            except (EntryError, CompileError, st.StoreError) as e:
                log.info("placement %s/%s: what it held cannot be known: %s", p.metadata.namespace,
                         p.metadata.name, e)
        return out

    def _batches(self, plan: ent.Plan) -> list[list[p4r.Update]]:
        """The plan's Writes, in order, each cut to at most max_write_batch updates."""
        return [b for w in plan.writes for b in ent.batches(w, self.settings.max_write_batch)]

    @staticmethod
    def _refused(name: str, dev: _Device, batch: list[p4r.Update], errors,
                 owner_of: dict[tuple, tuple[kr.Placement, str]]) -> bool:
        """A Write some updates of which failed: the placements whose own entities the device refuses
        for what they are fail alone (remembered until their spec changes). False when a failure is
        not one placement's own: the device's fault, for the Write's error to tell."""
        refused: dict[tuple[str, str], tuple[bytes, str, str]] = {}
        for upd, err in zip(batch, errors):
            if err.canonical_code in (code_pb2.OK, code_pb2.ALREADY_EXISTS, code_pb2.NOT_FOUND):
                continue  # done, or a race: the next pass reads the device again
            owner, path = owner_of.get(ent.entity_key(upd.entity), (None, ""))
            if owner is None or not faults.refused_for_itself(err.canonical_code):
                return False
            reason = faults.UNSUPPORTED if err.canonical_code == code_pb2.UNIMPLEMENTED else faults.INSTALL_FAILED
            refused[(owner.metadata.namespace, owner.metadata.name)] = (
                owner.spec.SerializeToString(deterministic=True),
                f"device {name} refused {path}: {code_pb2.Code.Name(err.canonical_code)}: {err.message}", reason)
        for key, (_, why, _) in refused.items():
            log.warning("placement %s/%s: %s", *key, why)
        dev.refused.update(refused)
        return True

    async def _release(self, leaving: list[kr.Placement]) -> None:
        """The device no longer holds these placements: let them go (the controller waits for it)."""
        for p in leaving:
            try:
                await self.store.delete(st.PLACEMENTS, p.metadata.namespace, p.metadata.name, shard=self.node)
            except st.NotFound:
                pass

    async def _set_status(self, p: kr.Placement, phase: str, message: str, cookie: int = 0,
                          reason: str = "", disruptive: bool | None = None) -> None:
        def update(cur: kr.Placement) -> kr.Placement | None:
            if cur.spec != p.spec or cur.metadata.HasField("deletion_timestamp"):
                return None  # moved, rolled to another generation or leaving: that gets its own pass
            s = cur.status
            gen = p.spec.deployment_generation if phase == "Running" else s.observed_generation
            hurt = s.disruptive if disruptive is None else disruptive
            if (s.phase, s.message, s.cookie, s.observed_generation, s.reason, s.disruptive) == \
                    (phase, message[:1000], cookie or s.cookie, gen, reason, hurt):
                return None
            if s.phase != phase:
                s.last_transition_time.GetCurrentTime()
            s.phase, s.message, s.observed_generation, s.reason = phase, message[:1000], gen, reason
            s.disruptive = hurt
            if cookie:
                s.cookie = cookie
            return cur
        cached = self.placements.get((p.metadata.namespace, p.metadata.name))
        if cached is None or update(_copy(cached)) is None:
            return  # nothing to write (the watch tells us if etcd's copy differs)
        with tracer.start_as_current_span("status write-back", attributes={"kubep4.phase": phase}):
            updated = await self.store.mutate(st.PLACEMENTS, p.metadata.namespace, p.metadata.name, update,
                                              shard=self.node, current=cached)
        if updated is not None:
            self.placements.observe(updated)


def _copy(m):
    out = type(m)()
    out.CopyFrom(m)
    return out
