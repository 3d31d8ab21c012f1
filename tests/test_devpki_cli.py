"""python -m kubep4.devpki, the certificate job of deploy/compose: real files, a real etcd with TLS.

What the job must do for compose (and what Kubernetes' cert-manager does there): the names the
containers are dialled by in each certificate, nothing reissued on a second run, the CA's key and
the all-powerful certificates apart from what the services mount, a CA brought without its key, and
etcd auth turned on as root."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from kubep4 import devpki, etcd_auth, tls
from kubep4 import store as st
from kubep4.etcd_server import EtcdServer, EtcdTLS
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubep4.devpki", *args], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def _sans(path) -> set[str]:
    ext = _cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*ext.get_values_for_type(x509.DNSName), *(str(i) for i in ext.get_values_for_type(x509.IPAddress))}


def _cn(path) -> str:
    return _cert(path).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _snapshot(*dirs) -> dict[str, bytes]:
    return {f"{d}/{n}": (Path(d) / n).read_bytes() for d in dirs for n in sorted(os.listdir(d))}


COMPOSE_ARGS = ["--nodes", "node-1,node-2", "--san", "apiserver=apiserver", "--san", "admission=admission",
                "--san", "etcd=etcd", "--san", "agent-node-1=node-agent-1", "--san", "switch-node-1=switch-1",
                "--san", "switch-node-2=switch-2,10.1.2.3"]


def test_writes_every_certificate_with_the_container_names(tmp_path):
    pki, ca = tmp_path / "pki", tmp_path / "ca"
    proc = cli("--dir", str(pki), "--ca-dir", str(ca), *COMPOSE_ARGS)
    assert proc.returncode == 0, proc.stderr
    cns = {"apiserver": "kubep4-apiserver", "admission": "kubep4-admission", "controller": "kubep4-controller",
           "builder": "kubep4-builder", "etcd": "etcd", "agent-node-1": "node:node-1", "agent-node-2": "node:node-2",
           "switch-node-1": "switch-node-1", "switch-node-2": "switch-node-2", "observer": "kubep4-observer"}
    for name, cn in cns.items():
        assert _cn(pki / f"{name}.pem") == cn
        assert (pki / f"{name}-key.pem").stat().st_mode & 0o777 == 0o600
        assert {"localhost", "127.0.0.1"} <= _sans(pki / f"{name}.pem"), name  # loopback: the healthchecks
    assert _sans(pki / "apiserver.pem") == {"localhost", "127.0.0.1", "apiserver"}
    assert _sans(pki / "etcd.pem") >= {"etcd"}
    assert _sans(pki / "agent-node-1.pem") >= {"node-agent-1"}
    assert _sans(pki / "switch-node-2.pem") == {"localhost", "127.0.0.1", "switch-2", "10.1.2.3"}
    # the CA key and the certificates that may do everything are not where the services look
    assert sorted(os.listdir(ca)) == sorted(["ca.pem", "ca-key.pem", "etcd-root.pem", "etcd-root-key.pem",
                                             "admin.pem", "admin-key.pem"])
    assert not any(n.startswith(("ca-key", "etcd-root", "admin")) for n in os.listdir(pki))
    assert (pki / "ca.pem").read_bytes() == (ca / "ca.pem").read_bytes()
    assert _cn(ca / "etcd-root.pem") == "root" and _cn(ca / "admin.pem") == "admin"
    ca_cert = _cert(ca / "ca.pem")
    for name in cns:
        _cert(pki / f"{name}.pem").verify_directly_issued_by(ca_cert)


def test_a_second_run_keeps_everything_and_adds_only_what_changed(tmp_path):
    pki, ca = tmp_path / "pki", tmp_path / "ca"
    assert cli("--dir", str(pki), "--ca-dir", str(ca), *COMPOSE_ARGS).returncode == 0
    before = _snapshot(pki, ca)
    again = cli("--dir", str(pki), "--ca-dir", str(ca), *COMPOSE_ARGS)
    assert again.returncode == 0 and "issued" not in again.stdout, again.stdout
    assert _snapshot(pki, ca) == before

    # a third node and one more name for the apiserver: those two are issued, the rest kept
    more = cli("--dir", str(pki), "--ca-dir", str(ca), *COMPOSE_ARGS, "--nodes", "node-1,node-2,node-3",
               "--san", "apiserver=api.example")
    assert more.returncode == 0, more.stderr
    after = _snapshot(pki, ca)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {f"{pki}/apiserver.pem", f"{pki}/apiserver-key.pem"}
    assert set(after) - set(before) == {f"{pki}/agent-node-3.pem", f"{pki}/agent-node-3-key.pem",
                                        f"{pki}/switch-node-3.pem", f"{pki}/switch-node-3-key.pem"}
    assert _sans(pki / "apiserver.pem") >= {"apiserver", "api.example"}

    # --force: a new CA, and every certificate issued again by it
    forced = cli("--dir", str(pki), "--ca-dir", str(ca), *COMPOSE_ARGS, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (ca / "ca.pem").read_bytes() != after[f"{ca}/ca.pem"]
    for name in ("apiserver", "agent-node-1", "etcd"):
        _cert(pki / f"{name}.pem").verify_directly_issued_by(_cert(ca / "ca.pem"))


def test_certificates_of_another_ca_or_near_expiry_are_reissued(tmp_path, monkeypatch):
    pki = tmp_path / "pki"
    assert cli("--dir", str(pki), "--nodes", "n1").returncode == 0
    other = tls.make_ca(str(tmp_path / "other"))
    tls.issue(other, "controller", str(pki), "kubep4-controller")  # same name, wrong CA
    proc = cli("--dir", str(pki), "--nodes", "n1")
    assert proc.returncode == 0
    assert "controller.pem (CN=kubep4-controller): not signed by the CA" in proc.stdout
    _cert(pki / "controller.pem").verify_directly_issued_by(_cert(pki / "ca.pem"))

    # rotation: within RENEW_BEFORE of expiry, ensure() issues it again (here: every one is)
    monkeypatch.setattr(devpki, "RENEW_BEFORE", tls.VALIDITY)
    before = (pki / "builder.pem").read_bytes()
    devpki.ensure(str(pki), ["n1"])
    assert (pki / "builder.pem").read_bytes() != before


def test_a_ca_brought_without_its_key(tmp_path):
    """Bring your own CA: its certificate and every certificate it issued, never its key."""
    made = tmp_path / "made"
    assert cli("--dir", str(made), "--nodes", "n1").returncode == 0
    mine = tmp_path / "mine"
    shutil.copytree(made, mine)
    (mine / "ca-key.pem").unlink()
    before = _snapshot(mine)
    proc = cli("--dir", str(mine), "--nodes", "n1")
    assert proc.returncode == 0, proc.stderr
    assert _snapshot(mine) == before
    (mine / "builder.pem").unlink()
    proc = cli("--dir", str(mine), "--nodes", "n1")
    assert proc.returncode == 1
    assert f"{mine}/builder.pem: missing, and there is no CA key ({mine}/ca-key.pem)" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root (the compose job runs as root)")
def test_owner_hands_the_files_to_the_services_user(tmp_path):
    pki, ca = tmp_path / "pki", tmp_path / "ca"
    assert cli("--dir", str(pki), "--ca-dir", str(ca), "--nodes", "n1", "--owner", "10001:10001").returncode == 0
    for d in (pki, ca):
        assert (d.stat().st_uid, d.stat().st_gid) == (10001, 10001)
        for f in d.iterdir():
            assert (f.stat().st_uid, f.stat().st_gid) == (10001, 10001), f


def test_bad_arguments_are_named():
    assert "no component ['apisrever']" in cli("--dir", "/nonexistent", "--san", "apisrever=x").stderr
    assert "COMPONENT=NAME" in cli("--dir", "/nonexistent", "--san", "apiserver").stderr
    assert "nothing to do" in cli().stderr
    assert "--enable-etcd-auth needs --etcd" in cli("--dir", "/tmp/devpki-unused", "--enable-etcd-auth").stderr


@pytest.fixture
def tls_etcd(tmp_path):
    """The job's certificates, and a real etcd serving with them: https, client certificates required."""
    pki, ca = tmp_path / "pki", tmp_path / "ca"
    assert cli("--dir", str(pki), "--ca-dir", str(ca), "--nodes", "n1,n2").returncode == 0
    server = EtcdServer(data_dir=str(tmp_path / "etcd"),
                        tls=EtcdTLS(str(pki / "etcd.pem"), str(pki / "etcd-key.pem"), str(pki / "ca.pem"))).start()
    yield server, pki, ca
    server.cleanup()


def _store(server, pki: Path, name: str, where: Path | None = None) -> st.Store:
    d = where or pki
    return st.Store(server.client_url, tls=tls.ClientTLS(str(pki / "ca.pem"), str(d / f"{name}.pem"),
                                                         str(d / f"{name}-key.pem")))


def _placement(node: str, name: str) -> kr.Placement:
    p = kr.Placement()
    p.metadata.namespace, p.metadata.name = "default", name
    p.spec.node = node
    return p


async def test_enable_etcd_auth_as_root(tls_etcd):
    server, pki, ca = tls_etcd
    args = ["--dir", str(pki), "--ca-dir", str(ca), "--nodes", "n1,n2", "--enable-etcd-auth",
            "--etcd", server.client_url, "--etcd-wait", "20"]
    for _ in range(2):  # the job may run again (compose up after down): what exists is kept
        proc = cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert "etcd auth enabled" in proc.stdout

    async with _store(server, pki, "controller") as controller:
        await controller.create(st.PLACEMENTS, _placement("n1", "web-0"))
        await controller.create(st.PLACEMENTS, _placement("n2", "web-1"))
    async with _store(server, pki, "agent-n1") as n1:
        own, _ = await n1.list(st.PLACEMENTS, shard="n1")
        assert [p.metadata.name for p in own] == ["web-0"]
        with pytest.raises(st.Forbidden):
            await n1.list(st.PLACEMENTS, shard="n2")
    async with _store(server, pki, "observer") as nobody:  # a certificate of the CA, no etcd user
        with pytest.raises(st.Forbidden):
            await nobody.list(st.PLACEMENTS, shard="n1")
    async with _store(server, pki, "etcd-root", ca) as root:  # root still may
        assert len((await root.list(st.PLACEMENTS))[0]) == 2


async def test_enable_etcd_auth_with_only_roots_files(tls_etcd):
    """Kubernetes' Job: cert-manager wrote the Secrets, the job gets root's files alone."""
    server, pki, ca = tls_etcd
    proc = cli("--enable-etcd-auth", "--etcd", server.client_url, "--nodes", "n1", "--etcd-ca", str(pki / "ca.pem"),
               "--etcd-cert", str(ca / "etcd-root.pem"), "--etcd-key", str(ca / "etcd-root-key.pem"))
    assert proc.returncode == 0, proc.stderr
    async with _store(server, pki, "builder") as builder:
        with pytest.raises(st.Forbidden):
            await builder.list(st.PLACEMENTS, shard="n1")
    # a certificate that is not root's cannot turn it on (nor change the roles)
    proc = cli("--enable-etcd-auth", "--etcd", server.client_url, "--nodes", "n1", "--etcd-ca", str(pki / "ca.pem"),
               "--etcd-cert", str(pki / "apiserver.pem"), "--etcd-key", str(pki / "apiserver-key.pem"),
               "--etcd-wait", "2")
    assert proc.returncode == 1 and "enabling etcd auth" in proc.stderr


def test_unreachable_etcd_fails_after_the_wait(tmp_path):
    pki = tmp_path / "pki"
    proc = cli("--dir", str(pki), "--nodes", "n1", "--enable-etcd-auth", "--etcd", "https://127.0.0.1:9",
               "--etcd-wait", "2")
    assert proc.returncode == 1
    assert "enabling etcd auth on https://127.0.0.1:9 failed" in proc.stderr
    assert etcd_auth.ROOT_USER == "root"


async def test_shared_node_user_for_a_daemonset(tls_etcd):
    """deploy/k8s's node agents share one certificate (CN kubep4-node-agent): its role is every
    node's placements, nodes and leases, and still no Deployment and no Pipeline written."""
    server, pki, ca = tls_etcd
    proc = cli("--enable-etcd-auth", "--etcd", server.client_url, "--etcd-ca", str(pki / "ca.pem"),
               "--etcd-cert", str(ca / "etcd-root.pem"), "--etcd-key", str(ca / "etcd-root-key.pem"),
               "--shared-node-user", devpki.SHARED_NODE_USER)
    assert proc.returncode == 0, proc.stderr
    shared = tls.issue(tls.CA(str(ca / "ca.pem"), str(ca / "ca-key.pem")), "shared", str(pki),
                       devpki.SHARED_NODE_USER, server=False)
    async with _store(server, pki, "controller") as controller:
        await controller.create(st.PLACEMENTS, _placement("a", "web-0"))
        await controller.create(st.PLACEMENTS, _placement("b", "web-1"))
    async with _store(server, pki, "shared") as agent:
        assert shared.cert.endswith("shared.pem")
        for node in ("a", "b"):  # any node's: the price of one identity for all
            assert len((await agent.list(st.PLACEMENTS, shard=node))[0]) == 1
        d = kr.Deployment()
        d.metadata.namespace, d.metadata.name = "default", "x"
        with pytest.raises(st.Forbidden):
            await agent.create(st.DEPLOYMENTS, d)
        p = kr.Pipeline()
        p.metadata.namespace, p.metadata.name = "default", "p"
        with pytest.raises(st.Forbidden):
            await agent.create(st.PIPELINES, p)
