"""The controller collects artifact blobs that no Pipeline references (real etcd)."""
from __future__ import annotations

from kubep4 import store as st
from services.controller.controller import Controller

from .conftest import example_objects


async def test_unreferenced_artifacts_are_collected_after_a_grace_pass(store):
    pipeline, _ = example_objects()
    pipeline.metadata.namespace = "default"
    kept = await store.create_pipeline(pipeline)
    doomed = pipeline.__class__()
    doomed.CopyFrom(pipeline)
    doomed.metadata.name = "old"
    doomed.spec.artifacts.device_config = b"{}"
    old = await store.create_pipeline(doomed)
    await store.delete(st.PIPELINES, "default", "old")
    orphan = old.spec.device_config_ref.digest

    c = Controller(store)
    assert await c.artifacts.collect() == []  # first pass only marks: a blob gets one interval of grace
    stray = await store.put_blob(b"written just before its pipeline")  # newer than the mark: spared
    assert await c.artifacts.collect() == [orphan]
    blobs, _ = await store.blob_digests()
    assert orphan not in blobs and stray.digest in blobs
    assert kept.spec.p4info_ref.digest in blobs and kept.spec.device_config_ref.digest in blobs
    # the shared P4Info blob is still referenced by the kept pipeline
    assert old.spec.p4info_ref.digest == kept.spec.p4info_ref.digest
    assert await store.get_blob(kept.spec.device_config_ref) == pipeline.spec.artifacts.device_config



async def test_a_blob_written_again_after_the_mark_is_not_deleted(store):
    """The collector's delete is conditional in etcd: a concurrent re-write (a Pipeline re-created
    with the same artifact between the collector's listing and its delete) wins."""
    mark = await store.revision()
    ref = await store.put_blob(b"artifact")  # written after the mark
    assert not await store.delete_blob(ref.digest, unchanged_since=mark)
    assert await store.get_blob(ref) == b"artifact"
    assert await store.delete_blob(ref.digest, unchanged_since=await store.revision())
    assert ref.digest not in (await store.blob_digests())[0]
