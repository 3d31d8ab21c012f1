"""What a caller may do: roles bound to users and groups per namespace, or cluster-wide.

    bindings:                      # in the namespaces named
      - role: edit                 # view | edit | admin
        namespaces: [team-a]       # or namespace: team-a
        users: [alice]
        groups: [team-a-devs]
    clusterBindings:               # in every namespace, and cluster-scoped kinds (nodes)
      - role: view
        kinds: [nodes]             # optional, in any binding: only these kinds
        groups: [ops]

``view`` may get, list and watch pipelines, deployments, revisions and nodes; ``edit`` also
create, update and delete them; ``admin`` everything, subresources included
(``deployments/read``: live values; ``deployments/rollout``: undo, pause, resume, promote). Nodes are cluster-scoped: only a cluster binding grants them. The
group ``system:masters`` may do everything, with or without a policy (the old --token is in it).

Every RPC of the KubeP4 service maps to (verb, kind, namespace) in RULES; an RPC missing from it
is allowed to ``system:masters`` only (tests/test_auth_rbac.py fails when one is missing).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from kubep4.reloading import ReloadingFiles
from services.apiserver.authn import MASTERS, Caller

VERBS = ("get", "list", "watch", "create", "update", "delete")
KINDS = ("pipelines", "deployments", "revisions", "nodes", "deployments/read", "deployments/rollout")
CLUSTER_KINDS = frozenset({"nodes"})
_READ = frozenset({"get", "list", "watch"})
_WRITE = _READ | {"create", "update", "delete"}
_PLAIN = frozenset({"pipelines", "deployments", "revisions", "nodes"})
ROLES: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # role -> (verbs, kinds)
    "view": (_READ, _PLAIN),
    "edit": (_WRITE, _PLAIN),
    "admin": (frozenset(VERBS), frozenset(KINDS)),
}
_ALIASES = {"pipeline": "pipelines", "pl": "pipelines", "deployment": "deployments", "deploy": "deployments",
            "node": "nodes", "no": "nodes", "revision": "revisions", "rev": "revisions", "deployment/read": "deployments/read",
            "deployment/rollout": "deployments/rollout"}
SHOWN = 80  # characters of a name echoed in a refusal


def kind_of(name: str) -> str:
    """The kind's plural name (``deployment``, ``deploy`` -> ``deployments``); unknown ones unchanged."""
    low = name.strip().lower()
    return _ALIASES.get(low, low)


def q(value: str) -> str:
    """``"value"``, cut to SHOWN characters."""
    v = value if len(value) <= SHOWN else value[:SHOWN] + "..."
    return json.dumps(v, ensure_ascii=False)


class PolicyError(ValueError):
    """The policy file is unreadable or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Binding:
    role: str
    namespaces: frozenset[str] | None  # None: cluster-wide (every namespace, and cluster-scoped kinds)
    users: frozenset[str]
    groups: frozenset[str]
    kinds: frozenset[str] | None = None  # None: every kind the role has
    where: str = ""  # "bindings[0]": for reasons

    def subject(self, caller: Caller) -> bool:
        return caller.user in self.users or any(g in self.groups for g in caller.groups)

    def grants(self, verb: str, kind: str) -> bool:
        verbs, kinds = ROLES[self.role]
        return verb in verbs and kind in kinds and (self.kinds is None or kind in self.kinds)


@dataclass(frozen=True)
class Policy:
    bindings: tuple[Binding, ...] = ()

    @classmethod
    def load(cls, path: str) -> "Policy":
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except OSError as e:
            raise PolicyError(f"policy file {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise PolicyError(f"policy file {path}: not YAML: {e}") from None
        try:
            return cls.parse(doc)
        except PolicyError as e:
            raise PolicyError(f"policy file {path}: {e}") from None

    @classmethod
    def parse(cls, doc) -> "Policy":
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise PolicyError("want a mapping with bindings and clusterBindings")
        unknown = set(doc) - {"bindings", "clusterBindings"}
        if unknown:
            raise PolicyError(f"{sorted(unknown)[0]}: unknown field (bindings, clusterBindings)")
        out = []
        for section in ("bindings", "clusterBindings"):
            items = doc.get(section) or []
            if not isinstance(items, list):
                raise PolicyError(f"{section}: want a list")
            for i, b in enumerate(items):
                out.append(_binding(b, f"{section}[{i}]", cluster=section == "clusterBindings"))
        return cls(tuple(out))

    def _matching(self, caller: Caller, verb: str, kind: str):
        return [b for b in self.bindings if b.subject(caller) and b.grants(verb, kind)]

    def decide(self, caller: Caller, verb: str, kind: str, namespace: str | None) -> str | None:
        """Why ``caller`` may do ``verb`` on ``kind`` in ``namespace`` (None: every namespace; ignored
        for a cluster-scoped kind), or None when no binding allows it."""
        for b in self._matching(caller, verb, kind):
            if b.namespaces is None:
                return f"allowed by {b.where} (role {b.role}, cluster-wide)"
            if kind not in CLUSTER_KINDS and namespace is not None and namespace in b.namespaces:
                return f"allowed by {b.where} (role {b.role} in namespace {q(namespace)})"
        return None

    def namespaces(self, caller: Caller, verb: str, kind: str) -> frozenset[str] | None:
        """The namespaces in which ``caller`` may ``verb`` ``kind`` (None: every one)."""
        out: set[str] = set()
        for b in self._matching(caller, verb, kind):
            if b.namespaces is None:
                return None
            if kind not in CLUSTER_KINDS:
                out |= b.namespaces
        return frozenset(out)


def _strings(b: dict, key: str, where: str) -> frozenset[str]:
    v = b.get(key) or []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise PolicyError(f"{where}.{key}: want a list of names")
    return frozenset(v)


def _binding(b, where: str, cluster: bool) -> Binding:
    if not isinstance(b, dict):
        raise PolicyError(f"{where}: want a mapping (role, users, groups...)")
    allowed = {"role", "users", "groups", "kinds"} | (set() if cluster else {"namespace", "namespaces"})
    if unknown := set(b) - allowed:
        raise PolicyError(f"{where}.{sorted(unknown)[0]}: unknown field ({', '.join(sorted(allowed))})")
    role = b.get("role")
    if role not in ROLES:
        raise PolicyError(f"{where}.role: {role!r} is not a role (view, edit, admin)")
    users, groups = _strings(b, "users", where), _strings(b, "groups", where)
    if not users and not groups:
        raise PolicyError(f"{where}: binds no one (give users or groups)")
    namespaces = None
    if not cluster:
        namespaces = _strings(b, "namespaces", where) | _strings(b, "namespace", where)
        if not namespaces:
            raise PolicyError(f"{where}: no namespace (a binding for every namespace is a clusterBinding)")
    kinds = None
    if "kinds" in b:
        kinds = frozenset(kind_of(k) for k in _strings(b, "kinds", where))
        if bad := sorted(kinds - set(KINDS)):
            raise PolicyError(f"{where}.kinds: {bad[0]!r} is not a kind ({', '.join(KINDS)})")
    return Binding(role, namespaces, users, groups, kinds, where)


class Authorizer:
    """The policy's decisions, plus ``system:masters``; without a policy every caller it is asked
    about (an authenticated one) may do everything."""

    def __init__(self, policy: Policy | None = None, policy_file: str = ""):
        """``policy``, or the policy file ``policy_file`` as it says now (read again when it changes)."""
        self._policy = policy
        self._file = ReloadingFiles([policy_file], lambda: Policy.load(policy_file),
                                    what=f"authorization policy {policy_file}") if policy_file else None

    @property
    def policy(self) -> Policy | None:
        return self._file.current() if self._file is not None else self._policy

    def decide(self, caller: Caller, verb: str, kind: str, namespace: str | None) -> str | None:
        if MASTERS in caller.groups:
            return f"allowed: {caller.user} is in group {MASTERS}"
        if self.policy is None:
            return "allowed: no authorization policy is configured (every authenticated caller may do everything)"
        return self.policy.decide(caller, verb, kind, namespace)

    def namespaces(self, caller: Caller, verb: str, kind: str) -> frozenset[str] | None:
        if MASTERS in caller.groups or self.policy is None:
            return None
        return self.policy.namespaces(caller, verb, kind)


def refusal(caller: Caller, verb: str, kind: str, namespace: str | None) -> str:
    """``user "alice" cannot create deployments in namespace "b"`` (Kubernetes' Forbidden words)."""
    if kind in CLUSTER_KINDS:
        where = "at the cluster scope"
    elif namespace is None:
        where = "in every namespace (list or watch one namespace, -n)"
    elif namespace == "*":
        where = "in any namespace"
    else:
        where = f"in namespace {q(namespace)}"
    return f"user {q(caller.user)} cannot {verb} {kind} {where}"


# ---------------------------------------------------------------- the RPCs

@dataclass(frozen=True)
class Rule:
    """What an RPC does: ``verb`` on ``kind``, in the namespace ``namespace(request)`` returns
    (None: every namespace, a list or watch of all; "" for a cluster-scoped kind). ``verb`` None:
    any authenticated caller may call it (WhoAmI, CanI: about the caller itself)."""
    verb: str | None
    kind: str = ""
    namespace: Callable[[object], str | None] = lambda r: ""

    @property
    def lists(self) -> bool:
        return self.verb in ("list", "watch")


def _ns(r) -> str:
    return r.namespace or "default"


def _all_or_ns(r) -> str | None:
    return r.namespace or None


def _cluster(r) -> str:
    return ""


RULES: dict[str, Rule] = {
    "CreatePipeline": Rule("create", "pipelines", lambda r: r.pipeline.metadata.namespace or "default"),
    "GetPipeline": Rule("get", "pipelines", _ns),
    "ListPipelines": Rule("list", "pipelines", _all_or_ns),
    "DeletePipeline": Rule("delete", "pipelines", _ns),
    "WatchPipelines": Rule("watch", "pipelines", _all_or_ns),
    "CreateDeployment": Rule("create", "deployments", lambda r: r.deployment.metadata.namespace or "default"),
    "GetDeployment": Rule("get", "deployments", _ns),
    "ListDeployments": Rule("list", "deployments", _all_or_ns),
    "UpdateDeployment": Rule("update", "deployments", lambda r: r.deployment.metadata.namespace or "default"),
    "DeleteDeployment": Rule("delete", "deployments", _ns),
    "WatchDeployments": Rule("watch", "deployments", _all_or_ns),
    "GetNode": Rule("get", "nodes", _cluster),
    "ListNodes": Rule("list", "nodes", _cluster),
    "ReadDeployment": Rule("get", "deployments/read", _ns),
    "GetRevision": Rule("get", "revisions", _ns),
    "ListRevisions": Rule("list", "revisions", _all_or_ns),
    "RolloutUndo": Rule("update", "deployments/rollout", _ns),
    "RolloutPause": Rule("update", "deployments/rollout", _ns),
    "RolloutResume": Rule("update", "deployments/rollout", _ns),
    "RolloutPromote": Rule("update", "deployments/rollout", _ns),
    "WhoAmI": Rule(None),
    "CanI": Rule(None),
}
