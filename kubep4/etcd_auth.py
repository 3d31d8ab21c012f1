"""Least privilege in etcd: one user and one role per component, granted key ranges of the store's
key layout, and etcd auth turned on.

Identities are client certificates: etcd runs with ``--client-cert-auth`` and, with auth on,
takes the certificate's CN as the user. The users have no password (nothing to leak, nothing to
rotate but the certificate). The users:

=====================  ==========================================================================
``root``               everything (etcd's root role): only ``enable`` and operators use it
``kubep4-apiserver``   read/write Pipelines, Deployments, artifact blobs; read Nodes,
                       Placements (ReadDeployment finds a replica's device in its placement) and
                       Revisions
``kubep4-controller``  read Pipelines; read/write Deployments (status, finalization), Placements
                       (every node's), Nodes (phase), Revisions, blobs (the artifact collector
                       deletes), the leader key; read the node leases
``kubep4-builder``     read/write Pipelines (artifact refs, compile status), blobs and the build
                       claims (``/kubep4/builds/``)
``node:<name>``        read/write its own Placements (``/kubep4/placements/<name>/``: status,
                       delete), its own Node and its own lease key; read Pipelines and blobs (its
                       artifacts). Nothing of another node's, no Deployment
=====================  ==========================================================================

Every role may also read the key ``/kubep4/`` itself (no object lives there: ``Store.revision``
reads it for the current revision).

What etcd can express, and so what this achieves: a permission is READ, WRITE or READWRITE on one
key or one key range ``[key, range_end)``, here always a prefix of the key layout. Not a field (the
controller that may write a Deployment's status may write its spec too; an agent that may write
its Placement's status may write its spec), not a verb (WRITE is put and delete alike; there is no
"create only"). A range read is allowed only when the role covers the whole range: an agent must
list ``/kubep4/placements/<name>/``, never ``/kubep4/placements/`` (which is what the Store's
sharded keys are for). A transaction needs READ on every key it compares and the permission of
each of its operations. A watch needs READ on its range. Leases need no permission to grant or keep
alive; revoking one needs WRITE on every key attached to it. Finer rules (status only, a node
writing only placements' status) belong to the apiserver's authorization, not to etcd.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aetcd import rpc

from kubep4 import store as st
from kubep4 import tls

log = logging.getLogger(__name__)

ROOT_USER = "root"  # etcd's root user: its role, "root", is etcd's built-in
APISERVER = "kubep4-apiserver"
CONTROLLER = "kubep4-controller"
BUILDER = "kubep4-builder"
NODE_PREFIX = "node:"
LEADER_PREFIX = f"{st.ROOT}/leader/"  # the controller's leader key lives under it

READ, WRITE, READWRITE = rpc.Permission.READ, rpc.Permission.WRITE, rpc.Permission.READWRITE


def node_user(node: str) -> str:
    """The etcd user (and certificate CN) of the node agent of ``node``."""
    if not node or "/" in node:
        raise ValueError(f"node name {node!r}: not a name a key can hold")
    return f"{NODE_PREFIX}{node}"


@dataclass(frozen=True)
class Grant:
    """One etcd permission: ``perm`` on ``key``, or on every key under it when ``prefix``."""
    perm: int
    key: str
    prefix: bool = True

    def permission(self) -> rpc.Permission:
        k = self.key.encode()
        return rpc.Permission(permType=self.perm, key=k, range_end=st._range_end(k) if self.prefix else b"")


def _revision_key() -> Grant:
    return Grant(READ, f"{st.ROOT}/", prefix=False)


def apiserver_grants() -> list[Grant]:
    return [Grant(READWRITE, st.PIPELINES.prefix()), Grant(READWRITE, st.DEPLOYMENTS.prefix()),
            Grant(READWRITE, st.BLOBS), Grant(READ, st.NODES.prefix()), Grant(READ, st.PLACEMENTS.prefix()),
            Grant(READ, st.REVISIONS.prefix()), _revision_key()]


def controller_grants() -> list[Grant]:
    return [Grant(READ, st.PIPELINES.prefix()), Grant(READWRITE, st.DEPLOYMENTS.prefix()),
            Grant(READWRITE, st.PLACEMENTS.prefix()), Grant(READWRITE, st.NODES.prefix()),
            Grant(READ, st.NODE_LEASES), Grant(READWRITE, st.BLOBS), Grant(READWRITE, LEADER_PREFIX),
            Grant(READWRITE, st.REVISIONS.prefix()), _revision_key()]


def node_grants(node: str) -> list[Grant]:
    node_user(node)  # the name check
    return [Grant(READWRITE, st.PLACEMENTS.prefix(shard=node)),
            Grant(READWRITE, st.NODES.key_for("", node), prefix=False),
            Grant(READWRITE, st.NODE_LEASES + node, prefix=False),
            Grant(READ, st.PIPELINES.prefix()), Grant(READ, st.BLOBS), _revision_key()]


def builder_grants() -> list[Grant]:
    """Pipelines (their artifact refs and compile status), the blobs it stores, its claims."""
    return [Grant(READWRITE, st.PIPELINES.prefix()), Grant(READWRITE, st.BLOBS),
            Grant(READWRITE, st.BUILDS), _revision_key()]


def roles(nodes: Iterable[str] = ()) -> dict[str, list[Grant]]:
    """Every component's role (named as its user) and its grants."""
    out = {APISERVER: apiserver_grants(), CONTROLLER: controller_grants(), BUILDER: builder_grants()}
    out.update({node_user(n): node_grants(n) for n in nodes})
    return out


def issue_certs(ca: tls.CA, directory: str, nodes: Iterable[str] = ()) -> dict[str, tls.Issued]:
    """A client certificate for every etcd identity, its CN the user: root, the apiserver, the
    controller and each node's agent (files ``etcd-<user>.pem``, ``:`` made ``-``). Development
    and tests; a deployment's own CA issues the same subjects."""
    users = [ROOT_USER, APISERVER, CONTROLLER, *(node_user(n) for n in nodes)]
    return {u: tls.issue(ca, "etcd-" + u.replace(":", "-"), directory, u, server=False) for u in users}


async def _auth(store: st.Store, method: str, request, exists: str = ""):
    """One Auth RPC (on the Store's member, failing over with it). ``exists``: the words of etcd's
    refusal that mean "already there", which is success here (every step may be run again)."""
    try:
        return await store._call(lambda c: getattr(c.auth_stub, method)(request, timeout=c._timeout,
                                                                        metadata=c.metadata),
                                 idempotent=True)
    except st.Rejected as e:
        if exists and exists in str(e):
            return None
        raise


async def ensure_user(store: st.Store, user: str, role_names: Iterable[str]) -> None:
    """The user (no password: its certificate is its credential) holding these roles."""
    await _auth(store, "UserAdd", rpc.AuthUserAddRequest(name=user, options=rpc.UserAddOptions(no_password=True)),
                exists="user name already exists")
    for role in role_names:
        await _auth(store, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user=user, role=role))


async def ensure_role(store: st.Store, role: str, grants: Iterable[Grant]) -> None:
    """The role with these grants (added to what it holds; a grant already there is kept)."""
    await _auth(store, "RoleAdd", rpc.AuthRoleAddRequest(name=role), exists="role name already exists")
    for g in grants:
        await _auth(store, "RoleGrantPermission", rpc.AuthRoleGrantPermissionRequest(name=role, perm=g.permission()))


async def add_node(store: st.Store, node: str) -> str:
    """A node agent's user and role (as root, auth on or not). Returns the user: its certificate's CN."""
    user = node_user(node)
    await ensure_role(store, user, node_grants(node))
    await ensure_user(store, user, [user])
    return user


async def enable(store: st.Store, nodes: Iterable[str] = ()) -> None:
    """Create root and every component's user and role, then turn etcd auth on.

    ``store`` must connect with the root certificate (CN ``root``): before auth is on etcd lets
    anyone do this, after it only root. Safe to run again: what exists is kept."""
    await ensure_user(store, ROOT_USER, ["root"])
    for role, grants in roles(nodes).items():
        await ensure_role(store, role, grants)
        await ensure_user(store, role, [role])
    await _auth(store, "AuthEnable", rpc.AuthEnableRequest())
    log.info("etcd auth enabled: users %s", ", ".join([ROOT_USER, *roles(nodes)]))


async def disable(store: st.Store) -> None:
    """Turn etcd auth off (as root). Users and roles stay for the next ``enable``."""
    await _auth(store, "AuthDisable", rpc.AuthDisableRequest())
