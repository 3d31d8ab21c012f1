"""The gRPC-free Device state machine, driven directly."""
from __future__ import annotations

import pytest
from google.rpc import code_pb2

from kubep4.p4 import p4r
from kubep4.reftarget.device import Device, P4RuntimeError, Session, uint128, validate_config

from .p4rt_client import BASIC, MP, basic_device_config, basic_p4info, insert, lpm_entry, multipath_p4info

SetAction = p4r.SetForwardingPipelineConfigRequest.Action


def arb(election_id: int, device_id: int = 1, role: str | None = None) -> p4r.MasterArbitrationUpdate:
    msg = p4r.MasterArbitrationUpdate(device_id=device_id, election_id=uint128(election_id))
    if role is not None:
        msg.role.name = role
    return msg


def config() -> p4r.ForwardingPipelineConfig:
    return p4r.ForwardingPipelineConfig(p4info=basic_p4info(), p4_device_config=basic_device_config(),
                                        cookie=p4r.ForwardingPipelineConfig.Cookie(cookie=1))


def test_arbitration_notifications():
    d = Device(1)
    a, b, c = Session(), Session(), Session()
    [(to, msg)] = d.arbitrate(a, arb(5))
    assert to is a and msg.status.code == code_pb2.OK
    [(to, msg)] = d.arbitrate(b, arb(3))  # a backup: only it hears
    assert to is b and msg.status.code == code_pb2.ALREADY_EXISTS and msg.election_id.low == 5
    notes = d.arbitrate(c, arb(9))  # a new primary: everybody hears
    assert {s.id for s, _ in notes} == {a.id, b.id, c.id}
    assert {s.id: m.status.code for s, m in notes}[c.id] == code_pb2.OK
    assert d.close_session(b) == []  # a backup leaving is silent
    notes = d.close_session(c)
    assert [(s.id, m.status.code, m.election_id.low) for s, m in notes] == [(a.id, code_pb2.OK, 5)]
    assert d.primary_election_id() == 5
    assert d.close_session(a) == [] and d.primary_election_id() is None


def test_arbitration_errors_leave_state_alone():
    d = Device(1)
    a, b = Session(), Session()
    d.arbitrate(a, arb(5))
    with pytest.raises(P4RuntimeError) as err:
        d.arbitrate(b, arb(5))
    assert err.value.code == code_pb2.INVALID_ARGUMENT
    with pytest.raises(P4RuntimeError) as err:
        d.arbitrate(b, arb(6, device_id=2))
    assert err.value.code == code_pb2.NOT_FOUND
    with pytest.raises(P4RuntimeError) as err:
        d.arbitrate(a, arb(6, role="other"))  # a stream keeps its role
    assert err.value.code == code_pb2.INVALID_ARGUMENT
    assert d.sessions() == [a] and d.primary_election_id() == 5


def test_check_primary():
    d = Device(1)
    with pytest.raises(P4RuntimeError) as err:
        d.check_primary("", uint128(1))
    assert err.value.code == code_pb2.PERMISSION_DENIED
    d.arbitrate(Session(), arb(2**70))
    d.check_primary("", uint128(2**70))
    with pytest.raises(P4RuntimeError):
        d.check_primary("", uint128(2**70 - 1))
    with pytest.raises(P4RuntimeError):
        d.check_primary("sdn", uint128(2**70))


def test_write_results_and_stats():
    d = Device(1)
    with pytest.raises(P4RuntimeError) as err:
        d.write([insert(lpm_entry(0x0A000000, 8))])
    assert err.value.code == code_pb2.FAILED_PRECONDITION
    d.set_pipeline(SetAction.VERIFY_AND_COMMIT, config())
    results = d.write([insert(lpm_entry(0x0A000000, 8)), insert(lpm_entry(0x0A000000, 8))])
    assert results[0] is None and results[1].code == code_pb2.ALREADY_EXISTS
    assert d.entry_count() == 1
    assert (d.stats.pipeline_commits, d.stats.write_requests, d.stats.writes_applied,
            d.stats.writes_failed) == (1, 1, 1, 1)
    [entity] = list(d.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=BASIC.ipv4_lpm))]))
    assert entity.table_entry == lpm_entry(0x0A000000, 8)


def test_failed_reconcile_changes_nothing():
    d = Device(1)
    d.set_pipeline(SetAction.VERIFY_AND_COMMIT, config())
    d.write([insert(lpm_entry(0x0A000000, 8))])
    smaller = config()
    del smaller.p4info.tables[0]
    smaller.cookie.cookie = 2
    before = d.stats.snapshot()
    with pytest.raises(P4RuntimeError) as err:
        d.set_pipeline(SetAction.RECONCILE_AND_COMMIT, smaller)
    assert err.value.code == code_pb2.INVALID_ARGUMENT
    assert d.pipeline.cookie == 1 and d.entry_count() == 1 and d.stats.snapshot() == before


# ------------------------------------------------------------------ hostile P4Info objects of the other kinds


def _mp_device(info) -> Device:
    d = Device(1)
    d.set_pipeline(p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT, p4r.ForwardingPipelineConfig(p4info=info))
    return d


def test_a_huge_counter_costs_what_is_written():
    """A counter of 2^40 cells: a MODIFY of every cell is one value, a wildcard read is refused
    (RESOURCE_EXHAUSTED), a read by index works."""
    info = multipath_p4info()
    info.counters[0].size = 1 << 40
    d = _mp_device(info)
    every = p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=MP.port_rx, data=p4r.CounterData(packet_count=2)))
    assert d.write([p4r.Update(type=p4r.Update.MODIFY, entity=every)]) == [None]
    last = p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=MP.port_rx))
    last.counter_entry.index.index = (1 << 40) - 1
    [got] = list(d.read([last]))
    assert got.counter_entry.data.packet_count == 2
    wildcard = p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=MP.port_rx))
    with pytest.raises(P4RuntimeError) as err:
        d.read([wildcard])
    assert err.value.code == code_pb2.RESOURCE_EXHAUSTED


def test_p4info_objects_with_negative_sizes_or_unknown_profiles_are_invalid():
    def refused(change) -> bool:
        info = multipath_p4info()
        change(info)
        try:
            validate_config(p4r.ForwardingPipelineConfig(p4info=info))
        except P4RuntimeError as e:
            return e.code == code_pb2.INVALID_ARGUMENT
        return False

    assert refused(lambda i: setattr(i.counters[0], "size", -1))
    assert refused(lambda i: setattr(i.registers[0], "size", -1))
    assert refused(lambda i: setattr(i.action_profiles[0], "max_group_size", -2))
    assert refused(lambda i: setattr(i.tables[0], "implementation_id", 4242))
    assert refused(lambda i: i.action_profiles[0].table_ids.append(4343))
    assert not refused(lambda i: None)
