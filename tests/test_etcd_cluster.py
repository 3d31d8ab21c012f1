"""A 3-member etcd cluster over TLS on loopback, and one Store given all three members: the leader
is SIGKILLed in the middle of a stream of writes. Every acknowledged write is there afterwards, and
reads and a watch carry on through the other members. Behaviour only, no timing thresholds."""
from __future__ import annotations

import asyncio

import pytest

from kubep4 import store as st
from kubep4 import tls
from kubep4.backoff import Backoff
from kubep4.etcd_server import EtcdCluster, EtcdTLS

PREFIX = f"{st.ROOT}/cluster-test/"
WRITES = 120
KILL_AFTER = 30
WRITERS = 4


@pytest.fixture
def pki(tmp_path):
    ca = tls.make_ca(str(tmp_path / "pki"))
    member = tls.issue(ca, "etcd", str(tmp_path / "pki"), "etcd")  # serves clients and peers
    client = tls.issue(ca, "client", str(tmp_path / "pki"), "kubep4-apiserver", server=False)
    return ca, member, client


@pytest.fixture
def cluster(tmp_path, pki):
    ca, member, _ = pki
    c = EtcdCluster(3, data_dir=str(tmp_path / "etcd"), tls=EtcdTLS(member.cert, member.key, ca.cert)).start()
    yield c
    c.cleanup()


def _client_tls(pki) -> tls.ClientTLS:
    ca, _, client = pki
    return tls.ClientTLS(ca.cert, client.cert, client.key)


async def test_plaintext_and_strangers_are_refused(cluster, pki, tmp_path):
    ca, _, _ = pki
    async with st.Store(cluster.endpoints[0]) as plain:  # plaintext to a TLS member
        with pytest.raises(st.Unavailable):
            await plain.get_raw(PREFIX + "x")
    async with st.Store(cluster.endpoints[0], tls=tls.ClientTLS(ca.cert)) as anonymous:  # no client cert
        with pytest.raises(st.Unavailable):
            await anonymous.get_raw(PREFIX + "x")
    async with st.Store(cluster.endpoint, tls=_client_tls(pki)) as s:
        assert await s.put_if_absent(PREFIX + "x", b"1")
        assert (await s.get_raw(PREFIX + "x"))[0] == b"1"


async def _write(s: st.Store, key: str, log: list[str]) -> bool:
    """Write key once: tried until etcd answers. False when an earlier try that failed had in fact
    been applied (the key is there already): the ambiguous outcome a client must read to settle."""
    backoff = Backoff(initial=0.05, cap=0.5)
    while True:
        try:
            return await s.put_if_absent(key, key.encode())
        except st.Unavailable as e:
            log.append(f"{key}: {e}")
            await backoff.sleep()


async def test_leader_killed_under_writes_loses_no_acknowledged_write(cluster, pki):
    leader = cluster.leader()
    # the Store starts on the leader: its death is the Store's member failing under it
    order = [cluster.endpoints[leader]] + [e for i, e in enumerate(cluster.endpoints) if i != leader]
    async with st.Store(",".join(order), tls=_client_tls(pki)) as s:
        assert s.endpoint == cluster.endpoints[leader]
        start = await s.revision() + 1
        seen: list[tuple[int, str]] = []
        all_seen = asyncio.Event()

        async def watch() -> None:
            async for etype, kv, _ in s.watch_raw(PREFIX.encode(), start):
                assert etype == "PUT"
                seen.append((kv.mod_revision, kv.key.decode()))
                if len(seen) == WRITES:
                    all_seen.set()
        watcher = asyncio.create_task(watch())
        acknowledged, ambiguous, failures = [], [], []
        keys = asyncio.Queue()
        for i in range(WRITES):
            keys.put_nowait(f"{PREFIX}{i:04d}")

        async def writer() -> None:  # writes in flight when the leader dies
            while not keys.empty():
                key = keys.get_nowait()
                (acknowledged if await _write(s, key, failures) else ambiguous).append(key)

        async def killer() -> None:
            while len(acknowledged) < KILL_AFTER:
                await asyncio.sleep(0.001)
            await asyncio.to_thread(cluster.kill, leader)
            key = acknowledged[-1]  # reads go on too
            assert (await s.get_raw(key))[0] == key.encode()
        try:
            await asyncio.gather(killer(), *(writer() for _ in range(WRITERS)))
            await asyncio.wait_for(all_seen.wait(), 60)  # a bound on a hang, not a threshold
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        assert s.endpoint != cluster.endpoints[leader]  # it moved off the dead member
        assert len(acknowledged) + len(ambiguous) == WRITES

        kvs, _ = await s.list_raw(PREFIX)
        stored = {k: v for k, v in kvs}
        assert all(stored.get(k) == k.encode() for k in acknowledged)  # nothing acknowledged is lost
        assert sorted(stored) == [f"{PREFIX}{i:04d}" for i in range(WRITES)]  # and each was written once
        # the watch, reopened on another member from its last revision: every write, once, in order
        assert sorted(k for _, k in seen) == sorted(stored)
        assert [r for r, _ in seen] == sorted({r for r, _ in seen})

        assert cluster.leader() != leader  # the two others elected a leader of their own
        # a new watch, and reads and writes, carry on with one member down
        rev = await s.put_raw(PREFIX + "after", b"1")
        async for _, kv, _ in s.watch_raw(PREFIX.encode(), rev):
            assert kv.key == (PREFIX + "after").encode()
            break


async def test_a_follower_killed_under_a_watch(cluster, pki):
    """The member a watch streams from dies while no leader changes: the watch reopens elsewhere from
    its last revision and misses nothing written meanwhile."""
    leader = cluster.leader()
    follower = next(i for i in range(3) if i != leader)
    order = [cluster.endpoints[follower]] + [e for i, e in enumerate(cluster.endpoints) if i != follower]
    async with st.Store(order, tls=_client_tls(pki)) as s:
        rev = await s.put_raw(PREFIX + "0", b"0")
        events = s.watch_raw(PREFIX.encode(), rev + 1)
        await s.put_raw(PREFIX + "1", b"1")
        assert (await events.__anext__())[1].key == (PREFIX + "1").encode()
        cluster.kill(follower)
        for i in range(2, 6):  # written while the watch's member is gone; reads and writes fail over
            await _write(s, f"{PREFIX}{i}", [])
        got = [(await events.__anext__())[1].key.decode() for _ in range(4)]
        assert got == [f"{PREFIX}{i}" for i in range(2, 6)]
        await events.aclose()
        assert s.endpoint != cluster.endpoints[follower]


async def test_quorum_lost_then_regained(cluster, pki):
    """Two of three members down: no write and no (linearizable) read is answered, each call ends in
    Unavailable rather than hanging; one member back, and everything carries on, nothing lost."""
    async with st.Store(cluster.endpoint, timeout=2, tls=_client_tls(pki)) as s:
        await s.put_raw(PREFIX + "a", b"1")
        cluster.kill(1)
        cluster.kill(2)
        with pytest.raises(st.Unavailable):
            await s.put_if_absent(PREFIX + "b", b"1")
        with pytest.raises(st.Unavailable):
            await s.get_raw(PREFIX + "a")
        await asyncio.to_thread(lambda: cluster.members[1].spawn().wait_healthy())  # its own data dir
        assert (await s.get_raw(PREFIX + "a"))[0] == b"1"
        await _write(s, PREFIX + "b", [])  # the refused write may or may not have landed: settle it
        assert (await s.get_raw(PREFIX + "b"))[0] in (b"1", (PREFIX + "b").encode())  # either try's


async def test_a_hung_member_under_a_watch(cluster, pki):
    """The member a watch streams from freezes (SIGSTOP: its connections stay open, silent). The
    keepalive pings go unanswered, the watch reopens on another member from its last revision; the
    calls that hung there fail over too. Nothing is missed."""
    leader = cluster.leader()
    follower = next(i for i in range(3) if i != leader)
    order = [cluster.endpoints[follower]] + [e for i, e in enumerate(cluster.endpoints) if i != follower]
    async with st.Store(order, tls=_client_tls(pki)) as s:
        rev = await s.put_raw(PREFIX + "0", b"0")
        events = s.watch_raw(PREFIX.encode(), rev + 1)
        await s.put_raw(PREFIX + "1", b"1")
        assert (await events.__anext__())[1].key == (PREFIX + "1").encode()
        cluster.members[follower].pause()
        try:
            for i in range(2, 5):
                await _write(s, f"{PREFIX}{i}", [])
            got = [(await events.__anext__())[1].key.decode() for _ in range(3)]
            assert got == [f"{PREFIX}{i}" for i in range(2, 5)]
            assert s.endpoint != cluster.endpoints[follower]
        finally:
            cluster.members[follower].resume()
            await events.aclose()
