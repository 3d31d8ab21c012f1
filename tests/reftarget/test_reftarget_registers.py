"""Registers (RegisterEntry, spec §9.7) on examples/multipath: ``last_seen_src``, 512 cells of bit<32>.
(A real BMv2 refuses register Writes and Reads through PI; the reference target implements the spec.)"""
from __future__ import annotations

import grpc
from google.rpc import code_pb2

from kubep4.p4 import p4r

from .p4rt_client import (
    MP,
    be,
    delete,
    entity,
    expect,
    insert,
    modify,
    multipath_device_config,
    multipath_p4info,
    write_error,
    write_fails,
)

INVALID = code_pb2.INVALID_ARGUMENT
P4Data = type(p4r.RegisterEntry().data)


def reg(index: int | None, value: bytes | None = None, register_id: int = MP.last_seen_src) -> p4r.Entity:
    r = p4r.RegisterEntry(register_id=register_id)
    if index is not None:
        r.index.index = index
    if value is not None:
        r.data.bitstring = value
    return entity(register_entry=r)


async def test_register_modify_and_read(mp):
    await mp.write([modify(reg(3, be(0x0A000001)))])
    [got] = await mp.read([reg(3)])
    assert got.register_entry.data == P4Data(bitstring=be(0x0A000001))
    assert got.register_entry.index.index == 3 and got.register_entry.register_id == MP.last_seen_src
    [zero] = await mp.read([reg(4)])
    assert zero.register_entry.data == P4Data(bitstring=b"\x00")


async def test_register_data_must_fit_the_type_spec(mp):
    no_data = reg(1)
    wrong_kind = reg(1)
    wrong_kind.register_entry.data.bool = True
    codes = await write_fails(mp, [modify(reg(1, be(1 << 32))),       # 33 bits into bit<32>
                                   modify(reg(1, b"\x00\x01")),        # not canonical
                                   modify(no_data), modify(wrong_kind),
                                   modify(reg(1, be(0xFFFFFFFF)))])
    assert codes == [INVALID, INVALID, INVALID, INVALID, code_pb2.OK]


async def test_register_update_types_and_bounds(mp):
    codes = await write_fails(mp, [insert(reg(1, be(1))), delete(reg(1)), modify(reg(512, be(1))),
                                   modify(reg(-1, be(1))), modify(reg(1, be(1), register_id=0)),
                                   modify(reg(1, be(1), register_id=77))])
    assert codes == [INVALID, INVALID, code_pb2.OUT_OF_RANGE, INVALID, INVALID, INVALID]
    await expect(grpc.StatusCode.OUT_OF_RANGE, mp.read([reg(512)]))


async def test_register_wildcards(mp):
    await mp.write([modify(reg(None, be(7)))])        # no index: every cell
    await mp.write([modify(reg(9, be(8)))])
    cells = [e.register_entry for e in await mp.read([reg(None)])]
    assert len(cells) == 512
    assert cells[9].data.bitstring == be(8)
    assert {c.data.bitstring for i, c in enumerate(cells) if i != 9} == {be(7)}
    assert len(await mp.read([reg(None, register_id=0)])) == 512


async def test_registers_are_cleared_by_verify_and_commit(mp):
    await mp.write([modify(reg(2, be(5)))])
    await mp.set_pipeline(multipath_p4info(), multipath_device_config(), cookie=8)
    [got] = await mp.read([reg(2)])
    assert got.register_entry.data.bitstring == b"\x00"


async def test_register_write_rolls_back(mp):
    codes = await write_fails(mp, [modify(reg(2, be(5))), modify(reg(600, be(5)))],
                              atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)
    assert codes == [code_pb2.ABORTED, code_pb2.OUT_OF_RANGE]
    [got] = await mp.read([reg(2)])
    assert got.register_entry.data.bitstring == b"\x00"
    assert (await write_error(mp, modify(reg(2, b"")))).canonical_code == INVALID
