"""The entry diff: updates that make a device equal the desired entries, and which are repairs."""
from __future__ import annotations

from kubep4.p4 import p4r
from services.node_agent import entries as ent

from ..reftarget.p4rt_client import lpm_entry


def T(e: p4r.TableEntry) -> p4r.Entity:
    return p4r.Entity(table_entry=e)


def default(table_id: int, action_id: int) -> p4r.Entity:
    e = p4r.TableEntry(table_id=table_id, is_default_action=True)
    e.action.action.action_id = action_id
    return T(e)


def kinds(plan: ent.Plan) -> list[tuple[int, int]]:
    return sorted((u.type, u.entity.table_entry.match[0].lpm.prefix_len if u.entity.table_entry.match else -1)
                  for u in plan.updates)


A, B, C = T(lpm_entry(0x0A000000, 8)), T(lpm_entry(0x0B000000, 16)), T(lpm_entry(0x0C000000, 24))
B2 = T(lpm_entry(0x0B000000, 16, port=9))


def test_equal_device_needs_nothing():
    plan = ent.plan([A, B], [B, A], ent.snapshot([A, B]))
    assert plan.updates == [] and not plan.repairs


def test_missing_modified_and_extraneous_entries_are_repairs():
    plan = ent.plan(actual=[B2, C], desired=[A, B], expected=ent.snapshot([A, B]))
    assert kinds(plan) == [(p4r.Update.INSERT, 8), (p4r.Update.MODIFY, 16), (p4r.Update.DELETE, 24)]
    assert plan.updates[0].type == p4r.Update.DELETE, "deletes go first"
    assert plan.repairs == {ent.MISSING: 1, ent.MODIFIED: 1, ent.EXTRANEOUS: 1}


def test_changes_the_placements_asked_for_are_not_repairs():
    # A was ours and is no longer wanted; C is new; B changes action with a new generation
    plan = ent.plan(actual=[A, B], desired=[B2, C], expected=ent.snapshot([A, B]))
    assert kinds(plan) == [(p4r.Update.INSERT, 24), (p4r.Update.MODIFY, 16), (p4r.Update.DELETE, 8)]
    assert not plan.repairs


def test_default_entries_are_modified_never_inserted_or_deleted():
    want = default(A.table_entry.table_id, 7)
    plan = ent.plan(actual=[default(A.table_entry.table_id, 1)], desired=[want], expected={})
    assert [u.type for u in plan.updates] == [p4r.Update.MODIFY]
    assert ent.plan(actual=[want], desired=[want], expected={}).updates == []
    # a default entry read back that nobody asks about is left alone
    assert ent.plan(actual=[default(A.table_entry.table_id, 1)], desired=[], expected={}).updates == []
    changed = ent.plan(actual=[default(A.table_entry.table_id, 1)], desired=[want], expected=ent.snapshot([want]))
    assert changed.repairs == {ent.DEFAULT_ACTION: 1}


def test_match_order_does_not_change_the_key():
    e = p4r.TableEntry(table_id=1, priority=5)
    e.match.add(field_id=1).exact.value = b"\x01"
    e.match.add(field_id=2).exact.value = b"\x02"
    f = p4r.TableEntry(table_id=1, priority=5)
    f.match.add(field_id=2).exact.value = b"\x02"
    f.match.add(field_id=1).exact.value = b"\x01"
    assert ent.entry_key(e) == ent.entry_key(f)


def test_a_device_that_orders_params_its_way_and_pads_bytes_matches():
    """PI and Stratum answer params in P4Info order, older ones with zero-padded bytes."""
    written = lpm_entry(0x0A000000, 8, port=3)
    written.action.action.params.reverse()
    answered = lpm_entry(0x0A000000, 8, port=3)
    answered.match[0].lpm.value = b"\x00" * 2 + answered.match[0].lpm.value
    for prm in answered.action.action.params:
        prm.value = b"\x00" + prm.value
    assert ent.entry_key(written) == ent.entry_key(answered)
    assert ent.plan([T(answered)], [T(written)], ent.snapshot([T(written)])).updates == []


def test_entries_the_program_installs_are_never_deleted():
    const = lpm_entry(0x0E000000, 24)
    const.is_const = True
    initial = lpm_entry(0x0D000000, 24)
    initial.table_id = 77  # a table with initial entries
    plan = ent.plan(actual=[T(const), T(initial), C], desired=[], expected={}, protected_tables=frozenset({77}))
    assert [u.type for u in plan.updates] == [p4r.Update.DELETE] and plan.updates[0].entity == C


def test_a_default_we_set_and_nobody_wants_is_reset():
    was = default(A.table_entry.table_id, 7)
    plan = ent.plan(actual=[was], desired=[], expected=ent.snapshot([was]))
    assert len(plan.updates) == 1
    reset = plan.updates[0]
    assert reset.type == p4r.Update.MODIFY and reset.entity.table_entry.is_default_action
    assert not reset.entity.table_entry.HasField("action"), "no action: back to the program's default"
