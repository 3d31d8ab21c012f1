"""The diff over every entity kind: dependency order across Writes, write-once and modify-only kinds,
and batches of a bounded size."""
from __future__ import annotations

from kubep4.p4 import p4r
from services.node_agent import entries as ent

PROFILE, TABLE = 300, 40
MEMBERS, GROUPS = "action_profile_members", "action_profile_groups"


def member(mid: int, action: int = 7, port: int = 1) -> p4r.Entity:
    e = p4r.Entity(action_profile_member=p4r.ActionProfileMember(action_profile_id=PROFILE, member_id=mid))
    e.action_profile_member.action.action_id = action
    e.action_profile_member.action.params.add(param_id=1, value=bytes([port]))
    return e


def group(gid: int, *members: int) -> p4r.Entity:
    e = p4r.Entity(action_profile_group=p4r.ActionProfileGroup(action_profile_id=PROFILE, group_id=gid))
    for m in members:
        e.action_profile_group.members.add(member_id=m, weight=1)
    return e


def route(dst: int, gid: int) -> p4r.Entity:
    e = p4r.Entity(table_entry=p4r.TableEntry(table_id=TABLE))
    e.table_entry.match.add(field_id=1, exact=p4r.FieldMatch.Exact(value=bytes([dst])))
    e.table_entry.action.action_profile_group_id = gid
    return e


def mcast(gid: int, *ports: int) -> p4r.Entity:
    e = p4r.Entity()
    g = e.packet_replication_engine_entry.multicast_group_entry
    g.multicast_group_id = gid
    for i, port in enumerate(ports):
        g.replicas.add(egress_port=port, instance=i)
    return e


def meter(index: int, cir: int | None) -> p4r.Entity:
    e = p4r.Entity(meter_entry=p4r.MeterEntry(meter_id=500))
    e.meter_entry.index.index = index
    if cir is not None:
        e.meter_entry.config.CopyFrom(p4r.MeterConfig(cir=cir, cburst=10, pir=cir, pburst=10))
    return e


def counter(index: int, packets: int) -> p4r.Entity:
    e = p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=600, data=p4r.CounterData(packet_count=packets)))
    e.counter_entry.index.index = index
    return e


def phases(plan: ent.Plan) -> list[list[tuple[str, str]]]:
    return [[(p4r.Update.Type.Name(u.type), ent.kind_of(u.entity)) for u in w] for w in plan.writes]


def test_what_an_entity_refers_to_is_written_in_an_earlier_write():
    desired = [route(1, 10), group(10, 1, 2), member(1), member(2), mcast(5, 1, 2)]
    plan = ent.plan([], desired, {})
    assert phases(plan) == [[("INSERT", MEMBERS), ("INSERT", MEMBERS), ("INSERT", "multicast_groups")],
                            [("INSERT", GROUPS)], [("INSERT", "table_entries")]]


def test_deletes_run_in_reverse_dependency_order():
    held = [route(1, 10), group(10, 1, 2), member(1), member(2), mcast(5, 1)]
    plan = ent.plan(held, [], ent.snapshot(held))
    assert phases(plan) == [[("DELETE", "table_entries")], [("DELETE", GROUPS)],
                            [("DELETE", MEMBERS), ("DELETE", MEMBERS), ("DELETE", "multicast_groups")]]
    assert not plan.repairs


def test_a_group_shrinks_before_its_member_goes():
    held = [group(10, 1, 2), member(1), member(2)]
    want = [group(10, 1), member(1)]
    plan = ent.plan(held, want, ent.snapshot(held))
    assert phases(plan) == [[("MODIFY", GROUPS)], [("DELETE", MEMBERS)]]


def test_drifted_members_groups_and_replicas_are_repairs():
    want = [member(1), member(2), group(10, 1, 2), mcast(5, 1, 2)]
    # member 2 changed behind our back, the group lost a member, the PRE entry is gone, a stranger appeared
    actual = [member(1), member(2, port=9), group(10, 1), member(3)]
    plan = ent.plan(actual, want, ent.snapshot(want))
    assert plan.repairs == {ent.MODIFIED: 2, ent.MISSING: 1, ent.EXTRANEOUS: 1}


def test_replica_order_and_weights_of_one_do_not_count_as_drift():
    a, b = mcast(5, 1, 2), mcast(5, 1, 2)
    b.packet_replication_engine_entry.multicast_group_entry.replicas.reverse()
    g1, g2 = group(10, 1, 2), group(10, 2, 1)
    for m in g2.action_profile_group.members:
        m.weight = 0  # unset means one
    assert ent.plan([b, g2], [a, g1], ent.snapshot([a, g1])).updates == []


def test_meter_cells_are_modified_and_reset_never_inserted_or_deleted():
    plan = ent.plan([meter(3, None)], [meter(3, 1000)], {})
    assert phases(plan) == [[("MODIFY", "meter_entries")]]
    # a cell we configured and nobody wants: reset (a MODIFY without config)
    plan = ent.plan([meter(3, 1000)], [], ent.snapshot([meter(3, 1000)]))
    assert phases(plan) == [[("MODIFY", "meter_entries")]]
    assert not plan.updates[0].entity.meter_entry.HasField("config")
    # one nobody configured is left alone
    assert ent.plan([meter(4, 50)], [], {}).updates == []


def test_counters_are_initialised_once_and_never_compared():
    want = [counter(1, 0)]
    assert phases(ent.plan([], want, {})) == [[("MODIFY", "counter_entries")]]
    # written before: the packets have changed it since, which is no drift
    assert ent.plan([counter(1, 999)], want, ent.snapshot(want)).updates == []
    # a device that just got its pipeline lost it: initialised again
    assert phases(ent.plan([], want, ent.snapshot(want), fresh=True)) == [[("MODIFY", "counter_entries")]]


def test_a_table_modify_keeps_the_direct_counter_running():
    want = route(1, 10)
    want.table_entry.counter_data.packet_count = 0
    held = route(1, 11)
    plan = ent.plan([held], [want], ent.snapshot([held]))
    assert [u.type for u in plan.updates] == [p4r.Update.MODIFY]
    assert not plan.updates[0].entity.table_entry.HasField("counter_data")
    assert ent.plan([], [want], {}).updates[0].entity.table_entry.HasField("counter_data"), \
        "an insert initialises it"


def test_reads_ask_only_for_the_kinds_in_play():
    tables_only = ent.reads([route(1, 10)], {})
    assert [e.WhichOneof("entity") for e in tables_only] == ["table_entry"]
    kinds = [e.WhichOneof("entity") for e in ent.reads([member(1), meter(3, 5), counter(1, 0)],
                                                       ent.snapshot([mcast(5, 1)]))]
    assert kinds == ["table_entry", "action_profile_member", "packet_replication_engine_entry", "meter_entry"]


def metered(dst: int, cir: int | None) -> p4r.Entity:
    e = route(dst, 10)
    if cir is not None:
        e.table_entry.meter_config.CopyFrom(p4r.MeterConfig(cir=cir, cburst=10, pir=cir, pburst=10))
    return e


def test_a_direct_meter_config_is_compared_and_its_drift_repaired():
    want = [metered(1, 500)]
    # the spec changed only the config: a MODIFY carrying it
    plan = ent.plan([metered(1, 100)], want, ent.snapshot([metered(1, 100)]))
    assert phases(plan) == [[("MODIFY", "table_entries")]] and not plan.repairs
    assert plan.updates[0].entity.table_entry.meter_config.cir == 500
    # changed behind our back: a repair; back to the default (unset): a repair too
    assert ent.plan([metered(1, 100)], want, ent.snapshot(want)).repairs == {ent.MODIFIED: 1}
    assert ent.plan([metered(1, None)], want, ent.snapshot(want)).repairs == {ent.MODIFIED: 1}
    # the entry comes twice from one Read (the wildcard, and its table's read asking for meter
    # configs): the copy with the config counts, in either order
    for actual in ([metered(1, None), metered(1, 500)], [metered(1, 500), metered(1, None)]):
        assert ent.plan(actual, want, ent.snapshot(want)).updates == []


def test_a_default_entry_with_a_meter_config_is_not_rewritten_each_time():
    want = metered(1, 500)
    want.table_entry.ClearField("match")
    want.table_entry.is_default_action = True
    held = p4r.Entity()
    held.CopyFrom(want)
    held.table_entry.ClearField("meter_config")  # a default entry is read without its meter config
    assert ent.plan([held], [want], ent.snapshot([want])).updates == []


def test_reads_ask_the_meter_tables_for_their_configs():
    asked = ent.reads([route(1, 10)], {}, meter_tables=frozenset({TABLE}))
    assert [(e.table_entry.table_id, e.table_entry.HasField("meter_config")) for e in asked] == [
        (0, False), (TABLE, True)]


def test_batches_cut_a_write_and_keep_the_order():
    updates = [p4r.Update(type=p4r.Update.INSERT, entity=route(i, 1)) for i in range(25)]
    cut = ent.batches(updates, 10)
    assert [len(b) for b in cut] == [10, 10, 5]
    assert [u for b in cut for u in b] == updates
