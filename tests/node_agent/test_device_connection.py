"""The node agent's P4Runtime connection against the reference target: one reader per stream
that notices a broken stream at once, and mastership changes announced on it."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from kubep4.etcd_server import free_port
from kubep4.p4runtime_client import BROKEN, NOT_PRIMARY, PRIMARY, DeviceConnection, NotPrimary, P4RuntimeError
from kubep4.reftarget import serve

from ..conftest import eventually
from ..reftarget.p4rt_client import P4RTClient, basic_device_config, basic_p4info, insert, lpm_entry


class Events(list):
    def __call__(self, event: str) -> None:
        self.append(event)


@pytest.fixture
async def target():
    t = await serve([(1, "127.0.0.1", 0)])
    yield t
    await t.stop()


async def test_a_broken_stream_is_noticed_at_once(target):
    events = Events()
    conn = DeviceConnection(target.address(1), 1, election_id=5, on_event=events)
    await conn.connect()
    assert conn.connected and conn.is_primary
    await conn.set_pipeline(basic_p4info().SerializeToString(), basic_device_config(), cookie=9)
    assert await conn.get_cookie() == 9
    await target.stop()  # the switch goes away
    await eventually(lambda: events == [BROKEN], 10, what="the reader to report the broken stream")
    assert not conn.connected and conn.broken_reason
    await conn.close()


async def test_reconnect_to_a_restarted_device_reads_it_afresh():
    t = await serve([(1, "127.0.0.1", 0)])
    port = t.ports[1]
    events = Events()
    conn = DeviceConnection(t.address(1), 1, election_id=5, on_event=events)
    await conn.connect()
    await conn.set_pipeline(basic_p4info().SerializeToString(), basic_device_config(), cookie=9)
    await t.stop()
    t = await serve([(1, "127.0.0.1", port)])  # rebooted: same address, nothing installed
    try:
        await eventually(lambda: BROKEN in events, 10, what="the broken stream")
        await conn.connect()
        assert conn.connected
        assert await conn.get_cookie() is None
    finally:
        await conn.close()
        await t.stop()


async def test_mastership_changes_are_reported_on_the_open_stream(target):
    events = Events()
    conn = DeviceConnection(target.address(1), 1, election_id=5, on_event=events)
    await conn.connect()
    other = P4RTClient(target.address(1))
    try:
        assert (await other.arbitrate(1 << 100)).status.code == 0  # a higher election id takes over
        await eventually(lambda: events == [NOT_PRIMARY], 10, what="losing primary to be reported")
        assert not conn.connected and conn.primary_election_id == 1 << 100
        await other.close_stream()  # it lets go: we are the highest again
        await eventually(lambda: events == [NOT_PRIMARY, PRIMARY], 10, what="regaining primary")
        assert conn.connected
    finally:
        await other.close()
        await conn.close()


async def test_refused_primary_keeps_the_stream_open_and_waits_for_the_change(target):
    other = P4RTClient(target.address(1))
    await other.arbitrate(1 << 100)
    events = Events()
    conn = DeviceConnection(target.address(1), 1, election_id=5, on_event=events)
    try:
        with pytest.raises(NotPrimary) as e:
            await conn.connect()
        assert e.value.primary_election_id == 1 << 100 and str(1 << 100) in str(e.value)
        assert conn.stream_open and not conn.connected
        await other.close_stream()
        await eventually(lambda: events == [PRIMARY], 10, what="the device to announce we are primary")
        assert conn.connected
    finally:
        await other.close()
        await conn.close()


async def test_read_entries_returns_match_and_requested_default_entries(target):
    conn = DeviceConnection(target.address(1), 1, election_id=5)
    await conn.connect()
    try:
        assert await conn.read_entries() == []  # no pipeline yet: nothing
        info = basic_p4info()
        await conn.set_pipeline(info.SerializeToString(), basic_device_config(), cookie=9)
        e = lpm_entry(0x0A000100, 24)
        await conn.write([insert(e)])
        got = await conn.read_entries(default_tables=[e.table_id])
        assert [x.is_default_action for x in got] == [False, True]
        assert got[0].match == e.match
    finally:
        await conn.close()


async def test_a_silent_device_is_noticed_by_keepalive(tmp_path):
    """A switch that stops answering without closing anything (SIGSTOP): keepalive pings go
    unanswered, the transport closes and the reader reports the stream broken."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kubep4.reftarget", "--device", f"1@127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    events = Events()
    conn = DeviceConnection(f"127.0.0.1:{port}", 1, election_id=5, on_event=events, keepalive_ms=(500, 500))
    try:
        async def up():
            try:
                await conn.connect(timeout=1)
                return True
            except P4RuntimeError:
                return False
        await eventually(up, 20, 0.2, "the reference device to listen")
        proc.send_signal(signal.SIGSTOP)
        await eventually(lambda: events == [BROKEN], 30, what="keepalive to notice the silent device")
        assert not conn.connected
    finally:
        await conn.close()
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
