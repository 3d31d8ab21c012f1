"""The T4P4S device driver: a device whose switch is the pipeline's own T4P4S program.

T4P4S is a different kind of target (issue 15, facts from real builds): a switch is one program,
built from the P4 source (the builder stores that program as the pipeline's device config); a new
program is a new binary and a restart; and it is controlled not over P4Runtime but over T4P4S's
own protocol (``services.node_agent.t4p4s_protocol``) with the roles reversed: the controller
listens and the switch connects to ``localhost:T4P4S_CTL_PORT``.

An install on a T4P4S device is therefore, each phase a span under ``node_agent install``:

1. ``t4p4s switch start``: the pipeline's switch program, written once per digest under the
   agent's launch dir, started with its DPDK start command (``launcher.t4p4s_argv``), its output
   in the device's log file, in its own process group under ``setpriv --pdeathsig KILL``;
2. ``t4p4s connect``: the switch connecting to the agent's listener on ``127.0.0.1:controller_port``
   (the listener is up before the switch starts: a T4P4S switch that finds no controller runs
   without one);
3. ``t4p4s entries``: one ``P4T_ADD_TABLE_ENTRY`` per table entry, then ``P4T_CTRL_INITIALIZED``
   (the switch waits for it before it forwards).

Later, new entries are added to the running switch; an entry removed or changed, or another
pipeline, restarts the switch and writes everything again (T4P4S's switch handles no modify or
remove). A switch that exits (its connection ends) is started again by the next reconcile, after a
back-off when it exited soon after starting (kubep4.backoff). A device with no placements runs no
switch. The protocol acknowledges nothing and reads nothing: Running on a T4P4S device means the
switch connected, every message was written to it, and its connection is still open; the agent
cannot read the entries back as it does over P4Runtime (docs/switches.md).

Unsupported (each placement that uses one fails alone, reason ``EntityUnsupported``, naming the
entity's path): every entity kind but table entries (T4P4S's protocol has no message for action
profiles, multicast groups, clone sessions, counters, meters, registers, value sets); default
actions (T4P4S has P4T_SET_DEFAULT_ACTION; this driver does not send it); entries through action
profiles; optional matches; direct counter or meter data on an entry; entries that do not fit a
T4P4S message (names over 127 bytes, more than 10 fields or parameters, over 2,048 bytes).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time

import grpc
from opentelemetry import trace

from kubep4.backoff import Backoff
from kubep4.entities import kind_of
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import EntryError, cookie_for_digest, p4i, p4r
from kubep4.p4runtime_client import P4RuntimeError
from services.node_agent import entries as ent
from services.node_agent import faults
from services.node_agent import launcher as ln
from services.node_agent import t4p4s_protocol as proto
from services.node_agent.compiler import CompileError

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.node_agent")

CONNECT_TIMEOUT = 30.0   # seconds a started switch has to connect to its controller
STAYED_UP = 30.0         # a switch up this long that exits is restarted at once (the back-off resets)

_MATCH = {p4i.MatchField.EXACT: proto.EXACT, p4i.MatchField.LPM: proto.LPM, p4i.MatchField.TERNARY: proto.TERNARY,
          p4i.MatchField.RANGE: proto.RANGE}


class Unsupported(Exception):
    """An entity T4P4S (or this driver) cannot take."""


def _unreachable(message: str) -> P4RuntimeError:
    """A switch that is not there (did not start, did not connect, went away): retried with
    back-off, the placements Unknown (DeviceUnreachable), as for a P4Runtime device that does not answer."""
    return P4RuntimeError(message, grpc.StatusCode.UNAVAILABLE)


def _value(raw: bytes, bits: int) -> bytes:
    width = (bits + 7) // 8
    raw = raw.lstrip(b"\0")
    if len(raw) > width:
        raise Unsupported(f"a value of {len(raw)} bytes for a {bits}-bit field")
    return raw.rjust(width, b"\0")


def message_for(e: p4r.Entity, index) -> bytes:
    """The P4T_ADD_TABLE_ENTRY for a table entry (xid 0); Unsupported for anything else."""
    kind = kind_of(e)
    if kind != "table_entries":
        raise Unsupported(f"T4P4S's control protocol has no message for {kind.replace('_', ' ')}")
    te = e.table_entry
    if te.is_default_action:
        raise Unsupported("default actions are not sent to T4P4S by KubeP4 (P4T_SET_DEFAULT_ACTION is not "
                          "implemented by its driver)")
    if not te.action.HasField("action"):
        raise Unsupported("an entry through an action profile: T4P4S's protocol carries direct actions only")
    if te.HasField("counter_data") or te.HasField("meter_config"):
        raise Unsupported("direct counter or meter data on an entry: T4P4S's protocol has no field for it")
    table = index.tables_by_id[te.table_id].info
    given = {m.field_id: m for m in te.match}
    matches = []
    for mf in table.match_fields:  # every key field, in the key's order: T4P4S takes them by position
        kind = _MATCH.get(mf.match_type)
        if kind is None:
            raise Unsupported(f"match field {mf.name}: {p4i.MatchField.MatchType.Name(mf.match_type)} matches "
                              "are not in T4P4S's protocol")
        m = given.get(mf.id)
        width = (mf.bitwidth + 7) // 8
        if kind == proto.EXACT:
            value = m.exact.value if m is not None else b""
            matches.append(proto.Match(mf.name, kind, mf.bitwidth, _value(value, mf.bitwidth)))
        elif kind == proto.LPM:
            value, plen = (m.lpm.value, m.lpm.prefix_len) if m is not None else (b"", 0)
            matches.append(proto.Match(mf.name, kind, mf.bitwidth, _value(value, mf.bitwidth), prefix_len=plen))
        elif kind == proto.TERNARY:
            value, mask = (m.ternary.value, m.ternary.mask) if m is not None else (b"", b"")
            matches.append(proto.Match(mf.name, kind, mf.bitwidth, _value(value, mf.bitwidth),
                                       mask=_value(mask, mf.bitwidth), priority=te.priority))
        else:
            low, high = (m.range.low, m.range.high) if m is not None else (b"", b"\xff" * width)
            matches.append(proto.Match(mf.name, kind, mf.bitwidth, _value(low, mf.bitwidth),
                                       high=_value(high, mf.bitwidth)))
    action = index.actions_by_id[te.action.action.action_id]
    given_params = {p.param_id: p.value for p in te.action.action.params}
    params = [proto.Param(p.name, p.bitwidth, _value(given_params.get(p.id, b""), p.bitwidth))
              for p in action.params]  # by position, in the action's order
    try:
        return proto.add_table_entry(table.preamble.name, matches, action.preamble.name, params)
    except proto.Unencodable as err:
        raise Unsupported(str(err)) from None


class T4P4SDriver:
    def __init__(self, agent, dev: kr.Device):
        self.agent, self.dev, self.name = agent, dev, dev.name
        self.port = dev.launch.controller_port or ln.T4P4S_CONTROLLER_PORT
        self.server: asyncio.Server | None = None
        self.switch: ln.SwitchProcess | None = None
        self.digest = ""             # the pipeline the running switch is
        self.started_at = 0.0
        self.restart_backoff = Backoff(0.5, 10.0, jitter=0.0)
        self.not_before = 0.0        # no switch start before this (monotonic): it exited too soon
        self.initialized = False     # CTRL_INITIALIZED sent to the running switch
        self.sent: dict[tuple, bytes] = {}  # entity key -> message, written to the running switch
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._connected = asyncio.Event()
        self._reader: asyncio.Task | None = None
        self._expecting = False      # a switch we started may connect now
        self.xid = 0

    # ------------------------------------------------------------ the controller's listener
    async def _listen(self) -> None:
        if self.server is None:
            try:
                self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
            except OSError as e:
                raise _unreachable(f"device {self.name}: cannot listen on 127.0.0.1:{self.port} for its T4P4S "
                                   f"switch: {e}") from None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._expecting or self._conn is not None:
            log.warning("device %s: a connection to its T4P4S controller port from %s that is not its switch: "
                        "closed", self.name, writer.get_extra_info("peername"))
            writer.close()
            return
        self._expecting = False
        self._conn = (reader, writer)
        self._connected.set()
        self._reader = asyncio.create_task(self._read(reader, writer))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """What the switch sends (digests: not used) until its connection ends; then the device is
        checked again (the switch is started again)."""
        try:
            while True:
                head = await reader.readexactly(proto.HEADER.size)
                _, kind, length, _ = proto.HEADER.unpack(head)
                if length > proto.HEADER.size:
                    await reader.readexactly(length - proto.HEADER.size)
                log.debug("device %s: T4P4S switch sent message type %d", self.name, kind)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if self._conn is not None and self._conn[1] is writer:
                self._lost()
                self.agent.queue.add(self.name)

    def _lost(self) -> None:
        """The running switch is gone (or going): nothing is known to be on the device."""
        if self._conn is not None:
            self._conn[1].close()
        self._conn = None
        self._connected.clear()
        self.sent, self.initialized = {}, False

    # ------------------------------------------------------------ the switch process
    def _binary(self, digest: str, program: bytes) -> str:
        """The pipeline's switch program on disk, once per digest (cached)."""
        where = os.path.join(self.agent.launch_dir, "t4p4s", digest.replace(":", "-"))
        path = os.path.join(where, "switch")
        if not os.path.exists(path):
            os.makedirs(where, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=where)
            with os.fdopen(fd, "wb") as f:
                f.write(program)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        return path

    async def _stop_switch(self) -> None:
        self._lost()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self.switch is not None:
            await asyncio.to_thread(self.switch.stop)
            self.switch = None
        self.digest = ""

    async def _start_switch(self, digest: str, program: bytes) -> None:
        now = time.monotonic()
        if now < self.not_before:
            raise _unreachable(f"device {self.name}: its T4P4S switch exited soon after it started; next start "
                               f"in {self.not_before - now:.1f}s (log: {self._log_path})")
        await self._listen()
        binary = self._binary(digest, program)
        argv = ln.t4p4s_argv(binary, self.dev)
        self.switch = ln.SwitchProcess(self.name, argv, self._log_path, cwd=os.path.dirname(binary))
        self._expecting = True
        self.started_at = time.monotonic()
        with tracer.start_as_current_span("t4p4s switch start", attributes={"kubep4.device": self.name}):
            try:
                await asyncio.to_thread(self.switch.start)
            except ln.NotRunnable as e:  # trying again runs the same bytes: until the spec changes
                self.switch = None
                raise CompileError(f"pipeline {digest[:19]}'s device config is not a T4P4S switch program this "
                                   f"node can run: {e}") from None
            except ln.LaunchError as e:
                self._exited_early()
                raise _unreachable(str(e)) from None
        with tracer.start_as_current_span("t4p4s connect", attributes={"kubep4.device": self.name,
                                                                       "t4p4s.controller_port": self.port}):
            deadline = time.monotonic() + CONNECT_TIMEOUT
            while not self._connected.is_set():
                if not self.switch.alive():
                    self._exited_early()
                    raise _unreachable(f"device {self.name}: its T4P4S switch exited with {self.switch.exit_code()} "
                                       f"before connecting to 127.0.0.1:{self.port}; log: {self._log_path}")
                if time.monotonic() > deadline:
                    await asyncio.to_thread(self.switch.stop)
                    raise _unreachable(f"device {self.name}: its T4P4S switch did not connect to 127.0.0.1:"
                                       f"{self.port} within {CONNECT_TIMEOUT:.0f}s (is it built with "
                                       f"T4P4S_CTL_PORT={self.port}?); log: {self._log_path}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._connected.wait(), 0.05)
        self.digest = digest
        log.info("device %s: T4P4S switch %s started (pid %s) and connected", self.name, digest[:19], self.switch.pid)

    def _exited_early(self) -> None:
        if time.monotonic() - self.started_at >= STAYED_UP:
            self.restart_backoff.reset()
        self.not_before = time.monotonic() + self.restart_backoff.next()

    @property
    def _log_path(self) -> str:
        return os.path.join(self.agent.launch_dir, f"{self.name}.log")

    async def _send(self, messages: list[bytes]) -> None:
        writer = self._conn[1] if self._conn is not None else None
        if writer is None:
            raise _unreachable(f"device {self.name}: its T4P4S switch is not connected")
        try:
            for m in messages:
                self.xid = (self.xid + 1) & 0xFFFFFFFF
                writer.write(proto.with_xid(m, self.xid))
            await writer.drain()
        except (ConnectionError, OSError) as e:
            self._lost()
            raise _unreachable(f"device {self.name}: its T4P4S switch went away: {e}") from None

    # ------------------------------------------------------------ the reconcile
    async def converge(self, dev, active: list[kr.Placement], leaving: list[kr.Placement]) -> None:
        agent = self.agent
        if self.switch is not None and not self.switch.alive() and self._conn is None:
            if time.monotonic() - self.started_at < STAYED_UP:
                self._exited_early()
            log.warning("device %s: its T4P4S switch exited with %s; starting it again", self.name,
                        self.switch.exit_code())
            self.switch, self.digest = None, ""
        if not active:  # nothing wanted: no switch (its tables go with it)
            if self.switch is not None:
                with agent._span("node_agent clear", leaving, self.name) if leaving else contextlib.nullcontext():
                    await self._stop_switch()
            dev.cookie = None
            await agent._release(leaving)
            return
        running = self.digest if self.switch is not None and self.switch.alive() else ""
        digest = next((p.spec.pipeline_digest for p in active if p.spec.pipeline_digest == running),
                      active[0].spec.pipeline_digest)
        for p in active:
            if p.spec.pipeline_digest != digest:
                await agent._set_status(p, "Failed", f"device {self.name} runs another pipeline ({digest[:19]})",
                                        reason="PipelineConflict")
        active = [p for p in active if p.spec.pipeline_digest == digest]
        cookie = cookie_for_digest(digest)
        new = [p for p in active if not agent._holds(p, cookie) and (
            p.status.observed_generation != p.spec.deployment_generation or p.status.cookie != cookie)]
        pipeline = await agent._pipeline(active[0])
        wanted, rejected = self._wanted(active, pipeline)
        restart = not running or self._conn is None or any(wanted.get(k) != m for k, m in self.sent.items())
        todo = list(wanted) if restart else [k for k in wanted if k not in self.sent]
        with agent._span("node_agent install", new, self.name) if new else contextlib.nullcontext():
            if restart or todo or not self.initialized:
                await asyncio.gather(*(agent._set_status(p, "Installing", "") for p in active
                                       if (p.metadata.namespace, p.metadata.name) not in rejected))
            if restart:
                if self.switch is not None:
                    why = ("its connection ended" if self._conn is None else "another pipeline" if running != digest
                           else "entries to remove or change (T4P4S's switch takes adds only)")
                    log.info("device %s: restarting its T4P4S switch: %s", self.name, why)
                await self._stop_switch()
                if not pipeline.device_config.startswith((b"\x7fELF", b"#!")):  # T4P4S builds an ELF program
                    raise CompileError(f"pipeline {active[0].spec.pipeline}'s device config is not a T4P4S switch "
                                       "program (neither an ELF executable nor a script)")
                await self._start_switch(digest, pipeline.device_config)
            with tracer.start_as_current_span("t4p4s entries", attributes={"kubep4.device": self.name,
                                                                            "t4p4s.entries": len(todo)}):
                await self._send([wanted[k] for k in todo] + ([] if self.initialized else [proto.ctrl_initialized()]))
            self.sent.update({k: wanted[k] for k in todo})
            self.initialized = True
        dev.cookie = cookie
        await agent._release(leaving)
        for p in active:
            why = rejected.get((p.metadata.namespace, p.metadata.name))
            if why:
                await agent._set_status(p, "Failed", why[1], reason=why[0])
            else:
                await agent._set_status(p, "Running", "", cookie)

    def _wanted(self, active: list[kr.Placement], pipeline) -> tuple[dict[tuple, bytes], dict]:
        """entity key -> message for the placements' table entries; the placements refused, with
        reason and message (an entity T4P4S cannot take, one that does not fit the pipeline, a key
        another deployment uses with another value)."""
        wanted: dict[tuple, bytes] = {}
        owner: dict[tuple, kr.Placement] = {}
        rejected: dict[tuple[str, str], tuple[str, str]] = {}
        for p in active:
            key = (p.metadata.namespace, p.metadata.name)
            try:
                mine = []
                for path, e in self.agent._entities(p, pipeline):
                    try:
                        mine.append((ent.entity_key(e), message_for(e, pipeline.index)))
                    except Unsupported as err:
                        raise Unsupported(f"device {self.name} (T4P4S) cannot take {path}: {err}") from None
            except Unsupported as err:
                rejected[key] = (faults.UNSUPPORTED, str(err))
                continue
            except EntryError as err:
                rejected[key] = ("InvalidEntry", str(err))
                continue
            clash = next((k for k, m in mine if k in wanted and wanted[k] != m
                          and owner[k].spec.deployment != p.spec.deployment), None)
            if clash is not None:
                rejected[key] = ("EntryConflict", f"an entry has the key of one of deployment "
                                                  f"{owner[clash].spec.deployment} on device {self.name}, with "
                                                  "another value")
                continue
            for k, m in mine:
                wanted.setdefault(k, m)
                owner.setdefault(k, p)
        return wanted, rejected

    async def close(self) -> None:
        await self._stop_switch()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
