"""One deployment is one trace across the four services (spans received by an in-process OTLP receiver),
and `kubep4 trace` renders it."""
from __future__ import annotations

import json

import pytest

from kubep4 import telemetry, waterfall
from kubep4.bench.p4read import stack_readers
from kubep4.cli.trace import trace_id_of
from kubep4.client import AsyncClient
from kubep4.localstack import LocalStack
from kubep4.otlp_receiver import OTLPReceiver, to_jaeger

from .conftest import eventually, example_objects
from .reftarget.p4rt_client import P4RTClient, delete
from .test_cli import kubep4

SERVICES = {"kubep4-apiserver", "kubep4-admission", "kubep4-controller", "kubep4-node-agent"}


@pytest.fixture
async def receiver():
    r = await OTLPReceiver().start()
    yield r
    await r.stop()


async def test_one_deployment_is_one_trace(receiver, tmp_path, monkeypatch):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "OTEL_METRIC_EXPORT_INTERVAL": "500"}
    with LocalStack(nodes=2, data_dir=str(tmp_path), env=env, resync_seconds=0.5) as stack:
        monkeypatch.setenv("KUBEP4_CONFIG", stack.client_config_path)  # the CLI below: the stack's admin
        async with stack.client() as c:
            pipeline, deployment = example_objects()
            await c.create(pipeline)
            created = await c.create(deployment)
            await c.wait_ready("basic", timeout=30)
            tid = trace_id_of(created.metadata.trace_context)

            def complete():
                names = [s.name for s in receiver.spans(tid)]
                return names.count("node_agent install") >= 2 and "deployment" in names
            await eventually(complete, 20, 0.1, "the deployment's spans")

            # a live trace renders through the CLI, from the receiver's Jaeger-style query API
            runner = await receiver.serve_query_api(port=0)
            port = runner.addresses[0][1]
            r = await kubep4(stack.api, "trace", "deployment", "basic", "--jaeger", f"http://127.0.0.1:{port}",
                             "-o", "json")
            await runner.cleanup()
            assert r.returncode == 0, r.stderr
            out = json.loads(r.stdout)
            assert out["traceID"] == tid
            assert {h["service"] for h in out["hops"]} == SERVICES

        def metric():
            return "kubep4_deployment_phase_transition_time_from_creation_seconds" in receiver.metrics
        await eventually(metric, 20, 0.1, "the phase-transition histogram")

        # the agents' periodic checks are not part of the deployment's trace; a repair is a trace of
        # its own, linked to it: remove an entry behind node-0's agent and wait for the repair
        dev = stack_readers(stack.device_ports, tls=stack.device_tls())[("node-0", "dev0")]
        held = await dev.entries()
        other = P4RTClient(dev.address, dev.device_id, tls=dev.tls)
        await other.arbitrate(1 << 100)
        await other.write([delete(held[0])])
        await other.close()

        def repaired():
            return [s for s in receiver.spans() if s.name == "node_agent repair"
                    and any(t == tid for t, _ in s.links)]
        # the repair itself takes ~0.1 s; its span comes through the agent's batch exporter, which backs
        # off when an export times out (it did once in CI, on a loaded machine): a liveness bound, not a speed
        repair = (await eventually(repaired, 60, 0.1, "a repair span linked to the deployment"))[0]
        assert repair.trace_id != tid and repair.parent_span_id == ""
        assert repair.attributes["kubep4.node"] == "node-0"
        assert "p4runtime write" in {s.name for s in receiver.spans(repair.trace_id)}
        await eventually(lambda: "kubep4_device_drift_repairs_total" in receiver.metrics, 20, 0.1,
                         "the drift repair counter")
        assert 'value: "missing"' in str(receiver.metrics["kubep4_device_drift_repairs_total"])

    spans = receiver.spans(tid)
    by_id = {s.span_id: s for s in spans}
    assert {s.service for s in spans} == SERVICES
    assert all(s.trace_id == tid for s in spans)
    # every span but the client's root hangs off another span of this trace: one tree
    roots = [s for s in spans if s.parent_span_id not in by_id]
    assert [r.name for r in roots] == ["/kubep4.v1.KubeP4/CreateDeployment"], [r.name for r in roots]
    root = roots[0]
    assert root.service == "kubep4-apiserver"

    def parent(s):
        return by_id[s.parent_span_id]

    def named(name, service=None):
        found = [s for s in spans if s.name == name and (service is None or s.service == service)]
        assert found, f"no span {name!r} ({service})"
        return found

    review = named("admission review", "kubep4-admission")[0]
    assert parent(review).name == "/kubep4.v1.Admission/Review"
    assert parent(parent(review)).name == "/kubep4.v1.Admission/Review"  # server span under client span
    assert parent(parent(parent(review))) is root
    assert parent(named("etcd create deployment", "kubep4-apiserver")[0]) is root
    assert parent(named("etcd txn create", "kubep4-apiserver")[0]).name == "etcd create deployment"

    deliveries = named("etcd watch delivery")
    assert {d.service for d in deliveries} == {"kubep4-controller", "kubep4-node-agent"}
    reconciles = named("controller reconcile", "kubep4-controller")
    assert all(parent(r) is root for r in reconciles)
    schedules = named("schedule", "kubep4-controller")
    assert len(schedules) == 2
    for s in schedules:
        assert parent(s).name == "controller reconcile"
        a = s.attributes
        assert a["scheduler.candidates"] == 2 and a["scheduler.feasible"] >= 1
        assert a["scheduler.chosen"].endswith("/dev0") and a["scheduler.score"] > 0
        assert "scheduler.filtered" in a
    writes = named("placement write", "kubep4-controller")
    installs = named("node_agent install", "kubep4-node-agent")
    # one install per replica, however many resyncs ran since
    assert len(installs) == 2 and all(parent(i).name == "placement write" for i in installs)
    for i in installs:
        children = {s.name for s in spans if s.parent_span_id == i.span_id}
        assert {"SetForwardingPipelineConfig", "p4runtime write", "status write-back"} <= children
    setp = [s for s in named("SetForwardingPipelineConfig") if s.service == "kubep4-node-agent"][0]
    assert setp.attributes["p4rt.action"] == "VERIFY_AND_COMMIT" and setp.attributes["p4rt.bytes"] > 10000
    assert named("p4runtime write")[0].attributes["p4rt.updates"] == 3
    # the two new replicas' placements are one etcd transaction: one write span naming both
    assert [w.attributes["kubep4.replicas"] for w in writes] == [2]
    assert writes[0].attributes["kubep4.nodes"] == "node-0,node-1"
    whole = named("deployment", "kubep4-controller")[0]
    assert parent(whole) is root and root.start_ns <= whole.start_ns <= root.end_ns  # created inside the RPC

    rows = waterfall.from_jaeger(to_jaeger(tid, spans))
    assert rows[0].hop == root.name and rows[0].depth == 0
    assert len(rows) == len(spans)
    text = waterfall.render(rows)
    assert "admission review" in text and "total" in text


def test_waterfall_from_a_jaeger_response():
    """A response in the shape of Jaeger's GET /api/traces/{id} renders with offsets and shares."""
    trace = {"traceID": "ab" * 16, "processes": {"p1": {"serviceName": "kubep4-apiserver"},
                                                 "p2": {"serviceName": "kubep4-node-agent"}},
             "spans": [
                 {"traceID": "ab" * 16, "spanID": "1", "operationName": "create", "references": [],
                  "startTime": 1_000_000, "duration": 10_000, "processID": "p1", "tags": []},
                 {"traceID": "ab" * 16, "spanID": "2", "operationName": "install",
                  "references": [{"refType": "CHILD_OF", "traceID": "ab" * 16, "spanID": "1"}],
                  "startTime": 1_004_000, "duration": 2_500, "processID": "p2", "tags": []}]}
    rows = waterfall.from_jaeger(trace)
    assert [(r.hop, r.service, r.depth, r.start_ms, r.duration_ms, r.share) for r in rows] == [
        ("create", "kubep4-apiserver", 0, 0.0, 10.0, 1.0),
        ("install", "kubep4-node-agent", 1, 4.0, 2.5, 0.25)]
    text = waterfall.render(rows)
    assert text.splitlines()[2].startswith("  install") and "25.0%" in text


def test_export_off_when_unset():
    tel = telemetry.setup("kubep4-apiserver", environ={})
    assert not tel.enabled and tel.tracer_provider is None and tel.exporters == []
    assert tel.server_interceptors() == [] and tel.client_interceptors() == []
    off = telemetry.setup("kubep4-apiserver", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317",
                                                       "OTEL_SDK_DISABLED": "true"})
    assert not off.enabled


async def test_trace_cli_says_when_jaeger_is_unreachable(front):
    async with AsyncClient(front.api) as c:
        for o in example_objects():
            await c.create(o)
    r = await kubep4(front.api, "trace", "deployment", "basic", "--jaeger", "http://127.0.0.1:1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "FAILED_PRECONDITION" in r.stderr and "no trace context" in r.stderr

