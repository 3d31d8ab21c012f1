"""Error hygiene at the apiserver: edge values get INVALID_ARGUMENT before etcd, a future
resource_version the kube-apiserver answer, and no answer names an internal endpoint, an exception
class or a traceback; every error is small enough to be delivered."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from kubep4 import errors
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from services.apiserver import server as apiserver

from .conftest import example_objects

LEAKS = ("127.0.0.1", "etcd at", "StatusCode", "Traceback", "Error:", "<class", "Exception")


def _clean(message: str, *endpoints: str) -> None:
    assert len(message) < 1000, message
    for leak in (*LEAKS, *endpoints):
        assert leak not in message, message


async def _watch_error(front, rv: int, name: str = "") -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(front.api) as ch:
        call = api_grpc.KubeP4Stub(ch).WatchDeployments(api.WatchRequest(resource_version=rv, name=name))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            async for _ in call:
                pass
    return exc.value


@pytest.mark.parametrize("rv", [2**63 - 1, -7, -(2**63)])
async def test_watch_from_an_out_of_range_version_is_invalid_argument(front, rv):
    err = await _watch_error(front, rv)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "out of range" in err.details()
    _clean(err.details())
    assert [v.field for v in errors.from_rpc_error(err).violations] == ["resource_version"]


async def test_watch_from_a_future_version_is_refused_as_too_large_after_a_bounded_wait(front, store,
                                                                                       monkeypatch):
    monkeypatch.setattr(apiserver, "FUTURE_VERSION_WAIT", 0.3)
    current = await store.revision()
    err = await _watch_error(front, current + 1000)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert err.details() == f"Too large resource version: {current + 1000}, current: {current}"
    details = rpc_status.from_call(err).details
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert details[0].Unpack(info) and info.reason == "ResourceVersionTooLarge"
    assert details[1].Unpack(retry) and retry.retry_delay.seconds == 1


async def test_watch_from_a_version_reached_during_the_wait_streams_from_it(front, store):
    pipeline, _ = example_objects()
    current = await store.revision()
    async with AsyncClient(front.api) as c:
        async def first_event():
            async for etype, obj, rv in c.watch("pipeline", "default", "", current + 1):
                return etype, obj.metadata.name, rv
        watcher = asyncio.create_task(first_event())
        await asyncio.sleep(0.2)  # the watch waits for etcd to reach current + 1
        pipeline.metadata.name = "late"
        created = await c.create(pipeline)  # etcd passes current + 1 (blobs, then the pipeline)
        etype, name, rv = await asyncio.wait_for(watcher, 15)
    assert (etype, name, rv) == ("ADDED", "late", created.metadata.resource_version)


@pytest.mark.parametrize("size", [10_000, 2 << 20])
@pytest.mark.parametrize("call", ["get deployment", "get pipeline", "get node", "delete deployment",
                                  "delete pipeline", "list namespace", "watch name"])
async def test_oversized_names_are_refused_before_etcd_with_a_short_message(front, store, call, size):
    before = await store.revision()
    long = "n" * size
    verb, what = call.split()
    async with AsyncClient(front.api) as c:
        with pytest.raises(errors.InvalidArgument) as exc:
            if verb == "get":
                await c.get(what, long)
            elif verb == "delete":
                await c.delete(what, long)
            elif verb == "list":
                await c.list("deployments", long)
            else:
                async for _ in c.watch("deployment", "default", long):
                    pass
    assert f"({size} characters)" in exc.value.message
    _clean(exc.value.message)
    assert [v.field for v in exc.value.violations] == ["namespace" if what == "namespace" else "name"]
    assert await store.revision() == before


async def test_a_name_with_a_key_separator_is_refused(front):
    async with AsyncClient(front.api) as c:
        with pytest.raises(errors.InvalidArgument, match="contains '/'"):
            await c.get("deployment", "basic/../../nodes/x")


async def test_a_negative_delete_precondition_is_invalid_argument(front):
    async with AsyncClient(front.api) as c:
        with pytest.raises(errors.InvalidArgument, match="out of range"):
            await c.delete("deployment", "basic", resource_version=-1)


async def test_etcd_down_does_not_show_its_endpoint(etcd, front):
    async with AsyncClient(front.api, timeout=15) as c:
        etcd.stop()
        with pytest.raises(errors.Unavailable) as exc:
            await c.list("deployments")
    _clean(exc.value.message, etcd.endpoint, str(etcd.port))
    assert "storage is unavailable" in exc.value.message


async def test_etcd_refusing_a_too_large_object_does_not_show_its_endpoint(etcd, front):
    pipeline, _ = example_objects()
    pipeline.metadata.annotations["blob"] = "x" * (2 << 20)
    async with AsyncClient(front.api) as c:
        with pytest.raises(errors.KubeP4Error) as exc:
            await c.create(pipeline)
    assert exc.value.code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    _clean(exc.value.message, etcd.endpoint, str(etcd.port))


async def test_admission_down_does_not_show_its_address(front):
    pipeline, _ = example_objects()
    await front.adm.stop(0)
    async with AsyncClient(front.api) as c:
        with pytest.raises(errors.Unavailable) as exc:
            await c.create(pipeline)
    _clean(exc.value.message, f"127.0.0.1:{front.adm_port}", str(front.adm_port))
    assert "admission service is unavailable" in exc.value.message


async def test_an_unexpected_failure_is_internal_without_its_class_or_text(front, monkeypatch):
    async def broken(*args, **kw):
        raise ValueError("secret detail of 10.1.2.3:2379")
    monkeypatch.setattr(front._store, "get", broken)
    async with AsyncClient(front.api) as c:
        for call in (c.get("deployment", "basic"), c.delete("deployment", "basic")):
            with pytest.raises(errors.KubeP4Error) as exc:
                await call
            assert exc.value.code == grpc.StatusCode.INTERNAL
            assert exc.value.message == "internal error (the apiserver logged it)"
