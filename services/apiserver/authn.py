"""Who is calling: a bearer token from the token file (kube-apiserver's --token-auth-file shape),
the old single --token, or a verified client certificate (CN the user, O the groups).

    token,user,uid,"group1,group2"      # one identity a line; groups optional; blank and # lines skipped

A bearer token, when one is sent, decides: an unknown one is refused even if a certificate came
too. Without a token, the client certificate (gRPC has verified its chain against --client-ca)
names the caller. Tokens are kept only as SHA-256 digests and looked up by digest.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field

from kubep4 import tls
from kubep4.reloading import ReloadingFiles

MASTERS = "system:masters"        # the group every check allows (Kubernetes' superusers)
AUTHENTICATED = "system:authenticated"  # added to every authenticated caller's groups
LEGACY_USER = "admin"             # who the old single --token is


class TokenFileError(ValueError):
    """The token file cannot be read or a line of it is malformed (the message names the line)."""


@dataclass(frozen=True)
class Caller:
    user: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    by: str = "none"  # token | certificate | none (authentication is off)


ANONYMOUS = Caller("system:anonymous", groups=("system:unauthenticated",), by="none")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_token_file(path: str) -> dict[bytes, Caller]:
    """token digest -> Caller, from a CSV file of ``token,user,uid[,"group1,group2"]`` lines."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except OSError as e:
        raise TokenFileError(f"token file {path}: {e.strerror or e}") from None
    out: dict[bytes, Caller] = {}
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        row = [c.strip() for c in row]
        if len(row) < 3 or len(row) > 4:
            raise TokenFileError(f"token file {path} line {n}: {len(row)} fields, want token,user,uid[,groups]")
        token, user, uid = row[:3]
        if not token or not user:
            raise TokenFileError(f"token file {path} line {n}: the token and the user must not be empty")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) == 4 else ()
        key = _digest(token)
        if key in out:
            raise TokenFileError(f"token file {path} line {n}: this token is already on an earlier line "
                                 f"(user {out[key].user!r})")
        out[key] = Caller(user, uid, groups, "token")
    return out


def _token_file_loader(path: str):
    """The token file's tokens; once it was read, a file that is gone holds none (everyone it
    named is refused: a deleted file revokes, it does not keep the tokens of before)."""
    loaded = []

    def load() -> dict[bytes, Caller]:
        if loaded and not os.path.exists(path):
            return {}
        tokens = load_token_file(path)
        loaded.append(True)
        return tokens
    return load


@dataclass
class Authenticator:
    """Tokens (the old --token, and the token file's as the file says now: a token removed from it
    is refused from the next request on) and, when ``certificates``, client certificates."""
    tokens: dict[bytes, Caller] = field(default_factory=dict)
    certificates: bool = False
    token_file: ReloadingFiles | None = None

    @classmethod
    def configured(cls, token: str = "", token_file: str = "", certificates: bool = False) -> "Authenticator":
        listed = ReloadingFiles([token_file], _token_file_loader(token_file),
                                what=f"token file {token_file}") if token_file else None
        tokens = {}
        if token:
            key = _digest(token)
            if listed is not None and key in listed.current():
                raise TokenFileError("--token is also a token of the token file: give it one identity")
            tokens[key] = Caller(LEGACY_USER, LEGACY_USER, (MASTERS,), "token")
        return cls(tokens, certificates, listed)

    @property
    def enabled(self) -> bool:
        """False: nothing is configured, so nobody is authenticated and every caller is let in."""
        return bool(self.tokens) or self.certificates or self.token_file is not None

    def _caller_of(self, token: str) -> Caller | None:
        key = _digest(token)
        found = self.tokens.get(key)
        if found is None and self.token_file is not None:
            found = self.token_file.current().get(key)
        return found

    def authenticate(self, authorization: str | None, context) -> Caller | None:
        """The caller of a request (its ``authorization`` metadata, its servicer context for the
        certificate), ANONYMOUS when authentication is off, None when it proves no identity."""
        if not self.enabled:
            return ANONYMOUS
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return None
            found = self._caller_of(token.strip())
            return _authenticated(found) if found else None
        if self.certificates:
            peer = tls.peer_identity(context)
            if peer is not None and peer.user:
                return _authenticated(Caller(peer.user, "", peer.groups, "certificate"))
        return None


def _authenticated(c: Caller) -> Caller:
    if AUTHENTICATED in c.groups:
        return c
    return Caller(c.user, c.uid, (*c.groups, AUTHENTICATED), c.by)
