"""Lists come in pages (Kubernetes' limit / continue), all read at the first page's version, and the
SDK follows the tokens; no answer grows past the message limit. Real etcd, apiserver, admission."""
from __future__ import annotations

import grpc
import pytest

from kubep4 import store as st
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from services.apiserver import server as apiserver

from .conftest import example_objects


async def seeded(c: AsyncClient, n: int) -> list[str]:
    p, template = example_objects()
    await c.apply(p)
    names = []
    for i in range(n):
        d = type(template)()
        d.CopyFrom(template)
        d.metadata.name = f"page-{i}"
        await c.create(d)
        names.append(d.metadata.name)
    return names


async def test_pages_follow_tokens_at_one_version(front):
    async with AsyncClient(front.api) as c, grpc.aio.insecure_channel(front.api) as ch:
        names = await seeded(c, 5)
        stub = api_grpc.KubeP4Stub(ch)
        first = await stub.ListDeployments(api.ListRequest(namespace="default", limit=2))
        assert [d.metadata.name for d in first.items] == names[:2] and first.continue_token
        d = type(first.items[0])()
        d.CopyFrom(first.items[0])
        d.metadata.name = "page-3a"  # written between pages: not part of this list
        await c.create(d)
        seen = list(first.items)
        token = first.continue_token
        while token:
            page = await stub.ListDeployments(api.ListRequest(namespace="default", limit=2, continue_token=token))
            assert page.resource_version == first.resource_version
            seen += page.items
            token = page.continue_token
        assert [x.metadata.name for x in seen] == names
        assert len(await c.list("deployments")) == 6  # a new list sees it


async def test_the_sdk_reads_every_page(front, monkeypatch):
    monkeypatch.setattr(apiserver, "LIST_MAX_ITEMS", 2)  # a page of 2 unless asked for fewer
    async with AsyncClient(front.api) as c:
        names = await seeded(c, 5)
        assert [d.metadata.name for d in await c.list("deployments")] == names


async def test_a_page_is_cut_by_size(front, monkeypatch):
    monkeypatch.setattr(apiserver, "LIST_MAX_BYTES", 1)  # every object alone exceeds it: one a page
    async with AsyncClient(front.api) as c, grpc.aio.insecure_channel(front.api) as ch:
        names = await seeded(c, 3)
        page = await api_grpc.KubeP4Stub(ch).ListDeployments(api.ListRequest(namespace="default"))
        assert len(page.items) == 1 and page.continue_token
        assert [d.metadata.name for d in await c.list("deployments")] == names


@pytest.mark.parametrize("request_", [api.ListRequest(limit=-1), api.ListRequest(continue_token="not-a-token"),
                                      api.ListRequest(continue_token="e30=")])
async def test_bad_limits_and_tokens_are_invalid_argument(front, request_):
    async with grpc.aio.insecure_channel(front.api) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await api_grpc.KubeP4Stub(ch).ListDeployments(request_)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()


async def test_an_expired_token_says_to_list_again(front, store):
    async with AsyncClient(front.api) as c, grpc.aio.insecure_channel(front.api) as ch:
        await seeded(c, 3)
        stub = api_grpc.KubeP4Stub(ch)
        first = await stub.ListDeployments(api.ListRequest(namespace="default", limit=1))
        await store.put_raw(f"{st.ROOT}/test/bump", b"1")  # a newer revision to compact up to
        await store.connect()
        await store._client.compact(await store.revision())
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.ListDeployments(api.ListRequest(namespace="default", limit=1,
                                                       continue_token=first.continue_token))
        assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE and "list again" in e.value.details()
