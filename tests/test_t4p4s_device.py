"""A T4P4S device (issue 15, item 3; docs/switches.md): the agent starts the pipeline's switch
program, acts as its controller over T4P4S's own protocol and writes the table entries.

Real processes (the local stack, secure), the T4P4S switch stand-in (tests/standins/t4p4s_switch,
named as such: no DPDK switch can be built here) as the pipeline's switch program: it connects to
the agent's controller port, decodes the messages from T4P4S's C layout on its own, acknowledges
nothing (as T4P4S) and reports what it holds in a state file. SIGKILL and /proc. No timing thresholds.
"""
from __future__ import annotations

import json
import os
import signal

import pytest

from kubep4.cli.trace import trace_id_of
from kubep4.etcd_server import free_port
from kubep4.localstack import LocalStack
from kubep4.otlp_receiver import OTLPReceiver
from kubep4.p4 import P4InfoIndex, p4r, parse_p4info
from services.node_agent import t4p4s_protocol as proto
from services.node_agent.drivers.t4p4s import Unsupported, message_for

from .conftest import ROOT, eventually, example_objects
from .test_launch import processes

SWITCH = ROOT / "tests" / "standins" / "t4p4s_switch" / "switch"
LPM_ENTRIES = [  # examples/basic's two LPM entries, as the switch decodes them
    {"table": "BasicIngress.ipv4_lpm", "matches": [{"name": "hdr.ipv4.dst", "type": "lpm", "prefix_len": 24,
                                                    "value": "0a0001"}],
     "action": "BasicIngress.forward", "params": [{"name": "next_hop_mac", "bits": 48, "value": "000000000101"},
                                                  {"name": "port", "bits": 9, "value": "0001"}]},
    {"table": "BasicIngress.ipv4_lpm", "matches": [{"name": "hdr.ipv4.dst", "type": "lpm", "prefix_len": 24,
                                                    "value": "0a0002"}],
     "action": "BasicIngress.forward", "params": [{"name": "next_hop_mac", "bits": 48, "value": "000000000202"},
                                                  {"name": "port", "bits": 9, "value": "0002"}]},
]


def t4p4s_objects():
    """The basic pipeline as a T4P4S program (its switch: the stand-in), a deployment with its two
    LPM entries, and one with its ACL entry (three key fields: 2,210 bytes, over T4P4S's 2,048)."""
    p, d = example_objects()
    p.spec.target = "t4p4s"
    p.spec.artifacts.device_config = SWITCH.read_bytes()
    d.spec.replicas = 1
    acl = type(d)()
    acl.CopyFrom(d)
    acl.metadata.name = "acl"
    del d.spec.table_entries[2]
    del acl.spec.table_entries[:2]
    return p, d, acl


def held(state_dir) -> dict | None:
    path = state_dir / "kubep4-dev0.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def without_xids(state: dict) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "xid"} for e in state["entries"]]


@pytest.fixture
async def receiver():
    r = await OTLPReceiver().start()
    yield r
    await r.stop()


async def test_a_t4p4s_device_gets_its_entries_through_t4p4s_protocol(tmp_path, receiver):
    port = free_port()
    state_dir = tmp_path / "switch-state"
    state_dir.mkdir()
    env = {"T4P4S_CTL_PORT": str(port), "KUBEP4_STANDIN_T4P4S_STATE": str(state_dir), "KUBEP4_LOG_LEVEL": "INFO",
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with LocalStack(nodes=1, devices_per_node=1, slots_per_device=2, data_dir=str(tmp_path / "stack"),
                    resync_seconds=0.5, device_options=f"target=t4p4s,launch=t4p4s,controller_port={port}",
                    env=env) as s:
        assert held(state_dir) is None, "no placement, no switch"
        p, d, acl = t4p4s_objects()
        async with s.client() as c:
            await c.apply(p)
            created = await c.create(d)
            await c.wait_ready("basic", timeout=60)
            # Running means written to the switch's socket (T4P4S acknowledges nothing): the switch
            # reads them a moment later
            state = await eventually(lambda: (st := held(state_dir)) and st["initialized"] and st, 30, 0.05,
                                     "the switch told the control plane's init is done (P4T_CTRL_INITIALIZED)")
            assert without_xids(state) == LPM_ENTRIES
            assert state["skipped"] == []
            assert state["argv"] == ["-c", "0x1", "-n", "4", "--no-huge", "-m", "1024", "--no-pci", "--no-telemetry",
                                     "--file-prefix", "kubep4-dev0", "--vdev=net_null0", "--vdev=net_null1", "--",
                                     "-p", "0x3", "--config", "(0,0,0),(1,0,0)"]
            first = state["pid"]

            # the install's phases are spans of the deployment's trace, under the agent's install
            tid = trace_id_of(created.metadata.trace_context)
            phases = ("t4p4s switch start", "t4p4s connect", "t4p4s entries")

            def traced():
                spans = receiver.spans(tid)
                return spans if all(any(x.name == n for x in spans) for n in (*phases, "node_agent install")) else None
            spans = await eventually(traced, 30, 0.1, "the T4P4S install's spans")
            install = next(x for x in spans if x.name == "node_agent install")
            assert all(x.parent_span_id == install.span_id for x in spans if x.name in phases)
            agent = s.procs["agent-0"].popen.pid
            assert processes()[first][0] == agent, "the agent started the switch"

            # an entry T4P4S cannot take fails its own placement, naming it; the other stays Running
            await c.create(acl)

            async def refused():
                x = await c.get("deployment", "acl")
                r = x.status.replicas[0] if x.status.replicas else None
                return r if r is not None and r.reason == "EntityUnsupported" else None
            r = await refused_or_fail(refused)
            assert "spec.table_entries[0]" in r.message and "2210 bytes, more than the 2048" in r.message, r.message
            assert (await c.get("deployment", "basic")).status.phase == "Running"
            assert without_xids(held(state_dir)) == LPM_ENTRIES

            # the switch dies: the agent starts it again and writes its entries again
            os.kill(first, signal.SIGKILL)

            def back():
                st = held(state_dir)
                return st if st and st["pid"] != first and st["initialized"] else None
            state = await eventually(back, 60, 0.1, "the switch started again and given its entries")
            assert without_xids(state) == LPM_ENTRIES
            await c.wait_ready("basic", timeout=60)

            # an entry removed: T4P4S's switch takes adds only, so it is restarted with the one left
            await c.edit("basic", lambda d: d.spec.table_entries.pop(1))
            second = state["pid"]

            def one_left():
                st = held(state_dir)
                return st if st and st["pid"] != second and st["initialized"] else None
            state = await eventually(one_left, 60, 0.1, "the switch restarted with one entry")
            assert without_xids(state) == LPM_ENTRIES[:1]
            await c.wait_ready("basic", timeout=60)

            # no placement left: no switch left
            await c.delete("deployment", "acl")
            await c.delete("deployment", "basic")
            pid = state["pid"]
            await eventually(lambda: pid not in processes() or None, 60, 0.1, "the switch to be stopped")

            # a pipeline whose device config is no switch program (BMv2's JSON) fails, and says so
            bmv2 = type(p)()
            bmv2.CopyFrom(p)
            bmv2.metadata.name = "json"
            bmv2.spec.artifacts.device_config = (ROOT / "examples" / "basic" / "basic.json").read_bytes()
            await c.apply(bmv2)
            other = type(d)()
            other.CopyFrom(acl)
            other.metadata.name = "json"
            other.spec.pipeline = "json"
            other.spec.ClearField("table_entries")
            await c.create(other)

            async def not_a_program():
                x = await c.get("deployment", "json")
                r = x.status.replicas[0] if x.status.replicas else None
                return r if r is not None and r.phase == "Failed" and "not a T4P4S switch program" in r.message \
                    else None
            await eventually(not_a_program, 60, 0.1, "the JSON pipeline refused")
            await c.delete("deployment", "json")
        assert "T4P4S switch" in open(tmp_path / "stack" / "launch-node-0" / "dev0.log").read()


async def refused_or_fail(check):
    return await eventually(check, 60, 0.1, "the ACL deployment refused (EntityUnsupported)")


def test_the_messages_have_t4p4s_layout():
    info = parse_p4info((ROOT / "examples" / "basic" / "basic.p4info.txtpb").read_bytes())
    index = P4InfoIndex(info)
    table = index.tables_by_name["BasicIngress.ipv4_lpm"].info
    action = index.actions_by_name["BasicIngress.forward"]
    e = p4r.Entity()
    te = e.table_entry
    te.table_id = table.preamble.id
    m = te.match.add()
    m.field_id, m.lpm.value, m.lpm.prefix_len = table.match_fields[0].id, bytes([10, 0, 1, 0]), 24
    te.action.action.action_id = action.preamble.id
    for prm, value in zip(action.params, (b"\x01\x01", b"\x01")):
        te.action.action.params.add(param_id=prm.id, value=value)
    msg = message_for(e, index)
    assert len(msg) == 8 + 132 + 388 + 130 + 2 * 260
    version, kind, length, xid = proto.HEADER.unpack_from(msg)
    assert (version, kind, length, xid) == (1, proto.ADD_TABLE_ENTRY, len(msg), 0)
    assert msg[8:8 + 21] == b"BasicIngress.ipv4_lpm" and msg[136] == 1
    assert msg[140 + 128] == proto.LPM and msg[140 + 130:140 + 132] == b"\x00\x18"
    assert msg[140 + 132:140 + 136] == bytes([10, 0, 1, 0])
    act = 140 + 388
    assert msg[act] == 0 and msg[act + 1:act + 21] == b"BasicIngress.forward" and msg[act + 129] == 2
    p0 = act + 130
    assert msg[p0:p0 + 12] == b"next_hop_mac" and msg[p0 + 128:p0 + 132] == (48).to_bytes(4, "big")
    assert msg[p0 + 132:p0 + 138] == bytes([0, 0, 0, 0, 1, 1])
    assert proto.ctrl_initialized(7) == bytes([1, 5, 0, 8, 0, 0, 0, 7])

    group = p4r.Entity()
    group.packet_replication_engine_entry.multicast_group_entry.multicast_group_id = 1
    try:
        message_for(group, index)
        raise AssertionError("a multicast group was encoded")
    except Unsupported as err:
        assert "T4P4S's control protocol has no message for packet replication engine entries" in str(err) \
            or "no message for" in str(err)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_a_t4p4s_switch_goes_with_its_agent(tmp_path, sig):
    port = free_port()
    state_dir = tmp_path / "switch-state"
    state_dir.mkdir()
    env = {"T4P4S_CTL_PORT": str(port), "KUBEP4_STANDIN_T4P4S_STATE": str(state_dir)}
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path / "stack"), resync_seconds=0.5,
                    device_options=f"target=t4p4s,launch=t4p4s,controller_port={port}", env=env) as s:
        p, d, _ = t4p4s_objects()
        async with s.client() as c:
            await c.apply(p)
            await c.create(d)
            await c.wait_ready("basic", timeout=60)
        state = await eventually(lambda: (st := held(state_dir)) and st["initialized"] and st, 30, 0.05,
                                 "the switch initialized")
        s.procs["agent-0"].signal(sig)
        s.procs["agent-0"].popen.wait()
        await eventually(lambda: state["pid"] not in processes() or None, 30, 0.05,
                         "the T4P4S switch to go with its agent")
