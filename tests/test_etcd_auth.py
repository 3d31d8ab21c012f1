"""kubep4.etcd_auth against a real etcd with TLS, client certificates and auth on: each component's
certificate CN is its etcd user, and its role covers only its part of the key layout."""
from __future__ import annotations

import pytest

from kubep4 import etcd_auth, tls
from kubep4 import store as st
from kubep4.etcd_server import EtcdServer, EtcdTLS
from kubep4.gen.kubep4.v1 import resources_pb2 as kr


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """One etcd member, TLS and client certificates required, auth enabled with nodes n1 and n2;
    the certificates of every identity."""
    d = str(tmp_path_factory.mktemp("etcd-auth"))
    ca = tls.make_ca(d + "/pki")
    member = tls.issue(ca, "etcd", d + "/pki", "etcd")
    certs = etcd_auth.issue_certs(ca, d + "/pki", ["n1", "n2"])
    assert sorted(certs) == sorted(["root", etcd_auth.APISERVER, etcd_auth.CONTROLLER, "node:n1", "node:n2"])
    certs["nobody"] = tls.issue(ca, "nobody", d + "/pki", "nobody", server=False)
    server = EtcdServer(data_dir=d + "/etcd", tls=EtcdTLS(member.cert, member.key, ca.cert)).start()
    yield server, ca, certs
    server.cleanup()


def _store(secured, cn: str) -> st.Store:
    server, ca, certs = secured
    return st.Store(server.endpoint, tls=tls.ClientTLS(ca.cert, certs[cn].cert, certs[cn].key))


def _placement(node: str, name: str) -> kr.Placement:
    p = kr.Placement()
    p.metadata.namespace, p.metadata.name = "default", name
    p.spec.node = node
    return p


def _deployment(name: str) -> kr.Deployment:
    d = kr.Deployment()
    d.metadata.namespace, d.metadata.name = "default", name
    return d


@pytest.fixture
async def enabled(secured):
    async with _store(secured, "root") as root:
        await etcd_auth.enable(root, nodes=["n1", "n2"])
        await etcd_auth.enable(root, nodes=["n1", "n2"])  # again: what exists is kept
    return secured


async def test_controller_writes_placements_and_each_node_reads_only_its_own(enabled):
    async with _store(enabled, etcd_auth.CONTROLLER) as controller:
        await controller.create(st.PLACEMENTS, _placement("n1", "web-0"))
        await controller.create(st.PLACEMENTS, _placement("n2", "web-1"))
        mine, _ = await controller.list(st.PLACEMENTS)  # the controller sees every node's
        assert sorted(p.metadata.name for p in mine) == ["web-0", "web-1"]

    async with _store(enabled, "node:n1") as n1:
        own, _ = await n1.list(st.PLACEMENTS, shard="n1")
        assert [p.metadata.name for p in own] == ["web-0"]
        got = await n1.get(st.PLACEMENTS, "default", "web-0", shard="n1")

        def running(p):
            p.status.observed_generation = 7
            return p
        assert (await n1.mutate(st.PLACEMENTS, "default", "web-0", running, shard="n1")) is not None
        assert got.metadata.name == "web-0"

        with pytest.raises(st.Forbidden, match="PERMISSION_DENIED"):
            await n1.get(st.PLACEMENTS, "default", "web-1", shard="n2")  # another node's placement
        with pytest.raises(st.Forbidden):
            await n1.list(st.PLACEMENTS, shard="n2")
        with pytest.raises(st.Forbidden):
            await n1.list(st.PLACEMENTS)  # every node's: the range covers others'
        with pytest.raises(st.Forbidden):
            async for _ in n1.watch(st.PLACEMENTS, shard="n2"):
                pass
        with pytest.raises(st.Forbidden):
            await n1.create(st.DEPLOYMENTS, _deployment("sneaky"))  # no Deployment writes
        with pytest.raises(st.Forbidden):
            await n1.create(st.PLACEMENTS, _placement("n2", "planted"))  # nor placements of others

        node = kr.Node()
        node.metadata.name = "n1"
        await n1.create(st.NODES, node)  # its own Node
        lease = await n1.grant_lease(10)
        await n1.put_raw(st.NODE_LEASES + "n1", b"1", lease)  # and its own lease key
        other = kr.Node()
        other.metadata.name = "n2"
        with pytest.raises(st.Forbidden):
            await n1.create(st.NODES, other)
        with pytest.raises(st.Forbidden):
            await n1.put_raw(st.NODE_LEASES + "n2", b"1")

    async with _store(enabled, etcd_auth.CONTROLLER) as controller:
        p = await controller.get(st.PLACEMENTS, "default", "web-0", shard="n1")
        assert p.status.observed_generation == 7  # the node's status write landed


async def test_apiserver_writes_api_objects_reads_placements_and_nodes_only(enabled):
    async with _store(enabled, etcd_auth.APISERVER) as api:
        d = await api.create(st.DEPLOYMENTS, _deployment("d1"))
        assert (await api.get(st.DEPLOYMENTS, "default", "d1")).metadata.uid == d.metadata.uid
        assert await api.revision() > 0
        await api.list(st.NODES)
        await api.list(st.PLACEMENTS)  # ReadDeployment reads placements, never writes them
        with pytest.raises(st.Forbidden):
            await api.create(st.PLACEMENTS, _placement("n1", "web-9"))
        with pytest.raises(st.Forbidden):
            await api.put_raw(st.NODE_LEASES + "n1", b"1")


async def test_a_certificate_that_names_no_user_is_refused(enabled):
    async with _store(enabled, "nobody") as nobody:
        with pytest.raises(st.Forbidden):
            await nobody.list(st.DEPLOYMENTS)


async def test_a_node_added_later(enabled, tmp_path):
    server, ca, certs = enabled
    n3 = tls.issue(tls.CA(ca.cert, ca.cert.replace("ca.pem", "ca-key.pem")), "n3", str(tmp_path), "node:n3",
                   server=False)
    async with _store(enabled, "root") as root:
        assert await etcd_auth.add_node(root, "n3") == "node:n3"
    async with st.Store(server.endpoint, tls=tls.ClientTLS(ca.cert, n3.cert, n3.key)) as s:
        assert (await s.list(st.PLACEMENTS, shard="n3"))[0] == []
        with pytest.raises(st.Forbidden):
            await s.list(st.PLACEMENTS, shard="n1")
