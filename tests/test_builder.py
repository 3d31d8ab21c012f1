"""The builder (services/builder) on the local stack: a source Pipeline is compiled once per digest,
centrally, through the p4c STAND-IN (tests/standins: no P4 compiler can be installed here), and
owns the Pipeline's status (Compiled, diagnostics with file:line, Ready only after it); deployments
of a pipeline that is not Ready wait, naming it; a builder killed mid-compile leaves nothing
half-done and the next one finishes it."""
from __future__ import annotations

import os

import pytest

from kubep4 import errors
from kubep4 import store as st
from kubep4.cli.trace import trace_id_of
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.otlp_receiver import OTLPReceiver

from .conftest import ROOT, eventually, example_objects
from .test_compile import alive

STANDINS = ROOT / "tests" / "standins"
BASIC = (ROOT / "examples" / "basic" / "basic.p4").read_text()


def with_marker(program: str, line: int, marker: str) -> str:
    """The program with a STAND-IN marker comment as its line ``line`` (1-based)."""
    lines = program.splitlines()
    lines.insert(line - 1, f"// STAND-IN: {marker}")
    return "\n".join(lines) + "\n"


def source_pipeline(name: str, program: str, options: tuple[str, ...] = (), backend: str = "p4c") -> kr.Pipeline:
    p = kr.Pipeline()
    p.metadata.name = name
    p.spec.source.CopyFrom(kr.P4Source(program=program, backend=backend, arch="v1model", target="bmv2",
                                       options=list(options)))
    p.spec.arch, p.spec.target = "v1model", "bmv2"  # as admission defaults them from the source
    return p


def deployment(name: str, pipeline: str, replicas: int = 1, entries: bool = True) -> kr.Deployment:
    _, d = example_objects()
    d.metadata.name = name
    d.spec.pipeline = pipeline
    d.spec.replicas = replicas
    if not entries:
        d.spec.ClearField("table_entries")
    return d


def compiled_condition(p: kr.Pipeline) -> kr.Condition:
    return next(c for c in p.status.conditions if c.type == "Compiled")


def invocations(log) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def stack_env(tmp_path, **extra) -> dict[str, str]:
    return {"PATH": f"{STANDINS}:{os.environ['PATH']}", "KUBEP4_STANDIN_LOG": str(tmp_path / "compiles.log"),
            **extra}


async def pipeline_where(c: AsyncClient, name: str, test, what: str, timeout: float = 60):
    async def check():
        p = await c.get("pipeline", name)
        return p if test(p) else None
    return await eventually(check, timeout, what=what)


async def test_three_nodes_one_source_pipeline_one_compile(tmp_path):
    """Three replicas on three nodes, two builders running: the stand-in p4c runs once."""
    log = tmp_path / "compiles.log"
    with LocalStack(nodes=3, devices_per_node=1, builders=2, data_dir=str(tmp_path / "stack"),
                    env=stack_env(tmp_path)) as stack:
        async with stack.client() as c:
            created = await c.create(source_pipeline("basic", BASIC))
            assert created.status.phase == "Pending"  # not Ready before it compiles
            await c.create(deployment("basic", "basic", replicas=3))
            ready = await c.wait_ready("basic", timeout=60)
            assert ready.status.ready_replicas == 3
            assert len({r.node for r in ready.status.replicas}) == 3
            p = await c.get("pipeline", "basic")
        assert p.status.phase == "Ready"
        cc = compiled_condition(p)
        assert cc.status == "True" and cc.reason == "Compiled" and "p4c 1.2.5" in cc.message
        assert p.status.compile.backend == "p4c" and p.status.compile.version == "p4c 1.2.5 (SHA: STAND-IN)"
        assert p.status.compile.compiler == f"local:{STANDINS / 'p4c'}"
        assert p.status.compile.builder in ("builder-0", "builder-1")
        assert [ph.name for ph in p.status.compile.phases] == ["p4c"]
        assert p.status.compile.phases[0].peak_rss_kb > 0 and p.status.compile.seconds > 0
        assert p.spec.p4info_ref.digest and p.spec.device_config_ref.digest
        assert p.spec.source.program == BASIC  # the Pipeline as given, with the refs of what was compiled
        assert invocations(log) == ["p4c program.p4"]  # one compile for three nodes and two builders
        async with stack.store() as store:
            assert await store.get_blob(p.spec.device_config_ref) == \
                (ROOT / "examples" / "basic" / "basic.json").read_bytes()
            assert (await store.list_raw(f"{st.ROOT}/builds/"))[0] == []  # no claim left behind
        async with stack.client() as c:  # applying it again changes nothing
            assert (await c.apply(source_pipeline("basic", BASIC)))[1] == "unchanged"


async def test_a_compile_error_fails_the_pipeline_and_its_deployments_wait_naming_it(tmp_path):
    """An error at line 7 is on the Pipeline (Failed, Compiled False, file and line); a deployment
    of it waits with a condition naming the pipeline; a warning is on a Ready pipeline."""
    broken = with_marker(BASIC, 7, "error type-error: 'hdr.ipv4.ttl' has no such field")
    warned = with_marker(BASIC, 12, "warning uninitialized: 'meta.port' may be uninitialized")
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path / "stack"), env=stack_env(tmp_path)) as stack:
        async with stack.client() as c:
            await c.create(source_pipeline("broken", broken))
            await c.create(deployment("broken", "broken", entries=False))
            p = await pipeline_where(c, "broken", lambda p: p.status.phase == "Failed", "the pipeline to fail")
            cc = compiled_condition(p)
            assert cc.status == "False" and cc.reason == "CompileFailed"
            assert "program.p4(7): [--Werror=type-error] error: 'hdr.ipv4.ttl' has no such field" in cc.message
            ready = next(x for x in p.status.conditions if x.type == "Ready")
            assert ready.status == "False"
            (d,) = [x for x in p.status.compile.diagnostics if x.severity == "error"]
            assert (d.file, d.line, d.kind, d.message) == ("program.p4", 7, "type-error", "'hdr.ipv4.ttl' has no such field")
            assert not p.spec.p4info_ref.digest and not p.spec.device_config_ref.digest

            async def waiting():
                x = await c.get("deployment", "broken")
                scheduled = next(k for k in x.status.conditions if k.type == "Scheduled")
                return x if scheduled.status == "False" and "pipeline default/broken is not Ready (Failed" \
                    in scheduled.message else None
            d = await eventually(waiting, 30, what="the deployment to wait for its pipeline")
            assert d.status.ready_replicas == 0 and not d.status.replicas[0].node  # never placed
            ready = next(k for k in d.status.conditions if k.type == "Ready")
            assert ready.status == "False" and "pipeline default/broken" in ready.message

            await c.create(source_pipeline("warned", warned))
            await c.create(deployment("warned", "warned"))
            running = await c.wait_ready("warned", timeout=60)
            assert running.status.ready_replicas == 1
            p = await c.get("pipeline", "warned")
            assert p.status.phase == "Ready"
            cc = compiled_condition(p)
            assert cc.status == "True" and "1 warning(s)" in cc.message
            assert "program.p4(12): [--Wwarn=uninitialized] warning: 'meta.port' may be uninitialized" in cc.message
            (w,) = p.status.compile.diagnostics
            assert (w.severity, w.file, w.line, w.kind) == ("warning", "program.p4", 12, "uninitialized")


async def test_a_disallowed_option_is_refused_with_its_field_path(front):
    """Admission refuses an option outside the backend's allowlist, naming the option's field."""
    async with AsyncClient(front.api) as c:
        for name, options, backend, fields in (
                ("out", ("-DOK=1", "-o", "/etc/kubep4"), "p4c", ["spec.source.options[1]", "spec.source.options[2]"]),
                ("inc", ("-I/etc",), "p4c", ["spec.source.options[0]"]),
                ("t4", ("-DX=1",), "t4p4s", ["spec.source.options[0]"])):
            with pytest.raises(errors.InvalidArgument) as info:
                await c.create(source_pipeline(name, BASIC, options, backend))
            assert [v.field for v in info.value.violations] == fields
            assert "not allowed" in str(info.value) or "takes no compiler options" in str(info.value)


async def test_a_builder_killed_mid_compile_leaves_nothing_half_done_and_the_next_finishes(tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("the stand-in p4c blocks while this file exists")
    log = tmp_path / "compiles.log"
    program = with_marker(BASIC, 3, "hold")
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path / "stack"),
                    env=stack_env(tmp_path, KUBEP4_STANDIN_HOLD=str(hold)), builder_claim_ttl=3) as stack:
        async with stack.client() as c, stack.store() as store:
            await c.create(source_pipeline("basic", program))
            await c.create(deployment("basic", "basic"))
            await eventually(lambda: invocations(log), 30, what="the compile to start")
            p = await pipeline_where(c, "basic", lambda p: compiled_condition(p).reason == "Compiling",
                                     "the pipeline to say Compiling")
            assert "builder-0" in compiled_condition(p).message
            (compiler_pid,) = [int(x) for x in (tmp_path / "stack").glob("builder-0/*/out/.standin-pid")
                               for x in [x.read_text()]]
            work_dirs = sorted(os.listdir(tmp_path / "stack" / "builder-0"))
            assert len(work_dirs) == 1

            stack.kill("builder-0")  # SIGKILL, mid-compile
            await eventually(lambda: not alive(compiler_pid), 10, what="the compiler to die with its builder")
            p = await c.get("pipeline", "basic")
            assert p.status.phase == "Pending" and not p.spec.p4info_ref.digest  # nothing half-done
            assert compiled_condition(p).status == "Unknown"
            d = await c.get("deployment", "basic")
            assert d.status.ready_replicas == 0 and "pipeline default/basic is not Ready (Pending" in \
                next(k for k in d.status.conditions if k.type == "Scheduled").message
            assert (await store.list_raw(f"{st.BLOBS}"))[0] == []  # no artifact was written

            hold.unlink()
            stack.procs["builder-0"].start()  # the same identity: it takes its old claim over
            stack.procs["builder-0"].wait_ready(30)
            running = await c.wait_ready("basic", timeout=60)
            assert running.status.ready_replicas == 1
            p = await c.get("pipeline", "basic")
            assert p.status.phase == "Ready" and compiled_condition(p).status == "True"
            assert invocations(log) == ["p4c program.p4", "p4c program.p4"]  # the second one finished it
            assert work_dirs[0] not in os.listdir(tmp_path / "stack" / "builder-0")  # the dead one's dir went
            assert (await store.list_raw(f"{st.ROOT}/builds/"))[0] == []


async def test_the_builders_spans_join_the_pipelines_trace(tmp_path):
    receiver = await OTLPReceiver().start()
    try:
        env = stack_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
        with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path / "stack"), env=env) as stack:
            async with stack.client() as c:
                created = await c.create(source_pipeline("basic", BASIC))
                tid = trace_id_of(created.metadata.trace_context)
                await pipeline_where(c, "basic", lambda p: p.status.phase == "Ready", "the pipeline to be Ready")

                def spans():
                    got = {s.name: s for s in receiver.spans(tid) if s.service == "kubep4-builder"}
                    return got if {"build pipeline", "compile"} <= set(got) else None
                got = await eventually(spans, 20, 0.1, "the builder's spans in the pipeline's trace")
                assert got["build pipeline"].attributes["compile.result"] == "Compiled"
                assert got["compile"].attributes["compile.version"] == "p4c 1.2.5 (SHA: STAND-IN)"
                assert any(s.name == "CreatePipeline" or "CreatePipeline" in s.name for s in receiver.spans(tid))
    finally:
        await receiver.stop()
