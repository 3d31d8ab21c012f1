"""SetForwardingPipelineConfig actions and GetForwardingPipelineConfig response types."""
from __future__ import annotations

import grpc
import pytest

from kubep4.p4 import p4i, p4r

from .p4rt_client import (
    BASIC,
    ResponseType,
    SetAction,
    acl_entry,
    basic_device_config,
    basic_p4info,
    insert,
    lpm_entry,
    modify,
)


async def expect(code: grpc.StatusCode, coro):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    assert err.value.code() == code, err.value.details()
    return err.value


def renumbered_param_p4info() -> p4i.P4Info:
    """basic, but forward's port param is 16 bits wide."""
    info = basic_p4info()
    for a in info.actions:
        if a.preamble.id == BASIC.forward:
            a.params[1].bitwidth = 16
    return info


def with_extra_table() -> p4i.P4Info:
    """basic plus a new exact table; the existing tables are unchanged."""
    info = basic_p4info()
    t = info.tables.add()
    t.preamble.id, t.preamble.name = 33600001, "BasicIngress.extra"
    t.match_fields.add(id=1, name="meta.x", bitwidth=8, match_type=p4i.MatchField.EXACT)
    t.action_refs.add(id=BASIC.drop)
    return info


def without_acl() -> p4i.P4Info:
    info = basic_p4info()
    keep = [t for t in info.tables if t.preamble.id != BASIC.acl]
    del info.tables[:]
    info.tables.extend(keep)
    return info


# ------------------------------------------------------------------ Get before/after


async def test_get_without_pipeline_is_failed_precondition(client):
    await expect(grpc.StatusCode.FAILED_PRECONDITION, client.get_pipeline())


async def test_get_each_response_type(loaded, make_client):
    p4info, blob = basic_p4info(), basic_device_config()
    reader = make_client()  # Get needs no arbitration at all
    cfg = await reader.get_pipeline(ResponseType.ALL)
    assert cfg.p4info == p4info and cfg.p4_device_config == blob and cfg.cookie.cookie == 42
    cfg = await reader.get_pipeline(ResponseType.COOKIE_ONLY)
    assert cfg.cookie.cookie == 42 and not cfg.HasField("p4info") and cfg.p4_device_config == b""
    cfg = await reader.get_pipeline(ResponseType.P4INFO_AND_COOKIE)
    assert cfg.p4info == p4info and cfg.cookie.cookie == 42 and cfg.p4_device_config == b""
    cfg = await reader.get_pipeline(ResponseType.DEVICE_CONFIG_AND_COOKIE)
    assert cfg.p4_device_config == blob and cfg.cookie.cookie == 42 and not cfg.HasField("p4info")


async def test_large_device_config_round_trips(client):
    blob = bytes(range(256)) * (8 * 1024 * 4)  # 8 MiB, above gRPC's 4 MiB default
    await client.set_pipeline(basic_p4info(), blob, cookie=1)
    cfg = await client.get_pipeline(ResponseType.DEVICE_CONFIG_AND_COOKIE)
    assert cfg.p4_device_config == blob


# ------------------------------------------------------------------ Set actions


async def test_verify_checks_only(client, device):
    await client.set_pipeline(basic_p4info(), basic_device_config(), action=SetAction.VERIFY)
    assert device.pipeline is None and device.stats.pipeline_verifies == 1
    await expect(grpc.StatusCode.FAILED_PRECONDITION, client.get_pipeline())


async def test_verify_and_save_then_commit(client, device):
    await client.set_pipeline(basic_p4info(), basic_device_config(), cookie=5,
                              action=SetAction.VERIFY_AND_SAVE)
    await expect(grpc.StatusCode.FAILED_PRECONDITION, client.get_pipeline())
    await client.set_pipeline(action=SetAction.COMMIT)  # no config in the request
    cfg = await client.get_pipeline()
    assert cfg.cookie.cookie == 5 and cfg.p4info == basic_p4info()
    assert device.stats.pipeline_commits == 1 and device.stats.pipeline_saves == 1
    # the saved config was consumed
    await expect(grpc.StatusCode.FAILED_PRECONDITION, client.set_pipeline(action=SetAction.COMMIT))


async def test_commit_without_saved_config_is_failed_precondition(client):
    await expect(grpc.StatusCode.FAILED_PRECONDITION, client.set_pipeline(action=SetAction.COMMIT))


async def test_verify_and_commit_replaces_and_clears(loaded, device):
    await loaded.write([insert(lpm_entry(0x0A000000, 8))])
    assert len(await loaded.read_table()) == 1
    await loaded.set_pipeline(basic_p4info(), basic_device_config(), cookie=43)
    assert await loaded.read_table() == []
    assert (await loaded.get_pipeline(ResponseType.COOKIE_ONLY)).cookie.cookie == 43
    assert device.stats.pipeline_commits == 2


async def test_unspecified_action_is_invalid_argument(client):
    await expect(grpc.StatusCode.INVALID_ARGUMENT,
                 client.set_pipeline(basic_p4info(), action=SetAction.UNSPECIFIED))


async def test_missing_p4info_is_invalid_argument(client):
    await expect(grpc.StatusCode.INVALID_ARGUMENT, client.set_pipeline(None, basic_device_config()))


@pytest.mark.parametrize("breakage", ["duplicate_id", "unknown_action_ref", "no_id"])
async def test_bad_p4info_is_invalid_argument(client, device, breakage):
    info = basic_p4info()
    if breakage == "duplicate_id":
        info.actions[0].preamble.id = info.actions[1].preamble.id
    elif breakage == "unknown_action_ref":
        info.tables[0].action_refs.add(id=12345)
    else:
        info.tables[0].preamble.id = 0
    for action in (SetAction.VERIFY, SetAction.VERIFY_AND_SAVE, SetAction.VERIFY_AND_COMMIT,
                   SetAction.RECONCILE_AND_COMMIT):
        await expect(grpc.StatusCode.INVALID_ARGUMENT, client.set_pipeline(info, action=action))
    assert device.pipeline is None and device.saved is None


async def test_no_cookie_means_no_cookie(client):
    await client.set_pipeline(basic_p4info(), basic_device_config())
    assert not (await client.get_pipeline()).HasField("cookie")


# ------------------------------------------------------------------ RECONCILE_AND_COMMIT


async def test_reconcile_without_pipeline_commits(client, device):
    await client.set_pipeline(basic_p4info(), basic_device_config(), cookie=3,
                              action=SetAction.RECONCILE_AND_COMMIT)
    assert (await client.get_pipeline()).cookie.cookie == 3
    assert device.stats.pipeline_commits == 1


async def test_reconcile_keeps_compatible_entries(loaded, device):
    entries = [lpm_entry(0x0A000000, 8), acl_entry(0x0A000001, 0xFFFFFFFF, 1, priority=5, deny_rule=7)]
    await loaded.write([insert(e) for e in entries])
    default = p4r.TableEntry(table_id=BASIC.ipv4_lpm, is_default_action=True)
    default.action.action.action_id = BASIC.forward
    default.action.action.params.add(param_id=1, value=b"\x01")
    default.action.action.params.add(param_id=2, value=b"\x02")
    await loaded.write([modify(default)])
    await loaded.set_pipeline(with_extra_table(), basic_device_config(), cookie=99,
                              action=SetAction.RECONCILE_AND_COMMIT)
    got = await loaded.read_table()
    assert sorted(e.SerializeToString(deterministic=True) for e in got) == \
        sorted(e.SerializeToString(deterministic=True) for e in entries)
    assert (await loaded.read_table(BASIC.ipv4_lpm, is_default_action=True)) == [default]
    cfg = await loaded.get_pipeline()
    assert cfg.cookie.cookie == 99 and cfg.p4info == with_extra_table()
    assert device.stats.reconciles == 1


async def test_reconcile_rejects_entries_of_removed_table(loaded):
    await loaded.write([insert(acl_entry(None, None, 3, priority=1))])
    await expect(grpc.StatusCode.INVALID_ARGUMENT,
                 loaded.set_pipeline(without_acl(), basic_device_config(), cookie=77,
                                     action=SetAction.RECONCILE_AND_COMMIT))
    # nothing changed
    assert len(await loaded.read_table()) == 1
    cfg = await loaded.get_pipeline()
    assert cfg.cookie.cookie == 42 and cfg.p4info == basic_p4info()


async def test_reconcile_rejects_changed_action_params(loaded):
    await loaded.write([insert(lpm_entry(0x0A000000, 8))])
    await expect(grpc.StatusCode.INVALID_ARGUMENT,
                 loaded.set_pipeline(renumbered_param_p4info(), action=SetAction.RECONCILE_AND_COMMIT))
    assert len(await loaded.read_table()) == 1


async def test_reconcile_rejects_changed_match_fields(loaded):
    await loaded.write([insert(lpm_entry(0x0A000000, 8))])
    info = basic_p4info()
    info.tables[0].match_fields[0].bitwidth = 64
    await expect(grpc.StatusCode.INVALID_ARGUMENT,
                 loaded.set_pipeline(info, action=SetAction.RECONCILE_AND_COMMIT))
    info = basic_p4info()
    info.tables[0].match_fields[0].match_type = p4i.MatchField.EXACT
    await expect(grpc.StatusCode.INVALID_ARGUMENT,
                 loaded.set_pipeline(info, action=SetAction.RECONCILE_AND_COMMIT))
    assert len(await loaded.read_table()) == 1


async def test_reconcile_allows_removing_unused_things(loaded):
    # no acl entries installed: dropping the acl table is fine
    await loaded.write([insert(lpm_entry(0x0A000000, 8))])
    await loaded.set_pipeline(without_acl(), action=SetAction.RECONCILE_AND_COMMIT)
    assert len(await loaded.read_table()) == 1


async def test_reapplying_same_pipeline_is_counted(loaded, device):
    """The stats let other tests prove an idempotent apply did nothing."""
    before = device.stats.snapshot()
    await loaded.get_pipeline()
    await loaded.read_table()
    assert device.stats.snapshot() == before
    await loaded.set_pipeline(basic_p4info(), basic_device_config(), cookie=42)
    assert device.stats.pipeline_commits == before["pipeline_commits"] + 1
