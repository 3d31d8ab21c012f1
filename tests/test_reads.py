"""Live values through the API (issue 13, item 5): ReadDeployment, the SDK and the CLI read counters
and table entries from the devices now, through each replica's node agent (NodeReads).

The whole stack as processes (the local stack, a token configured), reference devices, and an
independent P4Runtime client: it writes known values into the devices' indexed counter (a MODIFY
under a role of its own, so the agents stay primary) and reads the devices directly to compare.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import grpc
import pytest
import pytest_asyncio

from kubep4 import errors
from kubep4 import store as st
from kubep4.bench.p4read import stack_readers
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from kubep4.localstack import LocalStack
from kubep4.otlp_receiver import OTLPReceiver
from kubep4.p4 import P4InfoIndex, p4r, parse_p4info, to_p4_entry
from kubep4.p4runtime_client import DeviceConnection
from kubep4.serving import open_channel
from kubep4.tls import ClientTLS

from .conftest import ROOT, eventually, example_objects

pytestmark = pytest.mark.asyncio(loop_scope="module")
TOKEN = "read-s3cret"
COUNTER = "BasicIngress.acl_hits"
WRITER_ROLE = "test-counter-writer"  # a role of its own: the agents stay primary of the default role


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # the API over TLS with the token as the identity (no client certificates)
    s = LocalStack(nodes=2, devices_per_node=1, data_dir=str(tmp_path_factory.mktemp("reads")),
                   resync_seconds=1.0, env={"KUBEP4_TOKEN": TOKEN, "KUBEP4_LOG_LEVEL": "INFO"},
                   api_client_certs=False)
    s.start()
    yield s
    s.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(stack):
    async with stack.client(token=TOKEN) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deployed(stack, client):
    """The basic example, two replicas on the two nodes, Running; the placed devices' addresses."""
    pipeline, deployment = example_objects()
    await client.apply(pipeline)
    await client.create(deployment)
    ready = await client.wait_ready("basic", timeout=60)
    readers = stack_readers(stack.device_ports, tls=stack.device_tls())
    placed = {r.replica: (r.node, r.device) for r in ready.status.replicas}
    assert len({node for node, _ in placed.values()}) == 2, placed
    return {replica: readers[key] for replica, key in placed.items()}, parse_p4info(pipeline.spec.artifacts.p4info)


def counter_id(info) -> int:
    return P4InfoIndex(info).counters_by_name[COUNTER].preamble.id


async def write_counters(address: str, device_id: int, cid: int, cells: dict[int, tuple[int, int]],
                         tls=None) -> None:
    """MODIFY the counter's cells to (bytes, packets), as an independent P4Runtime client."""
    async with DeviceConnection(address, device_id, election_id=1, role=WRITER_ROLE, tls=tls) as w:
        await w.connect()
        await w.write([p4r.Update(type=p4r.Update.MODIFY, entity=p4r.Entity(counter_entry=p4r.CounterEntry(
            counter_id=cid, index=p4r.Index(index=i), data=p4r.CounterData(byte_count=b, packet_count=n))))
            for i, (b, n) in cells.items()])


async def direct_counters(address: str, device_id: int, cid: int, tls=None) -> dict[int, tuple[int, int]]:
    """Every cell of the counter as a direct P4Runtime Read of the device answers it."""
    async with DeviceConnection(address, device_id, tls=tls) as r:
        got = await r.read([p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=cid))])
    return {e.counter_entry.index.index: (e.counter_entry.data.byte_count, e.counter_entry.data.packet_count)
            for e in got}


def cells(values: api.DeviceValues) -> dict[int, tuple[int, int]]:
    assert {c.counter for c in values.counters} == {COUNTER}
    return {c.index: (c.data.byte_count, c.data.packet_count) for c in values.counters}


async def kubep4(stack: LocalStack, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess:
    """The CLI against ``stack``'s apiserver over TLS (its CA), as the token's user."""
    env = {**os.environ, "KUBEP4_TOKEN": token}
    tls = ["--certificate-authority", stack.pki.ca.cert] if stack.pki else []
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kubep4.cli.main", "--api", stack.api, *tls,
                                                *args,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    out, err = await proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def etcd_keys_written(stack: LocalStack, since: int) -> list[str]:
    """The keys written after revision ``since``."""
    async with stack.store() as s:
        now = await s.revision()
        if now == since:
            return []
        out = []
        async for _, kv, _ in s.watch_raw(f"{st.ROOT}/".encode(), since + 1):
            out.append(kv.key.decode())
            if kv.mod_revision >= now:
                return out
    return out


async def test_counters_are_what_the_devices_hold_per_replica_and_never_stored(stack, client, deployed):
    readers, info = deployed
    cid = counter_id(info)
    written = {}
    for replica, reader in readers.items():  # other values on each device: a replica's are its own
        written[replica] = {7: (1500 * (replica + 1), 12 + replica), 1023: (64, 1), 100 + replica: (2**40, 2**33)}
        await write_counters(reader.address, reader.device_id, cid, written[replica], tls=reader.tls)
    async with stack.store() as s:
        before = await s.revision()

    resp = await client.counters("basic")
    assert [r.replica for r in resp.replicas] == sorted(readers)
    for r in resp.replicas:
        assert not r.error, r
        direct = await direct_counters(readers[r.replica].address, readers[r.replica].device_id, cid,
                                       tls=readers[r.replica].tls)
        assert cells(r.values) == direct, f"replica {r.replica}: the API and the device differ"
        assert len(direct) == 1024 and {i: v for i, v in direct.items() if v != (0, 0)} == written[r.replica]
    one = await client.read_deployment("basic", "counter", "acl_hits")  # by its alias too
    assert [cells(r.values) for r in one.replicas] == [cells(r.values) for r in resp.replicas]

    # the CLI: JSON is the whole answer; the table shows the non-zero cells of each replica
    out = await kubep4(stack, "counters", "deployment", "basic", "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for r, got in zip(resp.replicas, doc["replicas"]):
        assert (got.get("replica", 0), got["node"], got["device"]) == (r.replica, r.node, r.device)
        assert {int(c.get("index", 0)): (int(c["data"].get("byteCount", 0)), int(c["data"].get("packetCount", 0)))
                for c in got["values"]["counters"]} == cells(r.values)
    out = await kubep4(stack, "counters", "deployment", "basic", "--counter", COUNTER)
    assert out.returncode == 0, out.stderr
    blocks = out.stdout.strip().split("\n\n")
    assert len(blocks) == len(readers)
    for block, r in zip(blocks, resp.replicas):
        lines = block.splitlines()
        assert lines[0].split() == ["replica", str(r.replica), f"{r.node}/{r.device}"]
        assert lines[1].split() == ["COUNTER", "INDEX", "PACKETS", "BYTES"]
        rows = {int(x.split()[1]): (int(x.split()[3]), int(x.split()[2])) for x in lines[2:-1]}
        assert rows == written[r.replica]
        assert lines[-1].strip() == "(1021 cells at zero not shown; --all shows them)"

    # reading wrote nothing: no deployment, placement or pipeline key changed (a Node's own status
    # report may be rewritten by its agent at any time: not part of a read)
    changed = await etcd_keys_written(stack, before)
    assert [k for k in changed if not k.startswith(st.NODES.prefix())] == [], changed


async def test_a_table_read_returns_the_installed_entries(stack, client, deployed):
    readers, info = deployed
    index = P4InfoIndex(info)
    _, deployment = example_objects()
    wanted = {to_p4_entry(e, index).SerializeToString(deterministic=True) for e in deployment.spec.table_entries}
    resp = await client.read_deployment("basic", "table")
    assert len(resp.replicas) == 2
    for r in resp.replicas:
        assert not r.error, r
        direct = await readers[r.replica].entries()
        assert {e.SerializeToString(deterministic=True) for e in direct} == wanted
        # each entry named from the P4Info converts back to exactly what the device holds
        assert sorted(to_p4_entry(e, index).SerializeToString(deterministic=True) for e in r.values.table_entries) \
            == sorted(e.SerializeToString(deterministic=True) for e in direct)
    acl = await client.read_deployment("basic", "table", "BasicIngress.acl")
    assert [[e.table for e in r.values.table_entries] for r in acl.replicas] == [["BasicIngress.acl"]] * 2

    out = await kubep4(stack, "read", "deployment", "basic", "--kind", "table")
    assert out.returncode == 0, out.stderr
    block = out.stdout.split("\n\n")[0].splitlines()
    assert block[1].split() == ["TABLE", "MATCH", "PRIORITY", "ACTION", "PACKETS", "BYTES"]
    assert sorted(line.split()[0] for line in block[2:]) == ["BasicIngress.acl", "BasicIngress.ipv4_lpm",
                                                             "BasicIngress.ipv4_lpm"]


async def test_bad_reads_are_refused_with_the_reason(client, deployed):
    with pytest.raises(errors.InvalidArgument) as bad:
        await client.read_deployment("basic", "counterz")
    assert [v.field for v in bad.value.violations] == ["kind"]
    with pytest.raises(errors.NotFound):
        await client.counters("no-such-deployment")
    resp = await client.counters("basic", "no_such_counter")  # the device's P4Info says so, per replica
    assert [(r.reason, "no_such_counter" in r.error and COUNTER in r.error) for r in resp.replicas] == \
        [("NotFound", True)] * 2

    # a replica with no device (every device is taken) is answered as such
    _, nowhere = example_objects()
    nowhere.metadata.name, nowhere.spec.replicas = "nowhere", 1
    await client.create(nowhere)
    await eventually(lambda: _unschedulable(client, "nowhere"), 30, 0.1, "nowhere to be Unschedulable")
    resp = await client.counters("nowhere")
    assert [(r.replica, r.node, r.reason) for r in resp.replicas] == [(0, "", "NotPlaced")]
    await client.delete("deployment", "nowhere")


async def _unschedulable(client: AsyncClient, name: str) -> bool:
    d = await client.get("deployment", name)
    return [r.phase for r in d.status.replicas] == ["Unschedulable"]


async def test_an_unauthenticated_read_is_refused(stack, deployed):
    async with open_channel(stack.api, ClientTLS(stack.pki.ca.cert)) as ch:  # TLS, no token
        stub = api_grpc.KubeP4Stub(ch)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ReadDeployment(api.ReadDeploymentRequest(name="basic", kind="counter"),
                                          metadata=metadata, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with stack.client() as anonymous:
        with pytest.raises(errors.Unauthenticated):
            await anonymous.counters("basic")
    out = await kubep4(stack, "counters", "deployment", "basic", token="")
    assert out.returncode == 1 and "UNAUTHENTICATED" in out.stderr and "Traceback" not in out.stderr


async def test_a_dead_agent_or_device_fails_its_replica_only(stack, client, deployed):
    """The last test on the module's stack: it stops an agent and a switch."""
    readers, info = deployed
    by_node = {r.node: r.replica for r in (await client.get("deployment", "basic")).status.replicas}
    nodes = {n.metadata.name: n for n in await client.list("nodes")}
    assert all(n.spec.read_address for n in nodes.values()), nodes  # the agents published where they serve
    stack.procs["agent-1"].stop()
    resp = await client.counters("basic")
    got = {r.node: r for r in resp.replicas}
    assert got["node-1"].reason == "NodeUnreachable" and "node-1" in got["node-1"].error
    assert not got["node-1"].values.counters
    alive = got["node-0"]
    assert not alive.error and cells(alive.values) == await direct_counters(
        readers[by_node["node-0"]].address, readers[by_node["node-0"]].device_id, counter_id(info),
        tls=readers[by_node["node-0"]].tls)
    out = await kubep4(stack, "counters", "deployment", "basic")
    assert out.returncode == 1, out  # one replica failed: said, after what the other answered
    assert "error (NodeUnreachable)" in out.stdout and "COUNTER" in out.stdout

    stack.kill("switch-0")  # the agent of node-0 answers, for a device that does not
    resp = await client.counters("basic")
    got = {r.node: r for r in resp.replicas}
    assert got["node-0"].reason == "DeviceUnreachable", got["node-0"]
    assert got["node-1"].reason == "NodeUnreachable"


async def test_a_read_is_one_trace_from_the_apiserver_to_the_devices(tmp_path):
    receiver = await OTLPReceiver().start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "OTEL_METRICS_EXPORTER": "none"}
    try:
        with LocalStack(nodes=2, data_dir=str(tmp_path), env=env) as stack:
            async with stack.client() as c:
                pipeline, deployment = example_objects()
                await c.create(pipeline)
                await c.create(deployment)
                await c.wait_ready("basic", timeout=60)
                resp = await c.counters("basic")
                assert [bool(r.error) for r in resp.replicas] == [False, False], resp

            def whole():
                reads = [s for s in receiver.spans() if s.name == "apiserver read deployment"]
                if not reads:
                    return None
                spans = receiver.spans(reads[0].trace_id)
                names = sorted((s.service, s.name) for s in spans if s.name in (
                    "read replica", "node-agent read device", "p4runtime read"))
                return names if len(names) == 6 else None
            # spans come through each service's batch exporter: a liveness bound, not a speed
            names = await eventually(whole, 60, 0.1, "the read's spans from the apiserver and both agents")
            assert names == [("kubep4-apiserver", "read replica")] * 2 + [
                ("kubep4-node-agent", "node-agent read device")] * 2 + [("kubep4-node-agent", "p4runtime read")] * 2
    finally:
        await receiver.stop()
