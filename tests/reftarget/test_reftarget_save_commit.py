"""VERIFY_AND_SAVE then COMMIT (spec §7.3): Reads and Writes after the save address the new config
while the committed one keeps running; COMMIT realises the new config with what was written since.
And the stand-in for BMv2's RECONCILE_AND_COMMIT wedge."""
from __future__ import annotations

import pytest
from google.rpc import code_pb2

from kubep4.p4 import p4r
from kubep4.reftarget.device import Device, P4RuntimeError

from .p4rt_client import basic_device_config, basic_p4info, insert, lpm_entry

SetAction = p4r.SetForwardingPipelineConfigRequest.Action
COOKIE_ONLY = p4r.GetForwardingPipelineConfigRequest.ResponseType.COOKIE_ONLY


def config(cookie: int) -> p4r.ForwardingPipelineConfig:
    return p4r.ForwardingPipelineConfig(p4info=basic_p4info(), p4_device_config=basic_device_config(),
                                        cookie=p4r.ForwardingPipelineConfig.Cookie(cookie=cookie))


def entries(d: Device) -> list[p4r.TableEntry]:
    return [e.table_entry for e in d.read([p4r.Entity(table_entry=p4r.TableEntry())])]


def running_with_one_entry() -> Device:
    d = Device(1)
    d.set_pipeline(SetAction.VERIFY_AND_COMMIT, config(1))
    assert d.write([insert(lpm_entry(0x0A000000, 8))]) == [None]
    return d


def test_writes_after_a_save_go_to_the_new_config_and_commit_realises_them():
    d = running_with_one_entry()
    d.set_pipeline(SetAction.VERIFY_AND_SAVE, config(2))
    assert d.get_pipeline(COOKIE_ONLY).cookie.cookie == 1, "the committed config still runs"
    assert entries(d) == [], "reads show the saved config's tables: empty"
    assert d.write([insert(lpm_entry(0x0B000000, 16))]) == [None]
    d.set_pipeline(SetAction.COMMIT, p4r.ForwardingPipelineConfig())
    assert d.get_pipeline(COOKIE_ONLY).cookie.cookie == 2
    assert [e.match[0].lpm.prefix_len for e in entries(d)] == [16], "what was written since the save"


def test_a_commit_of_another_config_abandons_the_save():
    d = running_with_one_entry()
    d.set_pipeline(SetAction.VERIFY_AND_SAVE, config(2))
    d.set_pipeline(SetAction.RECONCILE_AND_COMMIT, config(3))
    assert d.get_pipeline(COOKIE_ONLY).cookie.cookie == 3
    assert [e.match[0].lpm.prefix_len for e in entries(d)] == [8], "reconciled from the running state"
    with pytest.raises(P4RuntimeError) as e:
        d.set_pipeline(SetAction.COMMIT, p4r.ForwardingPipelineConfig())
    assert e.value.code == code_pb2.FAILED_PRECONDITION


def test_the_bmv2_stand_in_wedges_on_reconcile_of_a_program_with_a_counter():
    d = Device(1, wedge_on_reconcile=True)
    d.set_pipeline(SetAction.VERIFY_AND_COMMIT, config(1))
    with pytest.raises(P4RuntimeError) as e:
        d.set_pipeline(SetAction.RECONCILE_AND_COMMIT, config(2))  # basic has the counter acl_hits
    assert e.value.code == code_pb2.UNKNOWN and "reconciling" in str(e.value)
    assert d.get_pipeline(COOKIE_ONLY).cookie.cookie == 2, "as on BMv2: the cookie already reads the new value"
    for action in (SetAction.VERIFY_AND_COMMIT, SetAction.VERIFY_AND_SAVE):
        with pytest.raises(P4RuntimeError) as e:
            d.set_pipeline(action, config(3))
        assert e.value.code == code_pb2.UNKNOWN and "first phase of device update" in str(e.value)
    # a device that is not the stand-in reconciles the same programs
    plain = Device(1)
    plain.set_pipeline(SetAction.VERIFY_AND_COMMIT, config(1))
    plain.set_pipeline(SetAction.RECONCILE_AND_COMMIT, config(2))
    assert plain.get_pipeline(COOKIE_ONLY).cookie.cookie == 2
