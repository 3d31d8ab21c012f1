"""A watcher that does not read cannot make the apiserver hold its updates: past WATCH_BUFFER
events it is closed with RESOURCE_EXHAUSTED saying where to resume, and the SDK resumes there
without losing or repeating an event."""
from __future__ import annotations

import asyncio

import grpc

from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from services.apiserver import server as apiserver

from .conftest import eventually, example_objects

BIG = "x" * 200_000  # a 200 KB annotation: a few updates fill gRPC's flow-control window


async def created(c: AsyncClient):
    """The example deployment, created (with its pipeline)."""
    p, d = example_objects()
    await c.apply(p)
    return await c.create(d)


async def updates(c: AsyncClient, d, n: int) -> list[int]:
    versions = []
    for i in range(n):
        d.metadata.annotations["note"] = f"{i}{BIG}"
        d = await c.update(d)
        versions.append(d.metadata.resource_version)
    return versions


async def test_a_watcher_that_does_not_read_is_closed_with_where_to_resume(front, monkeypatch):
    monkeypatch.setattr(apiserver, "WATCH_BUFFER", 4)
    async with AsyncClient(front.api) as c:
        d = await created(c)
        async with grpc.aio.insecure_channel(front.api, options=[
                ("grpc.max_receive_message_length", 64 << 20)]) as ch:
            call = api_grpc.KubeP4Stub(ch).WatchDeployments(api.WatchRequest(
                namespace="default", resource_version=d.metadata.resource_version))
            await updates(c, d, 60)  # nobody reads meanwhile
            got = []
            try:
                async for ev in call:
                    got.append(ev.resource_version)
                raise AssertionError("the watch ended without an error")
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                assert e.details() == f"watch too slow: resume from resource_version {got[-1]}"
            assert 0 < len(got) < 60 and got == sorted(got)


async def test_the_sdk_resumes_a_slow_watch_without_a_gap(front, monkeypatch):
    monkeypatch.setattr(apiserver, "WATCH_BUFFER", 4)
    async with AsyncClient(front.api) as c:
        d = await created(c)
        seen: list[int] = []
        written = asyncio.Event()

        async def slow_reader():
            async for _, _, rv in c.watch("deployment", "default", resource_version=d.metadata.resource_version):
                seen.append(rv)
                if len(seen) == 1:
                    await written.wait()  # stalls until all 60 are written: far past the buffer
        reader = asyncio.create_task(slow_reader())
        try:
            versions = await updates(c, d, 60)
            written.set()
            await eventually(lambda: seen[-1:] == versions[-1:], 30, 0.1, "the reader to catch up")
            assert seen == versions, "every update once, in order, across the resumes"
        finally:
            reader.cancel()


def etcd_watchers(endpoint: str) -> int:
    import urllib.request
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("etcd_debugging_mvcc_watcher_total "):
                return int(float(line.split()[1]))
    raise AssertionError("etcd reports no watcher gauge")


async def test_many_watchers_share_one_etcd_watch(front, etcd):
    """The watch cache: twenty client watches of deployments, one etcd watch behind them (plus the
    first watcher's own, opened before the cache had caught up); every watcher gets every event."""
    async with AsyncClient(front.api) as c:
        d = await created(c)
        before = etcd_watchers(etcd.endpoint)
        got: dict[int, list[int]] = {i: [] for i in range(20)}
        synced = [asyncio.Event() for _ in range(20)]

        async def watcher(i: int):
            async for etype, _, rv in c.watch("deployment", "default"):
                if etype == "SYNCED":
                    synced[i].set()
                else:
                    got[i].append(rv)
        tasks = []
        for i in range(20):
            tasks.append(asyncio.create_task(watcher(i)))
            await synced[i].wait()
        try:
            assert etcd_watchers(etcd.endpoint) - before <= 2
            d.metadata.annotations["n"] = "1"
            versions = [(await c.update(d)).metadata.resource_version]
            await eventually(lambda: all(v[-1:] == versions for v in got.values()), 20, 0.05,
                             "every watcher to see the update")
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
