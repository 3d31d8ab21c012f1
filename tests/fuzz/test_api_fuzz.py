"""Fuzzing the public API (every RPC of kubep4.v1.KubeP4) and Admission.Review on real services.

Each example sends one generated request to a real apiserver + admission on loopback over a real
etcd holding the example pipeline and deployment. Properties:

* no INTERNAL, UNKNOWN (or UNAVAILABLE: nothing is down) status;
* every error is a clear status: a non-empty, bounded message without tracebacks, exception
  classes, internal endpoints or gRPC's own "metadata size exceeds" (an undeliverable error);
* nothing is written for a rejected request, nor for a read: the set of etcd keys under
  kubep4.store.ROOT is unchanged;
* no crash: the apiserver and admission still answer health checks afterwards.
"""
from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from kubep4 import store as kstore
from kubep4.client import AsyncClient
from kubep4.config import GRPC_OPTIONS
from kubep4.gen.kubep4.v1 import admission_pb2 as ka
from kubep4.gen.kubep4.v1 import admission_pb2_grpc as ka_grpc
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from kubep4.store import Store
from services.apiserver import server as apiserver

from ..conftest import Front
from .settings import fuzz
from .strategies import (
    changed,
    changes,
    example_deployment,
    example_pipeline,
    merged,
    messages,
    one_field_changed,
    patched,
)

SERVICE = api.DESCRIPTOR.services_by_name["KubeP4"]
METHODS = {m.name: m for m in SERVICE.methods}
WATCH_SECONDS = 0.5  # a watch that is open and quiet is left after this (client deadline)
CALL_SECONDS = 30
BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE,
             grpc.StatusCode.DATA_LOSS, grpc.StatusCode.UNIMPLEMENTED}
LEAKS = ("Traceback", "<class", "Exception", "Error:", "metadata size exceeds", "etcdserver", "aetcd")
MAX_MESSAGE = 2000


def _event(what: str) -> None:
    """Count an outcome for --hypothesis-show-statistics (World also serves plain tests)."""
    if currently_in_test_context():
        event(what)


class World:
    """A front half over etcd with the example pipeline and deployment, and what checks it."""

    def __init__(self, front: Front, store: Store, channel: grpc.aio.Channel, etcd_endpoint: str):
        self.front, self.store, self.channel = front, store, channel
        self.stub = api_grpc.KubeP4Stub(channel)
        self.channel_to_admission = grpc.aio.insecure_channel(f"127.0.0.1:{front.adm_port}", options=GRPC_OPTIONS)
        self.internal = [etcd_endpoint, f"127.0.0.1:{front.adm_port}"]

    async def keys(self) -> list[str]:
        items, _ = await self.store.list_raw(kstore.ROOT + "/")
        return sorted(k for k, _ in items)

    def check_error(self, e: grpc.aio.AioRpcError, what: str) -> None:
        code, details = e.code(), e.details() or ""
        assert code not in BAD_CODES, f"{what}: {code.name} {details!r}"
        assert details.strip(), f"{what}: {code.name} with an empty message"
        assert len(details) <= MAX_MESSAGE, f"{what}: {code.name} message of {len(details)} characters"
        for leak in (*LEAKS, *self.internal):
            assert leak not in details, f"{what}: {code.name} message shows {leak!r}: {details!r}"

    async def healthy(self) -> None:
        for port in (self.front.api_port, self.front.adm_port):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING

    async def call(self, method: str, request) -> None:
        """Send one request; check the properties."""
        before = await self.keys()
        rejected = False
        try:
            if METHODS[method].server_streaming:
                await self._watch(method, request)
            else:
                await getattr(self.stub, method)(request, timeout=CALL_SECONDS)
        except grpc.aio.AioRpcError as e:
            if not (METHODS[method].server_streaming and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                    and e.details() == "Deadline Exceeded"):  # our own deadline on a quiet watch
                self.check_error(e, method)
                rejected = True
            _event(f"{method}: {e.code().name}")
        else:
            _event(f"{method}: OK")
        if rejected or method.startswith(("Get", "List", "Watch")):
            after = await self.keys()
            assert after == before, (f"{method} {'rejected' if rejected else 'read'} but etcd keys changed: "
                                     f"+{sorted(set(after) - set(before))[:5]} "
                                     f"-{sorted(set(before) - set(after))[:5]}")
        await self.healthy()

    async def _watch(self, method: str, request) -> None:
        call = getattr(self.stub, method)(request, timeout=WATCH_SECONDS)
        try:
            seen = 0
            async for ev in call:
                seen += 1
                if ev.type == api.SYNCED or seen > 100:
                    break
        finally:
            call.cancel()


@pytest.fixture
async def world(etcd, monkeypatch):
    # a watch from a future version is answered after this wait (3 s in service): keep examples quick
    monkeypatch.setattr(apiserver, "FUTURE_VERSION_WAIT", 0.1)
    front = await Front(etcd.endpoint).start()
    async with AsyncClient(front.api) as c:
        await c.create(example_pipeline())
        await c.create(example_deployment())
    store = Store(etcd.endpoint)
    channel = grpc.aio.insecure_channel(front.api, options=GRPC_OPTIONS)
    w = World(front, store, channel, etcd.endpoint)
    yield w
    await channel.close()
    await w.channel_to_admission.close()
    await store.close()
    await front.stop()


def requests(method: str) -> st.SearchStrategy:
    """(how, message): "raw" requests are sent as generated; "current" patches are merged into the
    stored example deployment at send time (its resource_version is only known then), a
    "current-one" change sets one of its fields."""
    m = METHODS[method]
    raw = messages(m.input_type).map(lambda r: ("raw", r))
    if method == "CreatePipeline":
        return st.one_of(raw, st.one_of(patched(example_pipeline()), one_field_changed(example_pipeline())).map(
            lambda p: ("raw", api.CreatePipelineRequest(pipeline=p))))
    if method == "CreateDeployment":
        return st.one_of(raw, st.one_of(patched(example_deployment()), one_field_changed(example_deployment())).map(
            lambda d: ("raw", api.CreateDeploymentRequest(deployment=d))))
    if method == "UpdateDeployment":
        return st.one_of(raw, messages(example_deployment().DESCRIPTOR).map(lambda d: ("current", d)),
                         changes(example_deployment().DESCRIPTOR).map(lambda c: ("current-one", c)))
    return raw


# examples per RPC in the normal suite: the writes and watches cost most
EXAMPLES = {"CreatePipeline": 40, "CreateDeployment": 40, "UpdateDeployment": 30, "WatchPipelines": 12,
            "WatchDeployments": 12}


def _rpc_test(method: str):
    @fuzz(EXAMPLES.get(method, 20))
    @given(drawn=requests(method))
    async def test(world, drawn):
        how, msg = drawn
        if how == "current":
            current = await world.stub.GetDeployment(api.GetRequest(namespace="default", name="basic"))
            msg = api.UpdateDeploymentRequest(deployment=merged(current, msg))
        elif how == "current-one":
            current = await world.stub.GetDeployment(api.GetRequest(namespace="default", name="basic"))
            msg = api.UpdateDeploymentRequest(deployment=changed(current, msg))
        await world.call(method, msg)

    test.__name__ = test.__qualname__ = f"test_{method}_answers_clearly_and_writes_nothing_when_it_refuses"
    test.__doc__ = f"{method}: generated requests, the properties of the module docstring."
    return test


for _method in METHODS:  # one test per RPC, each with its own example count
    globals()[f"test_{_method}_answers_clearly_and_writes_nothing_when_it_refuses"] = _rpc_test(_method)


def reviews() -> st.SearchStrategy[ka.AdmissionReview]:
    pipeline = example_pipeline()
    return st.one_of(
        messages(ka.AdmissionReview.DESCRIPTOR),
        st.builds(lambda op, p: ka.AdmissionReview(operation=op, pipeline=p),
                  st.sampled_from([ka.CREATE, ka.UPDATE]), patched(pipeline)),
        st.builds(lambda op, d, ref: ka.AdmissionReview(operation=op, deployment=d, referenced_pipeline=ref),
                  st.sampled_from([ka.CREATE, ka.UPDATE]), patched(example_deployment()),
                  st.one_of(st.just(pipeline), patched(pipeline))),
    )


@fuzz(40)
@given(review=reviews())
async def test_admission_review_answers_every_review(world, review):
    """Admission straight (as the apiserver calls it): an answer or a clear status, never a crash."""
    stub = ka_grpc.AdmissionStub(world.channel_to_admission)
    try:
        resp = await stub.Review(review, timeout=CALL_SECONDS)
    except grpc.aio.AioRpcError as e:
        world.check_error(e, "Review")
        event(f"Review: {e.code().name}")
    else:
        event(f"Review: {'allowed' if resp.allowed else 'violations'}")
        assert resp.allowed == (not resp.violations)
        assert resp.allowed == (resp.WhichOneof("object") is not None)
        for v in resp.violations:
            assert v.description.strip(), resp
    await world.healthy()


@pytest.mark.parametrize("kind", ["pipeline", "deployment"])
async def test_a_create_with_a_huge_annotation_answers_clearly_and_leaves_no_blob(world, kind):
    """Sizes the generator rarely draws, around admission's 1 MiB object limit and etcd's 1.5 MiB
    request limit: a valid object with a new name and one huge annotation (a pipeline's artifacts
    would be written as blobs before the object)."""
    for i, size in enumerate([(1 << 20) - 4096, (1 << 20) + 1, 3 << 19, 2 << 20]):
        obj = example_pipeline() if kind == "pipeline" else example_deployment()
        obj.metadata.name = f"huge-{i}"
        obj.metadata.annotations["note"] = "x" * size
        if kind == "pipeline":
            await world.call("CreatePipeline", api.CreatePipelineRequest(pipeline=obj))
        else:
            await world.call("CreateDeployment", api.CreateDeploymentRequest(deployment=obj))
