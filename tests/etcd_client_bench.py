"""How much the etcd client's ways of connecting cost: put/get latency and a 1,000-key transaction
and range, through aetcd's client as the Store used it (plaintext), the Store (plaintext, TLS with a
client certificate, TLS with auth on, TLS against a 3-member cluster) and a grpc.aio TLS channel of
our own over aetcd's stubs. Numbers for docs/benchmarks.md (section "etcd client: TLS, members").

    python -m tests.etcd_client_bench [--n 500] [--dir /dev/shm]

Not a test (pytest does not collect it): it prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import aetcd
import grpc
from aetcd import rpc

from kubep4 import etcd_auth, tls
from kubep4 import store as st
from kubep4.etcd_server import EtcdCluster, EtcdServer, EtcdTLS

BIG = 1000  # keys of the large transaction and range (etcd started with --max-txn-ops 1000)
VALUE = b"x" * 100


def _put(key: bytes) -> rpc.TxnRequest:
    return rpc.TxnRequest(success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=VALUE))])


def _big_txn(prefix: bytes) -> rpc.TxnRequest:
    return rpc.TxnRequest(success=[rpc.RequestOp(request_put=rpc.PutRequest(key=prefix + b"%04d" % i, value=VALUE))
                                   for i in range(BIG)])


async def _measure(txn, rng, n: int, tag: str) -> dict[str, tuple[float, float]]:
    """p50/p99 ms of: put (a one-put txn), get (a one-key range), txn1000, range1000."""
    out = {}
    prefix = f"/bench/{tag}/".encode()
    for name, call, count in (
            ("put", lambda i: txn(_put(prefix + b"k%06d" % i)), n),
            ("get", lambda i: rng(rpc.RangeRequest(key=prefix + b"k%06d" % (i % n))), n),
            ("txn1000", lambda i: txn(_big_txn(prefix + b"big%03d/" % i)), max(10, n // 25)),
            ("range1000", lambda i: rng(rpc.RangeRequest(key=prefix + b"big000/",
                                                         range_end=st._range_end(prefix + b"big000/"))),
             max(10, n // 25))):
        for i in range(min(20, count)):  # warm up (and fill what the gets read)
            await call(i)
        times = []
        for i in range(count):
            t = time.perf_counter()
            await call(i)
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        out[name] = (statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))])
    return out


def _store_calls(s: st.Store):
    return (lambda r: s._call(lambda c: c.kvstub.Txn(r, timeout=c._timeout, metadata=c.metadata), False),
            lambda r: s._call(lambda c: c.kvstub.Range(r, timeout=c._timeout, metadata=c.metadata), True))


async def main(n: int, base: str) -> None:
    d = tempfile.mkdtemp(prefix="kubep4-bench-etcd-", dir=base)
    ca = tls.make_ca(d + "/pki")
    member = tls.issue(ca, "etcd", d + "/pki", "etcd")
    root = tls.issue(ca, "root", d + "/pki", "root", server=False)
    api = tls.issue(ca, "api", d + "/pki", etcd_auth.APISERVER, server=False)
    args = ("--max-txn-ops", str(BIG))
    server_tls = EtcdTLS(member.cert, member.key, ca.cert)
    rows = []
    plain = EtcdServer(data_dir=d + "/plain", extra_args=args).start()
    secure = EtcdServer(data_dir=d + "/tls", tls=server_tls, extra_args=args).start()
    cluster = EtcdCluster(3, data_dir=d + "/cluster", tls=server_tls, extra_args=args).start()
    authed = EtcdServer(data_dir=d + "/auth", tls=server_tls, extra_args=args).start()
    try:
        host, _, port = plain.endpoint.rpartition(":")
        c = aetcd.Client(host=host, port=int(port), timeout=5, options=dict(st.RECONNECT))
        await c.connect()
        rows.append(("aetcd.Client, plaintext (the Store before)",
                     await _measure(lambda r: c.kvstub.Txn(r, timeout=5), lambda r: c.kvstub.Range(r, timeout=5),
                                    n, "aetcd")))
        await c.close()

        async with st.Store(plain.endpoint) as s:
            rows.append(("Store, plaintext, 1 endpoint", await _measure(*_store_calls(s), n, "plain")))
        client_tls = tls.ClientTLS(ca.cert, root.cert, root.key)
        async with st.Store(secure.endpoint, tls=client_tls) as s:
            rows.append(("Store, TLS + client cert, 1 endpoint", await _measure(*_store_calls(s), n, "tls")))

        channel = grpc.aio.secure_channel(secure.endpoint, client_tls.credentials(), options=list(st.RECONNECT.items()))
        kv = rpc.KVStub(channel)
        rows.append(("own grpc.aio TLS channel + aetcd's KVStub",
                     await _measure(lambda r: kv.Txn(r, timeout=5), lambda r: kv.Range(r, timeout=5), n, "raw")))
        await channel.close()

        async with st.Store(authed.endpoint, tls=client_tls) as s:
            await etcd_auth.enable(s)
        async with st.Store(authed.endpoint, tls=tls.ClientTLS(ca.cert, api.cert, api.key)) as s:
            txn, rng = _store_calls(s)
            # the apiserver's role covers /kubep4/pipelines/...: measure under it
            pfx = st.PIPELINES.prefix().encode()

            def under(r):
                for op in getattr(r, "success", []):
                    op.request_put.key = pfx + op.request_put.key
                if isinstance(r, rpc.RangeRequest):
                    r.key = pfx + r.key
                    if r.range_end:
                        r.range_end = pfx + r.range_end
                return r
            rows.append(("Store, TLS + auth on (CN user, role check)",
                         await _measure(lambda r: txn(under(r)), lambda r: rng(under(r)), n, "auth")))

        leader = cluster.leader()
        order = [cluster.endpoints[leader]] + [e for i, e in enumerate(cluster.endpoints) if i != leader]
        async with st.Store(order, tls=client_tls) as s:
            rows.append(("Store, TLS, 3-member cluster (on the leader)", await _measure(*_store_calls(s), n, "c")))
        follower = [e for i, e in enumerate(cluster.endpoints) if i != leader]
        async with st.Store(follower, tls=client_tls) as s:
            rows.append(("Store, TLS, 3-member cluster (on a follower)", await _measure(*_store_calls(s), n, "f")))
    finally:
        for e in (plain, secure, authed):
            e.cleanup()
        cluster.cleanup()
    print(f"n={n} sequential calls, data in {base}; p50 / p99 ms")
    print("| client | put | get | txn of 1,000 puts | range of 1,000 keys |")
    print("|---|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | " + " | ".join(f"{m[k][0]:.2f} / {m[k][1]:.2f}"
                                         for k in ("put", "get", "txn1000", "range1000")) + " |")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--dir", default="/dev/shm")
    a = p.parse_args()
    asyncio.run(main(a.n, a.dir))
