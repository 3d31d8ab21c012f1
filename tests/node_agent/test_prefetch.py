"""Prefetch: a node agent loads a new precompiled Pipeline its devices could run as soon as it is
created, once (a placement that needs it meanwhile shares that load), and ignores one for another
target. Real etcd and the real apiserver in-process; the agent's device is never reached (no target)."""
from __future__ import annotations

import asyncio

from kubep4 import store as st
from kubep4.client import AsyncClient
from kubep4.etcd_server import free_port
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.node_agent.agent import NodeAgent, Settings

from ..conftest import eventually, example_objects


async def test_a_new_pipeline_is_loaded_before_any_placement_asks(front, etcd):
    dev = kr.Device(name="dev0", p4rt_address=f"127.0.0.1:{free_port()}", device_id=1, target="bmv2",
                    arch="v1model")
    store = st.Store(etcd.endpoint)
    await store.connect()
    agent = NodeAgent(store, Settings(node_name="node-0", etcd=etcd.endpoint, devices=(dev,), resync_seconds=60))
    loads: list[str] = []
    fetch = agent._fetch

    async def counted(namespace, name, digest, prefetch):
        loads.append(name)
        return await fetch(namespace, name, digest, prefetch)
    agent._fetch = counted
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: agent.pipelines.synced.is_set(), what="the pipeline informer")
        pipeline, _ = example_objects()
        other = kr.Pipeline()
        other.CopyFrom(pipeline)
        other.metadata.name = "for-tofino"
        other.spec.target = "tofino"
        async with AsyncClient(front.api) as c:
            await c.apply(other)
            await c.apply(pipeline)
        digest = (await store.get(st.PIPELINES, "default", pipeline.metadata.name)).status.digest
        await eventually(lambda: digest in agent._pipelines, what="the prefetched pipeline")
        p = kr.Placement()
        p.metadata.namespace = "default"
        p.spec.pipeline, p.spec.pipeline_digest = pipeline.metadata.name, digest
        assert (await agent._pipeline(p)).digest == digest  # from memory: no second load
        assert loads == [pipeline.metadata.name], "one load, and none for the tofino-only pipeline"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
