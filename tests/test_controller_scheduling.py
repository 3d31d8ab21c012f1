"""The controller schedules with four workers at once (the lock covers only deciding and assuming
a slot, not the etcd writes): no slot is ever given twice. Real etcd, apiserver and admission in
this process, Nodes registered as their agents would (no agents: placements stay Pending)."""
from __future__ import annotations

import asyncio

from kubep4 import store as st
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.controller.controller import Controller

from .conftest import eventually, example_objects


async def register(store: st.Store, name: str, devices: int) -> None:
    n = kr.Node()
    n.metadata.name = name
    n.status.phase = "Ready"
    for i in range(devices):
        n.spec.devices.add(name=f"dev{i}", p4rt_address=f"127.0.0.1:{9000 + i}", device_id=i + 1,
                           target="bmv2", arch="v1model", pipeline_slots=1)
    lease = await store.grant_lease(60)
    await store.put_raw(st.NODE_LEASES + name, b"1", lease)
    await store.create(st.NODES, n)


async def test_concurrent_decisions_never_give_a_slot_twice(front, store):
    for n in range(3):
        await register(store, f"node-{n}", 4)
    controller = Controller(store, workers=4)
    task = None
    try:
        async with AsyncClient(front.api) as c:
            pipeline, template = example_objects()
            await c.apply(pipeline)
            for i in range(14):  # 12 slots for 14 single-replica deployments
                d = kr.Deployment()
                d.CopyFrom(template)
                d.metadata.name = f"d-{i:02d}"
                d.spec.replicas = 1
                await c.create(d)
            task = asyncio.create_task(controller.run())  # all 14 waiting: the 4 workers race for slots

            async def placed():
                ps, _ = await store.list(st.PLACEMENTS)
                return ps if len(ps) == 12 else None
            placements = await eventually(placed, 30, 0.1, "12 placements")
            slots = [(p.spec.node, p.spec.device) for p in placements]
            assert len(set(slots)) == 12, sorted(slots)

            async def two_unschedulable():
                ds = await c.list("deployments")
                return sum(d.status.phase == "Unschedulable" for d in ds) == 2
            await eventually(two_unschedulable, 30, 0.1, "the two that found no slot")
            assert len((await store.list(st.PLACEMENTS))[0]) == 12
            assert controller.cache.assumed == 0, "every assumption was written or forgotten"
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_controller_that_cannot_list_gives_up_its_term():
    """Caches that never sync (here: no etcd at all) end the term with an error, so the leader
    gives its lease up instead of sitting on it doing nothing."""
    import pytest

    from kubep4.etcd_server import free_port
    store = st.Store(f"127.0.0.1:{free_port()}", timeout=1)
    controller = Controller(store, sync_timeout=1.0)
    with pytest.raises(RuntimeError, match="caches not synced after 1s"):
        await asyncio.wait_for(controller.run(), 30)
