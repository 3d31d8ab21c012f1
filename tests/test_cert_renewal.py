"""A certificate renewed in place (as cert-manager renews a mounted Secret) is served by the running
apiserver process from its next connection on, with no restart; clients go on working."""
from __future__ import annotations

import socket
import ssl

from cryptography import x509

from kubep4 import tls
from kubep4.localstack import LocalStack

from .conftest import eventually


def served_serial(address: str, ca: str) -> int:
    """The serial number of the certificate a TLS server at ``address`` presents now."""
    host, _, port = address.rpartition(":")
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])  # gRPC servers speak HTTP/2 only
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with ctx.wrap_socket(sock) as conn:
            return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True)).serial_number


def serial_of(path: str) -> int:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).serial_number


async def test_the_apiserver_serves_its_renewed_certificate_without_a_restart(tmp_path):
    with LocalStack(nodes=0, data_dir=str(tmp_path)) as s:
        issued = s.pki["apiserver"]
        pid = s.procs["apiserver"].popen.pid
        assert served_serial(s.api, s.pki.ca.cert) == serial_of(issued.cert)
        before = serial_of(issued.cert)
        with open(issued.cert, "rb") as f:
            cn = x509.load_pem_x509_certificate(f.read()).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        renewed = tls.issue(s.pki.ca, "apiserver", s.pki.directory, str(cn[0].value))  # in place: key, then cert
        assert renewed.cert == issued.cert and serial_of(renewed.cert) != before

        assert served_serial(s.api, s.pki.ca.cert) == serial_of(renewed.cert)
        async with s.client() as c:  # the client config's CA still verifies it
            assert await c.list("deployments") == []
        assert s.procs["apiserver"].popen.pid == pid and s.procs["apiserver"].alive(), "no restart"


def renew(s: LocalStack, name: str) -> int:
    """Issue component ``name``'s certificate again, in place, from the stack's CA; its new serial."""
    with open(s.pki[name].cert, "rb") as f:
        cn = x509.load_pem_x509_certificate(f.read()).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return serial_of(tls.issue(s.pki.ca, name, s.pki.directory, str(cn[0].value)).cert)


async def test_every_device_port_of_a_switch_serves_its_renewed_certificate(tmp_path):
    """One switch process serving two devices (a port each, one certificate): both ports serve."""
    with LocalStack(nodes=1, devices_per_node=2, data_dir=str(tmp_path)) as s:
        addresses = [f"127.0.0.1:{port}" for port in s.device_ports["node-0"]]
        old = serial_of(s.pki["switch-node-0"].cert)
        assert [served_serial(a, s.pki.ca.cert) for a in addresses] == [old, old]
        new = renew(s, "switch-node-0")
        assert [served_serial(a, s.pki.ca.cert) for a in addresses] == [new, new]
        async with s.client() as c:  # the agent reaches both devices over the renewed certificate
            async def reachable():
                return [d.phase for d in (await c.list("nodes"))[0].status.devices] == ["Reachable"] * 2
            await eventually(reachable, 30, 0.1, "both devices reachable")
