"""The stack secure by default (issue 11): TLS on every hop, mTLS between services, etcd with client
certificates and a role per component. Tried as an attacker on the same host would."""
from __future__ import annotations

import grpc
import pytest

from kubep4 import store as st
from kubep4 import tls
from kubep4.bench.p4read import stack_readers
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import admission_pb2 as ka
from kubep4.gen.kubep4.v1 import admission_pb2_grpc as ka_grpc
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.p4runtime_client import DeviceConnection, P4RuntimeError

from .conftest import example_objects


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = LocalStack(nodes=2, devices_per_node=1, secure=True, data_dir=str(tmp_path_factory.mktemp("secure")))
    with s:
        yield s


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    """A certificate from another CA, with the admin's very names."""
    d = str(tmp_path_factory.mktemp("stranger"))
    return tls.issue(tls.make_ca(d, name="other"), "admin", d, "admin", ["system:masters"])


def ports(stack: LocalStack) -> dict[str, str]:
    args = {name: p.argv for name, p in stack.procs.items()}
    admission = args["admission"][args["admission"].index("--listen") + 1]
    return {"apiserver": stack.api, "admission": admission}


async def test_a_deployment_runs_with_tls_everywhere(stack):
    p, d = example_objects()
    async with stack.client() as c:
        await c.apply(p)
        await c.apply(d)
        ready = await c.wait_ready(d.metadata.name, timeout=60)
        assert ready.status.ready_replicas == d.spec.replicas
    readers = stack_readers(stack.device_ports, tls=stack.device_tls())
    held = [len(await r.entries()) for r in readers.values()]
    assert sorted(held) == [len(d.spec.table_entries)] * 2


async def test_a_plaintext_client_is_refused_on_every_port(stack):
    async with AsyncClient(stack.api, timeout=5) as c:  # plaintext, no certificate
        with pytest.raises(Exception):
            await c.list("deployments")
    async with grpc.aio.insecure_channel(ports(stack)["admission"]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await ka_grpc.AdmissionStub(ch).Review(ka.AdmissionReview(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(st.StoreError):
        async with st.Store(stack.etcd.endpoint, timeout=3) as s:
            await s.list(st.DEPLOYMENTS, "default")
    for port in [p for ps in stack.device_ports.values() for p in ps]:
        conn = DeviceConnection(f"127.0.0.1:{port}", 1, election_id=1)
        try:
            with pytest.raises(P4RuntimeError):
                await conn.connect(timeout=3, _retry=False)
        finally:
            await conn.close()


async def test_a_certificate_of_another_ca_is_refused(stack, stranger):
    async with AsyncClient(stack.api, ca=stack.pki.ca.cert, cert=stranger.cert, key=stranger.key, timeout=5) as c:
        with pytest.raises(Exception):
            await c.list("deployments")
    conn = DeviceConnection(f"127.0.0.1:{stack.device_ports['node-0'][0]}", 1, election_id=1,
                            tls=tls.ClientTLS(stack.pki.ca.cert, stranger.cert, stranger.key))
    try:
        with pytest.raises(P4RuntimeError):
            await conn.connect(timeout=3, _retry=False)
    finally:
        await conn.close()


async def test_admission_answers_only_the_apiserver(stack):
    controller = stack.pki.client_tls("controller")  # a certificate of the right CA, another identity
    async with grpc.aio.secure_channel(ports(stack)["admission"], controller.credentials()) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await ka_grpc.AdmissionStub(ch).Review(ka.AdmissionReview(), timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "kubep4-apiserver" in e.value.details() and "kubep4-controller" in e.value.details()


async def test_a_node_agents_etcd_identity_reads_only_its_own(stack):
    agent = stack.pki.client_tls("agent-node-0")
    async with st.Store(stack.etcd.endpoint, tls=agent) as s:
        await s.list(st.PLACEMENTS, "default", shard="node-0")  # its own: allowed
        with pytest.raises(st.Forbidden):
            await s.list(st.PLACEMENTS, "default", shard="node-1")
        d = kr.Deployment()
        d.metadata.name, d.metadata.namespace = "evil", "default"
        with pytest.raises(st.Forbidden):
            await s.create(st.DEPLOYMENTS, d)


async def test_the_client_config_written_reaches_the_stack(stack, monkeypatch):
    monkeypatch.setenv("KUBEP4_CONFIG", stack.client_config_path)
    for var in ("KUBEP4_API", "KUBEP4_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    async with AsyncClient() as c:  # no address: the config decides (server, CA, admin certificate)
        me = await c.whoami()
    assert me.user == "admin" and "system:masters" in me.groups
