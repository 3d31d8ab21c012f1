"""Kubernetes placement: kube-scheduler chooses the node, KubeP4 chooses the device.

With ``--placement=kubernetes`` the controller uses :class:`KubernetesPlacer`
instead of the builtin scheduler. For every replica it creates one Pod (the
pause image; nothing runs) in the configured namespace:

* name ``kubep4-<namespace>-<deployment>-<replica>`` (:func:`pod_name`; DNS-safe,
  at most 63 characters, shortened with a hash when longer), labels
  ``kubep4.io/namespace``, ``kubep4.io/deployment``, ``kubep4.io/replica``;
* ``nodeSelector`` ``kubep4.io/target-<target>: "true"`` / ``kubep4.io/arch-<arch>: "true"``
  for the deployment's target and arch, and the deployment's label selector as
  required node affinity (matchLabels become ``In`` expressions);
* a request and limit of 1 ``kubep4.io/pipeline-slots`` (the node agents advertise
  their slots on their Kubernetes node, see services.node_agent.kube_resources);
* a preferred podAntiAffinity on ``kubernetes.io/hostname`` against the other
  replicas of the deployment.

kube-scheduler binds the pod. ``place()`` then maps the pod's node to the KubeP4
node(s) whose ``spec.kubernetes_node`` is that node (a Node with no
``kubernetes_node`` stands for the Kubernetes node of the same name) and lets the
builtin scheduler pick a device among those nodes' devices only. While the pod is
pending the replica is reported unschedulable with kube-scheduler's own message
(``0/3 nodes are available: 3 Insufficient kubep4.io/pipeline-slots.``) or with
"waiting for kube-scheduler"; a pod watch requeues the deployment whenever its pods
change. The Placement written to etcd is what the node agents act on: Kubernetes
holds no KubeP4 state, and every pod is derived from etcd and can be recreated.

Pods outlive controllers: a restarted controller lists them by label and adopts
them (a 409 on create also means "adopt"), so no replica is ever placed twice.
Pods are deleted when their placement is released (``released``), when the
deployment is gone (``deleted``), and by a collector that removes pods whose
replica no longer exists in etcd and has no placement (scale-down, deletions while
no controller ran).

The ``kubernetes`` client is synchronous: calls run in threads
(``asyncio.to_thread``), the pod watch runs in its own thread and hands events
to the event loop with ``call_soon_threadsafe``, relisting when the watch expires
(410 Gone) or breaks.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from kubep4.extras import MissingExtra

try:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes import watch as k8s_watch
    from kubernetes.client.exceptions import ApiException
except ModuleNotFoundError as e:  # the kube extra
    raise MissingExtra("kubernetes", "--placement=kubernetes") from e

from kubep4 import labels
from kubep4 import store as st
from kubep4.backoff import Backoff
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.controller import scheduling as sched
from services.controller.deployments import placement_name
from services.controller.placement import Scope
from services.controller.scheduling.cache import SchedulerCache
from services.controller.view import ClusterView

log = logging.getLogger(__name__)

__all__ = [
    "ANNOTATION_CONSTRAINTS",
    "LABEL_DEPLOYMENT",
    "LABEL_NAMESPACE",
    "LABEL_REPLICA",
    "PAUSE_IMAGE",
    "WAITING_FAILURE",
    "WAITING_MESSAGE",
    "KubernetesPlacer",
    "constraints_hash",
    "kubernetes_placer",
    "load_configuration",
    "node_affinity",
    "pod_manifest",
    "pod_name",
]

LABEL_NAMESPACE = "kubep4.io/namespace"
LABEL_DEPLOYMENT = "kubep4.io/deployment"
LABEL_REPLICA = "kubep4.io/replica"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubep4-controller"
#: Hash of the scheduling constraints (target, arch, selector) the pod was built from.
ANNOTATION_CONSTRAINTS = "kubep4.io/constraints"
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
WAITING_MESSAGE = "waiting for kube-scheduler"
#: ``Decision.failure`` of a replica whose pod kube-scheduler has not decided on yet: pending, not unschedulable.
WAITING_FAILURE = "Pending"
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"

_MAX_NAME = 63
_TERMINAL = ("Succeeded", "Failed")


# ------------------------------------------------------------------ configuration

def load_configuration(kubeconfig: str | None = None, context: str | None = None,
                       host: str | None = None) -> k8s.Configuration:
    """Client configuration: ``host`` if given (no auth), else in-cluster (service account),
    else ``kubeconfig`` / ``$KUBECONFIG`` / ``~/.kube/config``."""
    if host:
        return k8s.Configuration(host=host)
    cfg = k8s.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
            return cfg
        except k8s_config.ConfigException as e:
            log.info("not using the in-cluster config: %s", e)
    # the client reads $KUBECONFIG at import time; read it now (it may list several files)
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                    persist_config=False)
    except (k8s_config.ConfigException, OSError) as e:
        raise RuntimeError(f"--placement=kubernetes: no Kubernetes configuration (in-cluster, KUBECONFIG or "
                           f"~/.kube/config): {e}") from e
    return cfg


def kubernetes_placer(settings: Any) -> KubernetesPlacer:
    """The placer for the controller's ``--placement=kubernetes`` (settings: the controller Settings).

    Uses ``settings.kube_namespace`` and ``settings.kube_image``, and if present
    ``settings.kubeconfig`` / ``settings.kube_context`` / ``settings.kube_host``.
    """
    cfg = load_configuration(kubeconfig=getattr(settings, "kubeconfig", "") or None,
                             context=getattr(settings, "kube_context", "") or None,
                             host=getattr(settings, "kube_host", "") or None)
    return KubernetesPlacer(configuration=cfg, namespace=getattr(settings, "kube_namespace", "") or "kubep4",
                            image=getattr(settings, "kube_image", "") or PAUSE_IMAGE)


# ------------------------------------------------------------------ pods

def _dns_safe(text: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    return re.sub(r"-{2,}", "-", out).strip("-")


def _short_hash(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:10]


def pod_name(namespace: str, deployment: str, replica: int, *, hashed: bool = False) -> str:
    """``kubep4-<ns>-<deployment>-<replica>``, DNS-1123 safe, at most 63 characters.

    Longer (or ``hashed=True``) names are cut and end in a hash of the replica's
    identity. The hashed form is also the fallback when the plain name is taken by
    a pod of another replica (``a-b``/``c`` vs ``a``/``b-c``).
    """
    base = _dns_safe(f"kubep4-{namespace}-{deployment}-{replica}")
    if not hashed and len(base) <= _MAX_NAME and base == f"kubep4-{namespace}-{deployment}-{replica}":
        return base
    h = _short_hash(namespace, deployment, replica)
    return f"{base[:_MAX_NAME - len(h) - 1].rstrip('-')}-{h}"


def node_affinity(selector: kr.LabelSelector | None) -> dict | None:
    """The deployment's label selector as required node affinity (one term), or None."""
    reqs = labels.node_selector_terms(selector)
    if not reqs:
        return None
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": reqs}]}}


def _node_selector(target: str, arch: str) -> dict[str, str]:
    out = {}
    if target:
        out[sched.TARGET_LABEL_PREFIX + target] = "true"
    if arch:
        out[sched.ARCH_LABEL_PREFIX + arch] = "true"
    return out


def constraints_hash(request: sched.Request) -> str:
    """What the pod's scheduling constraints were built from; a changed hash means a new pod."""
    doc = {"target": request.target, "arch": request.arch,
           "selector": labels.node_selector_terms(request.selector)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def pod_manifest(request: sched.Request, *, namespace: str = "kubep4", image: str = PAUSE_IMAGE,
                 name: str | None = None) -> dict:
    """The placement Pod of one replica, as the JSON the Kubernetes API takes."""
    ns, dep, replica = request.namespace, request.deployment, request.replica
    spec: dict[str, Any] = {
        "containers": [{
            "name": "placement", "image": image,
            "resources": {"requests": {sched.SLOT_RESOURCE: "1"}, "limits": {sched.SLOT_RESOURCE: "1"}},
        }],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"topologyKey": HOSTNAME_TOPOLOGY, "labelSelector": {
                "matchLabels": {LABEL_NAMESPACE: ns, LABEL_DEPLOYMENT: dep}}},
        }]}},
    }
    selector = _node_selector(request.target, request.arch)
    if selector:
        spec["nodeSelector"] = selector
    affinity = node_affinity(request.selector)
    if affinity:
        spec["affinity"]["nodeAffinity"] = affinity
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name or pod_name(ns, dep, replica), "namespace": namespace,
            "labels": {LABEL_NAMESPACE: ns, LABEL_DEPLOYMENT: dep, LABEL_REPLICA: str(replica),
                       LABEL_MANAGED_BY: MANAGED_BY},
            "annotations": {ANNOTATION_CONSTRAINTS: constraints_hash(request)},
        },
        "spec": spec,
    }


_Key = tuple[str, str, int]  # (KubeP4 namespace, deployment, replica)


def _key_of(pod: k8s.V1Pod) -> _Key | None:
    labels = pod.metadata.labels or {}
    try:
        return labels[LABEL_NAMESPACE], labels[LABEL_DEPLOYMENT], int(labels[LABEL_REPLICA])
    except (KeyError, ValueError):
        return None


def _scheduling_state(pod: k8s.V1Pod | None) -> tuple:
    """What place() looks at; a pod event that changes it requeues the deployment."""
    if pod is None:
        return ()
    unsched = ""
    for c in (pod.status.conditions if pod.status else None) or []:
        if c.type == "PodScheduled" and c.status == "False":
            unsched = f"{c.reason}: {c.message}"
    return (pod.metadata.uid, pod.spec.node_name if pod.spec else None, unsched,
            pod.status.phase if pod.status else None, pod.metadata.deletion_timestamp is not None)


def _unscheduled(message: str, candidates: int = 0) -> sched.Decision:
    return sched.Decision(None, 0.0, candidates, 0, {}, message)


def _waiting() -> sched.Decision:
    return sched.Decision(None, 0.0, 0, 0, {}, WAITING_MESSAGE, failure=WAITING_FAILURE)


def _pending(pod: k8s.V1Pod | None) -> bool:
    """Not bound, and kube-scheduler has not said it is unschedulable."""
    if pod is None or (pod.spec and pod.spec.node_name):
        return False
    return not any(c.type == "PodScheduled" and c.status == "False"
                   for c in (pod.status.conditions if pod.status else None) or [])


# ------------------------------------------------------------------ the placer

class KubernetesPlacer:
    """A controller placer backed by kube-scheduler (the interface of placement.Placer).

    Give an ``api_client`` (``kubernetes.client.ApiClient``), a ``configuration``
    or a ``host`` (tests); otherwise the kube config is loaded as in
    :func:`load_configuration`. ``namespace`` holds the placement pods.
    """

    def __init__(self, api_client: k8s.ApiClient | None = None, *, configuration: k8s.Configuration | None = None,
                 host: str | None = None, namespace: str = "kubep4", image: str = PAUSE_IMAGE,
                 watch_timeout: int = 30, request_timeout: float = 10.0, gc_interval: float = 60.0,
                 retry_interval: float = 10.0, bind_wait: float = 0.5):
        if api_client is None:
            api_client = k8s.ApiClient(configuration or load_configuration(host=host))
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.namespace = namespace
        self.image = image
        self.watch_timeout = watch_timeout
        self.request_timeout = request_timeout
        self.gc_interval = gc_interval
        self.retry_interval = retry_interval
        self.bind_wait = bind_wait
        self.policy = sched.BuiltinScheduler(indexed=False)  # per call, over one Kubernetes node's devices
        self.synced = asyncio.Event()                         # the pod cache has been listed once
        self._pods: dict[_Key, k8s.V1Pod] = {}
        self._keys: dict[str, _Key] = {}                      # pod name -> key
        self._consumed: set[str] = set()                      # uids of pods that produced a placement
        self._store: st.Store | None = None
        self._requeue: Callable[[str, str], None] = lambda ns, name: None
        self._view: ClusterView | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._watch: k8s_watch.Watch | None = None
        self._retry_pending: set[tuple[str, str]] = set()
        self._gc_wanted = asyncio.Event()
        self._waiters: dict[_Key, list[asyncio.Future]] = {}

    # -------------------------------------------------------------- lifecycle
    async def start(self, store: st.Store, requeue: Callable[[str, str], None], view: ClusterView) -> None:
        """Run until cancelled: the pod watch (thread) and the pod collector. Nodes, deployments and
        placements are read from the controller's own caches (``view``)."""
        self._store = store
        self._requeue = requeue
        self._view = view
        view.placements.add_listener(self._placement_changed)
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        thread = threading.Thread(target=self._watch_pods, name="kubep4-pod-watch", daemon=True)
        thread.start()
        try:
            await self._collector()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the pod watch thread (it exits at once if blocked on the stream)."""
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()
            resp = getattr(w, "_resp", None)
            for fn in ("shutdown", "close"):
                try:
                    getattr(resp, fn, lambda: None)()
                except Exception:  # already closed
                    pass

    def close(self) -> None:
        self.stop()
        self.api_client.close()

    # -------------------------------------------------------------- Placer interface
    async def scope(self, request: sched.Request) -> Scope | sched.Decision:
        """Outside the controller's scheduling lock: make sure the replica's pod exists and wait (briefly)
        for kube-scheduler to bind it; the replica may then use the KubeP4 nodes on that Kubernetes node."""
        try:
            pod = await self._ensure_pod(request)
        except ApiException as e:
            self._retry_later(request.namespace, request.deployment)
            return _unscheduled(f"Kubernetes API: cannot create the placement pod: {_api_error(e)}")
        except Exception as e:  # connection errors from urllib3
            self._retry_later(request.namespace, request.deployment)
            return _unscheduled(f"Kubernetes API unreachable: {e}")
        if pod is None:
            self._retry_later(request.namespace, request.deployment)
            return _waiting()
        where = f"pod {self.namespace}/{pod.metadata.name}"
        node = pod.spec.node_name if pod.spec else None
        if node:
            kubep4_nodes = await self._kubep4_nodes_on(node)
            if not kubep4_nodes:
                return _unscheduled(f"{where} is on Kubernetes node {node}, where no KubeP4 node agent "
                                    "is registered")
            return Scope(nodes=frozenset(kubep4_nodes), context=pod)
        for c in (pod.status.conditions if pod.status else None) or []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                return _unscheduled(c.message or f"{where} is unschedulable")
        self._retry_later(request.namespace, request.deployment)
        return _waiting()

    def decide(self, request: sched.Request, cache: SchedulerCache, scope: Scope) -> sched.Decision:
        """Inside the lock: the builtin policy over the devices of the pod's node only (a scan: a few)."""
        mine = [d for d in cache.devices() if d.node in scope.nodes]
        return self.policy.schedule(request, mine)

    def decided(self, request: sched.Request, scope: Scope, decision: sched.Decision) -> sched.Decision:
        pod = scope.context
        node = pod.spec.node_name
        if decision.scheduled:
            self._consumed.add(pod.metadata.uid)
            log.info("%s/%s replica %d: kube-scheduler chose %s -> %s/%s", request.namespace,
                     request.deployment, request.replica, node, decision.device.node, decision.device.device)
        else:
            decision.message = (f"pod {self.namespace}/{pod.metadata.name} was bound to Kubernetes node {node} "
                                f"(KubeP4 node {', '.join(sorted(scope.nodes))}), but no device there can take "
                                f"the replica: {decision.message}")
        return decision

    async def released(self, namespace: str, deployment: str, replica: int) -> None:
        pod = self._pods.get((namespace, deployment, replica))
        names = {pod.metadata.name} if pod is not None else {pod_name(namespace, deployment, replica)}
        for name in names:
            await self._delete_pod(name, (namespace, deployment, replica))

    async def deleted(self, namespace: str, deployment: str) -> None:
        if self.synced.is_set():
            pods = [p for k, p in self._pods.items() if k[:2] == (namespace, deployment)]
        else:
            try:
                pods = await self._list(f"{LABEL_NAMESPACE}={namespace},{LABEL_DEPLOYMENT}={deployment}")
            except Exception as e:
                log.warning("cannot list the pods of %s/%s: %s", namespace, deployment, e)
                return
        for p in pods:
            await self._delete_pod(p.metadata.name, _key_of(p))

    # -------------------------------------------------------------- pods
    def _call(self, fn: Callable, *args: Any, **kwargs: Any):
        kwargs.setdefault("_request_timeout", self.request_timeout)
        return asyncio.to_thread(fn, *args, **kwargs)

    async def _list(self, selector: str) -> list[k8s.V1Pod]:
        return (await self._call(self.core.list_namespaced_pod, self.namespace, label_selector=selector)).items

    def _remember(self, pod: k8s.V1Pod, *, replace: bool) -> k8s.V1Pod:
        key = _key_of(pod)
        if key is None:
            return pod
        if not replace and key in self._pods:
            return self._pods[key]
        old = self._pods.get(key)
        if old is not None and old.metadata.name != pod.metadata.name:
            self._keys.pop(old.metadata.name, None)
        self._pods[key] = pod
        self._keys[pod.metadata.name] = key
        return pod

    def _forget(self, name: str, uid: str | None = None) -> None:
        key = self._keys.get(name)
        if key is None:
            return
        pod = self._pods.get(key)
        if pod is not None and pod.metadata.name == name and (uid is None or pod.metadata.uid == uid):
            del self._pods[key]
            self._keys.pop(name, None)
            self._consumed.discard(pod.metadata.uid)

    async def _ensure_pod(self, request: sched.Request) -> k8s.V1Pod | None:
        """The replica's pod (adopted or created), or None while an unusable one goes away."""
        key = (request.namespace, request.deployment, request.replica)
        pod = self._pods.get(key)
        if pod is None:
            pod = await self._create(request)
        if pod is None or pod.metadata.deletion_timestamp is not None:
            return None
        why = ""
        if (pod.metadata.annotations or {}).get(ANNOTATION_CONSTRAINTS) != constraints_hash(request):
            why = "the deployment's target, arch or selector changed"
        elif pod.status is not None and pod.status.phase in _TERMINAL:
            why = f"the pod is {pod.status.phase}"
        elif request.exclude_devices and pod.metadata.uid in self._consumed:
            why = "the replica is moving off its device"
        if why:
            log.info("%s/%s replica %d: replacing pod %s (%s)", *key, pod.metadata.name, why)
            await self._delete_pod(pod.metadata.name, key)
            return None  # its DELETED event requeues the deployment, and the next place() creates a new one
        return pod

    async def _create(self, request: sched.Request) -> k8s.V1Pod | None:
        key = (request.namespace, request.deployment, request.replica)
        for hashed in (False, True):
            name = pod_name(*key, hashed=hashed)
            body = k8s.V1Pod.from_dict(pod_manifest(request, namespace=self.namespace, image=self.image,
                                                     name=name))
            try:
                created = await self._call(self.core.create_namespaced_pod, self.namespace, body)
                log.info("%s/%s replica %d: created pod %s/%s", *key, self.namespace, name)
                return await self._wait_for_scheduler(key, self._remember(created, replace=False))
            except ApiException as e:
                if e.status != 409:
                    raise
            try:  # the name is taken: ours from an earlier controller (adopt), or another replica's
                existing = await self._call(self.core.read_namespaced_pod, name, self.namespace)
            except ApiException as e:
                if e.status == 404:
                    return None  # deleted meanwhile; retried on the next reconcile
                raise
            if _key_of(existing) == key:
                log.info("%s/%s replica %d: adopted pod %s/%s", *key, self.namespace, name)
                return self._remember(existing, replace=False)
        raise ApiException(status=409, reason=f"pod names {pod_name(*key)!r} and {pod_name(*key, hashed=True)!r} "
                                              "belong to other pods")

    async def _delete_pod(self, name: str, key: _Key | None) -> None:
        try:
            await self._call(self.core.delete_namespaced_pod, name, self.namespace, grace_period_seconds=0)
            log.info("deleted pod %s/%s", self.namespace, name)
        except ApiException as e:
            if e.status != 404:
                log.warning("cannot delete pod %s/%s: %s", self.namespace, name, _api_error(e))
                if key is not None:
                    self._retry_later(key[0], key[1])
                return
        except Exception as e:
            log.warning("cannot delete pod %s/%s: %s", self.namespace, name, e)
            return
        self._forget(name)

    async def _wait_for_scheduler(self, key: _Key, pod: k8s.V1Pod) -> k8s.V1Pod | None:
        """Give kube-scheduler up to ``bind_wait`` seconds to decide on a pod just created, so that
        a replica is rarely reported as waiting. (It holds the controller's scheduling lock: keep it short.)"""
        if self.bind_wait <= 0 or self._loop is None or self._stop.is_set():
            return pod
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bind_wait
        while _pending(pod) and loop.time() < deadline:
            fut = loop.create_future()
            waiters = self._waiters.setdefault(key, [])
            waiters.append(fut)
            try:
                await asyncio.wait_for(fut, deadline - loop.time())
            except TimeoutError:
                break
            finally:
                if fut in waiters:
                    waiters.remove(fut)
                if not waiters:
                    self._waiters.pop(key, None)
            pod = self._pods.get(key)
        return pod

    def _wake(self, key: _Key) -> None:
        for fut in self._waiters.pop(key, []):
            if not fut.done():
                fut.set_result(None)

    def _retry_later(self, namespace: str, deployment: str) -> None:
        """Safety net: requeue after retry_interval even if no pod event arrives."""
        if self._loop is None or (namespace, deployment) in self._retry_pending:
            return
        self._retry_pending.add((namespace, deployment))

        def fire() -> None:
            self._retry_pending.discard((namespace, deployment))
            self._requeue(namespace, deployment)
        self._loop.call_later(self.retry_interval, fire)

    # -------------------------------------------------------------- nodes
    async def _kubep4_nodes_on(self, kube_node: str) -> set[str]:
        """KubeP4 nodes whose agent runs on ``kube_node`` (the controller's Node cache, by its index)."""
        if self._view is None:
            return set()
        return {n.metadata.name for n in self._view.nodes.by("kubernetes_node", kube_node)}

    # -------------------------------------------------------------- the pod watch (a thread)
    def _post(self, fn: Callable, *args: Any) -> bool:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
            return True
        except RuntimeError:  # the loop is closed
            self._stop.set()
            return False

    def _watch_pods(self) -> None:
        rv: str | None = None
        backoff = Backoff(initial=0.2, cap=5.0)
        selector = LABEL_DEPLOYMENT
        while not self._stop.is_set():
            try:
                if rv is None:
                    lst = self.core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                        _request_timeout=self.request_timeout)
                    rv = lst.metadata.resource_version
                    if not self._post(self._replace_all, lst.items):
                        return
                self._watch = w = k8s_watch.Watch()
                for ev in w.stream(self.core.list_namespaced_pod, self.namespace, label_selector=selector,
                                   resource_version=rv, timeout_seconds=self.watch_timeout,
                                   allow_watch_bookmarks=True, _request_timeout=self.watch_timeout + 15):
                    if self._stop.is_set():
                        return
                    if ev["type"] == "BOOKMARK":
                        rv = w.resource_version or rv
                        continue
                    pod = ev["object"]
                    rv = pod.metadata.resource_version or rv
                    if not self._post(self._on_pod_event, ev["type"], pod):
                        return
                backoff.reset()
            except ApiException as e:
                if self._stop.is_set():
                    return
                if e.status == 410:
                    log.info("pod watch expired (%s); relisting", e.reason)
                    rv = None
                    continue
                delay = backoff.next()
                log.warning("pod watch: %s; retrying in %.1fs", _api_error(e), delay)
                self._stop.wait(delay)
            except Exception as e:  # connection errors, timeouts
                if self._stop.is_set():
                    return
                delay = backoff.next()
                log.warning("pod watch: %r; retrying in %.1fs", e, delay)
                self._stop.wait(delay)

    def _on_pod_event(self, etype: str, pod: k8s.V1Pod) -> None:
        key = _key_of(pod)
        if key is None:
            return
        if etype == "DELETED":
            self._forget(pod.metadata.name, pod.metadata.uid)
            self._wake(key)
            self._requeue(key[0], key[1])
            return
        before = self._pods.get(key)
        if before is not None and before.metadata.name != pod.metadata.name:
            return  # a stray duplicate (another name for the same replica); the collector looks at it
        self._remember(pod, replace=True)
        if _scheduling_state(before) != _scheduling_state(pod):
            self._wake(key)
            self._requeue(key[0], key[1])

    def _replace_all(self, pods: list[k8s.V1Pod]) -> None:
        before = self._pods
        self._pods, self._keys = {}, {}
        for p in pods:
            self._remember(p, replace=False)
        for key in set(before) | set(self._pods):
            if _scheduling_state(before.get(key)) != _scheduling_state(self._pods.get(key)):
                self._wake(key)
                self._requeue(key[0], key[1])
        if not self.synced.is_set():
            # pods that already carry a placement were consumed by an earlier controller
            self._consumed |= {p.metadata.uid for p in self._pods.values() if p.spec and p.spec.node_name}
        self.synced.set()
        self._gc_wanted.set()

    # -------------------------------------------------------------- the pod collector
    def _placement_changed(self, old: kr.Placement | None, new: kr.Placement | None) -> None:
        """A deleted placement may leave a pod behind (scale-down): have the collector look."""
        if new is None:
            self._gc_wanted.set()

    async def _collector(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._gc_wanted.wait(), self.gc_interval)
            except TimeoutError:
                pass
            self._gc_wanted.clear()
            if not self.synced.is_set():
                continue
            try:
                await self.collect()
            except (st.Unavailable, ApiException) as e:
                log.warning("pod collector: %s", e)

    async def collect(self) -> list[str]:
        """Delete pods whose replica is gone from etcd (no deployment wanting it, no placement).
        Returns the names of the pods deleted."""
        assert self._view is not None
        deleted = []
        for key, pod in list(self._pods.items()):
            ns, dep, replica = key
            d = self._view.deployments.get((ns, dep))
            if d is not None and not d.metadata.HasField("deletion_timestamp") and replica < d.spec.replicas:
                continue
            if self._view.placements.get((ns, placement_name(dep, replica))) is not None:
                continue  # still placed: its deletion brings us back
            if self._pods.get(key) is pod:
                await self._delete_pod(pod.metadata.name, key)
                deleted.append(pod.metadata.name)
        return deleted


def _api_error(e: ApiException) -> str:
    try:
        body = json.loads(e.body or "")
        if isinstance(body, dict) and body.get("message"):
            return f"{e.status} {body.get('reason', e.reason)}: {body['message']}"
    except (TypeError, ValueError):
        pass
    return f"{e.status} {e.reason}"
