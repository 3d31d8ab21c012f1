"""A 3-member etcd cluster under the secure stack (issue 11): killing the leader while deployments keep
coming loses nothing acknowledged, and every service carries on through the other members."""
from __future__ import annotations

import asyncio

from kubep4 import errors
from kubep4.localstack import LocalStack

from .conftest import example_objects


async def test_killing_the_etcd_leader_under_a_stream_of_deployments_loses_nothing(tmp_path):
    with LocalStack(nodes=1, devices_per_node=1, slots_per_device=32, secure=True, etcd_members=3,
                    data_dir=str(tmp_path)) as s:
        p, template = example_objects()
        acknowledged: list[str] = []
        async with s.client(timeout=10) as c:
            await c.apply(p)

            async def create(i: int) -> None:
                d = type(template)()
                d.CopyFrom(template)
                d.metadata.name, d.spec.replicas = f"d{i}", 1
                for attempt in range(20):  # a client retries what was refused as unavailable
                    try:
                        await c.create(d)
                        acknowledged.append(d.metadata.name)
                        return
                    except errors.AlreadyExists:  # an earlier try was applied after all
                        acknowledged.append(d.metadata.name)
                        return
                    except (errors.Unavailable, errors.DeadlineExceeded):
                        await asyncio.sleep(0.5)

            for i in range(6):
                await create(i)
            leader = s.etcd.leader()
            s.kill(f"etcd-{leader}")
            for i in range(6, 14):
                await create(i)
            assert len(acknowledged) == 14, "the apiserver took every create through the other members"
            listed = {d.metadata.name for d in await c.list("deployments")}
            assert set(acknowledged) <= listed
            for name in acknowledged:  # the controller and the agent carried on too
                ready = await c.wait_ready(name, timeout=90)
                assert ready.status.ready_replicas == 1
