"""Every entity kind end to end (issue 13): the multipath example installed through the whole stack,
read back from the device by an independent P4Runtime client, and removed without a trace."""
from __future__ import annotations

import pathlib

from kubep4 import manifest
from kubep4.bench.p4read import stack_readers
from kubep4.entities import to_p4_entities
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.p4 import P4InfoIndex, p4r, parse_p4info
from services.node_agent import entries as ent

from .conftest import eventually
from .reftarget.p4rt_client import P4RTClient, modify

ROOT = pathlib.Path(__file__).resolve().parent.parent
MULTIPATH = ROOT / "examples" / "multipath" / "deployment.yaml"


def multipath() -> tuple[kr.Pipeline, kr.Deployment, P4InfoIndex]:
    pipeline, deployment = manifest.load(str(MULTIPATH))
    return pipeline, deployment, P4InfoIndex(parse_p4info(pipeline.spec.artifacts.p4info))


def everything(index: P4InfoIndex, default_tables) -> list[p4r.Entity]:
    """One Read for every kind a deployment can hold: wildcards, and each indexed cell of interest."""
    out = [p4r.Entity(table_entry=p4r.TableEntry(table_id=0)),
           p4r.Entity(action_profile_member=p4r.ActionProfileMember()),
           p4r.Entity(action_profile_group=p4r.ActionProfileGroup())]
    out += [p4r.Entity(table_entry=p4r.TableEntry(table_id=t, is_default_action=True)) for t in default_tables]
    for pre in ("multicast_group_entry", "clone_session_entry"):
        e = p4r.Entity()
        getattr(e.packet_replication_engine_entry, pre).SetInParent()
        out.append(e)
    out += [p4r.Entity(meter_entry=p4r.MeterEntry(meter_id=m.preamble.id)) for m in index.info.meters]
    out += [p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=c.preamble.id)) for c in index.info.counters]
    out += [p4r.Entity(register_entry=p4r.RegisterEntry(register_id=r.preamble.id)) for r in index.info.registers]
    return out


def by_key(entities: list[p4r.Entity]) -> dict[tuple, p4r.Entity]:
    return {ent.entity_key(e): e for e in entities}


async def test_multipath_runs_and_every_kind_is_on_the_device_then_gone(tmp_path):
    pipeline, d, index = multipath()
    # the example leaves registers out (a real BMv2 refuses their writes); the reference target takes them
    d.spec.register_entries.add(register="last_seen_src", index=7, value="0x0a000001")
    wanted = [e for _, e in to_p4_entities(d.spec, index)]
    kinds = {ent.kind_of(e) for e in wanted}
    assert kinds >= {"table_entries", "action_profile_members", "action_profile_groups", "multicast_groups",
                     "clone_sessions", "meter_entries", "counter_entries", "register_entries"}
    flood = index.tables_by_name["l2_flood"].info.preamble.id
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path)) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            await c.apply(pipeline)
            await c.create(d)
            await c.wait_ready("multipath", timeout=60)
            held = by_key(await reader.read(everything(index, [flood])))
            for e in wanted:
                k = ent.entity_key(e)
                assert k in held, f"{k} is not on the device"
                if ent.kind_of(e) in ent.WRITE_ONCE or ent.kind_of(e) == "table_entries":
                    continue
                assert ent.entity_value(held[k]) == ent.entity_value(e), k
            # the table entries (the default action included) hold the spec's actions
            for e in wanted:
                if ent.kind_of(e) == "table_entries":
                    assert ent.action_bytes(held[ent.entity_key(e)].table_entry) == ent.action_bytes(e.table_entry)
            # write-once cells hold what the spec initialised them to
            reg_id = index.registers_by_name["last_seen_src"].preamble.id
            cell = p4r.Entity(register_entry=p4r.RegisterEntry(register_id=reg_id, index=p4r.Index(index=7)))
            [got] = await reader.read([cell])
            assert int.from_bytes(got.register_entry.data.bitstring, "big") == 0x0A000001
            # the acl entry's direct meter holds its config
            acl = next(e for e in wanted if ent.kind_of(e) == "table_entries"
                       and e.table_entry.HasField("meter_config"))
            ask = p4r.Entity()
            ask.CopyFrom(acl)
            ask.table_entry.ClearField("counter_data")
            [metered] = await reader.read([ask])
            assert metered.table_entry.meter_config == acl.table_entry.meter_config

            await c.delete("deployment", "multipath")

            async def gone():
                try:
                    await c.get("deployment", "multipath")
                    return False
                except Exception:
                    return True
            await eventually(gone, timeout=60, what="the deployment deleted")
            left = await reader.read(everything(index, [flood]))
            leftovers = [ent.kind_of(e) for e in left if ent.kind_of(e) in (
                "action_profile_members", "action_profile_groups", "multicast_groups", "clone_sessions")]
            assert leftovers == [], "no member, group or PRE entry stays behind"
            assert [e for e in left if ent.kind_of(e) == "table_entries" and not e.table_entry.is_default_action] == []
            default = next(e.table_entry for e in left if e.table_entry.is_default_action)
            initial_default = next(t for t in index.info.tables if t.preamble.id == flood).initial_default_action
            assert default.action.action.action_id == initial_default.action_id, \
                "the default action is the program's again"
            meters = [e for e in left if ent.kind_of(e) == "meter_entries" and e.meter_entry.HasField("config")]
            assert meters == [], "the meter cell is back to its unconfigured state"


async def test_a_deployment_larger_than_one_write_is_installed_in_several(tmp_path):
    """The device refuses any Write of more than 8 updates; the agent sends at most 4 per Write."""
    pipeline, d, index = multipath()
    route = d.spec.table_entries[1]
    for i in range(20):
        extra = d.spec.table_entries.add()
        extra.CopyFrom(route)
        extra.match[0].lpm.value = f"10.{100 + i}.0.0"
    wanted = [e for _, e in to_p4_entities(d.spec, index)]
    assert sum(ent.kind_of(e) == "table_entries" for e in wanted) > 8, "one Write could not carry them"
    env = {"KUBEP4_MAX_WRITE_BATCH": "4", "KUBEP4_REFTARGET_MAX_BATCH": "8"}
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path), env=env) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            await c.apply(pipeline)
            await c.create(d)
            await c.wait_ready("multipath", timeout=60)
            entries = await reader.entries()
            routes = [e for e in entries if e.table_id == index.tables_by_name["ipv4_route"].info.preamble.id]
            assert len(routes) == 22


async def test_a_kind_the_device_lacks_fails_its_placement_by_name_not_in_a_loop(tmp_path):
    """A switch without register writes (a real BMv2: "Register writes are not supported yet"): the
    placement fails with EntityUnsupported naming the entity, the rest of the device's work goes on."""
    pipeline, d, index = multipath()
    d.spec.register_entries.add(register="last_seen_src", index=7, value="1")
    with LocalStack(nodes=1, devices_per_node=1, slots_per_device=2, data_dir=str(tmp_path),
                    switch_args=("--unimplemented", "register_entry")) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]
        async with s.client() as c:
            await c.apply(pipeline)
            await c.create(d)

            async def refused():
                got = await c.get("deployment", "multipath")
                return next((r for r in got.status.replicas if r.reason == "EntityUnsupported"), None)
            replica = await eventually(refused, timeout=60, what="the replica refused for its register entry")
            assert "spec.register_entries[0]" in replica.message and "UNIMPLEMENTED" in replica.message
            assert replica.phase == "Failed"
            # the device stays usable: a deployment without registers on the same device runs
            _, plain, _ = multipath()
            plain.metadata.name = "plain"
            del plain.spec.table_entries[:]
            plain.spec.table_entries.add(table="l2_flood", action="to_cpu",
                                         match=[kr.FieldMatch(field="hdr.ethernet.dst",
                                                              exact=kr.FieldMatch.Exact(value="00:00:00:00:00:09"))])
            for name in ("action_profile_members", "action_profile_groups", "multicast_groups", "clone_sessions",
                         "meter_entries", "counter_entries"):
                plain.spec.ClearField(name)
            await c.create(plain)
            await c.wait_ready("plain", timeout=60)
            assert len(await reader.entries()) == 1
            again = await refused()
            assert again is not None and again.message == replica.message, "still refused, for the same reason"


async def test_a_direct_meter_config_follows_the_spec_and_is_repaired_after_drift(tmp_path):
    pipeline, d, index = multipath()
    acl_index = next(i for i, e in enumerate(d.spec.table_entries) if e.HasField("meter_config"))

    def acl_entry(spec: kr.DeploymentSpec) -> p4r.Entity:
        """The acl entry as a Read asks for it with its meter config."""
        [e] = [e for path, e in to_p4_entities(spec, index) if path == f"table_entries[{acl_index}]"]
        e.table_entry.ClearField("counter_data")
        e.table_entry.meter_config.SetInParent()
        return e
    with LocalStack(nodes=1, devices_per_node=1, data_dir=str(tmp_path)) as s:
        reader = stack_readers(s.device_ports, tls=s.device_tls())[("node-0", "dev0")]

        async def config_on_device() -> p4r.MeterConfig:
            [got] = await reader.read([acl_entry(d.spec)])
            return got.table_entry.meter_config
        async with s.client() as c:
            await c.apply(pipeline)
            await c.create(d)
            await c.wait_ready("multipath", timeout=60)
            assert (await config_on_device()).cir == 125000

            # only the meter config changes in the spec: the device gets it
            def faster(dep: kr.Deployment) -> None:
                dep.spec.table_entries[acl_index].meter_config.cir = 200000
            d = await c.edit("multipath", faster)
            await c.wait_ready("multipath", timeout=60)
            assert (await config_on_device()).cir == 200000

            # another controller changes it behind the agent's back: the agent puts it back
            other = P4RTClient(reader.address, reader.device_id, tls=reader.tls)
            try:
                assert (await other.arbitrate(1 << 100)).status.code == 0
                slow = acl_entry(d.spec).table_entry
                slow.meter_config.CopyFrom(p4r.MeterConfig(cir=1, cburst=1, pir=2, pburst=2))
                await other.write([modify(slow)])
                assert (await config_on_device()).cir == 1
            finally:
                await other.close()

            async def restored() -> bool:
                return (await config_on_device()).cir == 200000
            await eventually(restored, 30, 0.1, "the agent to restore the meter config")
