"""Hostile and careless input: unknown enum values, undecodable bytes, table, device and batch bounds,
statuses that must stay deliverable, and no traceback logged for any of it."""
from __future__ import annotations

import logging
import tracemalloc

import grpc
import pytest
from google.rpc import code_pb2
from grpc_status import rpc_status

from kubep4.p4 import p4i, p4r
from kubep4.reftarget.device import DEFAULT_TABLE_SIZE, MAX_BATCH
from kubep4.reftarget.server import MAX_STATUS_MESSAGE, PER_UPDATE_MESSAGE

from .p4rt_client import (
    BASIC,
    ResponseType,
    basic_device_config,
    basic_p4info,
    delete,
    error_codes,
    insert,
    lpm_entry,
    write_errors,
)

EXHAUSTED = code_pb2.RESOURCE_EXHAUSTED
INVALID = code_pb2.INVALID_ARGUMENT
OK = code_pb2.OK


async def expect(code: grpc.StatusCode, coro) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    assert err.value.code() == code, err.value.details()
    return err.value


@pytest.fixture(autouse=True)
def no_tracebacks(caplog):
    """Every test here: nothing the device logs carries a traceback or sits above INFO."""
    caplog.set_level(logging.DEBUG)
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno > logging.INFO]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


def p4info_with(**lpm_changes) -> p4i.P4Info:
    """basic, with fields of the ipv4_lpm table changed."""
    info = basic_p4info()
    for t in info.tables:
        if t.preamble.id == BASIC.ipv4_lpm:
            for name, value in lpm_changes.items():
                setattr(t, name, value)
    return info


def hosts(count: int, start: int = 1) -> list[p4r.Update]:
    """INSERTs of /32 routes 10.0.0.0 + start ... into ipv4_lpm."""
    return [insert(lpm_entry(0x0A000000 + i, 32)) for i in range(start, start + count)]


# ------------------------------------------------------------------ enum values the protos do not define

@pytest.mark.parametrize("action", [77, 0])
async def test_unknown_pipeline_action_is_invalid_argument(client, device, action):
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT,
                       client.set_pipeline(basic_p4info(), basic_device_config(), action=action))
    assert f"action {action}" in err.details()
    assert device.pipeline is None


async def test_unknown_response_type_is_invalid_argument(loaded):
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, loaded.get_pipeline(response_type=77))
    assert "response_type 77" in err.details()
    assert (await loaded.get_pipeline(ResponseType.COOKIE_ONLY)).cookie.cookie == 42


async def test_unknown_update_type_fails_that_update_only(loaded, device):
    updates = hosts(2)
    updates[0].type = 77
    err = await expect(grpc.StatusCode.UNKNOWN, loaded.write(updates))
    errors = write_errors(err)
    assert [e.canonical_code for e in errors] == [INVALID, OK]
    assert "unknown (77)" in errors[0].message
    assert device.entry_count() == 1


async def test_unknown_atomicity_is_invalid_argument(loaded, device):
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, loaded.write(hosts(1), atomicity=77))
    assert "atomicity 77" in err.details()
    assert device.entry_count() == 0


@pytest.mark.parametrize("breakage, words", [
    (lambda t: setattr(t.match_fields[0], "match_type", 77), "unknown match type 77"),
    (lambda t: setattr(t.action_refs[0], "scope", 77), "unknown action scope 77"),
    (lambda t: setattr(t, "size", -5), "negative size -5"),
])
async def test_p4info_with_unknown_enum_or_negative_size_is_refused(client, device, breakage, words):
    info = basic_p4info()
    breakage(info.tables[0])
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, client.set_pipeline(info, basic_device_config()))
    assert words in err.details()
    assert device.pipeline is None


# ------------------------------------------------------------------ table and device bounds

async def test_table_of_size_zero_holds_the_default_bound(client, device):
    await client.set_pipeline(p4info_with(size=0), basic_device_config())
    await client.write(hosts(DEFAULT_TABLE_SIZE))
    assert device.entry_count() == DEFAULT_TABLE_SIZE == 1024

    err = await expect(grpc.StatusCode.UNKNOWN, client.write(hosts(1, start=5000)))
    [error] = write_errors(err)
    assert error.canonical_code == EXHAUSTED
    assert "BasicIngress.ipv4_lpm is full (1024 entries, the default bound of size 0)" in error.message
    assert device.entry_count() == DEFAULT_TABLE_SIZE


async def test_full_table_refuses_inserts_but_not_modify_or_delete(client, device):
    await client.set_pipeline(p4info_with(size=2), basic_device_config())
    await client.write(hosts(2))
    codes = error_codes(await expect(grpc.StatusCode.UNKNOWN, client.write(hosts(3))))
    assert codes == [code_pb2.ALREADY_EXISTS, code_pb2.ALREADY_EXISTS, EXHAUSTED]
    # a DELETE earlier in the batch makes room for an INSERT later in it
    await client.write([delete(lpm_entry(0x0A000001, 32)), *hosts(1, start=9)])
    assert device.entry_count() == 2


async def test_device_bound_covers_all_tables(loaded, device):
    device.max_entries = 3
    err = await expect(grpc.StatusCode.UNKNOWN, loaded.write(hosts(4)))
    errors = write_errors(err)
    assert [e.canonical_code for e in errors] == [OK, OK, OK, EXHAUSTED]
    assert "the device is full (3 entries in all tables)" in errors[3].message
    assert device.entry_count() == 3


async def test_bounds_hold_with_rollback(loaded, device):
    device.max_entries = 2
    err = await expect(grpc.StatusCode.UNKNOWN, loaded.write(hosts(3),
                                                             atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR))
    assert error_codes(err) == [code_pb2.ABORTED, code_pb2.ABORTED, EXHAUSTED]
    assert device.entry_count() == 0


# ------------------------------------------------------------------ batch bounds

def write_errors_absent(err: grpc.aio.AioRpcError) -> bool:
    status = rpc_status.from_call(err)
    return status is None or not status.details


async def test_oversized_write_is_refused_as_a_whole(loaded, device):
    updates = hosts(MAX_BATCH + 1)
    err = await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, loaded.write(updates))
    assert f"Write carries {MAX_BATCH + 1} updates" in err.details() and str(MAX_BATCH) in err.details()
    assert "metadata" not in err.details()  # the device's own answer, not an undeliverable one
    assert write_errors_absent(err)
    assert device.entry_count() == 0 and device.stats.write_requests == 0


async def test_oversized_read_is_refused(loaded):
    entities = [p4r.Entity(table_entry=p4r.TableEntry(table_id=BASIC.ipv4_lpm))] * (MAX_BATCH + 1)
    err = await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, loaded.read(entities))
    assert f"Read carries {MAX_BATCH + 1} entities" in err.details()


# ------------------------------------------------------------------ statuses stay deliverable

async def test_large_batch_with_a_failure_keeps_one_error_per_update(loaded, device):
    """As PI: every update's p4.v1.Error, however many (a client raises grpc.max_metadata_size)."""
    updates = hosts(1000)
    updates[600].entity.table_entry.table_id = 99
    err = await expect(grpc.StatusCode.UNKNOWN, loaded.write(updates))
    assert "1 of 1000 updates failed" in err.details()
    codes = error_codes(err)
    assert len(codes) == 1000 and codes[600] == INVALID and codes.count(OK) == 999
    assert device.entry_count() == 999


async def test_small_batch_keeps_one_error_per_update(loaded):
    updates = hosts(50)
    for u in updates[::2]:
        u.entity.table_entry.table_id = 99
    codes = error_codes(await expect(grpc.StatusCode.UNKNOWN, loaded.write(updates)))
    assert codes == [INVALID, OK] * 25


async def test_huge_names_do_not_make_errors_undeliverable(client):
    name = "BasicIngress." + "x" * 100_000
    info = p4info_with()
    info.tables[0].preamble.name = name
    info.tables[0].match_fields[0].name = name
    info.tables[0].match_fields[0].id = 0
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, client.set_pipeline(info, basic_device_config()))
    assert "has no id" in err.details() and len(err.details().encode()) <= MAX_STATUS_MESSAGE

    info.tables[0].match_fields[0].id = 1
    await client.set_pipeline(info, basic_device_config())
    updates = hosts(3)
    for u in updates:
        u.entity.table_entry.ClearField("action")
    errors = write_errors(await expect(grpc.StatusCode.UNKNOWN, client.write(updates)))
    assert [e.canonical_code for e in errors] == [INVALID] * 3
    assert all(len(e.message.encode()) <= PER_UPDATE_MESSAGE and "needs an action" in e.message
               for e in errors)


# ------------------------------------------------------------------ undecodable bytes

GARBAGE = b"\xff\xff\xff\x01 not a protobuf"


@pytest.mark.parametrize("method, streaming", [
    ("Write", False), ("SetForwardingPipelineConfig", False), ("GetForwardingPipelineConfig", False),
    ("Capabilities", False), ("Read", True)])
async def test_undecodable_request_is_invalid_argument(address, method, streaming):
    async with grpc.aio.insecure_channel(address) as channel:
        path = f"/p4.v1.P4Runtime/{method}"
        if streaming:
            call = channel.unary_stream(path)(GARBAGE, timeout=10)
            err = await expect(grpc.StatusCode.INVALID_ARGUMENT, _drain(call))
        else:
            err = await expect(grpc.StatusCode.INVALID_ARGUMENT, channel.unary_unary(path)(GARBAGE, timeout=10))
    assert err.details() == (f"undecodable request: {len(GARBAGE)} bytes that are not "
                             f"a p4.v1.{method}Request message")


async def test_undecodable_stream_message_ends_the_stream_with_invalid_argument(address, loaded, device):
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream("/p4.v1.P4Runtime/StreamChannel")(timeout=10)
        await call.write(GARBAGE)
        err = await expect(grpc.StatusCode.INVALID_ARGUMENT, _drain(call))
    assert "p4.v1.StreamMessageRequest" in err.details()
    assert device.primary_election_id() == 10  # the other client's stream is untouched


async def _drain(call) -> None:
    async for _ in call:
        pass


# ------------------------------------------------------------------ wide fields cost what their values cost

async def test_wide_lpm_field_costs_no_wide_masks(client, device):
    width = 2**31 - 1
    await client.set_pipeline(wide_p4info(width), basic_device_config())
    tracemalloc.start()
    try:
        entries = []
        for i in range(20):
            e = p4r.TableEntry(table_id=WIDE)
            e.match.add(field_id=1, lpm=p4r.FieldMatch.LPM(value=bytes([i + 1]) + b"\x00" * 3, prefix_len=8))
            e.action.action.action_id = BASIC.drop
            entries.append(insert(e))
        codes = error_codes(await expect(grpc.StatusCode.UNKNOWN, client.write(entries)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the value is 32 bits wide but the field 2^31 - 1: bits below the /8 prefix are set
    assert codes == [INVALID] * 20
    assert peak < 64 * 2**20  # a 2^31-bit mask alone is 256 MiB


WIDE = 33600099


def wide_p4info(width: int) -> p4i.P4Info:
    info = basic_p4info()
    t = info.tables.add()
    t.preamble.id, t.preamble.name, t.size = WIDE, "BasicIngress.wide", 64
    t.match_fields.add(id=1, name="meta.wide", bitwidth=width, match_type=p4i.MatchField.LPM)
    t.action_refs.add(id=BASIC.drop)
    return info
