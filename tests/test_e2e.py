"""End to end: etcd and every service as separate processes (the local stack), reference devices,
and an independent P4Runtime client checking what the devices really hold."""
from __future__ import annotations

import asyncio
import re
import signal

import pytest
import pytest_asyncio

from kubep4 import store as st
from kubep4.bench.p4read import DeviceReader, stack_readers
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.p4 import cookie_for_digest, parse_p4info

from .conftest import eventually, example_objects

pytestmark = pytest.mark.asyncio(loop_scope="module")


def readers(stack: LocalStack) -> dict[tuple[str, str], DeviceReader]:
    return stack_readers(stack.device_ports, tls=stack.device_tls())


def deployment(name: str = "basic", replicas: int = 2) -> tuple[kr.Pipeline, kr.Deployment]:
    p, d = example_objects()
    d.metadata.name = name
    d.spec.replicas = replicas
    return p, d


async def wait_phase(c: AsyncClient, name: str, phase: str, timeout: float = 30) -> kr.Deployment:
    async def check():
        d = await c.get("deployment", name)
        return d if d.status.phase == phase and d.status.observed_generation == d.metadata.generation else None
    return await eventually(check, timeout, 0.05, f"deployment {name} {phase}")


async def changed_keys(s: st.Store, rev: int) -> list[str]:
    """The keys written after ``rev``, to say what broke the quiet."""
    out, now = [], await s.revision()
    async for _, kv, _ in s.watch_raw(f"{st.ROOT}/".encode(), rev + 1):
        out.append(kv.key.decode())
        if kv.mod_revision >= now:
            return out
    return out


def log_count(stack: LocalStack, proc: str, pattern: str) -> int:
    with open(stack.procs[proc].log_path, errors="replace") as f:
        return len(re.findall(pattern, f.read()))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = LocalStack(nodes=2, devices_per_node=2, controllers=1, data_dir=str(tmp_path_factory.mktemp("stack")),
                   lease_ttl=10, resync_seconds=1.0, env={"KUBEP4_LOG_LEVEL": "INFO"})
    s.start()
    yield s
    s.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(stack):
    async with stack.client() as c:
        yield c


async def test_two_replicas_run_on_two_nodes_and_devices_hold_them(stack, client):
    p, d = deployment("basic", 2)
    await client.apply(p)
    await client.create(d)
    ready = await client.wait_ready("basic", timeout=30)
    assert ready.status.phase == "Running" and ready.status.ready_replicas == 2
    assert {(c.type, c.status) for c in ready.status.conditions} == {
        ("Admitted", "True"), ("Scheduled", "True"), ("Installed", "True"), ("Ready", "True"),
        ("Progressing", "True")}  # Progressing: Complete (docs/rollouts.md)
    placed = {(r.node, r.device) for r in ready.status.replicas}
    assert len({node for node, _ in placed}) == 2, placed

    want_info = parse_p4info(p.spec.artifacts.p4info)
    cookie = cookie_for_digest(ready.status.pipeline_digest)
    devices = readers(stack)
    for key in placed:
        config = await devices[key].pipeline()
        assert config is not None, key
        assert config.cookie.cookie == cookie
        assert config.p4info == want_info
        assert config.p4_device_config == p.spec.artifacts.device_config
        entries = await devices[key].entries()
        assert len(entries) == len(d.spec.table_entries) == 3
        assert {e.table_id for e in entries} == {t.preamble.id for t in want_info.tables}
    for key in set(devices) - placed:
        assert await devices[key].pipeline() is None, f"{key} should be untouched"

    # applying the same manifest again changes nothing: no write in etcd, no push to a device
    commits = sum(log_count(stack, f"switch-{n}", "SetForwardingPipelineConfig VERIFY_AND_COMMIT done")
                  for n in range(2))
    assert commits == 2, "each placed device got the pipeline once"
    entries_before = {k: await devices[k].entries() for k in placed}

    async def nodes_report_the_devices():  # the Node status says what each device holds
        got = {(n.metadata.name, ds.name): ds for n in await client.list("nodes") for ds in n.status.devices}
        return all(ds.phase == "Reachable" and ds.used_slots == (1 if key in placed else 0)
                   and ds.cookie == (str(cookie) if key in placed else "") for key, ds in got.items()) \
            and set(got) == set(devices)
    await eventually(nodes_report_the_devices, 20, 0.1, "node status to report every device")
    async with stack.store() as s:
        rev = await s.revision()
        for obj in (p, d):
            _, how = await client.apply(obj)
            assert how == "unchanged"
        await asyncio.sleep(2.5)  # two node-agent resync periods: they check and must leave devices alone
        # nothing of the deployment, its placements or pipeline was written (a Node's own status
        # report, which its agent may rewrite at any time, is not part of what apply touches)
        changed = await changed_keys(s, rev) if await s.revision() != rev else []
        assert [k for k in changed if not k.startswith(st.NODES.prefix())] == [], changed
    assert sum(log_count(stack, f"switch-{n}", "SetForwardingPipelineConfig VERIFY_AND_COMMIT done")
               for n in range(2)) == commits
    assert {k: await devices[k].entries() for k in placed} == entries_before


async def test_update_rewrites_entries(stack, client):
    def change(d):
        del d.spec.table_entries[2]
        d.spec.table_entries[0].params[1].value = "7"
    await client.edit("basic", change)
    ready = await client.wait_ready("basic", timeout=30)
    assert ready.metadata.generation == 2 and ready.status.observed_generation == 2
    devices = readers(stack)
    for r in ready.status.replicas:
        entries = await devices[(r.node, r.device)].entries()
        assert len(entries) == 2
        ports = sorted(int.from_bytes(e.action.action.params[1].value, "big") for e in entries)
        assert ports == [2, 7]


async def test_delete_clears_the_devices(stack, client):
    d = await client.get("deployment", "basic")
    placed = [(r.node, r.device) for r in d.status.replicas]
    await client.delete("deployment", "basic")

    async def gone():
        return not [x for x in await client.list("deployments") if x.metadata.name == "basic"]
    await eventually(gone, 30, what="the deployment to be deleted")
    devices = readers(stack)
    for key in placed:
        assert await devices[key].entries() == []
    async with stack.store() as s:
        assert (await s.list(st.PLACEMENTS))[0] == []


async def test_unschedulable_with_a_reason(stack, client):
    p, d = deployment("nowhere", 1)
    d.spec.selector.match_labels["zone"] = "mars"
    await client.apply(p)
    await client.create(d)
    got = await wait_phase(client, "nowhere", "Unschedulable")
    scheduled = [c for c in got.status.conditions if c.type == "Scheduled"][0]
    assert scheduled.status == "False" and scheduled.reason == "Unschedulable"
    assert "0/4 devices are available" in scheduled.message and "SelectorMismatch" in scheduled.message
    ready = [c for c in got.status.conditions if c.type == "Ready"][0]
    assert ready.status == "False"
    await client.delete("deployment", "nowhere")


async def test_restarted_device_is_reinstalled(stack, client):
    p, d = deployment("resilient", 1)
    await client.apply(p)
    await client.create(d)
    ready = await client.wait_ready("resilient", timeout=30)
    node, device = ready.status.replicas[0].node, ready.status.replicas[0].device
    reader = readers(stack)[(node, device)]
    assert len(await reader.entries()) == 3
    stack.restart(f"switch-{node.split('-')[1]}")  # a switch reboot loses the pipeline

    async def reinstalled():
        config = await reader.pipeline()
        return config is not None and config.cookie.cookie == cookie_for_digest(ready.status.pipeline_digest) \
            and len(await reader.entries()) == 3
    await eventually(reinstalled, 30, 0.1, "the agent to re-install the restarted device")
    await client.delete("deployment", "resilient")


async def test_node_loss_moves_replicas(tmp_path):
    with LocalStack(nodes=2, devices_per_node=2, data_dir=str(tmp_path), lease_ttl=2, resync_seconds=1.0) as s:
        async with s.client() as c:
            p, d = deployment("mover", 2)
            await c.apply(p)

            async def both_nodes_ready():  # the spread below needs both nodes known when scheduling
                return sum(n.status.phase == "Ready" for n in await c.list("nodes")) == 2
            await eventually(both_nodes_ready, 30, 0.1, "two Ready nodes")
            await c.create(d)
            ready = await c.wait_ready("mover", timeout=30)
            on0 = [r for r in ready.status.replicas if r.node == "node-0"]
            assert len(on0) == 1
            s.procs["agent-0"].signal(signal.SIGKILL)  # the node dies without a goodbye

            async def moved():
                x = await c.get("deployment", "mover")
                nodes = [r.node for r in x.status.replicas]
                return x if x.status.phase == "Running" and nodes.count("node-1") == 2 else None
            after = await eventually(moved, 40, 0.1, "both replicas Running on node-1")
            assert {r.device for r in after.status.replicas} == {"dev0", "dev1"}
            nodes = {n.metadata.name: n.status.phase for n in await c.list("nodes")}
            assert nodes == {"node-0": "NotReady", "node-1": "Ready"}
            devices = readers(s)
            for r in after.status.replicas:
                assert len(await devices[(r.node, r.device)].entries()) == 3


async def test_leader_handover(tmp_path):
    with LocalStack(nodes=1, devices_per_node=2, controllers=2, data_dir=str(tmp_path), leader_ttl=2) as s:
        async with s.store() as store:
            leader = await eventually(lambda: store.get_raw(f"{st.ROOT}/leader/controller"), 20,
                                      what="a leader")
            name = leader[0].decode()
            other = "controller-1" if name == "controller-0" else "controller-0"
            s.procs[name].signal(signal.SIGKILL)

            async def new_leader():
                got = await store.get_raw(f"{st.ROOT}/leader/controller")
                return got is not None and got[0].decode() == other
            await eventually(new_leader, 20, 0.1, f"{other} to lead")
        async with s.client() as c:
            p, d = deployment("after-handover", 1)
            await c.apply(p)
            await c.create(d)
            ready = await c.wait_ready("after-handover", timeout=30)
            assert ready.status.ready_replicas == 1


async def test_waiting_deployment_is_placed_when_a_device_frees_up(tmp_path):
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path)) as s:
        async with s.client() as c:
            p, first = deployment("first", 1)
            await c.apply(p)
            await c.create(first)
            await c.wait_ready("first", timeout=30)
            _, second = deployment("second", 1)
            await c.create(second)
            waiting = await wait_phase(c, "second", "Unschedulable")
            assert "NoFreeSlot" in [x for x in waiting.status.conditions if x.type == "Scheduled"][0].message
            await c.delete("deployment", "first")
            ready = await c.wait_ready("second", timeout=30)  # no resync needed: the freed slot requeues it
            assert ready.status.replicas[0].device == "dev0"


async def test_two_deployments_share_a_device_and_leave_it_one_by_one(tmp_path):
    with LocalStack(nodes=1, devices_per_node=1, slots_per_device=2, data_dir=str(tmp_path)) as s:
        reader = readers(s)[("node-0", "dev0")]
        async with s.client() as c:
            p, a = deployment("a", 1)
            _, b = deployment("b", 1)
            del b.spec.table_entries[1:]
            b.spec.table_entries[0].match[0].lpm.value = "10.9.0.0"
            await c.apply(p)
            await c.create(a)
            await c.create(b)
            await c.wait_ready("a", timeout=30)
            await c.wait_ready("b", timeout=30)
            assert len(await reader.entries()) == 4  # 3 of a, 1 of b, one pipeline
            await c.delete("deployment", "a")

            async def a_gone():
                return [x.metadata.name for x in await c.list("deployments")] == ["b"]
            await eventually(a_gone, 30, what="deployment a to be deleted while b stays")
            entries = await reader.entries()
            assert len(entries) == 1 and entries[0].match[0].lpm.value == bytes([10, 9, 0, 0])
            assert (await c.get("deployment", "b")).status.phase == "Running"


async def test_rolling_update_moves_one_replica_at_a_time(tmp_path):
    with LocalStack(nodes=3, devices_per_node=1, data_dir=str(tmp_path)) as s:
        async with s.client() as c, s.store() as store:
            p, d = deployment("rolling", 3)
            d.spec.strategy.type = "RollingUpdate"
            d.spec.strategy.max_unavailable = 1
            await c.apply(p)
            await c.create(d)
            ready = await c.wait_ready("rolling", timeout=30)
            start = await store.revision()
            ready.spec.table_entries[0].params[1].value = "9"
            updated = await c.update(ready)
            done = await c.wait_ready("rolling", timeout=30)
            assert done.metadata.generation == 2 and done.status.ready_replicas == 3

            # replay every placement change of the rollout: never two replicas updating at once
            state: dict[str, kr.Placement] = {}
            worst = 0
            async for ev in store.watch(st.PLACEMENTS, start_revision=start + 1):
                state[ev.object.metadata.name] = ev.object
                updating = [x for x in state.values() if x.spec.deployment_generation == 2 and not (
                    x.status.phase == "Running" and x.status.observed_generation == 2)]
                worst = max(worst, len(updating))
                if ev.revision >= updated.metadata.resource_version and len(state) == 3 and all(
                        x.status.observed_generation == 2 and x.status.phase == "Running" for x in state.values()):
                    break
            assert worst == 1


async def test_everything_recovers_from_an_etcd_restart(tmp_path):
    with LocalStack(nodes=1, devices_per_node=2, data_dir=str(tmp_path)) as s:
        async with s.client() as c:
            p, a = deployment("before", 1)
            await c.apply(p)
            await c.create(a)
            await c.wait_ready("before", timeout=30)
        s.etcd.stop()
        s.etcd.start()  # same port, same data

        async def api_back():
            try:
                async with s.client(timeout=5) as c:
                    return await c.get("deployment", "before")
            except Exception:  # Unavailable until the apiserver's etcd client reconnects
                return None
        before = await eventually(api_back, 30, 0.2, "the API to answer again")
        assert before.status.phase == "Running"
        async with s.client() as c:
            _, b = deployment("after", 1)
            await c.create(b)  # the controller and the agent must have re-watched etcd to act on it
            ready = await c.wait_ready("after", timeout=40)
            assert ready.status.ready_replicas == 1
            assert (await c.get("deployment", "before")).status.phase == "Running"
        assert all(proc.alive() for proc in s.procs.values())


async def test_delete_completes_while_the_switch_is_down(tmp_path):
    env = {"KUBEP4_RELEASE_UNREACHABLE_AFTER": "1"}
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), resync_seconds=0.5, env=env) as s:
        async with s.client() as c:
            p, d = deployment("orphaned", 1)
            await c.apply(p)
            await c.create(d)
            await c.wait_ready("orphaned", timeout=30)
            s.procs["switch-0"].stop()
            await c.delete("deployment", "orphaned")

            async def gone():
                return not await c.list("deployments")
            await eventually(gone, 30, 0.1, "the delete to finish without the switch")


async def test_restarted_agent_clears_what_was_deleted_while_it_was_down(tmp_path):
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), lease_ttl=2) as s:
        reader = readers(s)[("node-0", "dev0")]
        async with s.client() as c:
            p, d = deployment("left-behind", 1)
            await c.apply(p)
            await c.create(d)
            await c.wait_ready("left-behind", timeout=30)
            s.procs["agent-0"].signal(signal.SIGKILL)
            await c.delete("deployment", "left-behind")

            async def gone():  # the node's lease lapses; the controller lets the placement go itself
                return not await c.list("deployments")
            await eventually(gone, 30, 0.1, "the delete to finish while the agent is down")
            assert len(await reader.entries()) == 3  # nobody could clear the device
            s.procs["agent-0"].start()
            s.procs["agent-0"].wait_ready(30)

            async def cleared():
                return await reader.entries() == []
            await eventually(cleared, 30, 0.1, "the restarted agent to clear the device")


async def test_a_new_pipeline_does_not_evict_a_neighbour_on_a_shared_device(tmp_path):
    with LocalStack(nodes=1, devices_per_node=2, slots_per_device=2, data_dir=str(tmp_path)) as s:
        devices = readers(s)
        async with s.client() as c:
            p, a = deployment("a", 1)
            _, b = deployment("b", 1)
            del b.spec.table_entries[1:]
            b.spec.table_entries[0].match[0].lpm.value = "10.9.0.0"
            await c.apply(p)
            await c.create(a)
            await c.wait_ready("a", timeout=30)
            await c.create(b)
            b_ready = await c.wait_ready("b", timeout=30)
            a_ready = await c.get("deployment", "a")
            shared = (a_ready.status.replicas[0].device, b_ready.status.replicas[0].device)
            assert shared[0] == shared[1], "the scheduler reuses the device that runs the pipeline"

            p2 = kr.Pipeline()
            p2.CopyFrom(p)
            p2.metadata.name = "basic-v2"
            p2.spec.artifacts.device_config = p.spec.artifacts.device_config + b"\n"
            await c.create(p2)
            a_ready.spec.pipeline = "basic-v2"
            await c.update(a_ready)
            a2 = await c.wait_ready("a", timeout=30)
            assert a2.status.replicas[0].device != shared[0], "a moved to a free device"
            b_now = await c.get("deployment", "b")
            assert b_now.status.phase == "Running" and b_now.status.replicas[0].device == shared[0]
            reader = devices[("node-0", shared[0])]
            assert (await reader.pipeline()).cookie.cookie == cookie_for_digest(b_now.status.pipeline_digest)
            entries = await reader.entries()  # b's one entry; a's three left with a
            assert [e.match[0].lpm.value for e in entries] == [bytes([10, 9, 0, 0])]


async def test_conflicting_entries_fail_the_newcomer_alone(tmp_path):
    with LocalStack(nodes=1, devices_per_node=1, slots_per_device=2, data_dir=str(tmp_path)) as s:
        reader = readers(s)[("node-0", "dev0")]
        async with s.client() as c:
            p, a = deployment("first", 1)
            _, b = deployment("second", 1)
            del b.spec.table_entries[1:]
            b.spec.table_entries[0].params[1].value = "5"  # same match as first's entry, another port
            await c.apply(p)
            await c.create(a)
            await c.wait_ready("first", timeout=30)
            await c.create(b)
            failed = await wait_phase(c, "second", "Failed")
            installed = [x for x in failed.status.conditions if x.type == "Installed"][0]
            assert "spec.table_entries[0] has the key of spec.table_entries[0] of deployment default/first" \
                in installed.message
            assert (await c.get("deployment", "first")).status.phase == "Running"
            entries = await reader.entries()
            assert len(entries) == 3
            ports = sorted(int.from_bytes(e.action.action.params[1].value, "big") for e in entries
                           if len(e.action.action.params) == 2)
            assert ports == [1, 2]  # first's entries, untouched
