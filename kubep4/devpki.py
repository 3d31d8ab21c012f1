"""The local stack's development PKI: one CA and a certificate per component, in ``<data dir>/pki``.

What `kubep4 up` (and the test stack) serve with by default. Each component has one certificate,
used both ways: served (TLS) and shown to what it calls (mTLS); its CN is the component's identity
everywhere — the etcd user (``kubep4.etcd_auth``), the caller admission and the read services
accept (the apiserver), the user of the apiserver (``admin`` in group ``system:masters``).

A production deployment brings its own CA and issues the same subjects (cert-manager does:
deploy/k8s/certs).

``python -m kubep4.devpki`` (``main``) is docker compose's certificate job: ``--dir``, ``--ca-dir``,
``--nodes``, ``--san COMPONENT=NAMES`` write what ``ensure`` keeps or issues, ``--enable-etcd-auth``
turns etcd auth on as root (deploy/compose, deploy/k8s's Job; docs/deploy.md).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import ipaddress
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

from kubep4 import etcd_auth, tls

ADMISSION = "kubep4-admission"
ADMIN, MASTERS = "admin", "system:masters"  # the CLI's identity: cluster-wide admin
OBSERVER = "kubep4-observer"  # an independent reader of the devices (tests, benchmarks): no etcd role


@dataclass
class StackPKI:
    directory: str
    ca: tls.CA
    certs: dict[str, tls.Issued] = field(default_factory=dict)  # component name -> its certificate

    def __getitem__(self, name: str) -> tls.Issued:
        return self.certs[name]

    def client_tls(self, name: str, server_name: str = "") -> tls.ClientTLS:
        """How component ``name`` reaches a TLS server of this stack, with its certificate."""
        c = self.certs[name]
        return tls.ClientTLS(self.ca.cert, c.cert, c.key, server_name)

    def etcd_flags(self, name: str) -> list[str]:
        c = self.certs[name]
        return ["--etcd-ca", self.ca.cert, "--etcd-cert", c.cert, "--etcd-key", c.key]

    def service_flags(self, name: str) -> list[str]:
        c = self.certs[name]
        return ["--tls-cert", c.cert, "--tls-key", c.key, "--tls-ca", self.ca.cert]

    def device_keys(self, agent: str) -> str:
        """The --device keys for P4Runtime over mTLS, with the agent's certificate."""
        c = self.certs[agent]
        return f"ca={self.ca.cert},cert={c.cert},key={c.key}"

    def switch_flags(self, switch: str) -> list[str]:
        """simple_switch_grpc's TLS flags (the reference target takes the same)."""
        c = self.certs[switch]
        return ["--grpc-server-ssl", "--grpc-server-cacert", self.ca.cert, "--grpc-server-cert", c.cert,
                "--grpc-server-key", c.key, "--grpc-server-with-client-auth"]


LOOPBACK = ("localhost", "127.0.0.1")
PRIVATE = ("etcd-root", "admin")  # the identities that may do everything (etcd's root, system:masters)
RENEW_BEFORE = datetime.timedelta(days=30)  # ensure() reissues a certificate this close to expiry


@dataclass(frozen=True)
class Subject:
    name: str            # component name: the files <name>.pem, <name>-key.pem; the key of ``sans``
    cn: str
    orgs: tuple[str, ...] = ()
    server: bool = True  # also a server certificate (every one is a client certificate)


def subjects(nodes: list[str]) -> list[Subject]:
    """Every certificate of the stack: its file name, CN and groups."""
    out = [Subject("etcd", "etcd"),  # every member, for clients and peers
           Subject("etcd-root", etcd_auth.ROOT_USER, server=False),  # turns etcd auth on
           Subject("apiserver", etcd_auth.APISERVER), Subject("admission", ADMISSION),
           Subject("controller", etcd_auth.CONTROLLER), Subject("builder", etcd_auth.BUILDER)]
    for node in nodes:
        out += [Subject(f"agent-{node}", etcd_auth.node_user(node)), Subject(f"switch-{node}", f"switch-{node}")]
    return out + [Subject("admin", ADMIN, (MASTERS,), server=False), Subject("observer", OBSERVER, server=False)]


def _split_sans(names) -> tuple[list[str], list[str]]:
    dns, ips = [], []
    for n in names:
        try:
            ipaddress.ip_address(n)
            ips.append(n)
        except ValueError:
            dns.append(n)
    return list(dict.fromkeys(dns)), list(dict.fromkeys(ips))


def _names(name: str, sans: dict[str, list[str]] | None) -> list[str]:
    """The SANs of a component's certificate: loopback, then what ``sans`` adds for it."""
    return list(dict.fromkeys([*LOOPBACK, *((sans or {}).get(name, ()))]))


def _issue(ca: tls.CA, s: Subject, directory: str, sans: dict[str, list[str]] | None) -> tls.Issued:
    dns, ips = _split_sans(_names(s.name, sans))
    return tls.issue(ca, s.name, directory, s.cn, s.orgs, dns=dns, ips=ips, server=s.server)


def make(directory: str, nodes: list[str], sans: dict[str, list[str]] | None = None) -> StackPKI:
    """A fresh CA and every component's certificate (for loopback: localhost, 127.0.0.1).

    ``sans``: more names (DNS names or IP addresses) per component name ("apiserver",
    "agent-<node>", "switch-<node>", "etcd"...), e.g. the container or Service names it is dialled by."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    ca = tls.make_ca(directory)
    pki = StackPKI(directory, ca)
    for s in subjects(nodes):
        pki.certs[s.name] = _issue(ca, s, directory, sans)
    return pki


class PKIError(RuntimeError):
    """The directory's certificates cannot be kept and cannot be issued (no CA key)."""


def _why_not_kept(issued: tls.Issued, s: Subject, ca_cert, names: list[str]) -> str:
    """Empty when the certificate on disk is one ``make`` would issue now; else why not."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID
    if not (os.path.exists(issued.cert) and os.path.exists(issued.key)):
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(tls.read_pem(issued.cert))
        key = serialization.load_pem_private_key(tls.read_pem(issued.key), password=None)
    except (ValueError, TypeError) as e:
        return f"unreadable ({e})"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the CA"
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        return "key does not match"
    now = datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if cn != [s.cn] or sorted(orgs) != sorted(s.orgs):
        return f"subject is CN={cn} O={orgs}, want CN={s.cn} O={list(s.orgs)}"
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {*ext.get_values_for_type(x509.DNSName), *(str(i) for i in ext.get_values_for_type(x509.IPAddress))}
    except x509.ExtensionNotFound:
        have = set()
    missing = [n for n in names if n not in have]
    return f"lacks the names {missing}" if missing else ""


def ensure(directory: str, nodes: list[str], sans: dict[str, list[str]] | None = None, *,
           ca_dir: str | None = None, force: bool = False, log=None) -> StackPKI:
    """``make``, keeping what is there: an existing CA (``ca.pem``, ``ca-key.pem`` in ``ca_dir``) and
    every certificate it signed that still has the right subject and names and is not within
    RENEW_BEFORE of expiring. ``force``: a new CA and new certificates, as ``make``.

    ``ca_dir`` (default ``directory``): where the CA's key and the all-powerful certificates
    (etcd's ``root``, the ``admin``) go, apart from what the services mount; ``ca.pem`` is copied
    into ``directory`` too. A CA without its key (brought, not made here) works as long as every
    certificate is already there and valid: else PKIError names what would have to be issued."""
    from cryptography import x509
    say = log or (lambda msg: None)
    ca_dir = ca_dir or directory
    for d in {directory, ca_dir}:
        os.makedirs(d, mode=0o700, exist_ok=True)
    ca = tls.CA(os.path.join(ca_dir, "ca.pem"), os.path.join(ca_dir, "ca-key.pem"))
    if force or not os.path.exists(ca.cert):
        ca = tls.make_ca(ca_dir)
        say(f"new CA {ca.cert}")
    else:
        say(f"keeping the CA {ca.cert}")
    if ca_dir != directory:
        shutil.copyfile(ca.cert, os.path.join(directory, "ca.pem"))
        os.chmod(os.path.join(directory, "ca.pem"), 0o644)
    ca_cert = x509.load_pem_x509_certificate(tls.read_pem(ca.cert, "CA"))
    pki = StackPKI(directory, tls.CA(os.path.join(directory, "ca.pem"), ca.key))
    for s in subjects(nodes):
        d = ca_dir if s.name in PRIVATE else directory
        here = tls.Issued(s.name, os.path.join(d, f"{s.name}.pem"), os.path.join(d, f"{s.name}-key.pem"), pki.ca.cert)
        why = "" if force else _why_not_kept(here, s, ca_cert, _names(s.name, sans))
        if not force and not why:
            pki.certs[s.name] = here
            continue
        if not os.path.exists(ca.key):
            raise PKIError(f"{here.cert}: {why}, and there is no CA key ({ca.key}) to issue it with")
        pki.certs[s.name] = dataclasses.replace(_issue(ca, s, d, sans), ca=pki.ca.cert)
        say(f"issued {here.cert} (CN={s.cn}){f': {why}' if why and not force else ''}")
    return pki


def chown_tree(directories, uid: int, gid: int) -> None:
    """Hand the directories and their files to the services' user (the job writing them runs as root)."""
    for d in directories:
        os.chown(d, uid, gid)
        for name in os.listdir(d):
            os.chown(os.path.join(d, name), uid, gid)


SHARED_NODE_USER = "kubep4-node-agent"  # deploy/k8s: every node agent's one identity (a DaemonSet, one Secret)


def shared_node_grants() -> list[etcd_auth.Grant]:
    """The role of a node-agent identity shared by every node (deploy/k8s, where one DaemonSet mounts
    one Secret): what ``etcd_auth.node_grants`` grants one node, for every node. Weaker by design: such
    an agent may read and write any node's Placements, Node and lease; still no Deployment, no
    Pipeline written, no Revision."""
    from kubep4 import store as st
    g, rw, r = etcd_auth.Grant, etcd_auth.READWRITE, etcd_auth.READ
    return [g(rw, st.PLACEMENTS.prefix()), g(rw, st.NODES.prefix()), g(rw, st.NODE_LEASES),
            g(r, st.PIPELINES.prefix()), g(r, st.BLOBS), g(r, f"{st.ROOT}/", prefix=False)]


async def enable_etcd_auth(endpoints: str, root: tls.ClientTLS, nodes: list[str],
                           wait: float = 60.0, log=None, shared_node_user: str = "") -> None:
    """``etcd_auth.enable`` as root, retrying while etcd does not answer yet (for ``wait`` seconds).
    ``shared_node_user``: also that user, with ``shared_node_grants`` (created before auth is on)."""
    from kubep4 import store as st
    say = log or (lambda msg: None)
    deadline = time.monotonic() + wait
    while True:
        try:
            async with st.Store(endpoints, tls=root) as store:
                if shared_node_user:
                    await etcd_auth.ensure_role(store, shared_node_user, shared_node_grants())
                    await etcd_auth.ensure_user(store, shared_node_user, [shared_node_user])
                    say(f"etcd user {shared_node_user}: every node's placements, nodes and leases")
                await etcd_auth.enable(store, nodes)
            say(f"etcd auth enabled on {endpoints}: users root, {', '.join(etcd_auth.roles(nodes))}")
            return
        except (st.Rejected, st.Forbidden):
            raise
        except Exception as e:  # noqa: BLE001 - unreachable yet: try again until the deadline
            if time.monotonic() >= deadline:
                raise
            say(f"etcd {endpoints} not ready ({type(e).__name__}: {e}); retrying")
            await asyncio.sleep(1.0)


def _sans_arg(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, names = item.partition("=")
        if not sep or not name or not names:
            raise argparse.ArgumentTypeError(f"--san wants COMPONENT=NAME[,NAME...], got {item!r}")
        out.setdefault(name, []).extend(n.strip() for n in names.split(",") if n.strip())
    return out


def main(argv: list[str] | None = None) -> int:
    """python -m kubep4.devpki: write the stack's development CA and certificates (compose's
    one-shot ``certs`` job), and/or turn etcd auth on as root."""
    p = argparse.ArgumentParser(prog="python -m kubep4.devpki", description=(
        "Write a development CA and one certificate per KubeP4 component (kept when already there "
        "and valid), and optionally turn etcd auth on with a role per component."))
    p.add_argument("--dir", default="", help="where the certificates the services mount go (empty: issue nothing)")
    p.add_argument("--ca-dir", default="", help="where the CA key and the etcd-root and admin certificates go "
                                                 "(default: --dir)")
    p.add_argument("--nodes", default="", help="node names, comma-separated: an agent-<node> and a switch-<node> "
                                               "certificate each, and a node:<node> etcd user")
    p.add_argument("--san", action="append", default=[], metavar="COMPONENT=NAME[,NAME...]",
                   help="more DNS names or IPs in a component's certificate (apiserver, admission, controller, "
                        "builder, etcd, agent-<node>, switch-<node>); localhost and 127.0.0.1 always are (repeatable)")
    p.add_argument("--force", action="store_true", help="a new CA and new certificates, whatever is there")
    p.add_argument("--owner", default="", metavar="UID:GID", help="chown what is written to this user (a job "
                                                                  "running as root writing for the services)")
    p.add_argument("--enable-etcd-auth", action="store_true",
                   help="create every component's etcd user and role, then turn etcd auth on, as root")
    p.add_argument("--etcd", default="", help="etcd members for --enable-etcd-auth (https://host:port,...)")
    p.add_argument("--etcd-ca", default="", help="with --enable-etcd-auth and no --dir: the CA of etcd")
    p.add_argument("--etcd-cert", default="", help="with --enable-etcd-auth and no --dir: root's certificate")
    p.add_argument("--etcd-key", default="", help="with --enable-etcd-auth and no --dir: root's key")
    p.add_argument("--etcd-wait", type=float, default=60.0, help="seconds to wait for etcd to answer")
    p.add_argument("--shared-node-user", default="", metavar="USER",
                   help=f"with --enable-etcd-auth: also an etcd user every node agent shares (deploy/k8s uses "
                        f"{SHARED_NODE_USER}), allowed every node's placements, nodes and leases: weaker than "
                        f"node:<name>, which only its own")
    args = p.parse_args(argv)
    try:
        sans = _sans_arg(args.san)
        nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
        for n in nodes:
            etcd_auth.node_user(n)
    except (argparse.ArgumentTypeError, ValueError) as e:
        p.error(str(e))
    known = {s.name for s in subjects(nodes)}
    unknown = sorted(set(sans) - known)
    if unknown:
        p.error(f"--san: no component {unknown}; the components are {sorted(known)}")
    if not args.dir and not args.enable_etcd_auth:
        p.error("nothing to do: give --dir, --enable-etcd-auth or both")

    def say(msg: str) -> None:
        print(f"devpki: {msg}", flush=True)

    root = None
    if args.dir:
        try:
            pki = ensure(args.dir, nodes, sans, ca_dir=args.ca_dir or None, force=args.force, log=say)
        except (PKIError, tls.TLSFileError) as e:
            print(f"devpki: {e}", file=sys.stderr)
            return 1
        if args.owner:
            uid, _, gid = args.owner.partition(":")
            chown_tree({args.dir, args.ca_dir or args.dir}, int(uid), int(gid or uid))
        root = tls.ClientTLS(pki.ca.cert, pki["etcd-root"].cert, pki["etcd-root"].key)
    if args.enable_etcd_auth:
        if not args.etcd:
            p.error("--enable-etcd-auth needs --etcd")
        if args.etcd_cert or args.etcd_ca:
            root = tls.ClientTLS(args.etcd_ca, args.etcd_cert, args.etcd_key)
        if root is None:
            p.error("--enable-etcd-auth needs root's certificate: --dir, or --etcd-ca/--etcd-cert/--etcd-key")
        try:
            asyncio.run(enable_etcd_auth(args.etcd, root, nodes, args.etcd_wait, log=say,
                                         shared_node_user=args.shared_node_user))
        except Exception as e:  # noqa: BLE001 - say it in one line, exit non-zero: the job fails
            print(f"devpki: enabling etcd auth on {args.etcd} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
