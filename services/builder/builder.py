"""The builder: every source Pipeline compiled once per digest, its artifacts stored by digest.

It watches Pipelines (an informer indexed by digest). A source Pipeline that has not been
compiled puts its digest on a work queue served by a bounded pool of workers. A worker:

1. reuses the artifacts of another Pipeline of the same digest that is compiled already (read and
   written again, which also tells the artifact collector they are wanted), else
2. claims the digest in etcd (``/kubep4/builds/<digest>``, put-if-absent on this builder's lease:
   several builders may run, and one digest is compiled by one of them at a time; the claim of a
   builder that died goes with its lease),
3. compiles in a fresh directory under ``work_dir`` with bounded time and memory
   (kubep4.compilers), the spans in the Pipeline's trace,
4. stores P4Info and device config as blobs (``Store.put_blob``: content-addressed), then sets
   every Pipeline of that digest in one conditional write each: ``spec.p4info_ref`` /
   ``device_config_ref``, ``status.compile`` (compiler, version, time, phases, diagnostics), the
   ``Compiled`` condition, and ``Ready``. A failed compile sets ``Compiled`` False, the diagnostics
   and phase ``Failed``; a temporary failure (a timeout, a backend not installed yet) is tried
   again later.

Nothing is written before a compile has finished, so a builder killed mid-compile leaves the
Pipeline as it was (Compiled Unknown, "Compiling"), no artifact referenced (blobs written by a
builder killed before the Pipeline write are referenced by nothing and collected), and its
compiler dies with it (PR_SET_PDEATHSIG). The next builder to claim the digest compiles it; a
builder restarted under the same identity takes over its own claim at once. A builder that
starts removes the working directories of builders that are gone.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile

from opentelemetry import trace

from kubep4 import conditions as cond
from kubep4 import store as st
from kubep4.backoff import Backoff
from kubep4.compilers import CompileFailed, Output, Toolchain
from kubep4.compilers.diagnostics import summary
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.informer import Informer, WorkQueue, run_workers
from kubep4.telemetry import extract_context

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.builder")

BUILDS = st.BUILDS  # claims: BUILDS<digest> -> builder identity, on the builder's lease
COMPILED = "Compiled"
READY = "Ready"
PENDING, FAILED, READY_PHASE = "Pending", "Failed", "Ready"
COMPILING = "Compiling"
RETRY_TEMPORARY = 30.0   # seconds before a temporary failure (timeout, backend missing) is tried again


def is_source(p: kr.Pipeline) -> bool:
    return p.spec.WhichOneof("program") == "source"


def needs_build(p: kr.Pipeline) -> bool:
    """A source Pipeline with no final compile result for its digest."""
    if not is_source(p) or p.metadata.HasField("deletion_timestamp"):
        return False
    c = cond.get(p.status.conditions, COMPILED)
    if c is None or c.status == cond.UNKNOWN:
        return True
    if c.status == cond.TRUE:
        return not p.spec.p4info_ref.digest
    return p.status.phase != FAILED  # False and not Failed: a temporary failure, tried again


def compiled(p: kr.Pipeline) -> bool:
    c = cond.get(p.status.conditions, COMPILED)
    return is_source(p) and c is not None and c.status == cond.TRUE and bool(p.spec.p4info_ref.digest)


class Builder:
    def __init__(self, store: st.Store, toolchain: Toolchain, identity: str, workers: int = 2,
                 claim_ttl: int = 10, work_dir: str = ""):
        self.store = store
        self.toolchain = toolchain
        self.identity = identity
        self.workers = workers
        self.claim_ttl = claim_ttl
        self.work_dir = work_dir or os.path.join(tempfile.gettempdir(), "kubep4-builder")
        self.queue: WorkQueue[str] = WorkQueue()
        self.pipelines: Informer = Informer(store, st.PIPELINES, self._on_pipeline,
                                            indexes={"digest": lambda p: p.status.digest})
        self.lease_id = 0
        self.compiles = 0  # compiles this process ran (successful or not)
        self._claimed: set[str] = set()  # digests this process holds the claim of

    # ------------------------------------------------------------ events: enqueue digests only
    def _on_pipeline(self, etype: str, p: kr.Pipeline) -> None:
        if etype != "DELETED" and p.status.digest and needs_build(p):  # not for our own writes' events
            self.queue.add(p.status.digest, cause=p.metadata.resource_version if etype != "SYNC" else None)

    # ------------------------------------------------------------ run
    async def run(self) -> None:
        self._clean_work_dir()
        self.lease_id = await self._grant()
        tasks = [asyncio.create_task(self.pipelines.run()), asyncio.create_task(self._keep_lease())]
        try:
            await self.pipelines.synced.wait()
            log.info("builder %s: %d pipelines, %d to build", self.identity, len(self.pipelines.cache),
                     len(self.queue))
            tasks.append(asyncio.create_task(run_workers(self.queue, self.reconcile, self.workers, name="build")))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for digest in list(self._claimed):
                await self._release(digest)
            if self.lease_id:
                await self.store.revoke_lease(self.lease_id)

    async def _grant(self) -> int:
        backoff = Backoff(initial=0.1, cap=2.0)
        while True:
            try:
                return await self.store.grant_lease(self.claim_ttl)
            except st.StoreError as e:
                await backoff.sleep(log.warning, "builder lease: %s; trying again in %.1fs", e)

    async def _keep_lease(self) -> None:
        """Keep the claims' lease alive; a lost lease (etcd unreachable past its TTL) is replaced.
        Claims taken on the old one are gone: a compile in flight then finishes and writes what a
        second compile of the same digest would write (the same artifacts), never half of it."""
        while True:
            await asyncio.sleep(self.claim_ttl / 3)
            try:
                if await self.store.keepalive(self.lease_id) <= 0:
                    log.warning("builder %s: claim lease lost; taking a new one", self.identity)
                    self.lease_id = await self._grant()
            except st.StoreError as e:
                log.warning("builder lease keepalive: %s", e)

    def _clean_work_dir(self) -> None:
        """Remove what builders that are gone left (a directory per compile, named PID-...)."""
        os.makedirs(self.work_dir, exist_ok=True)
        for entry in os.listdir(self.work_dir):
            pid = entry.split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(self.work_dir, entry), ignore_errors=True)

    # ------------------------------------------------------------ one digest
    async def reconcile(self, digest: str) -> float | None:
        pipelines = [p for p in self.pipelines.by("digest", digest) if is_source(p)]
        todo = [p for p in pipelines if needs_build(p)]
        if not todo:
            return None
        done = next((p for p in pipelines if compiled(p)), None)
        if done is not None:
            return await self._reuse(done, todo)
        if not await self._claim(digest):
            return max(0.5, self.claim_ttl / 4)  # another builder compiles it: look again later
        try:
            return await self._build(digest, todo)
        finally:
            await self._release(digest)

    async def _claim(self, digest: str) -> bool:
        key = BUILDS + digest
        if await self.store.put_if_absent(key, self.identity.encode(), self.lease_id):
            self._claimed.add(digest)
            return True
        holder = await self.store.get_raw(key)
        if holder is not None and holder[0].decode() == self.identity and digest not in self._claimed:
            # our previous incarnation's claim (killed mid-compile): take it over now, not after its TTL
            log.info("builder %s: taking over the claim on %s from a previous run", self.identity, digest)
            await self.store.delete_raw(key)
            return await self._claim(digest)
        return False

    async def _release(self, digest: str) -> None:
        self._claimed.discard(digest)
        key = BUILDS + digest
        try:
            holder = await self.store.get_raw(key)
            if holder is not None and holder[0].decode() == self.identity:
                await self.store.delete_raw(key)
        except st.StoreError as e:  # it goes with the lease
            log.warning("claim on %s not released: %s", digest, e)

    async def _build(self, digest: str, todo: list[kr.Pipeline]) -> float | None:
        first = todo[0]
        src = first.spec.source
        backend = src.backend or "p4c"
        with tracer.start_as_current_span("build pipeline", context=extract_context(first.metadata.trace_context),
                                          attributes={"kubep4.pipeline": f"{first.metadata.namespace}/"
                                                                         f"{first.metadata.name}",
                                                      "kubep4.digest": digest, "compile.backend": backend,
                                                      "kubep4.builder": self.identity}) as span:
            await self._write(todo, digest, lambda p: _mark_compiling(p, backend, self.identity))
            work = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.work_dir)
            self.compiles += 1
            try:
                with tracer.start_as_current_span("compile", attributes={"compile.backend": backend}) as cspan:
                    try:
                        out = await self.toolchain.compile(src, first.spec.arch, first.spec.target, work,
                                                           name="kubep4_" + digest.split(":")[-1][:16])
                    except CompileFailed as e:
                        cspan.set_attribute("compile.error", str(e)[:500])
                        cspan.set_status(trace.StatusCode.ERROR, e.reason)
                        raise
                    cspan.set_attributes({"compile.version": out.version, "compile.seconds": out.seconds,
                                          "compile.warnings": sum(d.severity == "warning" for d in out.diagnostics)})
                    for ph in out.phases:
                        cspan.add_event(ph.name, {"seconds": ph.seconds, "peak_rss_kb": ph.peak_rss_kb})
            except CompileFailed as e:
                span.set_attribute("compile.result", e.reason)
                log.info("pipeline %s (%s): %s", first.metadata.name, digest, e)
                failure = e
                await self._write(todo, digest, lambda p: _mark_failed(p, backend, failure, self.identity))
                return RETRY_TEMPORARY if failure.temporary else None
            finally:
                shutil.rmtree(work, ignore_errors=True)
            span.set_attribute("compile.result", "Compiled")
            refs = await self._store_artifacts(out)
            await self._write(todo, digest, lambda p: _mark_compiled(p, out, refs, self.identity))
            log.info("pipeline %s (%s) compiled by %s %s in %.2fs", first.metadata.name, digest, backend,
                     out.version, out.seconds)
        return None

    async def _store_artifacts(self, out: Output) -> tuple[kr.ArtifactRef, kr.ArtifactRef | None]:
        p4info = await self.store.put_blob(out.p4info)
        config = await self.store.put_blob(out.device_config) if out.device_config is not None else None
        return p4info, config

    async def _reuse(self, done: kr.Pipeline, todo: list[kr.Pipeline]) -> None:
        """Pipelines of a digest already compiled take its artifacts (written again: a collection
        that was about to take them, because the other Pipeline went, spares them)."""
        try:
            p4info = await self.store.put_blob(await self.store.get_blob(done.spec.p4info_ref))
            config = (await self.store.put_blob(await self.store.get_blob(done.spec.device_config_ref))
                      if done.spec.device_config_ref.digest else None)
        except st.NotFound:  # collected meanwhile: compile it again
            await self._write([done], done.status.digest, _forget_artifacts)
            return None

        def take(p: kr.Pipeline) -> kr.Pipeline:
            p.spec.p4info_ref.CopyFrom(p4info)
            if config is not None:
                p.spec.device_config_ref.CopyFrom(config)
            p.status.compile.CopyFrom(done.status.compile)
            p.status.phase = READY_PHASE
            c = cond.get(done.status.conditions, COMPILED)
            cond.mark_true(p.status.conditions, COMPILED, "Compiled", c.message if c else "")
            cond.mark_true(p.status.conditions, READY, "Compiled")
            return p
        await self._write(todo, done.status.digest, take)
        return None

    async def _write(self, pipelines: list[kr.Pipeline], digest: str, change) -> None:
        """Apply ``change`` to each Pipeline (conditional writes, retried on conflict), as long as it
        still has ``digest`` and is a source."""
        for p in pipelines:
            def fn(cur: kr.Pipeline) -> kr.Pipeline | None:
                if cur.status.digest != digest or not is_source(cur):
                    return None
                return change(cur)
            stored = await self.store.mutate(st.PIPELINES, p.metadata.namespace, p.metadata.name, fn,
                                             current=self.pipelines.get((p.metadata.namespace, p.metadata.name)))
            if stored is not None:
                self.pipelines.observe(stored)
                self.queue.wrote(digest, stored.metadata.resource_version)


def _mark_compiling(p: kr.Pipeline, backend: str, builder: str) -> kr.Pipeline:
    p.status.phase = PENDING
    cond.mark_unknown(p.status.conditions, COMPILED, COMPILING, f"{backend} on builder {builder}")
    cond.mark_unknown(p.status.conditions, READY, COMPILING, "waiting for the compile")
    return p


def _compile_status(backend: str, version: str, how: str, seconds: float, diagnostics, phases,
                    builder: str) -> kr.CompileStatus:
    s = kr.CompileStatus(backend=backend, compiler=how, version=version, seconds=seconds, builder=builder)
    s.diagnostics.extend(diagnostics)
    s.phases.extend(phases)
    s.finished.GetCurrentTime()
    return s


def _mark_compiled(p: kr.Pipeline, out: Output, refs, builder: str) -> kr.Pipeline:
    p4info, config = refs
    p.spec.p4info_ref.CopyFrom(p4info)
    if config is not None:
        p.spec.device_config_ref.CopyFrom(config)
    else:
        p.spec.ClearField("device_config_ref")
    backend = p.spec.source.backend or "p4c"
    p.status.compile.CopyFrom(_compile_status(backend, out.version, out.how, out.seconds, out.diagnostics,
                                              out.phases, builder))
    p.status.compile.device_config_unavailable = out.device_config_unavailable
    warnings = [d for d in out.diagnostics if d.severity == "warning"]
    message = f"{backend} {out.version} in {out.seconds:.2f}s"
    if warnings:
        message += f", {len(warnings)} warning(s): {summary(warnings, 2)}"
    if out.device_config_unavailable:
        message += f"; no device config: {out.device_config_unavailable}"
    p.status.phase = READY_PHASE
    cond.mark_true(p.status.conditions, COMPILED, "Compiled", message)
    cond.mark_true(p.status.conditions, READY, "Compiled")
    return p


def _mark_failed(p: kr.Pipeline, backend: str, e: CompileFailed, builder: str) -> kr.Pipeline:
    p.status.compile.CopyFrom(_compile_status(backend, e.version, e.how, sum(ph.seconds for ph in e.phases),
                                              e.diagnostics, e.phases, builder))
    message = str(e)[:1000]
    p.status.phase = PENDING if e.temporary else FAILED
    cond.mark_false(p.status.conditions, COMPILED, e.reason, message)
    cond.mark_false(p.status.conditions, READY, e.reason, message)
    return p


def _forget_artifacts(p: kr.Pipeline) -> kr.Pipeline:
    p.spec.ClearField("p4info_ref")
    p.spec.ClearField("device_config_ref")
    cond.mark_unknown(p.status.conditions, COMPILED, "ArtifactsMissing", "its artifacts were collected: compiling again")
    p.status.phase = PENDING
    return p


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


