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


async def test_a_renewed_client_certificate_reaches_a_restarted_device(pki, tmp_path):
    """The agent's certificate renewed in place, the switch restarted trusting only the renewed
    certificate's CA: the same connection object reconnects with the renewed certificate (each
    connect opens a new channel, reading the files again)."""
    import shutil
    ca, switch, agent, _ = pki
    renewing = tls.make_ca(str(tmp_path / "renewing"), name="renewing")
    renewed = tls.issue(renewing, "agent", str(tmp_path / "renewing"), "node:node-0")
    cert, key, trusted = (str(tmp_path / n) for n in ("agent.pem", "agent-key.pem", "clients-ca.pem"))
    for src, dst in ((agent.cert, cert), (agent.key, key), (ca.cert, trusted)):
        shutil.copyfile(src, dst)
    port = free_port("127.0.0.1")

    def switch_trusting() -> subprocess.Popen:  # a switch process: its restart ends every connection
        proc = subprocess.Popen([sys.executable, "-m", "kubep4.reftarget", "--device", f"1@127.0.0.1:{port}",
                                 "--grpc-server-ssl", "--grpc-server-cert", switch.cert, "--grpc-server-key",
                                 switch.key, "--grpc-server-cacert", trusted, "--grpc-server-with-client-auth"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            if "listening on" in line:
                return proc
        raise AssertionError(f"the switch exited with {proc.wait()}")
    switch_proc = switch_trusting()
    conn = DeviceConnection(f"127.0.0.1:{port}", 1, election_id=5,
                            tls=device_tls(device(f"127.0.0.1:{port}", ca.cert, cert, key)))
    try:
        await conn.connect()
        switch_proc.kill()
        switch_proc.wait()
        shutil.copyfile(renewed.key, key)  # the renewal: key, then certificate
        shutil.copyfile(renewed.cert, cert)
        shutil.copyfile(renewing.cert, trusted)  # the restarted switch knows only the new CA
        switch_proc = switch_trusting()
        await conn.close_stream()
        await conn.connect()
        assert conn.is_primary
        old = DeviceConnection(f"127.0.0.1:{port}", 1, election_id=4,
                               tls=device_tls(device(f"127.0.0.1:{port}", ca.cert, agent.cert, agent.key)))
        try:  # the control: the first certificate is refused by the restarted switch
            with pytest.raises(P4RuntimeError):
                await old.connect()
        finally:
            await old.close()
    finally:
        await conn.close()
        switch_proc.kill()
        switch_proc.wait()
