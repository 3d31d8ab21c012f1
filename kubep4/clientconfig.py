"""The client config, kubeconfig style: which apiserver, with what credentials, in what namespace.

``$KUBEP4_CONFIG`` (default ``~/.kubep4/config``)::

    clusters:
      - name: local
        server: 127.0.0.1:50051          # host:port; https://host:port is TLS with the system roots
        certificate-authority: ca.pem    # TLS, trusting this CA (paths relative to this file)
        tls-server-name: localhost       # optional: the name checked in the server's certificate
    users:
      - name: alice
        token-file: alice.token          # or token: ..., or client-certificate + client-key
        client-certificate: alice.pem
        client-key: alice-key.pem
    contexts:
      - name: local-a
        cluster: local
        user: alice
        namespace: team-a
    current-context: local-a

``connection(...)`` resolves what a client uses, each field on its own: a flag (the arguments),
then the environment (KUBEP4_API, KUBEP4_TOKEN / KUBEP4_TOKEN_FILE, KUBEP4_NAMESPACE,
KUBEP4_CONTEXT), then the context, then the defaults. A server given by flag or environment is
another server than the context's: the context's CA and credentials are then not used (a token
is never sent to a server it was not given for), its namespace still is.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import yaml

from kubep4.config import DEFAULT_API

ENV = "KUBEP4_CONFIG"
DEFAULT_PATH = "~/.kubep4/config"


class ConfigError(ValueError):
    """The client config is unreadable or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Cluster:
    name: str
    server: str = ""
    certificate_authority: str = ""
    tls_server_name: str = ""


@dataclass(frozen=True)
class User:
    name: str
    token: str = ""
    token_file: str = ""
    client_certificate: str = ""
    client_key: str = ""


@dataclass(frozen=True)
class Context:
    name: str
    cluster: str = ""
    user: str = ""
    namespace: str = ""


_FIELDS = {  # section -> (class, yaml key -> attribute)
    "clusters": (Cluster, {"name": "name", "server": "server", "certificate-authority": "certificate_authority",
                           "tls-server-name": "tls_server_name"}),
    "users": (User, {"name": "name", "token": "token", "token-file": "token_file",
                     "client-certificate": "client_certificate", "client-key": "client_key"}),
    "contexts": (Context, {"name": "name", "cluster": "cluster", "user": "user", "namespace": "namespace"}),
}
_PATHS = ("certificate_authority", "token_file", "client_certificate", "client_key")


def path_from(environ: Mapping[str, str] = os.environ) -> str:
    return os.path.expanduser(environ.get(ENV) or DEFAULT_PATH)


@dataclass
class ClientConfig:
    path: str
    clusters: dict[str, Cluster] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    contexts: dict[str, Context] = field(default_factory=dict)
    current_context: str = ""

    @classmethod
    def load(cls, path: str | None = None, environ: Mapping[str, str] = os.environ) -> "ClientConfig":
        """The config at ``path`` (default: $KUBEP4_CONFIG, ~/.kubep4/config); empty when there is none."""
        path = path or path_from(environ)
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except FileNotFoundError:
            return cls(path)
        except OSError as e:
            raise ConfigError(f"client config {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"client config {path}: not YAML: {e}") from None
        return cls.parse(doc, path)

    @classmethod
    def parse(cls, doc, path: str = "") -> "ClientConfig":
        where = f"client config {path}" if path else "client config"
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{where}: want a mapping (clusters, users, contexts, current-context)")
        out = cls(path, current_context=str(doc.get("current-context") or ""))
        base = os.path.dirname(os.path.abspath(path)) if path else ""
        for section, (klass, keys) in _FIELDS.items():
            items = doc.get(section) or []
            if not isinstance(items, list):
                raise ConfigError(f"{where}: {section}: want a list")
            for i, item in enumerate(items):
                if not isinstance(item, dict) or not item.get("name"):
                    raise ConfigError(f"{where}: {section}[{i}]: want a mapping with a name")
                if unknown := sorted(set(item) - set(keys)):
                    raise ConfigError(f"{where}: {section}[{i}].{unknown[0]}: unknown field "
                                      f"({', '.join(keys)})")
                kw = {keys[k]: str(v) for k, v in item.items() if v is not None}
                for attr in _PATHS:
                    if kw.get(attr) and base:
                        kw[attr] = os.path.join(base, os.path.expanduser(kw[attr]))
                getattr(out, section)[kw["name"]] = klass(**kw)
        return out

    def to_doc(self, redact: bool = True) -> dict:
        """The config as YAML would hold it; tokens shown as REDACTED unless ``redact`` is False."""
        doc: dict = {}
        for section, (_, keys) in _FIELDS.items():
            items = []
            for obj in getattr(self, section).values():
                item = {}
                for key, attr in keys.items():
                    v = getattr(obj, attr)
                    if v:
                        item[key] = "REDACTED" if redact and attr == "token" else v
                items.append(item)
            doc[section] = items
        doc["current-context"] = self.current_context
        return doc

    def save(self) -> None:
        """Write the config back (0600: it may hold tokens), paths as they were resolved."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.to_doc(redact=False), f, sort_keys=False)
        os.chmod(self.path, 0o600)

    def context(self, name: str = "") -> Context | None:
        """The named context, else the current one; None when there is none. ConfigError for a
        name that is not in the file."""
        name = name or self.current_context
        if not name:
            return None
        if name not in self.contexts:
            raise ConfigError(f"client config {self.path}: no context {name!r} "
                              f"(contexts: {', '.join(self.contexts) or 'none'})")
        return self.contexts[name]


@dataclass(frozen=True)
class Connection:
    """What a client connects with: ``AsyncClient(**conn.client_args())``."""
    server: str = DEFAULT_API
    token: str = ""
    ca: str = ""
    cert: str = ""
    key: str = ""
    server_name: str = ""
    namespace: str = ""  # the context's namespace ("": none chosen)
    context: str = ""    # which context it came from ("": none)

    def client_args(self) -> dict:
        return {"address": self.server, "token": self.token, "ca": self.ca, "cert": self.cert, "key": self.key,
                "server_name": self.server_name, "namespace": self.namespace}


def _read_token(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from None


def connection(server: str | None = None, token: str | None = None, namespace: str | None = None,
               context: str | None = None, ca: str | None = None, cert: str | None = None,
               key: str | None = None, server_name: str | None = None,
               environ: Mapping[str, str] = os.environ, config: ClientConfig | None = None) -> Connection:
    """The connection from the flags given (None: not given), the environment and the client config."""
    cfg = config if config is not None else ClientConfig.load(environ=environ)
    ctx = cfg.context(context or environ.get("KUBEP4_CONTEXT", ""))
    conn = Connection()
    if ctx is not None:
        cluster = cfg.clusters.get(ctx.cluster)
        if ctx.cluster and cluster is None:
            raise ConfigError(f"client config {cfg.path}: context {ctx.name!r} names cluster {ctx.cluster!r}, "
                              "which is not in it")
        user = cfg.users.get(ctx.user)
        if ctx.user and user is None:
            raise ConfigError(f"client config {cfg.path}: context {ctx.name!r} names user {ctx.user!r}, "
                              "which is not in it")
        conn = replace(conn, namespace=ctx.namespace, context=ctx.name)
        if cluster is not None:
            conn = replace(conn, server=cluster.server or DEFAULT_API, ca=cluster.certificate_authority,
                           server_name=cluster.tls_server_name)
        if user is not None:
            tok = user.token or (_read_token(user.token_file, f"user {user.name!r} token-file")
                                 if user.token_file else "")
            conn = replace(conn, token=tok, cert=user.client_certificate, key=user.client_key)
    other = server or environ.get("KUBEP4_API")
    if other and other != conn.server:  # another server: the context's CA and credentials are not for it
        conn = replace(conn, server=other, ca="", server_name="", token="", cert="", key="")
    env_token = environ.get("KUBEP4_TOKEN") or (_read_token(environ["KUBEP4_TOKEN_FILE"], "KUBEP4_TOKEN_FILE")
                                                if environ.get("KUBEP4_TOKEN_FILE") else "")
    return replace(conn,
                   token=token or env_token or conn.token,
                   namespace=namespace or environ.get("KUBEP4_NAMESPACE") or conn.namespace,
                   ca=ca or conn.ca, cert=cert or conn.cert, key=key or conn.key,
                   server_name=server_name or conn.server_name)
