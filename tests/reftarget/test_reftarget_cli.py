"""The ``kubep4-reftarget`` CLI: starts, announces its ports, serves, exits on SIGTERM/SIGINT."""
from __future__ import annotations

import asyncio
import re
import signal
import sys

import pytest
from google.rpc import code_pb2

from kubep4.reftarget.__main__ import build_parser, parse_device

from .p4rt_client import REPO, P4RTClient, basic_device_config, basic_p4info

LINE = re.compile(r"^device (\d+) listening on (\S+):(\d+)$")
DEADLINE = 20.0


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubep4.reftarget", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def listening(proc: asyncio.subprocess.Process, count: int) -> dict[int, str]:
    out: dict[int, str] = {}
    while len(out) < count:
        line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
        if not line:
            err = await proc.stderr.read()
            pytest.fail(f"reftarget exited early: {err.decode()}")
        m = LINE.match(line.decode().strip())
        assert m, line
        out[int(m.group(1))] = f"{m.group(2)}:{m.group(3)}"
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_cli_serves_devices_and_stops_on_signal(sig):
    proc = await start("--device", "1@127.0.0.1:0", "--device", "2@127.0.0.1:0")
    try:
        addresses = await listening(proc, 2)
        assert set(addresses) == {1, 2} and addresses[1] != addresses[2]
        for device_id, address in addresses.items():
            async with P4RTClient(address, device_id=device_id) as c:
                assert (await c.capabilities()).p4runtime_api_version
                assert (await c.arbitrate(1)).status.code == code_pb2.OK
                await c.set_pipeline(basic_p4info(), basic_device_config(), cookie=device_id)
                assert (await c.get_pipeline()).cookie.cookie == device_id
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), DEADLINE) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_stops_with_an_open_stream():
    proc = await start("--device", "7@127.0.0.1:0")
    try:
        addresses = await listening(proc, 1)
        async with P4RTClient(addresses[7], device_id=7) as c:
            await c.arbitrate(1)
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), DEADLINE) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_busy_port_fails():
    first = await start("--device", "1@127.0.0.1:0")
    try:
        address = (await listening(first, 1))[1]
        port = address.rsplit(":", 1)[1]
        second = await start("--device", f"1@127.0.0.1:{port}")
        assert await asyncio.wait_for(second.wait(), DEADLINE) == 1
        assert b"cannot listen" in await second.stderr.read()
    finally:
        first.terminate()
        await first.wait()


def test_device_spec_parsing():
    assert parse_device("1@127.0.0.1:9559") == (1, "127.0.0.1", 9559)
    assert parse_device("3@[::1]:0") == (3, "::1", 0)
    assert parse_device("2@localhost:9560") == (2, "localhost", 9560)
    args = build_parser().parse_args([])
    assert args.device is None  # main() falls back to 1@127.0.0.1:9559
    for bad in ("1", "x@h:1", "1@h", "1@h:99999", "1@:5"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--device", bad])
