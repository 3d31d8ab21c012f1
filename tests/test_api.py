"""The front half against real etcd and real gRPC servers: CRUD, conflicts, watches, durability, auth."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from kubep4 import errors
from kubep4 import store as st
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

from .conftest import Front, eventually, example_objects


async def test_crud_conflict_watch_delete(front, store):
    pipeline, deployment = example_objects()
    async with AsyncClient(front.api) as c:
        created_p = await c.create(pipeline)
        assert created_p.status.digest.startswith("sha256:")
        assert created_p.spec.p4info_ref.chunks >= 1 and not created_p.spec.artifacts.p4info

        created = await c.create(deployment)
        md = created.metadata
        assert (md.namespace, md.generation, md.uid != "") == ("default", 1, True)
        assert created.spec.replicas == 2 and created.spec.target == "bmv2" and created.spec.arch == "v1model"
        assert created.status.phase == "Pending"
        assert [(x.type, x.status) for x in created.status.conditions][0] == ("Admitted", "True")

        # the watch starts at the creation and must see every later change, in order
        events = []

        async def watch():
            async for etype, obj, rv in c.watch("deployment", "default", "basic", md.resource_version):
                events.append((etype, obj.spec.replicas, rv))
                if etype == "DELETED":
                    return
        watcher = asyncio.create_task(watch())

        got = await c.get("deployment", "basic")
        assert got == created
        assert [d.metadata.name for d in await c.list("deployments")] == ["basic"]
        assert [p.metadata.name for p in await c.list("pipelines", "default")] == ["basic"]

        stale = kr.Deployment()
        stale.CopyFrom(got)
        got.spec.replicas = 3
        updated = await c.update(got)
        assert updated.metadata.generation == 2
        assert updated.metadata.resource_version > created.metadata.resource_version

        stale.spec.replicas = 5
        with pytest.raises(errors.Conflict):
            await c.update(stale)
        assert (await c.get("deployment", "basic")).spec.replicas == 3

        updated.spec.replicas = 4
        await c.update(updated)
        await c.delete("deployment", "basic")  # marks it Terminating: the controller finishes deletes
        # no controller runs here: finish the delete the way the controller does
        await store.delete(st.DEPLOYMENTS, "default", "basic")
        await asyncio.wait_for(watcher, 10)
        assert [e[0] for e in events] == ["MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
        assert [e[1] for e in events[:2]] == [3, 4]
        assert [e[2] for e in events] == sorted(e[2] for e in events)
        with pytest.raises(errors.NotFound):
            await c.get("deployment", "basic")


async def test_watch_resumes_across_apiserver_restart(front):
    pipeline, deployment = example_objects()
    async with AsyncClient(front.api) as c:
        await c.create(pipeline)
        d = await c.create(deployment)
        last_seen = d.metadata.resource_version
        seen: list[int] = []

        async def consume(client, from_rv):
            async for etype, obj, rv in client.watch("deployment", "default", "", from_rv):
                seen.append(obj.spec.replicas)
                return rv
        first = asyncio.create_task(consume(c, last_seen))
        d.spec.replicas = 2 + 1
        d = await c.update(d)
        last_seen = await asyncio.wait_for(first, 10)
        assert seen == [3]

    await front.stop_api()
    # changes while the apiserver is down are in etcd; they must be delivered after the restart
    async with st.Store(front.etcd) as s:
        for n in (4, 5):
            await s.mutate(st.DEPLOYMENTS, "default", "basic", lambda x, n=n: (x.spec.__setattr__("replicas", n), x)[1])
    await front.start_api()
    async with AsyncClient(front.api) as c:
        got = []
        async for etype, obj, rv in c.watch("deployment", "default", "", last_seen):
            got.append((etype, obj.spec.replicas))
            if len(got) == 2:
                break
        assert got == [("MODIFIED", 4), ("MODIFIED", 5)]


async def test_edit_changes_again_what_another_writer_changed_meanwhile(front):
    objects = example_objects()
    deployment = objects[1]
    async with AsyncClient(front.api) as c:
        for obj in objects:
            await c.create(obj)
        seen = []

        async def scale_up(d: kr.Deployment) -> None:
            seen.append(d.metadata.annotations.get("by", ""))
            if len(seen) == 1:  # someone else writes between this read and its update
                await c.edit("basic", lambda other: other.metadata.annotations.update(by="other"))
            d.spec.replicas += 1
        edited = await c.edit("basic", scale_up)
        assert seen == ["", "other"], "the second try read the other writer's change"
        assert edited.spec.replicas == deployment.spec.replicas + 1
        assert edited.metadata.annotations["by"] == "other"

        tries = []

        async def always_overtaken(d: kr.Deployment) -> None:
            tries.append(1)
            await c.edit("basic", lambda other: other.metadata.annotations.update(by=f"other-{len(tries)}"))
            d.spec.replicas += 1
        with pytest.raises(errors.Conflict, match="keeps changing"):  # a writer always in between: it gives up
            await c.edit("basic", always_overtaken, attempts=3)
        assert len(tries) == 3


async def test_initial_list_then_synced(front):
    pipeline, deployment = example_objects()
    async with AsyncClient(front.api) as c:
        await c.create(pipeline)
        await c.create(deployment)
        kinds = []
        async for etype, obj, rv in c.watch("deployment"):
            kinds.append((etype, obj.metadata.name))
            if etype == "SYNCED":
                break
        assert kinds == [("ADDED", "basic"), ("SYNCED", "")]


async def test_five_mib_artifact_round_trips(front, store):
    pipeline, _ = example_objects()
    big = bytes((i * 7 + i // 251) % 256 for i in range(5 << 20))
    pipeline.metadata.name = "big"
    pipeline.spec.artifacts.device_config = big
    async with AsyncClient(front.api) as c:
        created = await c.create(pipeline)
        assert created.spec.device_config_ref.size == len(big)
        assert created.spec.device_config_ref.chunks == 5
        fetched = await c.get("pipeline", "big")
        assert fetched.spec.artifacts.device_config == big
    # no etcd value is over the request limit
    kvs, _ = await store.list_raw(st.ROOT + "/")
    assert max(len(v) for _, v in kvs) <= st.CHUNK_SIZE


async def test_pipeline_is_immutable_and_protected_while_used(front):
    pipeline, deployment = example_objects()
    async with AsyncClient(front.api) as c:
        await c.apply(pipeline)
        _, how = await c.apply(pipeline)
        assert how == "unchanged"
        changed = kr.Pipeline()
        changed.CopyFrom(pipeline)
        changed.spec.artifacts.device_config = b"{}"
        with pytest.raises(errors.FailedPrecondition):
            await c.apply(changed)
        await c.create(deployment)
        with pytest.raises(errors.FailedPrecondition, match="used by deployments: basic"):
            await c.delete("pipeline", "basic")


async def test_bearer_token(etcd):
    f = await Front(etcd.endpoint, token="s3cret").start()
    try:
        async with AsyncClient(f.api) as c:
            with pytest.raises(errors.Unauthenticated):
                await c.list("deployments")
        async with AsyncClient(f.api, token="wrong") as c:
            with pytest.raises(errors.Unauthenticated):
                await c.list("deployments")
        async with AsyncClient(f.api, token="s3cret") as c:
            assert await c.list("deployments") == []
        # health checking stays open for probes
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        async with grpc.aio.insecure_channel(f.api) as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await f.stop()


async def test_unavailable_when_etcd_is_down(etcd, front):
    async with AsyncClient(front.api, timeout=15) as c:
        assert await c.list("deployments") == []
        etcd.stop()
        with pytest.raises(errors.Unavailable):
            await c.list("deployments")


async def test_acknowledged_create_survives_etcd_restart(etcd, front):
    pipeline, deployment = example_objects()
    async with AsyncClient(front.api) as c:
        await c.create(pipeline)
        created = await c.create(deployment)
    port = etcd.port
    etcd.stop()
    etcd.port = port
    etcd.start()

    async def fetch():
        try:
            async with AsyncClient(front.api, timeout=5) as c:
                return await c.get("deployment", "basic")
        except errors.Unavailable:
            return None
    got = await eventually(fetch, what="the deployment after an etcd restart")
    assert got.metadata.uid == created.metadata.uid


async def test_etcd_refusing_a_too_large_value_is_not_reported_as_unavailable(store):
    d = kr.Deployment()
    d.metadata.name, d.metadata.namespace = "huge", "default"
    d.metadata.labels["blob"] = "x" * (2 << 20)  # past etcd's request limit
    with pytest.raises(st.TooLarge):
        await store.create(st.DEPLOYMENTS, d)


async def test_a_deployment_and_the_deletion_of_its_pipeline_cannot_both_succeed(store):
    """The two sides of the race, each in one etcd transaction: a Deployment is created only while
    its Pipeline exists; a Pipeline is deleted only if no Deployment changed since the check."""
    pipeline, deployment = example_objects()
    pipeline.metadata.namespace = deployment.metadata.namespace = "default"
    p = await store.create_pipeline(pipeline)
    _, checked_at = await store.list(st.DEPLOYMENTS, "default")  # DeletePipeline's check: no users
    await store.create(st.DEPLOYMENTS, deployment, requires=st.PIPELINES.key(p))  # a user appears
    with pytest.raises(st.Conflict):
        await store.delete(st.PIPELINES, "default", "basic",
                           quiet_prefix=(st.DEPLOYMENTS.prefix("default"), checked_at))
    await store.get(st.PIPELINES, "default", "basic")  # still there

    await store.delete(st.DEPLOYMENTS, "default", "basic")
    _, checked_at = await store.list(st.DEPLOYMENTS, "default")
    await store.delete(st.PIPELINES, "default", "basic",
                       quiet_prefix=(st.DEPLOYMENTS.prefix("default"), checked_at))
    with pytest.raises(st.Missing, match="pipeline default/basic no longer exists"):
        await store.create(st.DEPLOYMENTS, deployment, requires=st.PIPELINES.key(p))
    assert (await store.list(st.DEPLOYMENTS))[0] == []


async def test_fenced_writes_are_refused_once_the_leader_lease_is_gone(store):
    lease = await store.grant_lease(30)
    assert await store.put_if_absent("/kubep4/leader/controller", b"me", lease)
    store.fence = ("/kubep4/leader/controller", lease)
    d = kr.Deployment()
    d.metadata.name, d.metadata.namespace = "fenced", "default"
    created = await store.create(st.DEPLOYMENTS, d)  # while we lead: written
    await store.revoke_lease(lease)  # leadership lost (lease lapsed or revoked): the key is gone
    created.spec.replicas = 3
    with pytest.raises(st.NotLeader):
        await store.update(st.DEPLOYMENTS, created)
    with pytest.raises(st.NotLeader):
        await store.delete(st.DEPLOYMENTS, "default", "fenced")
    store.fence = None
    assert (await store.get(st.DEPLOYMENTS, "default", "fenced")).spec.replicas == 0
