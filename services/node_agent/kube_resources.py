"""Advertise a node's P4 devices to Kubernetes, as a device plugin would.

For ``--placement=kubernetes`` kube-scheduler must see, on the Kubernetes node a
node agent runs on:

* the extended resource ``kubep4.io/pipeline-slots`` in ``status.capacity`` and
  ``status.allocatable``: the slots of the node's devices. kube-scheduler
  subtracts the requests of the placement pods bound to the node itself, so this
  is the number of slots the node *offers*, not what is left;
* labels ``kubep4.io/target-<target>: "true"`` and ``kubep4.io/arch-<arch>: "true"``
  for every device (one key per value), plus the devices' own labels, so that a
  deployment's target, arch and label selector can become node affinity.

Labels this module set earlier and no longer wants are removed; their keys are
kept in the node annotation ``kubep4.io/managed-labels``. Keys under the reserved
``kubernetes.io`` / ``k8s.io`` prefixes are never written.

:func:`advertise_slots` is synchronous client code (``kubernetes.client.CoreV1Api``);
call it from asyncio with ``asyncio.to_thread``. It reads the node and writes only
what differs, so calling it periodically is cheap and repairs a kubelet restart
(which drops extended resources no device plugin owns). :func:`keep_advertised`
is the node agent's loop around it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping

from kubep4.extras import MissingExtra

try:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
except ModuleNotFoundError as e:  # the kube extra
    raise MissingExtra("kubernetes", "--kubernetes-node") from e

from kubep4.backoff import Backoff
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

log = logging.getLogger(__name__)

__all__ = [
    "ARCH_LABEL_PREFIX",
    "MANAGED_LABELS_ANNOTATION",
    "SLOT_RESOURCE",
    "TARGET_LABEL_PREFIX",
    "advertise_slots",
    "core_api",
    "keep_advertised",
    "node_labels",
    "node_slots",
]

SLOT_RESOURCE = "kubep4.io/pipeline-slots"
TARGET_LABEL_PREFIX = "kubep4.io/target-"
ARCH_LABEL_PREFIX = "kubep4.io/arch-"
MANAGED_LABELS_ANNOTATION = "kubep4.io/managed-labels"

_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_KEY_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _reserved(key: str) -> bool:
    prefix = key.rpartition("/")[0]
    return any(prefix == p or prefix.endswith("." + p) for p in ("kubernetes.io", "k8s.io"))


def _valid(key: str, value: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _KEY_PREFIX.match(prefix)):
        return False
    return bool(name) and len(name) <= 63 and bool(_KEY_NAME.match(name)) \
        and len(value) <= 63 and bool(_VALUE.match(value))


def node_slots(devices: Iterable[kr.Device]) -> int:
    """Pipeline slots a node offers: the sum over its devices (``pipeline_slots`` 0 means 1)."""
    return sum(d.pipeline_slots if d.pipeline_slots > 0 else 1 for d in devices)


def node_labels(devices: Iterable[kr.Device], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Kubernetes node labels for these devices: target/arch keys plus the device labels
    (the first device wins a conflicting key) and ``extra`` (e.g. the KubeP4 node's labels).
    Reserved or invalid keys/values are left out."""
    out: dict[str, str] = {}
    devices = list(devices)
    for d in devices:
        if d.target:
            out[TARGET_LABEL_PREFIX + d.target] = "true"
        if d.arch:
            out[ARCH_LABEL_PREFIX + d.arch] = "true"
    for source in [dict(extra or {})] + [dict(d.labels) for d in devices]:
        for k, v in source.items():
            out.setdefault(k, v)
    return {k: v for k, v in out.items() if not _reserved(k) and _valid(k, v)}


def advertise_slots(api: k8s.CoreV1Api, kube_node: str, free_slots: int,
                    labels: Mapping[str, str] | None = None, *, request_timeout: float = 10.0) -> bool:
    """Make Kubernetes node ``kube_node`` offer ``free_slots`` pipeline slots and carry ``labels``.

    ``free_slots`` is what the node offers to placement pods (normally
    :func:`node_slots` of its healthy devices; kube-scheduler subtracts the pods
    already bound there). ``labels`` are typically :func:`node_labels`; labels set
    by an earlier call and missing now are removed. Patches ``/api/v1/nodes/{name}``
    (labels, strategic merge) and ``/api/v1/nodes/{name}/status`` (capacity and
    allocatable, strategic merge) only when something differs. Returns True if it
    wrote anything. Raises ``kubernetes.client.ApiException`` (404: no such node).
    """
    if free_slots < 0:
        raise ValueError(f"free_slots must be >= 0, got {free_slots}")
    want = {k: v for k, v in (labels or {}).items()}
    bad = [k for k, v in want.items() if _reserved(k) or not _valid(k, v)]
    if bad:
        raise ValueError(f"labels not allowed on a Kubernetes node: {sorted(bad)}")
    node = api.read_node(kube_node, _request_timeout=request_timeout)
    have = dict(node.metadata.labels or {})
    annotations = dict(node.metadata.annotations or {})
    try:
        managed = set(json.loads(annotations.get(MANAGED_LABELS_ANNOTATION) or "[]"))
    except ValueError:
        managed = set()
    managed |= {k for k in have if k.startswith((TARGET_LABEL_PREFIX, ARCH_LABEL_PREFIX))}
    label_patch: dict[str, str | None] = {k: v for k, v in want.items() if have.get(k) != v}
    label_patch.update({k: None for k in managed - set(want) if k in have})
    managed_now = json.dumps(sorted(want))
    wrote = False
    if label_patch or annotations.get(MANAGED_LABELS_ANNOTATION) != managed_now:
        metadata: dict = {"annotations": {MANAGED_LABELS_ANNOTATION: managed_now}}
        if label_patch:
            metadata["labels"] = label_patch
        api.patch_node(kube_node, {"metadata": metadata}, _request_timeout=request_timeout,
                       _content_type="application/strategic-merge-patch+json")
        wrote = True
    value = str(int(free_slots))
    status = node.status
    capacity = dict((status.capacity if status else None) or {})
    allocatable = dict((status.allocatable if status else None) or {})
    if capacity.get(SLOT_RESOURCE) != value or allocatable.get(SLOT_RESOURCE) != value:
        api.patch_node_status(kube_node, {"status": {"capacity": {SLOT_RESOURCE: value},
                                                     "allocatable": {SLOT_RESOURCE: value}}},
                              _request_timeout=request_timeout,
                              _content_type="application/strategic-merge-patch+json")
        wrote = True
    return wrote


def core_api(kubeconfig: str | None = None, host: str | None = None) -> k8s.CoreV1Api:
    """A CoreV1Api: ``host`` if given, else in-cluster (service account), else
    ``kubeconfig`` / ``$KUBECONFIG`` / ``~/.kube/config``. Raises ``kubernetes.config.ConfigException``."""
    if host:
        return k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=host)))
    cfg = k8s.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
            return k8s.CoreV1Api(k8s.ApiClient(cfg))
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
                                client_configuration=cfg, persist_config=False)
    return k8s.CoreV1Api(k8s.ApiClient(cfg))


async def keep_advertised(kube_node: str, devices: Iterable[kr.Device], interval: float = 60.0,
                          api: k8s.CoreV1Api | None = None) -> None:
    """Advertise ``devices`` on ``kube_node`` now and every ``interval`` seconds, until cancelled.

    Errors (no kube config, API down, no such node) are logged and retried; the
    agent keeps working without Kubernetes (only ``--placement=kubernetes`` needs this).
    """
    devices = list(devices)
    slots, labels = node_slots(devices), node_labels(devices)
    backoff = Backoff(initial=1.0, cap=interval)
    while True:
        try:
            if api is None:
                api = await asyncio.to_thread(core_api)
            if await asyncio.to_thread(advertise_slots, api, kube_node, slots, labels):
                log.info("Kubernetes node %s: advertised %d pipeline slot(s), labels %s", kube_node, slots,
                         sorted(labels))
            backoff.reset()
            await asyncio.sleep(interval)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # ConfigException, ApiException, connection errors
            await backoff.sleep(log.warning, "cannot advertise pipeline slots on Kubernetes node %s: %s; "
                                "retrying in %.1fs", kube_node, e)
