"""A STAND-IN Kubernetes API server (plus a stand-in kube-scheduler) for tests.

This is not Kubernetes. It is a small HTTP server on 127.0.0.1 that serves exactly
the REST calls KubeP4's Kubernetes placement and node resources code makes, with
the JSON shapes of the real API, so that the official ``kubernetes`` Python client
talks to it unchanged:

* ``GET/POST/DELETE /api/v1/namespaces/{ns}/pods`` and ``.../pods/{name}`` (list,
  create, read, delete, delete-collection; ``labelSelector`` on lists),
  ``GET /api/v1/pods`` (all namespaces);
* watches: ``GET ...pods?watch=true&resourceVersion=..&labelSelector=..&timeoutSeconds=..``,
  answered as a chunked stream of newline-delimited ``{"type": ..., "object": ...}``
  events (ADDED / MODIFIED / DELETED; an ERROR event with a 410 ``Status`` when the
  resourceVersion is older than the kept history, see :meth:`K8sStandin.compact`);
  watching from ``resourceVersion`` unset or ``"0"`` starts with synthetic ADDED
  events for the current objects, as the real server does;
* ``GET /api/v1/nodes[/{name}]``, ``PATCH /api/v1/nodes/{name}`` and
  ``/api/v1/nodes/{name}/status`` with ``application/merge-patch+json``,
  ``application/strategic-merge-patch+json`` (maps merged, lists replaced, ``null``
  deletes) or ``application/json-patch+json``;
* errors as ``Status`` objects: 404 NotFound, 409 AlreadyExists, 422 Invalid,
  400 BadRequest, 415 UnsupportedMediaType.

resourceVersions come from one counter shared by all objects and only grow.

It also plays kube-scheduler: after every change it binds pending pods (no
``spec.nodeName``) to a node that passes, in kube-scheduler's filter order,
``spec.unschedulable``, the not-ready taint (a node whose Ready condition is not
True), ``nodeSelector`` and required node affinity (``In``/``NotIn``/``Exists``/
``DoesNotExist``/``Gt``/``Lt``; terms ORed, expressions ANDed) and the pod's
resource requests against the node's ``allocatable`` minus the requests of the
pods already bound there. Among feasible nodes it prefers the one with the most
free ``kubep4.io/pipeline-slots`` left, then the fewest pods matching the pod's
preferred podAntiAffinity terms, then the node name. Binding sets ``spec.nodeName``,
condition ``PodScheduled=True`` and, standing in for the kubelet, phase Running. A pod
that fits nowhere gets ``PodScheduled=False`` with reason ``Unschedulable`` and
kube-scheduler's message (``0/3 nodes are available: 1 node(s) didn't match Pod's node
affinity/selector, 2 Insufficient kubep4.io/pipeline-slots.``) and is retried whenever
pods or nodes change. Deleting a pod removes it at once (no kubelet, no grace period).

Tests register nodes directly with :meth:`K8sStandin.add_node` and inspect state
with :meth:`K8sStandin.pods` / :meth:`K8sStandin.node`; :attr:`K8sStandin.requests`
logs every request (method, path, query).
"""
from __future__ import annotations

import copy
import datetime
import json
import os
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SLOT_RESOURCE = "kubep4.io/pipeline-slots"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        out = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            out["details"] = self.details
        return out


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ label selectors

def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str) -> list[tuple[str, str, list[str]]]:
    """``a=b,c!=d,e in (x,y),f notin (z),g,!h`` -> [(key, operator, values)]."""
    reqs = []
    for part in _split_top(text or ""):
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", part)
        if m:
            values = [v.strip() for v in m.group(3).split(",") if v.strip()]
            reqs.append((m.group(1), "In" if m.group(2) == "in" else "NotIn", values))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "NotIn", [v.strip()]))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "In", [v.strip()]))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "In", [v.strip()]))
        elif part.startswith("!"):
            reqs.append((part[1:].strip(), "DoesNotExist", []))
        else:
            reqs.append((part, "Exists", []))
    return reqs


def _requirement_matches(labels: dict, key: str, op: str, values: list) -> bool:
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        try:
            have, want = int(labels[key]), int(values[0])
        except (KeyError, ValueError, IndexError):
            return False
        return have > want if op == "Gt" else have < want
    raise ApiError(400, "BadRequest", f"unknown operator {op!r}")


def selector_matches(reqs: list[tuple[str, str, list[str]]], labels: dict | None) -> bool:
    labels = labels or {}
    return all(_requirement_matches(labels, k, op, vals) for k, op, vals in reqs)


def label_selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions); empty matches everything."""
    if selector is None:
        return False
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_requirement_matches(labels, e["key"], e["operator"], e.get("values") or [])
               for e in selector.get("matchExpressions") or [])


# ------------------------------------------------------------------ patches

def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge without list merge keys: lists replace)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):  # strategic-merge directives ($patch, $retainKeys, ...) are not modelled
            continue
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: Any, ops: list) -> Any:
    """RFC 6902 JSON patch: add, replace, remove, test."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op.get("path", ""))
        if not parts:
            raise ApiError(422, "Invalid", "cannot patch the whole object")
        parent = doc
        for p in parts[:-1]:
            if isinstance(parent, list):
                parent = parent[int(p)]
            else:
                if p not in parent:
                    raise ApiError(422, "Invalid", f"path {op.get('path')!r} does not exist")
                parent = parent[p]
        last, kind = parts[-1], op.get("op")
        if kind in ("add", "replace"):
            if kind == "replace" and isinstance(parent, dict) and last not in parent:
                raise ApiError(422, "Invalid", f"replace: path {op.get('path')!r} does not exist")
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(idx, op.get("value"))
                else:
                    parent[idx] = op.get("value")
            else:
                parent[last] = op.get("value")
        elif kind == "remove":
            try:
                del parent[int(last) if isinstance(parent, list) else last]
            except (KeyError, IndexError):
                raise ApiError(422, "Invalid", f"remove: path {op.get('path')!r} does not exist") from None
        elif kind == "test":
            have = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if have != op.get("value"):
                raise ApiError(422, "Invalid", f"test failed at {op.get('path')!r}")
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind!r}")
    return doc


# ------------------------------------------------------------------ quantities

_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: Any) -> float:
    """A resource quantity ("1", "500m", "2Gi") as a number."""
    text = str(value).strip()
    if text.endswith("m") and not text.endswith("Mi"):
        return float(text[:-1]) / 1000
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    if not m or m.group(2) not in _SUFFIX:
        raise ApiError(422, "Invalid", f"quantity {value!r} is not valid")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def pod_requests(pod: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        requests = dict(res.get("limits") or {})  # limits default the requests
        requests.update(res.get("requests") or {})
        for k, v in requests.items():
            out[k] = out.get(k, 0) + quantity(v)
    return out


# ------------------------------------------------------------------ the server

class K8sStandin:
    """A STAND-IN Kubernetes API server + kube-scheduler on 127.0.0.1 (see the module docstring)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, auto_schedule: bool = True):
        self.host = host
        self.port = port
        self.auto_schedule = auto_schedule
        self._cond = threading.Condition()
        self._rv = 0
        self._pods: dict[tuple[str, str], dict] = {}
        self._nodes: dict[str, dict] = {}
        self._events: list[tuple[int, str, str, dict]] = []  # (rv, kind, type, object)
        self._compacted = 0      # watches from a resourceVersion below this get 410 Gone
        self._stopping = False
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.requests: list[tuple[str, str, str]] = []

    # -------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> K8sStandin:
        standin = self

        class Handler(_Handler):
            server_ref = standin

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="k8s-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            for s in list(self._conns):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._httpd = None

    def __enter__(self) -> K8sStandin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def kubeconfig(self, path: str, namespace: str = "default") -> str:
        """Write a kubeconfig pointing at this stand-in; returns the path."""
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "standin",
               "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
               "users": [{"name": "standin", "user": {"token": "standin-token"}}],
               "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin",
                                                            "namespace": namespace}}]}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(doc, f)  # JSON is YAML
        return path

    # -------------------------------------------------------------- test helpers
    def add_node(self, name: str, labels: dict[str, str] | None = None, slots: int | None = None,
                 allocatable: dict[str, str] | None = None, ready: bool = True,
                 unschedulable: bool = False) -> dict:
        """Register a node (as a kubelet would). ``slots`` sets the pipeline-slot resource."""
        alloc = {"cpu": "4", "memory": "8Gi", "pods": "110", **(allocatable or {})}
        if slots is not None:
            alloc[SLOT_RESOURCE] = str(slots)
        with self._cond:
            if name in self._nodes:
                raise ValueError(f"node {name} exists")
            node = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                                 "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                            **(labels or {})}},
                    "spec": {"unschedulable": True} if unschedulable else {},
                    "status": {"capacity": dict(alloc), "allocatable": dict(alloc),
                               "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                               "reason": "KubeletReady" if ready else "KubeletNotReady",
                                               "lastTransitionTime": _now()}],
                               "addresses": [{"type": "Hostname", "address": name}]}}
            self._store_node(node, "ADDED")
            return copy.deepcopy(node)

    def update_node(self, name: str, *, labels: dict[str, str | None] | None = None,
                    allocatable: dict[str, str | None] | None = None, ready: bool | None = None,
                    unschedulable: bool | None = None) -> dict:
        """Change a node as a test (merge semantics: ``None`` removes a label/resource)."""
        with self._cond:
            node = copy.deepcopy(self._node(name))
            if labels:
                node["metadata"]["labels"] = merge_patch(node["metadata"].get("labels") or {}, labels)
            if allocatable:
                for field in ("capacity", "allocatable"):
                    node["status"][field] = merge_patch(node["status"].get(field) or {}, allocatable)
            if ready is not None:
                node["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                                 "lastTransitionTime": _now()}]
            if unschedulable is not None:
                node["spec"]["unschedulable"] = unschedulable
            self._store_node(node, "MODIFIED")
            return copy.deepcopy(node)

    def remove_node(self, name: str) -> None:
        with self._cond:
            node = self._nodes.pop(name)
            self._record("nodes", "DELETED", node)
            self._schedule()

    def pods(self, namespace: str | None = None, selector: str = "") -> list[dict]:
        reqs = parse_label_selector(selector)
        with self._cond:
            return [copy.deepcopy(p) for (ns, _), p in sorted(self._pods.items())
                    if (namespace is None or ns == namespace)
                    and selector_matches(reqs, p["metadata"].get("labels"))]

    def pod(self, namespace: str, name: str) -> dict | None:
        with self._cond:
            p = self._pods.get((namespace, name))
            return copy.deepcopy(p) if p is not None else None

    def node(self, name: str) -> dict | None:
        with self._cond:
            n = self._nodes.get(name)
            return copy.deepcopy(n) if n is not None else None

    def compact(self) -> None:
        """Forget the event history, as an etcd compaction would: every open watch and every
        watch resuming from a resourceVersion seen so far gets 410 Gone (an ERROR event); a
        list made afterwards returns a resourceVersion that can be watched from."""
        with self._cond:
            self._rv += 1
            self._events.clear()
            self._compacted = self._rv
            self._cond.notify_all()

    def schedule(self) -> None:
        """Run a scheduling pass now (useful with ``auto_schedule=False``)."""
        with self._cond:
            self._schedule(force=True)

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    # -------------------------------------------------------------- state (call with the lock held)
    def _record(self, kind: str, etype: str, obj: dict) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._events.append((self._rv, kind, etype, copy.deepcopy(obj)))
        if len(self._events) > 10000:
            drop = len(self._events) - 5000
            self._compacted = self._events[drop - 1][0]
            del self._events[:drop]
        self._cond.notify_all()

    def _store_node(self, node: dict, etype: str) -> None:
        self._nodes[node["metadata"]["name"]] = node
        self._record("nodes", etype, node)
        self._schedule()

    def _node(self, name: str) -> dict:
        node = self._nodes.get(name)
        if node is None:
            raise ApiError(404, "NotFound", f'nodes "{name}" not found', {"name": name, "kind": "nodes"})
        return node

    def _pod(self, ns: str, name: str) -> dict:
        pod = self._pods.get((ns, name))
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        return pod

    def _create_pod(self, ns: str, body: dict) -> dict:
        if not isinstance(body, dict) or body.get("kind", "Pod") != "Pod":
            raise ApiError(400, "BadRequest", "the body of the request was not a Pod")
        pod = copy.deepcopy(body)
        md = pod.setdefault("metadata", {})
        if md.get("namespace") not in (None, "", ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                           "namespace sent on the request")
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
        name = md.get("name") or ""
        problems = []
        if not name:
            problems.append("metadata.name: Required value: name or generateName is required")
        elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            problems.append(f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
                            "consist of lower case alphanumeric characters, '-' or '.'")
        for k, v in (md.get("labels") or {}).items():
            prefix, _, lname = k.rpartition("/")
            if (prefix and not _DNS_SUBDOMAIN.match(prefix)) or len(lname) > 63 or not _LABEL_NAME.match(lname):
                problems.append(f'metadata.labels: Invalid value: "{k}": name part must consist of alphanumeric '
                                "characters, '-', '_' or '.'")
            if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
                problems.append(f'metadata.labels: Invalid value: "{v}": a valid label must be an empty string '
                                "or consist of alphanumeric characters, '-', '_' or '.'")
        spec = pod.get("spec") or {}
        if not spec.get("containers"):
            problems.append("spec.containers: Required value")
        for i, c in enumerate(spec.get("containers") or []):
            res = c.get("resources") or {}
            for rname, q in (res.get("requests") or {}).items():
                if "/" in rname and not rname.startswith("kubernetes.io/"):
                    lim = (res.get("limits") or {}).get(rname)
                    if lim is None or quantity(lim) != quantity(q):
                        problems.append(f"spec.containers[{i}].resources.requests[{rname}]: Invalid value: "
                                        f'"{q}": must be equal to {rname} limit')
                    if quantity(q) != int(quantity(q)):
                        problems.append(f"spec.containers[{i}].resources.requests[{rname}]: Invalid value: "
                                        f'"{q}": must be an integer')
        if problems:
            raise ApiError(422, "Invalid", f'Pod "{name}" is invalid: ' + ", ".join(problems),
                           {"name": name, "kind": "Pod"})
        if (ns, name) in self._pods:
            raise ApiError(409, "AlreadyExists", f'pods "{name}" already exists', {"name": name, "kind": "pods"})
        pod["apiVersion"], pod["kind"] = "v1", "Pod"
        md.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        md.pop("resourceVersion", None)
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        pod["spec"] = spec
        pod["status"] = {"phase": "Pending"}
        if spec.get("nodeName"):  # created already bound (no scheduler)
            pod["status"] = self._bound_status(pod)
        self._pods[(ns, name)] = pod
        self._record("pods", "ADDED", pod)
        created = copy.deepcopy(pod)
        self._schedule()
        return created

    def _delete_pod(self, ns: str, name: str) -> dict:
        pod = self._pods.pop((ns, name), None)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        pod["metadata"]["deletionTimestamp"] = _now()
        pod["metadata"]["deletionGracePeriodSeconds"] = 0
        self._record("pods", "DELETED", pod)
        self._schedule()
        return copy.deepcopy(pod)

    def _patch_node(self, name: str, body: Any, content_type: str, subresource: str) -> dict:
        node = self._node(name)
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
            patched = json_patch(node, body)
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be an object")
            patched = merge_patch(node, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json-patch+json, "
                           "application/merge-patch+json, application/strategic-merge-patch+json")
        new = copy.deepcopy(node)
        if subresource == "status":
            new["status"] = patched.get("status") or {}
        else:  # the main resource ignores status changes
            new["metadata"] = patched.get("metadata") or {}
            new["spec"] = patched.get("spec") or {}
            for fixed in ("name", "uid", "creationTimestamp"):
                if fixed in node["metadata"]:
                    new["metadata"][fixed] = node["metadata"][fixed]
        if new == node:
            return copy.deepcopy(node)
        self._store_node(new, "MODIFIED")
        return copy.deepcopy(new)

    # -------------------------------------------------------------- the stand-in kube-scheduler
    @staticmethod
    def _node_ready(node: dict) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (node.get("status") or {}).get("conditions") or [])

    @staticmethod
    def _affinity_ok(pod: dict, node: dict) -> bool:
        labels = node["metadata"].get("labels") or {}
        spec = pod.get("spec") or {}
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return False
        required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution"))
        if required is None:
            return True
        fields = {"metadata.name": node["metadata"]["name"]}
        for term in required.get("nodeSelectorTerms") or []:
            exprs = term.get("matchExpressions") or []
            field_exprs = term.get("matchFields") or []
            if not exprs and not field_exprs:
                continue  # an empty term matches no objects
            if all(_requirement_matches(labels, e["key"], e["operator"], e.get("values") or []) for e in exprs) \
                    and all(_requirement_matches(fields, e["key"], e["operator"], e.get("values") or [])
                            for e in field_exprs):
                return True
        return False

    def _anti_affinity_penalty(self, pod: dict, node_name: str) -> int:
        terms = ((((pod.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {})
                 .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
        ns = pod["metadata"]["namespace"]
        penalty = 0
        for wt in terms:
            term = wt.get("podAffinityTerm") or {}
            if term.get("topologyKey") not in ("kubernetes.io/hostname", None):
                continue
            namespaces = term.get("namespaces") or [ns]
            for (pns, _), other in self._pods.items():
                if other is pod or other["spec"].get("nodeName") != node_name or pns not in namespaces:
                    continue
                if label_selector_matches(term.get("labelSelector"), other["metadata"].get("labels")):
                    penalty += int(wt.get("weight", 1))
        return penalty

    def _bound_status(self, pod: dict) -> dict:
        now = _now()
        status = {"phase": "Running", "startTime": now,
                  "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                                 {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                                 {"type": "Ready", "status": "True", "lastTransitionTime": now},
                                 {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}
        node = self._nodes.get(pod["spec"]["nodeName"])
        if node is not None:
            status["hostIP"] = "127.0.0.1"
        return status

    def _schedule(self, force: bool = False) -> None:
        if not (self.auto_schedule or force):
            return
        used: dict[str, dict[str, float]] = {}
        for p in self._pods.values():
            n = p["spec"].get("nodeName")
            if n and p["status"].get("phase") not in ("Succeeded", "Failed"):
                u = used.setdefault(n, {})
                for k, v in pod_requests(p).items():
                    u[k] = u.get(k, 0) + v
        pending = sorted((p for p in self._pods.values() if not p["spec"].get("nodeName")),
                         key=lambda p: int(p["metadata"]["resourceVersion"]))
        for pod in pending:
            requests = pod_requests(pod)
            reasons: dict[str, int] = {}
            feasible: list[tuple[float, int, str]] = []
            for name, node in sorted(self._nodes.items()):
                reason = None
                if (node.get("spec") or {}).get("unschedulable"):
                    reason = "node(s) were unschedulable"
                elif not self._node_ready(node):
                    reason = "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
                elif not self._affinity_ok(pod, node):
                    reason = "node(s) didn't match Pod's node affinity/selector"
                else:
                    alloc = (node.get("status") or {}).get("allocatable") or {}
                    u = used.get(name, {})
                    for res in sorted(requests):
                        if requests[res] > 0 and quantity(alloc.get(res, 0)) - u.get(res, 0) < requests[res]:
                            reason = f"Insufficient {res}"
                            break
                if reason is not None:
                    reasons[reason] = reasons.get(reason, 0) + 1
                    continue
                alloc = (node.get("status") or {}).get("allocatable") or {}
                free = quantity(alloc.get(SLOT_RESOURCE, 0)) - used.get(name, {}).get(SLOT_RESOURCE, 0)
                feasible.append((-free, self._anti_affinity_penalty(pod, name), name))
            if feasible:
                node_name = min(feasible)[2]
                pod["spec"]["nodeName"] = node_name
                pod["status"] = self._bound_status(pod)
                u = used.setdefault(node_name, {})
                for k, v in requests.items():
                    u[k] = u.get(k, 0) + v
                self._record("pods", "MODIFIED", pod)
                continue
            if not self._nodes:
                message = "no nodes available to schedule pods"
            else:
                detail = ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))
                message = f"0/{len(self._nodes)} nodes are available: {detail}."
            cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
            current = [c for c in pod["status"].get("conditions") or [] if c.get("type") == "PodScheduled"]
            if current and all(current[0].get(k) == v for k, v in cond.items()):
                continue
            cond["lastTransitionTime"] = _now()
            pod["status"] = {"phase": "Pending", "conditions": [cond]}
            self._record("pods", "MODIFIED", pod)

    # -------------------------------------------------------------- watch
    def _watch(self, handler: _Handler, kind: str, ns: str | None, selector: str, rv: str,
               timeout: float | None) -> None:
        reqs = parse_label_selector(selector)
        deadline = time.monotonic() + timeout if timeout else None

        def wanted(obj: dict) -> bool:
            if kind == "pods" and ns is not None and obj["metadata"].get("namespace") != ns:
                return False
            return selector_matches(reqs, obj["metadata"].get("labels"))

        handler.start_chunked()
        with self._cond:
            if rv in ("", "0"):
                objs = self._pods.values() if kind == "pods" else self._nodes.values()
                initial = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in objs if wanted(o)]
                cursor = self._rv
            else:
                try:
                    cursor = int(rv)
                except ValueError:
                    cursor = -1
                initial = []
                if cursor < self._compacted or cursor < 0:
                    status = ApiError(410, "Expired", f"too old resource version: {rv} ({self._compacted})")
                    initial = [{"type": "ERROR", "object": status.status()}]
                    cursor = None
        try:
            for ev in initial:
                handler.write_chunk(json.dumps(ev).encode() + b"\n")
            if cursor is None:
                return
            while True:
                with self._cond:
                    while not self._stopping and cursor >= self._compacted and \
                            (not self._events or self._events[-1][0] <= cursor):
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            break
                        self._cond.wait(timeout=min(left, 1.0) if left is not None else 1.0)
                    if self._stopping:
                        return
                    if cursor < self._compacted:
                        status = ApiError(410, "Expired", f"too old resource version: {cursor} ({self._compacted})")
                        batch = [{"type": "ERROR", "object": status.status()}]
                        cursor = None
                    else:
                        batch = [{"type": etype, "object": obj} for erv, k, etype, obj in self._events
                                 if erv > cursor and k == kind and wanted(obj)]
                        if self._events:
                            cursor = max(cursor, self._events[-1][0])
                for ev in batch:
                    handler.write_chunk(json.dumps(ev).encode() + b"\n")
                if cursor is None or (deadline is not None and time.monotonic() >= deadline):
                    return
        finally:
            handler.end_chunked()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: K8sStandin

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server_ref._conns.add(self.connection)

    def finish(self) -> None:
        self.server_ref._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -------------------------------------------------------------- plumbing
    def _send(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_chunked(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "BadRequest", "the request body is not valid JSON") from None

    def _dispatch(self, method: str) -> None:
        s = self.server_ref
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        s.requests.append((method, parts.path, parts.query))
        try:
            body = self._body() if method in ("POST", "PATCH", "PUT", "DELETE") else None
            self._route(method, parts.path.rstrip("/"), query, body)
        except ApiError as e:
            self._send(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, method: str, path: str, q: dict, body: Any) -> None:
        s = self.server_ref
        watch = q.get("watch", "").lower() in ("true", "1")
        selector = q.get("labelSelector", "")
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?", path)
        all_ns = path == "/api/v1/pods"
        if all_ns or m:
            ns_filter = None if all_ns else m.group(1)
            name = None if all_ns else m.group(2)
            if name is None and method == "GET":
                if watch:
                    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
                    return s._watch(self, "pods", ns_filter, selector, q.get("resourceVersion", ""), timeout)
                reqs = parse_label_selector(selector)
                with s._cond:
                    items = [copy.deepcopy(p) for (ns, _), p in sorted(s._pods.items())
                             if (ns_filter is None or ns == ns_filter)
                             and selector_matches(reqs, p["metadata"].get("labels"))]
                    rv = str(s._rv)
                return self._send(200, {"kind": "PodList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": rv}, "items": items})
            if name is None and method == "POST" and not all_ns:
                with s._cond:
                    return self._send(201, s._create_pod(ns_filter, body))
            if name is None and method == "DELETE" and not all_ns:
                reqs = parse_label_selector(selector)
                with s._cond:
                    names = [n for (ns, n), p in sorted(s._pods.items())
                             if ns == ns_filter and selector_matches(reqs, p["metadata"].get("labels"))]
                    items = [s._delete_pod(ns_filter, n) for n in names]
                    rv = str(s._rv)
                return self._send(200, {"kind": "PodList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": rv}, "items": items})
            if name is not None and method == "GET":
                with s._cond:
                    return self._send(200, copy.deepcopy(s._pod(ns_filter, name)))
            if name is not None and method == "DELETE":
                with s._cond:
                    return self._send(200, s._delete_pod(ns_filter, name))
        m = re.fullmatch(r"/api/v1/nodes(?:/([^/]+)(/status)?)?", path)
        if m:
            name, sub = m.group(1), m.group(2)
            if name is None and method == "GET":
                if watch:
                    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
                    return s._watch(self, "nodes", None, selector, q.get("resourceVersion", ""), timeout)
                reqs = parse_label_selector(selector)
                with s._cond:
                    items = [copy.deepcopy(n) for _, n in sorted(s._nodes.items())
                             if selector_matches(reqs, n["metadata"].get("labels"))]
                    rv = str(s._rv)
                return self._send(200, {"kind": "NodeList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": rv}, "items": items})
            if name is not None and method == "GET":
                with s._cond:
                    return self._send(200, copy.deepcopy(s._node(name)))
            if name is not None and method == "PATCH":
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                with s._cond:
                    return self._send(200, s._patch_node(name, body, ctype, "status" if sub else ""))
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({method} {path})")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")
