"""kubep4.tls: a development CA, per-component certificates, mTLS credentials and the caller's
identity, against a real grpc.aio server on loopback (the standard health service)."""
from __future__ import annotations

import os
import stat

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from kubep4 import tls


@pytest.fixture
def pki(tmp_path):
    ca = tls.make_ca(str(tmp_path / "ca"))
    server = tls.issue(ca, "server", str(tmp_path / "ca"), "kubep4-apiserver", client=False)
    client = tls.issue(ca, "client", str(tmp_path / "ca"), "node:n1", organizations=("kubep4:nodes", "x"),
                       server=False)
    other = tls.make_ca(str(tmp_path / "other"))
    stranger = tls.issue(other, "stranger", str(tmp_path / "other"), "node:n1", server=False)
    return ca, server, client, stranger


class _Health(health.HealthServicer):
    """The standard health service, remembering who called."""

    def __init__(self):
        super().__init__()
        self.seen: list[tls.Identity | None] = []

    async def Check(self, request, context):  # noqa: N802 (gRPC's name)
        self.seen.append(tls.peer_identity(context))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def _serve(creds):
    server = grpc.aio.server()
    servicer = _Health()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", creds) if creds else server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, servicer


async def _check(channel) -> None:
    async with channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_keys_are_private_and_certs_carry_names(pki):
    ca, server, client, _ = pki
    for path in (ca.key, server.key, client.key):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(open(server.cert, "rb").read())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


async def test_mtls_server_accepts_its_ca_refuses_plaintext_and_strangers(pki):
    ca, server, client, stranger = pki
    srv, port, servicer = await _serve(tls.server_credentials(server.cert, server.key, ca.cert))
    target = f"127.0.0.1:{port}"
    try:
        await _check(grpc.aio.secure_channel(target, tls.channel_credentials(ca.cert, client.cert, client.key)))
        assert servicer.seen == [tls.Identity("node:n1", ("kubep4:nodes", "x"))]

        with pytest.raises(grpc.aio.AioRpcError) as e:  # plaintext to a TLS port
            await _check(grpc.aio.insecure_channel(target))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE

        with pytest.raises(grpc.aio.AioRpcError) as e:  # TLS, but no client certificate
            await _check(grpc.aio.secure_channel(target, tls.channel_credentials(ca.cert)))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE

        with pytest.raises(grpc.aio.AioRpcError) as e:  # a client certificate from another CA
            await _check(grpc.aio.secure_channel(target, tls.channel_credentials(
                ca.cert, stranger.cert, stranger.key)))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert len(servicer.seen) == 1  # none of them reached the handler
    finally:
        await srv.stop(0)


async def test_client_refuses_a_server_from_another_ca(pki, tmp_path):
    ca, server, client, stranger = pki
    other = tls.CA(str(tmp_path / "other" / "ca.pem"), str(tmp_path / "other" / "ca-key.pem"))
    impostor = tls.issue(other, "impostor", str(tmp_path / "other"), "kubep4-apiserver", client=False)
    srv, port, _ = await _serve(tls.server_credentials(impostor.cert, impostor.key, other.cert))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await _check(grpc.aio.secure_channel(f"127.0.0.1:{port}",
                                                 tls.channel_credentials(ca.cert, client.cert, client.key)))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await srv.stop(0)


async def test_no_identity_without_a_client_certificate():
    srv, port, servicer = await _serve(None)
    try:
        await _check(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
        assert servicer.seen == [None]
    finally:
        await srv.stop(0)


def test_errors_name_the_file(pki, tmp_path):
    ca, server, _, _ = pki
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(tls.TLSFileError, match="nope.pem does not exist"):
        tls.server_credentials(server.cert, missing, ca.cert)
    with pytest.raises(tls.TLSFileError, match=r"CA file .*nope.pem"):
        tls.channel_credentials(missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(tls.TLSFileError, match="junk.pem holds no PEM data"):
        tls.channel_credentials(ca.cert, str(junk), server.key)
    if os.geteuid() != 0:  # root reads any file
        os.chmod(server.key, 0)
        with pytest.raises(tls.TLSFileError, match="cannot be read"):
            tls.server_credentials(server.cert, server.key, ca.cert)
    with pytest.raises(ValueError, match="both"):
        tls.channel_credentials(ca.cert, server.cert)


def _install(issued: tls.Issued, cert: str, key: str, *, only_cert: bool = False) -> None:
    """Put ``issued``'s files where a server reads its own, as a renewal rewrites them in place."""
    import shutil
    shutil.copyfile(issued.cert, cert)
    if not only_cert:
        shutil.copyfile(issued.key, key)


async def test_a_renewed_certificate_is_served_without_a_restart(pki, tmp_path):
    ca, server, client, _ = pki
    renewing = tls.make_ca(str(tmp_path / "renewing"), name="ca")  # the renewal comes from another CA
    renewed = tls.issue(renewing, "renewed", str(tmp_path / "renewing"), "kubep4-apiserver", client=False)
    cert, key = str(tmp_path / "serving.pem"), str(tmp_path / "serving-key.pem")
    _install(server, cert, key)
    srv, port, servicer = await _serve(tls.server_credentials(cert, key, ca.cert))
    target = f"127.0.0.1:{port}"

    def trusting(issuer: tls.CA):
        return grpc.aio.secure_channel(target, tls.channel_credentials(issuer.cert, client.cert, client.key))
    try:
        await _check(trusting(ca))
        # caught between two writes: the new certificate, the old key: the old pair is kept
        _install(renewed, cert, key, only_cert=True)
        await _check(trusting(ca))
        # the pair complete: new connections get the renewed certificate
        _install(renewed, cert, key)
        await _check(trusting(renewing))
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await _check(trusting(ca))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert len(servicer.seen) == 3
    finally:
        await srv.stop(0)


def test_a_key_that_is_not_the_certificates_is_refused_at_start(pki, tmp_path):
    ca, server, client, _ = pki
    with pytest.raises(tls.TLSFileError, match="is not the key of certificate"):
        tls.server_credentials(server.cert, client.key, ca.cert)
    from cryptography.hazmat.primitives import serialization
    with open(server.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    locked = tmp_path / "locked-key.pem"  # a key with a passphrase: the file is named, no traceback
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(tls.TLSFileError, match="locked-key.pem cannot be loaded"):
        tls.server_credentials(server.cert, str(locked), ca.cert)
