"""Server-owned fields stay the server's (security issue, item 6): a client cannot delete a deployment by
setting deletion_timestamp in an update, choose its uid or creation time, or hand a source Pipeline
artifact refs that name blobs it never uploaded. Real etcd, apiserver and admission in-process."""
from __future__ import annotations

from kubep4 import store as st
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

from .conftest import example_objects


async def test_update_cannot_set_identity_timestamps_or_deletion(front, store):
    pipeline, deployment = example_objects()
    async with AsyncClient(front.api) as c:
        await c.create(pipeline)
        created = await c.create(deployment)
        evil = kr.Deployment()
        evil.CopyFrom(created)
        evil.metadata.deletion_timestamp.GetCurrentTime()
        evil.metadata.uid = "chosen-by-the-client"
        evil.metadata.generation = 99
        evil.metadata.creation_timestamp.FromSeconds(0)
        evil.metadata.labels["team"] = "net"       # what the user does own
        evil.spec.replicas = created.spec.replicas + 1
        updated = await c.update(evil)
    stored = await store.get(st.DEPLOYMENTS, "default", deployment.metadata.name)
    for d in (updated, stored):
        assert not d.metadata.HasField("deletion_timestamp"), "an update never deletes"
        assert d.metadata.uid == created.metadata.uid
        assert d.metadata.generation == created.metadata.generation + 1  # one spec change
        assert d.metadata.creation_timestamp == created.metadata.creation_timestamp
        assert d.metadata.labels["team"] == "net" and d.spec.replicas == created.spec.replicas + 1


async def test_create_ignores_a_client_chosen_uid_and_creation_time(front):
    pipeline, deployment = example_objects()
    deployment.metadata.uid = "chosen-by-the-client"
    deployment.metadata.creation_timestamp.FromSeconds(0)
    deployment.metadata.deletion_timestamp.FromSeconds(1)
    pipeline.metadata.uid = "also-chosen"
    async with AsyncClient(front.api) as c:
        p = await c.create(pipeline)
        d = await c.create(deployment)
    assert p.metadata.uid not in ("", "also-chosen")
    assert d.metadata.uid not in ("", "chosen-by-the-client")
    assert d.metadata.creation_timestamp.seconds > 0 and not d.metadata.HasField("deletion_timestamp")


async def test_a_source_pipeline_cannot_bring_its_own_artifact_refs(front, store):
    pipeline, _ = example_objects()
    src = kr.Pipeline()
    src.metadata.CopyFrom(pipeline.metadata)
    src.metadata.name = "from-source"
    src.spec.arch, src.spec.target = pipeline.spec.arch, pipeline.spec.target
    src.spec.source.program = "#include <v1model.p4>\n"
    src.spec.p4info_ref.digest = "sha256:" + "0" * 64   # a blob that does not exist
    src.spec.device_config_ref.digest = "sha256:" + "1" * 64
    async with AsyncClient(front.api) as c:
        created = await c.create(src)
    stored = await store.get(st.PIPELINES, "default", "from-source")
    for p in (created, stored):
        assert not p.spec.HasField("p4info_ref") and not p.spec.HasField("device_config_ref")
