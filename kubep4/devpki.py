"""The local stack's development PKI: one CA and a certificate per component, in ``<data dir>/pki``.

What `kubep4 up` (and the test stack) serve with by default. Each component has one certificate,
used both ways: served (TLS) and shown to what it calls (mTLS); its CN is the component's identity
everywhere — the etcd user (``kubep4.etcd_auth``), the caller admission and the read services
accept (the apiserver), the user of the apiserver (``admin`` in group ``system:masters``).

A production deployment brings its own CA and issues the same subjects (cert-manager does:
deploy/k8s/certs).
"""
from __future__ import annotations

import os
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


def make(directory: str, nodes: list[str]) -> StackPKI:
    """A fresh CA and every component's certificate (for loopback: localhost, 127.0.0.1)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    ca = tls.make_ca(directory)
    pki = StackPKI(directory, ca)

    def issue(name: str, cn: str, orgs=(), server: bool = True) -> None:
        pki.certs[name] = tls.issue(ca, name, directory, cn, orgs, server=server)

    issue("etcd", "etcd")  # every member, for clients and peers
    issue("etcd-root", etcd_auth.ROOT_USER, server=False)  # turns etcd auth on
    issue("apiserver", etcd_auth.APISERVER)
    issue("admission", ADMISSION)
    issue("controller", etcd_auth.CONTROLLER)
    issue("builder", etcd_auth.BUILDER)
    for node in nodes:
        issue(f"agent-{node}", etcd_auth.node_user(node))
        issue(f"switch-{node}", f"switch-{node}")
    issue("admin", ADMIN, (MASTERS,), server=False)
    issue("observer", OBSERVER, server=False)
    return pki
