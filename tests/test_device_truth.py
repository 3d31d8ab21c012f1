"""Device truth: every device is kept equal to its placements through agent restarts, switch
reboots and drift, and status never claims what a device does not hold.

Real processes on loopback (the local stack), SIGKILL, and an independent P4Runtime client
reading the devices (kubep4.bench.p4read) or taking primary from the agent (the test client).
"""
from __future__ import annotations

import asyncio
import re
import signal
import time

import pytest

from kubep4.bench.p4read import stack_readers
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.p4 import cookie_for_digest, p4r

from .conftest import eventually, example_objects
from .reftarget.p4rt_client import P4RTClient, delete, insert, lpm_entry, modify

OTHER_CONTROLLER = 1 << 100  # an election id above any agent's (theirs are milliseconds since 1970)


def deployment(name: str = "truth", replicas: int = 1) -> tuple[kr.Pipeline, kr.Deployment]:
    p, d = example_objects()
    d.metadata.name = name
    d.spec.replicas = replicas
    return p, d


def stack(tmp_path, **env) -> LocalStack:
    return LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), resync_seconds=0.5,
                      env={"KUBEP4_LOG_LEVEL": "INFO", **{k: str(v) for k, v in env.items()}})


def log_text(s: LocalStack, proc: str) -> str:
    with open(s.procs[proc].log_path, errors="replace") as f:
        return f.read()


def entry_set(entries: list[p4r.TableEntry]) -> set[bytes]:
    return {e.SerializeToString(deterministic=True) for e in entries}


def drop_last_entry(d: kr.Deployment) -> None:
    del d.spec.table_entries[-1]


async def running(c: AsyncClient, name: str, timeout: float = 30) -> kr.Deployment:
    return await c.wait_ready(name, timeout=timeout)


async def deployed(c: AsyncClient) -> kr.Deployment:
    """The example deployment, one replica, Running."""
    p, d = deployment()
    await c.apply(p)
    await c.create(d)
    return await running(c, d.metadata.name)


async def condition(c: AsyncClient, name: str, ctype: str, status: str, reason: str, timeout: float = 30):
    async def check():
        d = await c.get("deployment", name)
        got = next((x for x in d.status.conditions if x.type == ctype), None)
        return d if got is not None and (got.status, got.reason) == (status, reason) else None
    return await eventually(check, timeout, 0.1, f"{name}: {ctype}={status} ({reason})")


async def verified_since(c: AsyncClient, t: float, timeout: float = 30) -> None:
    """The node agent has read the device and found it right after time ``t``."""
    async def check():
        node = (await c.list("nodes"))[0]
        return all(ds.phase == "Reachable" and ds.last_verified.ToNanoseconds() / 1e9 > t
                   for ds in node.status.devices)
    await eventually(check, timeout, 0.1, "the agent to verify its device")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_agent_restart_leaves_the_entries_and_the_status_true(tmp_path, sig):
    with stack(tmp_path) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            d = await deployed(c)
            held = entry_set(await reader.entries())
            assert len(held) == 3

            samples: list[tuple[bool, int]] = []  # (status says Running, entries the device holds)
            stop = asyncio.Event()

            async def watch_truth():
                while not stop.is_set():
                    x = await c.get("deployment", d.metadata.name)
                    samples.append((x.status.phase == "Running", len(await reader.entries())))
                    await asyncio.sleep(0.02)
            watcher = asyncio.create_task(watch_truth())
            s.procs["agent-0"].signal(sig)
            s.procs["agent-0"].popen.wait()
            restarted_at = time.time()
            s.procs["agent-0"].start()
            s.procs["agent-0"].wait_ready(30)
            await verified_since(c, restarted_at)
            stop.set()
            await watcher

            assert samples and all(n == 3 for _, n in samples), "the device was never cleared"
            assert entry_set(await reader.entries()) == held
            assert (await c.get("deployment", d.metadata.name)).status.phase == "Running"
            assert "repaired drift" not in log_text(s, "agent-0")
            assert log_text(s, "switch-0").count("VERIFY_AND_COMMIT done") == 1, "the pipeline was not pushed again"


async def test_drift_behind_the_agents_back_is_repaired(tmp_path):
    with stack(tmp_path, KUBEP4_STATUS_REPORT=0.5) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            d = await deployed(c)
            held = await reader.entries()

            # another client takes primary, deletes one entry, changes one, adds one, lets go
            other = P4RTClient(reader.address, reader.device_id, tls=reader.tls)
            try:
                assert (await other.arbitrate(OTHER_CONTROLLER)).status.code == 0
                changed = p4r.TableEntry()
                changed.CopyFrom(held[1])
                changed.action.action.params[1].value = b"\x63"
                await other.write([delete(held[0]), modify(changed), insert(lpm_entry(0xC0A80000, 16))])
                assert len(await reader.entries()) == 3 and entry_set(await reader.entries()) != entry_set(held)
            finally:
                await other.close()

            async def restored():
                return entry_set(await reader.entries()) == entry_set(held)
            await eventually(restored, 30, 0.1, "the agent to restore the entries")
            await running(c, d.metadata.name)
            log = log_text(s, "agent-0")
            assert re.search(r"repaired drift: 1 extraneous, 1 missing, 1 modified", log), log[-2000:]

            # the Node's heartbeat time moves even when nothing changes (every --status-report)
            first = (await c.list("nodes"))[0].status.last_heartbeat.ToNanoseconds()

            async def moved():
                return (await c.list("nodes"))[0].status.last_heartbeat.ToNanoseconds() > first
            await eventually(moved, 20, 0.1, "the heartbeat time to move")


async def test_another_primary_is_reported_and_waited_for_not_retried_blindly(tmp_path):
    with stack(tmp_path, KUBEP4_RETRY_MAX=60) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c, s.store() as store:
            d = await deployed(c)
            other = P4RTClient(reader.address, reader.device_id, tls=reader.tls)
            try:
                await other.arbitrate(OTHER_CONTROLLER)
                failed = await condition(c, d.metadata.name, "Ready", "False", "NotPrimary")
                assert str(OTHER_CONTROLLER) in failed.status.replicas[0].message
                assert failed.status.replicas[0].reason == "NotPrimary"

                async def node_says_not_primary():
                    return (await c.list("nodes"))[0].status.devices[0].phase == "NotPrimary"
                await eventually(node_says_not_primary, 20, 0.1, "the node status to show NotPrimary")
                # while the other client holds primary the agent waits: a bounded number of tries
                rev, before = await store.revision(), log_text(s, "agent-0").count("NotPrimary")
                await asyncio.sleep(4)  # an observation window of 8 resync periods
                tries = log_text(s, "agent-0").count("NotPrimary") - before
                assert tries <= 4, f"{tries} tries in 8 resync periods"  # backoff: ~0.5, 1, 2 s apart
                assert await store.revision() - rev <= tries, "no status write storm"
            finally:
                await other.close()  # it lets go: the device tells the agent, which takes over at once
            await running(c, d.metadata.name)
            assert len(await reader.entries()) == 3


async def test_a_switch_rebooted_at_once_is_reinstalled(tmp_path):
    with stack(tmp_path) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            d = ready = await deployed(c)
            held = entry_set(await reader.entries())
            s.procs["switch-0"].kill()  # SIGKILL, and up again at once: empty, like a rebooted switch
            s.procs["switch-0"].start()
            s.procs["switch-0"].wait_ready(30)

            async def reinstalled():
                config = await reader.pipeline()
                return config is not None and config.cookie.cookie == cookie_for_digest(ready.status.pipeline_digest) \
                    and entry_set(await reader.entries()) == held
            await eventually(reinstalled, 30, 0.1, "the agent to reinstall the rebooted switch")
            await running(c, d.metadata.name)
            assert re.search(r"repaired drift: .*1 pipeline", log_text(s, "agent-0"))


async def test_a_device_down_past_patience_is_reported_then_recovers(tmp_path):
    with stack(tmp_path, KUBEP4_DEVICE_PATIENCE=1, KUBEP4_RETRY_MAX=1) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            d = await deployed(c)
            s.procs["switch-0"].kill()
            down = await condition(c, d.metadata.name, "Ready", "False", "DeviceUnreachable")
            assert down.status.phase == "Degraded" and down.status.ready_replicas == 0
            installed = next(x for x in down.status.conditions if x.type == "Installed")
            assert installed.message.startswith("node-0/dev0: ") and "does not answer" in installed.message
            assert down.status.replicas[0].phase == "Unknown"

            async def node_says_unreachable():
                return (await c.list("nodes"))[0].status.devices[0].phase == "Unreachable"
            await eventually(node_says_unreachable, 20, 0.1, "the node status to show the device unreachable")

            s.procs["switch-0"].start()  # back, empty
            s.procs["switch-0"].wait_ready(30)
            await running(c, d.metadata.name)
            assert len(await reader.entries()) == 3


async def test_a_device_refusing_the_pipeline_fails_once_with_its_message(tmp_path):
    with stack(tmp_path) as s:
        async with s.client() as c, s.store() as store:
            p, d = deployment()
            # admission accepts this P4Info; the device refuses it (a table lists an action twice)
            from kubep4.p4 import p4i
            info = p4i.P4Info()
            info.ParseFromString(p.spec.artifacts.p4info)
            info.tables[0].action_refs.append(info.tables[0].action_refs[0])
            bad = kr.Pipeline()
            bad.CopyFrom(p)
            bad.metadata.name = "refused"
            bad.spec.artifacts.p4info = info.SerializeToString()
            await c.apply(bad)
            d.spec.pipeline = "refused"
            await c.create(d)
            failed = await condition(c, d.metadata.name, "Ready", "False", "InstallFailed")
            assert failed.status.phase == "Failed"
            assert "duplicate action refs" in failed.status.replicas[0].message

            async def node_says_why():
                return "duplicate action refs" in (await c.list("nodes"))[0].status.devices[0].message
            await eventually(node_says_why, 20, 0.1, "the node status to carry the device's answer")
            rev = await store.revision()
            await asyncio.sleep(3)  # an observation window of 6 resync periods
            assert log_text(s, "switch-0").count("VERIFY_AND_COMMIT refused") == 1, "no retry of a permanent refusal"
            assert await store.revision() == rev, "no status writes while nothing changes"

            # a new spec is a new try
            await c.apply(p)
            await c.edit(d.metadata.name, lambda d: setattr(d.spec, "pipeline", p.metadata.name))
            await running(c, d.metadata.name)


async def test_an_entry_the_device_refuses_fails_its_placement_alone(tmp_path):
    """A device-side refusal (the table is full) fails the deployment whose entry it is; the
    neighbour on the same device stays Running, and the refused one leaves nothing behind."""
    with LocalStack(nodes=1, devices_per_node=1, slots_per_device=2, data_dir=str(tmp_path),
                    resync_seconds=0.5) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            p, first = deployment("first")
            from kubep4.p4 import p4i
            info = p4i.P4Info()
            info.ParseFromString(p.spec.artifacts.p4info)
            info.tables[0].size = 2  # ipv4_lpm: room for first's two routes only
            p.metadata.name = "small"
            p.spec.artifacts.p4info = info.SerializeToString()
            await c.apply(p)
            first.spec.pipeline = second_pipeline = "small"
            await c.create(first)
            await running(c, "first")
            _, second = deployment("second")
            second.spec.pipeline = second_pipeline
            second.spec.table_entries[0].match[0].lpm.value = "10.9.0.0"  # a third route: no room
            del second.spec.table_entries[1]
            second.spec.table_entries[1].match[0].ternary.value = "192.169.0.0"  # its acl entry fits
            await c.create(second)
            failed = await condition(c, "second", "Ready", "False", "InstallFailed")
            assert "refused spec.table_entries[0]: RESOURCE_EXHAUSTED" in failed.status.replicas[0].message
            assert (await c.get("deployment", "first")).status.phase == "Running"
            held = await reader.entries()
            assert len(held) == 3, "first's three entries; nothing of second's (its acl entry was taken out)"
            assert {e.match[0].lpm.value for e in held if e.match[0].HasField("lpm")} == {bytes([10, 0, 1, 0]),
                                                                                          bytes([10, 0, 2, 0])}


async def test_deployments_of_two_namespaces_clash_on_a_shared_device(tmp_path):
    with LocalStack(nodes=1, devices_per_node=1, slots_per_device=2, data_dir=str(tmp_path),
                    env={"KUBEP4_NAMESPACES": "team-a,team-b"}) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            for ns, port in (("team-a", "1"), ("team-b", "9")):
                p, d = deployment("web")
                p.metadata.namespace = d.metadata.namespace = ns
                del d.spec.table_entries[1:]
                d.spec.table_entries[0].params[1].value = port
                await c.apply(p)
                await c.create(d)
                if ns == "team-a":
                    await c.wait_ready("web", namespace="team-a", timeout=30)
            b = await eventually(lambda: _failed(c, "web", "team-b"), 30, 0.1, "team-b/web to fail")
            assert "team-a/web" in b.status.replicas[0].message
            held = await reader.entries()
            assert [int.from_bytes(e.action.action.params[1].value, "big") for e in held] == [1]


async def _failed(c: AsyncClient, name: str, ns: str):
    d = await c.get("deployment", name, ns)
    return d if d.status.phase == "Failed" else None


async def test_a_default_action_set_by_a_deleted_deployment_is_reset(tmp_path):
    with stack(tmp_path) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            p, d = deployment()
            default = d.spec.table_entries.add(table="BasicIngress.ipv4_lpm", action="BasicIngress.forward",
                                               is_default_action=True)
            default.params.add(name="next_hop_mac", value="00:00:00:00:09:09")
            default.params.add(name="port", value="9")
            await c.apply(p)
            await c.create(d)
            await running(c, d.metadata.name)
            table_id = (await reader.entries())[0].table_id

            async def default_action():
                return await reader.default_entry(table_id)
            assert (await default_action()).action.action.params[1].value == b"\x09"
            await c.delete("deployment", d.metadata.name)

            async def reset():
                got = await default_action()
                return got is not None and not got.action.action.params
            await eventually(reset, 30, 0.1, "the program's default action back")
            assert await reader.entries() == []


async def test_an_agent_in_its_own_role_is_not_preempted_by_another_roles_primary(tmp_path):
    """P4Runtime roles (spec §6.4): with role=kubep4 the agent arbitrates in its role; a controller
    primary in the default role leaves it primary, and its deployment Running."""
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), device_options="role=kubep4") as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            d = await deployed(c)
            other = P4RTClient(reader.address, reader.device_id, tls=reader.tls)
            try:
                await other.arbitrate(OTHER_CONTROLLER)  # primary of the default role
                # a new generation: the agent must still be able to write
                current = await c.edit(d.metadata.name, drop_last_entry)
                await c.wait_ready(d.metadata.name, timeout=30)
                assert len(await reader.entries()) == len(current.spec.table_entries)
            finally:
                await other.close()
