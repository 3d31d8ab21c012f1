"""Development certificates and gRPC TLS credentials: one CA, a certificate per component.

    ca = make_ca(dir)                                    # dir/ca.pem, dir/ca-key.pem
    api = issue(ca, "apiserver", dir, "kubep4-apiserver")  # dir/apiserver.pem, dir/apiserver-key.pem
    server_credentials(api.cert, api.key, ca.cert)       # mTLS: clients must show a cert of this CA
    channel_credentials(ca.cert, api.cert, api.key)      # a client presenting its certificate
    peer_identity(context)                               # Identity(user=CN, groups=O...) of the caller

The certificate's subject names the caller the way Kubernetes does: CN is the user, each O a
group. Keys are written 0600. Every loader names the file it could not read.

For development and tests: a real deployment brings its own CA (cert-manager, Vault...) and
only the loaders and ``peer_identity`` are used.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from kubep4.reloading import ReloadingFiles

# cryptography is imported where certificates are made or read, not here: the Store imports this
# module for ClientTLS, and a plaintext process need not pay for it
VALIDITY = datetime.timedelta(days=365)


class TLSFileError(ValueError):
    """A certificate or key file is missing, unreadable or not PEM."""


@dataclass(frozen=True)
class CA:
    cert: str  # path of the CA certificate (PEM)
    key: str   # path of its private key (PEM, 0600)


@dataclass(frozen=True)
class Issued:
    name: str
    cert: str  # path of the certificate (PEM)
    key: str   # path of its private key (PEM, 0600)
    ca: str    # path of the CA certificate that signed it


@dataclass(frozen=True)
class Identity:
    """Who called, from the client certificate: CN the user, O the groups."""
    user: str
    groups: tuple[str, ...] = ()


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # O_CREAT's mode does not apply to a file that already existed


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(directory: str, common_name: str = "kubep4-dev-ca", name: str = "ca") -> CA:
    """A self-signed CA: ``<directory>/<name>.pem`` and ``<name>-key.pem`` (0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    os.makedirs(directory, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    ca = CA(os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}-key.pem"))
    _write(ca.key, _key_pem(key), 0o600)
    _write(ca.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return ca


def issue(ca: CA, name: str, directory: str, common_name: str, organizations: Iterable[str] = (),
          dns: Iterable[str] = ("localhost",), ips: Iterable[str] = ("127.0.0.1",),
          client: bool = True, server: bool = True) -> Issued:
    """A certificate signed by ``ca``: ``<directory>/<name>.pem`` and ``<name>-key.pem`` (0600).

    ``common_name`` is the user a server sees (etcd takes it as the user name with
    --client-cert-auth), each of ``organizations`` a group; ``dns``/``ips`` the names a client
    checks when this certificate serves; ``client``/``server`` its extended key usages."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    ca_cert = x509.load_pem_x509_certificate(read_pem(ca.cert))
    ca_key = serialization.load_pem_private_key(read_pem(ca.key), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                         *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations)])
    usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + \
             ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    if not usages:
        raise ValueError("a certificate must be for a client, a server or both")
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                            content_commitment=False, data_encipherment=False,
                                            key_agreement=True, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    os.makedirs(directory, exist_ok=True)
    out = Issued(name, os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}-key.pem"),
                 ca.cert)
    _write(out.key, _key_pem(key), 0o600)
    _write(out.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return out


def read_pem(path: str, what: str = "") -> bytes:
    """The file's bytes; TLSFileError naming the file (and what it was for) when it cannot be read
    or holds no PEM block."""
    label = f"{what} " if what else ""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise TLSFileError(f"TLS {label}file {path} does not exist") from None
    except OSError as e:
        raise TLSFileError(f"TLS {label}file {path} cannot be read: {e.strerror or e}") from None
    if b"-----BEGIN " not in data:
        raise TLSFileError(f"TLS {label}file {path} holds no PEM data")
    return data


def server_credentials(cert: str, key: str, ca: str | None = None,
                       require_client_auth: bool = True) -> grpc.ServerCredentials:
    """Credentials for ``server.add_secure_port``: serve ``cert``; with ``ca``, verify client
    certificates against it, and with ``require_client_auth`` refuse a client without one (mTLS).

    The files are read again when they change (cert-manager or a Secret renewing them in place):
    each new connection's handshake checks their size and modification time, and a complete new
    pair (its key matching its certificate) is served from then on. Connections open meanwhile
    keep theirs. A half-written rotation (a new certificate, the old key) or an unreadable file
    keeps the old pair, logged once, until the files are whole.

    One credentials object per port: gRPC hands its first certificate to the first port that binds
    it only, and a second port bound with it fails ("Failed loading SSL server credentials")."""
    if require_client_auth and not ca:
        raise ValueError("require_client_auth needs the CA that signs client certificates")
    def configuration():
        key_pem, cert_pem = read_pem(key, "key"), read_pem(cert, "certificate")
        _check_pair(cert_pem, key_pem, cert, key)
        return grpc.ssl_server_certificate_configuration(
            [(key_pem, cert_pem)], root_certificates=read_pem(ca, "CA") if ca else None)
    files = ReloadingFiles([cert, key, ca or ""], configuration, what=f"TLS certificate {cert}")
    return grpc.dynamic_ssl_server_credentials(files.current(), files.changed,
                                               require_client_authentication=require_client_auth)


def _check_pair(cert_pem: bytes, key_pem: bytes, cert: str, key: str) -> None:
    """TLSFileError unless the key is the certificate's (a rotation caught between two writes)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    try:
        public = x509.load_pem_x509_certificate(cert_pem).public_key()
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:  # TypeError: a key with a passphrase
        raise TLSFileError(f"TLS certificate {cert} or key {key} cannot be loaded: {e}") from None
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if public.public_bytes(*raw) != private.public_key().public_bytes(*raw):
        raise TLSFileError(f"TLS key {key} is not the key of certificate {cert}")


def channel_credentials(ca: str | None = None, cert: str | None = None,
                        key: str | None = None) -> grpc.ChannelCredentials:
    """Credentials for ``grpc.aio.secure_channel``: trust ``ca`` (else the system roots) and, with
    ``cert`` and ``key``, present that client certificate."""
    if bool(cert) != bool(key):
        raise ValueError("a client certificate needs both its cert and its key file")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, "CA") if ca else None,
        private_key=read_pem(key, "key") if key else None,
        certificate_chain=read_pem(cert, "certificate") if cert else None)


@dataclass(frozen=True)
class ClientTLS:
    """What a client needs to reach a TLS server: the CA that signed the server's certificate and,
    for mTLS, its own certificate and key. ``server_name``: the name to check in the server's
    certificate when it is not the host dialled (a certificate for ``localhost`` dialled as
    127.0.0.1)."""
    ca: str
    cert: str = ""
    key: str = ""
    server_name: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        return channel_credentials(self.ca, self.cert or None, self.key or None)

    def checked_credentials(self) -> grpc.ChannelCredentials:
        """``credentials()``, once the key is known to be the certificate's (TLSFileError if not:
        a renewal caught between its two writes)."""
        if bool(self.cert) != bool(self.key):
            raise ValueError("a client certificate needs both its cert and its key file")
        cert = read_pem(self.cert, "certificate") if self.cert else None
        key = read_pem(self.key, "key") if self.key else None
        if cert is not None:
            _check_pair(cert, key, self.cert, self.key)
        return grpc.ssl_channel_credentials(root_certificates=read_pem(self.ca, "CA") if self.ca else None,
                                            private_key=key, certificate_chain=cert)

    def options(self) -> list[tuple[str, str]]:
        """Channel options to add (the name override)."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def peer_identity(context) -> Identity | None:
    """The caller's identity from its verified client certificate (a grpc or grpc.aio servicer
    context), or None when it showed none (plaintext, or TLS without client auth).

    gRPC has verified the chain against the server's CA before the handler runs; the subject is
    read from the leaf certificate it hands on (``x509_pem_cert``)."""
    auth = context.auth_context() or {}
    pem = auth.get("x509_pem_cert")
    if pem:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
        cert = x509.load_pem_x509_certificate(pem[0])
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return Identity(str(cn[0].value) if cn else "", tuple(str(o.value) for o in orgs))
    cn = auth.get("x509_common_name")
    if cn:  # a transport that hands on only the CN
        return Identity(cn[0].decode())
    return None
