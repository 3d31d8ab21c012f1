"""P4Runtime over TLS between the agent and a device: the reference target serves it with
BMv2's flags; the agent's connection shows the device's CA and its client certificate."""
from __future__ import annotations

import subprocess
import sys

import pytest

from kubep4 import tls
from kubep4.etcd_server import free_port
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4runtime_client import DeviceConnection, P4RuntimeError, device_tls
from kubep4.reftarget import serve

from ..reftarget.p4rt_client import basic_device_config, basic_p4info


@pytest.fixture
def pki(tmp_path):
    ca = tls.make_ca(str(tmp_path / "pki"))
    switch = tls.issue(ca, "switch", str(tmp_path / "pki"), "switch", client=False)
    agent = tls.issue(ca, "agent", str(tmp_path / "pki"), "node:node-0")
    other = tls.make_ca(str(tmp_path / "other"), name="other")
    stranger = tls.issue(other, "stranger", str(tmp_path / "other"), "node:node-0")
    return ca, switch, agent, stranger


@pytest.fixture
async def target(pki):
    ca, switch, _, _ = pki
    t = await serve([(1, "127.0.0.1", 0)],
                    credentials=lambda: tls.server_credentials(switch.cert, switch.key, ca.cert, require_client_auth=True))
    yield t
    await t.stop()


def device(address: str, ca: str = "", cert: str = "", key: str = "") -> kr.Device:
    return kr.Device(name="dev0", p4rt_address=address, device_id=1,
                     tls=kr.DeviceTLS(ca_file=ca, cert_file=cert, key_file=key))


async def test_the_agent_reaches_a_tls_device_with_its_certificate(pki, target):
    ca, _, agent, _ = pki
    conn = DeviceConnection(target.address(1), 1, election_id=5,
                            tls=device_tls(device(target.address(1), ca.cert, agent.cert, agent.key)))
    try:
        await conn.connect()
        assert conn.is_primary
        await conn.set_pipeline(basic_p4info().SerializeToString(), basic_device_config(), cookie=3)
        assert await conn.get_cookie() == 3
    finally:
        await conn.close()


@pytest.mark.parametrize("who", ["plaintext", "no client certificate", "another CA"])
async def test_a_device_serving_mtls_refuses_others(pki, target, who):
    ca, _, agent, stranger = pki
    d = {"plaintext": device(target.address(1)),
         "no client certificate": device(target.address(1), ca.cert),
         "another CA": device(target.address(1), ca.cert, stranger.cert, stranger.key)}[who]
    conn = DeviceConnection(target.address(1), 1, election_id=5, tls=device_tls(d))
    try:
        with pytest.raises(P4RuntimeError):
            await conn.connect(timeout=3, _retry=False)
    finally:
        await conn.close()


def test_the_reference_target_takes_bmv2s_tls_flags(pki):
    ca, switch, _, _ = pki
    port = free_port()
    base = [sys.executable, "-m", "kubep4.reftarget", "--device", f"1@127.0.0.1:{port}"]
    bad = subprocess.run(base + ["--grpc-server-ssl"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "--grpc-server-cert and --grpc-server-key" in bad.stderr
    missing = subprocess.run(base + ["--grpc-server-ssl", "--grpc-server-cert", "/nonexistent.pem",
                                     "--grpc-server-key", switch.key], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "/nonexistent.pem" in missing.stderr
