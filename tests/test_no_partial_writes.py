"""No partial writes: a rejected create leaves etcd's keys as they were (real etcd). A Pipeline's
artifact blobs are written before its object; a create that fails deletes the blobs it wrote unless a
committed Pipeline references them or a concurrent create wrote them again."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from kubep4 import store as st
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

from .conftest import example_objects


async def _keys(store: st.Store) -> set[str]:
    """Every key under the KubeP4 root."""
    prefix = f"{st.ROOT}/".encode()
    r = await store.client.kvstub.Range(st.rpc.RangeRequest(key=prefix, range_end=st._range_end(prefix),
                                                            keys_only=True))
    return {kv.key.decode() for kv in r.kvs}


def _pipeline(name: str, device_config: bytes) -> kr.Pipeline:
    p, _ = example_objects()
    p.metadata.name = name
    p.metadata.namespace = "default"
    p.spec.artifacts.device_config = device_config
    return p


async def _create(front, pipeline: kr.Pipeline) -> kr.Pipeline:
    async with grpc.aio.insecure_channel(front.api, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        return await api_grpc.KubeP4Stub(ch).CreatePipeline(api.CreatePipelineRequest(pipeline=pipeline))


async def test_a_create_refused_by_etcd_as_too_large_leaves_no_blob_behind(front, store):
    await _create(front, _pipeline("kept", b'{"kept": true}'))  # shares the P4Info blob
    before = await _keys(store)
    big = _pipeline("big", b"x" * (3 << 20) + b"3 MiB device config, 3 chunks")
    big.metadata.annotations["note"] = "a" * (2 << 20)  # the object exceeds etcd's request limit
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await _create(front, big)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await _keys(store) == before
    # the committed pipeline's shared P4Info blob is still whole
    p = await store.get(st.PIPELINES, "default", "kept")
    assert await store.get_blob(p.spec.p4info_ref) == big.spec.artifacts.p4info


async def test_a_duplicate_name_leaves_the_key_count_unchanged(front, store):
    await _create(front, _pipeline("dup", b'{"first": true}'))
    before = await _keys(store)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await _create(front, _pipeline("dup", b'{"second": true}'))
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert await _keys(store) == before


async def test_racing_creates_of_one_name_leave_only_the_winners_blobs(store):
    a, b = _pipeline("race", b'{"a": 1}'), _pipeline("race", b'{"b": 2}')
    results = await asyncio.gather(store.create_pipeline(a), store.create_pipeline(b), return_exceptions=True)
    won = [r for r in results if isinstance(r, kr.Pipeline)]
    lost = [r for r in results if not isinstance(r, kr.Pipeline)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], st.AlreadyExists), results
    winner = won[0]
    refs = (winner.spec.p4info_ref, winner.spec.device_config_ref)
    assert await _keys(store) == {st.PIPELINES.key(winner)} | {
        f"{st.BLOBS}{r.digest}/{i:06d}" for r in refs for i in range(r.chunks)}
    for r in refs:
        await store.get_blob(r)


async def test_a_failed_create_spares_a_blob_a_concurrent_create_committed(store):
    """The loser's clean-up finds the digest referenced by a committed Pipeline: kept."""
    first = await store.create_pipeline(_pipeline("one", b'{"same": true}'))
    with pytest.raises(st.AlreadyExists):  # same name, same artifacts: nothing to release
        await store.create_pipeline(_pipeline("one", b'{"same": true}'))
    # released by hand what a failed create of the same artifacts would release: spared, referenced
    assert await store.collect_blobs(await store.revision(), [first.spec.device_config_ref.digest]) == \
        ([], (await store.referenced_digests())[1])
    assert await store.get_blob(first.spec.device_config_ref) == b'{"same": true}'


async def test_a_failed_create_spares_a_blob_written_again_since(store):
    ref, written = await store._write_blob(b"wanted by a create still in flight")
    await store.put_blob(b"wanted by a create still in flight")  # a concurrent create wrote it again
    deleted, _ = await store.collect_blobs(written, [ref.digest])
    assert deleted == []
    assert await store.get_blob(ref) == b"wanted by a create still in flight"
    deleted, _ = await store.collect_blobs(await store.revision(), [ref.digest])
    assert deleted == [ref.digest]


async def test_a_blob_collected_before_its_pipeline_commits_is_written_again(store, monkeypatch):
    """The object is committed only while every chunk exists: a collection in between is survived."""
    write = store._write_blob
    collected = []

    async def write_then_collect(data: bytes):
        ref, rev = await write(data)
        if not collected and data == b'{"collected": true}':
            collected.append(await store.delete_blob(ref.digest))
        return ref, rev

    monkeypatch.setattr(store, "_write_blob", write_then_collect)
    p = await store.create_pipeline(_pipeline("survivor", b'{"collected": true}'))
    assert collected == [True]
    assert await store.get_blob(p.spec.device_config_ref) == b'{"collected": true}'
