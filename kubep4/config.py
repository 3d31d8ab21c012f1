"""Flag helpers for the service entry points: every flag has a KUBEP4_* environment default.

Only entry points (``__main__``) call these; modules receive a frozen settings object.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_API = "127.0.0.1:50051"
DEFAULT_ADMISSION = "127.0.0.1:50052"
DEFAULT_ETCD = "127.0.0.1:2379"
MAX_MESSAGE = 256 << 20  # device configs can be several MiB
GRPC_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.max_receive_message_length", MAX_MESSAGE)]


def flag(parser: argparse.ArgumentParser, name: str, env: str, default=None, *,
         environ: Mapping[str, str] = os.environ, type=str, help: str = "", **kw):
    """Add --name whose default comes from the env var, then the given default."""
    raw = environ.get(env)
    value = type(raw) if raw is not None and type is not bool else default
    if type is bool:
        value = raw.lower() in ("1", "true", "yes", "on") if raw is not None else bool(default)
        parser.add_argument(name, action=argparse.BooleanOptionalAction, default=value,
                            help=f"{help} [env {env}, default {value}]", **kw)
        return
    parser.add_argument(name, type=type, default=value, help=f"{help} [env {env}, default {value}]", **kw)


@dataclass(frozen=True)
class EtcdSettings:
    """Where etcd's members are and how to reach them: ``st.Store(**settings.store_args())``.

    TLS is on when a CA or a client certificate is given; with etcd's --client-cert-auth and
    auth on, the certificate's CN is the etcd user (``kubep4.etcd_auth``)."""
    endpoints: tuple[str, ...] = (DEFAULT_ETCD,)
    ca: str = ""
    cert: str = ""
    key: str = ""

    def tls(self):
        """The Store's ``tls`` argument: a ``kubep4.tls.ClientTLS``, or None for plaintext."""
        if not (self.ca or self.cert):
            return None
        from kubep4.tls import ClientTLS  # grpc and cryptography only for the services that need them
        return ClientTLS(self.ca, self.cert, self.key)

    def store_args(self) -> dict:
        return {"endpoints": list(self.endpoints), "tls": self.tls()}

    def __str__(self) -> str:  # for logs: the members, and whether TLS is on
        return ",".join(self.endpoints) + (" (TLS)" if self.ca or self.cert else "")


def etcd_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str] = os.environ) -> None:
    """--etcd, --etcd-ca, --etcd-cert, --etcd-key (env KUBEP4_ETCD, KUBEP4_ETCD_CA...): read them
    back with ``etcd_settings``."""
    flag(parser, "--etcd", "KUBEP4_ETCD", DEFAULT_ETCD, environ=environ,
         help="etcd members, host:port comma-separated (https://host:port with --etcd-ca)")
    flag(parser, "--etcd-ca", "KUBEP4_ETCD_CA", "", environ=environ,
         help="CA certificate (PEM) that signed etcd's certificates: TLS to etcd")
    flag(parser, "--etcd-cert", "KUBEP4_ETCD_CERT", "", environ=environ,
         help="client certificate (PEM) shown to etcd; its CN is the etcd user")
    flag(parser, "--etcd-key", "KUBEP4_ETCD_KEY", "", environ=environ, help="the client certificate's key (PEM)")


def etcd_settings(args: argparse.Namespace) -> EtcdSettings:
    """The etcd flags as settings; ValueError when they do not go together (the files themselves are
    read when the Store is made, which names any it cannot read)."""
    endpoints = tuple(e.strip() for e in args.etcd.split(",") if e.strip())
    if not endpoints:
        raise ValueError("--etcd: no endpoint given")
    if bool(args.etcd_cert) != bool(args.etcd_key):
        raise ValueError("--etcd-cert and --etcd-key go together")
    tls = bool(args.etcd_ca or args.etcd_cert)
    for e in endpoints:
        if e.startswith("https://") and not tls:
            raise ValueError(f"--etcd {e}: https needs --etcd-ca")
        if e.startswith("http://") and tls:
            raise ValueError(f"--etcd {e}: --etcd-ca/--etcd-cert given for an http endpoint")
    return EtcdSettings(endpoints, args.etcd_ca, args.etcd_cert, args.etcd_key)


@dataclass(frozen=True)
class ServiceTLS:
    """A service's TLS: its certificate and key (served, and shown to the services it calls) and the
    CA of the other services (it verifies their certificates, and its clients': mTLS). Empty: plaintext."""
    cert: str = ""
    key: str = ""
    ca: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def server_credentials(self):
        """For ``serving.start_server``: None for plaintext; with a CA every client must show a
        certificate it signed."""
        if not self.enabled:
            return None
        from kubep4 import tls
        return tls.server_credentials(self.cert, self.key, self.ca or None, require_client_auth=bool(self.ca))

    def health_credentials(self):
        """For a health endpoint: TLS with the service's certificate, asking for no client
        certificate (a probe has none; it is told nothing but SERVING). None for plaintext."""
        if not self.enabled:
            return None
        from kubep4 import tls
        return tls.server_credentials(self.cert, self.key, None, require_client_auth=False)

    def client(self, server_name: str = ""):
        """A ``kubep4.tls.ClientTLS`` to call another service with (None for plaintext)."""
        if not self.ca:
            return None
        from kubep4.tls import ClientTLS
        return ClientTLS(self.ca, self.cert, self.key, server_name)


def tls_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str] = os.environ, ca: bool = True) -> None:
    """--tls-cert, --tls-key and (with ``ca``) --tls-ca, env KUBEP4_TLS_CERT/KEY/CA; ``tls_settings``."""
    flag(parser, "--tls-cert", "KUBEP4_TLS_CERT", "", environ=environ,
         help="this service's certificate (PEM): it serves TLS, and shows it to the services it calls")
    flag(parser, "--tls-key", "KUBEP4_TLS_KEY", "", environ=environ, help="the certificate's key (PEM)")
    if ca:
        flag(parser, "--tls-ca", "KUBEP4_TLS_CA", "", environ=environ,
             help="the CA of the other services (PEM): their certificates are checked against it, "
                  "and a client without one it signed is refused")


def tls_settings(args: argparse.Namespace) -> ServiceTLS:
    """The TLS flags as settings; ValueError when they do not go together."""
    cert, key, ca = args.tls_cert, args.tls_key, getattr(args, "tls_ca", "")
    if bool(cert) != bool(key):
        raise ValueError("--tls-cert and --tls-key go together")
    return ServiceTLS(cert, key, ca)


SECRET_ENVS = ("KUBEP4_TOKEN",)  # environment variables holding secrets: never handed to a child that does not need them


def secret_flag(parser: argparse.ArgumentParser, name: str, env: str, *, help: str = "",
                environ: Mapping[str, str] = os.environ) -> None:
    """A secret: ``--NAME-file PATH`` (or env ``ENV_FILE``) or env ``ENV``, read by ``read_secret``.
    ``--NAME VALUE`` still works, but shows in ``ps`` and says so. ``--help`` never prints the value."""
    dest = name.lstrip("-").replace("-", "_")
    parser.add_argument(name, dest=f"{dest}_argv", default=None,
                        help=f"{help} (visible to every local user in ps: prefer {name}-file or env {env}) "
                             f"[env {env}{', set' if environ.get(env) else ''}]")
    parser.add_argument(f"{name}-file", dest=f"{dest}_file", default=environ.get(f"{env}_FILE", ""),
                        metavar="PATH", help=f"read {help or 'the secret'} from this file [env {env}_FILE]")
    parser.set_defaults(**{f"_{dest}_env": env})


def read_secret(args: argparse.Namespace, name: str, environ: Mapping[str, str] = os.environ) -> str:
    """The secret given by ``secret_flag`` (argv, then file, then env), surrounding whitespace removed."""
    dest = name.lstrip("-").replace("-", "_")
    given = getattr(args, f"{dest}_argv")
    if given is not None:
        if not given:
            return ""  # an explicit "no token": nothing to hide
        print(f"warning: {name} on the command line is visible in ps; use {name}-file or the environment",
              file=sys.stderr)
        return given
    path = getattr(args, f"{dest}_file")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return environ.get(getattr(args, f"_{dest}_env"), "")


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
