"""Per-device pipeline changes (issue 14): basic (v1) -> basic-v2 without dropping entries, a v2 that
does not fit failing with the device untouched, a disruptive fallback only when allowed, and a device
that wedges reported so."""
from __future__ import annotations

import asyncio

from kubep4 import store as st
from kubep4.bench.p4read import stack_readers
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.p4 import cookie_for_digest, parse_p4info
from services.node_agent import entries as ent

from .conftest import ROOT, eventually, example_objects


def v1() -> tuple[kr.Pipeline, kr.Deployment]:
    p, d = example_objects()
    d.metadata.name = "fwd"
    d.spec.replicas = 1
    return p, d


def v2_pipeline(name: str = "basic-v2", p4info: bytes | None = None) -> kr.Pipeline:
    p = kr.Pipeline()
    p.metadata.name = name
    p.spec.arch, p.spec.target = "v1model", "bmv2"
    p.spec.artifacts.p4info = p4info or parse_p4info(
        (ROOT / "examples" / "basic-v2" / "basic.p4info.txtpb").read_text()).SerializeToString()
    p.spec.artifacts.device_config = (ROOT / "examples" / "basic-v2" / "basic.json").read_bytes()
    return p


def to_v2(d: kr.Deployment, pipeline: str = "basic-v2", hosts: int = 1) -> kr.Deployment:
    """The deployment on v2, with ``hosts`` routes in v2's new table (many make a long install)."""
    d.spec.pipeline = pipeline
    for i in range(hosts):
        d.spec.table_entries.add(table="BasicIngress.ipv4_host", action="BasicIngress.forward", match=[
            kr.FieldMatch(field="hdr.ipv4.dst", exact=kr.FieldMatch.Exact(value=f"10.0.{1 + i // 200}.{i % 200}"))],
            params=[kr.ActionParam(name="next_hop_mac", value="00:00:00:00:01:07"),
                    kr.ActionParam(name="port", value="7")])
    return d


async def running_v1_then_v2(c, p: kr.Pipeline, d: kr.Deployment) -> None:
    """v1 Running, then the deployment updated to v2 (one host route more)."""
    await c.apply(p)
    await c.create(d)
    await c.wait_ready("fwd", timeout=60)
    await c.apply(v2_pipeline())
    await c.edit("fwd", to_v2)


async def placement(s: LocalStack, name: str) -> kr.Placement:
    async with s.store() as store:
        [p] = [p for p in (await store.list(st.PLACEMENTS, "default"))[0] if p.spec.deployment == name]
        return p


async def test_a_reconcile_upgrade_never_drops_an_entry(tmp_path):
    p, d = v1()
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), device_options="upgrade=reconcile") as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            await c.apply(p)
            await c.create(d)
            await c.wait_ready("fwd", timeout=60)
            before = {ent.entry_key(e) for e in await reader.entries()}
            assert len(before) == len(d.spec.table_entries)
            await c.apply(v2_pipeline())
            seen, done = [], asyncio.Event()

            async def poll():
                while not done.is_set():
                    seen.append({ent.entry_key(e) for e in await reader.entries()})
            polling = asyncio.create_task(poll())
            await c.edit("fwd", lambda d: to_v2(d, hosts=400))
            ready = await c.wait_ready("fwd", timeout=60)
            done.set()
            await polling
            assert all(before <= keys for keys in seen), "every v1 entry stayed on the device throughout"
            assert len(seen) > 1
            pl = await reader.pipeline()
            assert pl.cookie.cookie == cookie_for_digest(ready.status.pipeline_digest)
            assert len(await reader.entries()) == len(d.spec.table_entries) + 400, "v2's entities, its host routes too"
            assert not (await placement(s, "fwd")).status.disruptive


async def test_a_save_commit_upgrade_installs_before_the_swap(tmp_path):
    p, d = v1()
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path)) as s:  # the default: save-commit
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            await running_v1_then_v2(c, p, d)
            ready = await c.wait_ready("fwd", timeout=60)
            assert (await reader.pipeline()).cookie.cookie == cookie_for_digest(ready.status.pipeline_digest)
            assert len(await reader.entries()) == len(d.spec.table_entries) + 1
            assert not (await placement(s, "fwd")).status.disruptive


def unfit_v2() -> kr.Pipeline:
    """basic with ipv4_lpm's match field one bit wider: its entries cannot stay."""
    info = parse_p4info((ROOT / "examples" / "basic" / "basic.p4info.txtpb").read_text())
    table = next(t for t in info.tables if t.preamble.alias == "ipv4_lpm")
    table.match_fields[0].bitwidth = 33
    return v2_pipeline("unfit", info.SerializeToString())


async def test_a_v2_that_does_not_fit_fails_untouched_and_falls_back_only_when_allowed(tmp_path):
    p, d = v1()
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), device_options="upgrade=reconcile") as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            await c.apply(p)
            await c.create(d)
            running = await c.wait_ready("fwd", timeout=60)
            v1_cookie = (await reader.pipeline()).cookie.cookie
            v1_entries = sorted(e.SerializeToString(deterministic=True) for e in await reader.entries())
            await c.apply(unfit_v2())
            await c.edit("fwd", lambda d: to_v2(d, "unfit", hosts=0))

            async def refused():
                got = await c.get("deployment", "fwd")
                return next((r for r in got.status.replicas if r.reason == "UpgradeRefused"), None)
            replica = await eventually(refused, timeout=60, what="the upgrade refused")
            assert "RECONCILE_AND_COMMIT refused" in replica.message and "fallback" in replica.message
            assert (await reader.pipeline()).cookie.cookie == v1_cookie
            assert sorted(e.SerializeToString(deterministic=True) for e in await reader.entries()) == v1_entries
            # allowed to drop traffic: VERIFY_AND_COMMIT, marked disruptive
            await c.edit("fwd", lambda d: setattr(d.spec.strategy, "fallback", "Recreate"))
            ready = await c.wait_ready("fwd", timeout=60)
            assert ready.status.pipeline_digest != running.status.pipeline_digest
            assert (await reader.pipeline()).cookie.cookie == cookie_for_digest(ready.status.pipeline_digest)
            assert (await placement(s, "fwd")).status.disruptive


async def test_a_device_that_wedges_is_reported_wedged(tmp_path):
    """BMv2 through PI: RECONCILE_AND_COMMIT of a program with a counter wedges the switch (stand-in)."""
    p, d = v1()
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), device_options="upgrade=reconcile",
                    switch_args=("--wedge-on-reconcile",)) as s:
        async with s.client() as c:
            await running_v1_then_v2(c, p, d)

            async def wedged():
                got = await c.get("deployment", "fwd")
                return next((r for r in got.status.replicas if r.reason == "DeviceWedged"), None)
            replica = await eventually(wedged, timeout=60, what="the device reported wedged")
            assert "restart" in replica.message

            async def node_says_so():
                node = await c.get("node", "node-0", namespace="")
                return [x.phase for x in node.status.devices] == ["Wedged"]
            await eventually(node_says_so, timeout=30, what="the Node's device status Wedged")


async def test_a_wedged_switch_the_agent_launched_is_restarted_and_installed_again(tmp_path):
    """The same wedge on a switch the agent launched itself: it restarts the switch, which comes back
    empty, and installs v2 on it."""
    p, d = v1()
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), switch="launched-reference",
                    switch_args=("--wedge-on-reconcile",), device_options="upgrade=reconcile") as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            await running_v1_then_v2(c, p, d)
            ready = await c.wait_ready("fwd", timeout=90)
            assert (await reader.pipeline()).cookie.cookie == cookie_for_digest(ready.status.pipeline_digest)
            assert len(await reader.entries()) == len(d.spec.table_entries) + 1
        with open(s.procs["agent-0"].log_path) as f:
            log = f.read()
        assert "is wedged: restarting the switch this agent launched" in log
