"""Placement of deployment replicas onto P4 devices.

Pure and synchronous: no I/O, no clocks, no randomness. The controller builds a
list of :class:`DeviceState` from the Node objects and the existing Placements
(:func:`devices_from`), then schedules one :class:`Request` per unplaced replica
and commits each success so the next request sees the new state.

The device model
----------------
A device runs ONE P4 pipeline at a time. ``pipeline_slots`` is how many
placements (deployment replicas) it can hold, and co-located placements must all
use the same pipeline (same digest): a device running pipeline X cannot take a
replica of pipeline Y until it is empty again (``used == 0``; an empty device
has ``pipeline_digest == ''``). A device's labels are its Node's
``metadata.labels`` overlaid with the Device's own ``labels`` (device wins), so a
deployment selector may pick devices by node labels (``zone``, ``rack``) as well
as by device labels.

Two policies, same interface
----------------------------
Both classes offer ``schedule(request, devices, commit=False) -> Decision``,
``commit(decision)`` and ``release(device)``.

:class:`BuiltinScheduler` (the default) is P4-aware and sees *devices*.
  Filters, in order (a device is counted under the first one it fails):
  ``NodeNotReady``, ``TargetMismatch``, ``ArchMismatch`` (an empty request
  target/arch matches any), ``SelectorMismatch`` (Kubernetes label-selector
  semantics over the merged labels), ``Excluded`` (``request.exclude_devices``),
  ``NoFreeSlot``, ``PipelineConflict`` (the device runs another pipeline).
  Ranking, lexicographic: (1) devices on nodes not in ``request.avoid_nodes``
  (spread a deployment's replicas across nodes), (2) devices already running the
  same pipeline digest (no reinstall, keeps other devices free), (3) least loaded
  (``used / slots``), (4) ``(node, device)`` name order. The reported
  ``Decision.score`` is ``4*spread + 2*reuse + (1 - used/slots)`` in ``(0, 7]``,
  which orders candidates exactly like the lexicographic key.

:class:`KubernetesDefaultScheduler` models what you get by mapping each replica
  to a Pod and letting kube-scheduler's default profile place it, for
  comparison. It sees *nodes*: one Pod per replica requests 1 of the extended
  resource ``kubep4.io/pipeline-slots``; a node's allocatable is the sum of its
  devices' slots; its labels are the union of its devices' labels (the first
  device wins on a conflicting key, node labels are already part of every
  device's labels) plus ``kubep4.io/target-<target>: "true"`` and
  ``kubep4.io/arch-<arch>: "true"`` for every device (a Kubernetes label holds one
  value, hence one key per value). Filters: node Ready (the not-ready taint),
  node affinity built from target/arch/selector over those node labels,
  NodeResourcesFit. Score: NodeResourcesFit LeastAllocated on the slot resource
  (weight 1; i.e. ``scoringStrategy.resources`` lists the slot resource) plus
  PodTopologySpread with the system default hostname constraint (maxSkew 3,
  ScheduleAnyway; weight 2) over the deployment's replicas (each node in
  ``avoid_nodes`` counts as hosting one), normalised as kube-scheduler does;
  all feasible nodes are scored (``percentageOfNodesToScore: 100``); ties go
  to the first node name
  (kube-scheduler picks randomly among ties). The node agent then assigns the
  first device of that node (in spec order) whose target/arch/selector fit, that
  is not excluded and has a free slot, WITHOUT knowing about pipelines: if that
  device runs another pipeline the install fails -> ``failure='PipelineConflict'``.
  If no device of the chosen node fits (node labels are a union, slots are
  pooled), the placement fails with the reason of the device that got furthest
  through the device filters (e.g. ``TargetMismatch`` or ``NoFreeSlot``). A
  failed placement consumes nothing (``commit`` ignores it).

  Differences that matter: kube-scheduler cannot see pipelines (conflicts are
  discovered at install time), pools the slots of all devices of a node (a free
  slot on a tofino device makes the node "fit" a bmv2 replica), matches
  selectors and target/arch on the union of the node's device labels, and
  prefers the emptiest node rather than reusing an installed pipeline.

Speed
-----
Each policy keeps an index keyed by the identity of the ``devices`` list it was
last given (built on first use, or explicitly with ``prepare``) and maintained
by ``commit`` / ``release``. For each distinct (target, arch, selector) a
*plan* is computed once, with set operations over a label -> value -> items
index: the items failing the static filters are counted, and then either

* the selection is small (<= ``_SCAN_MAX`` items): it is scanned per decision;
* or a *maintained view* drives it: the view of its (target, arch) base or of
  one of its requirements, if that view has at most ``_SKIP_MAX`` extra items
  (skipped while searching, subtracted from the counts), else a view of its own.

A maintained view keeps counters per dynamic state (full, empty, running digest
X with a free slot; full nodes) and lazy-deletion heaps (empty devices by name;
devices running a digest by (load, name); nodes by (LeastAllocated score,
name)), so a decision pops a handful of entries, and the ``Decision`` counts
come from counters rather than a scan. Results (device, score, counts, message)
are identical to the reference full scan (``indexed=False``); the tests check
that on random clusters. If you change a ``DeviceState`` yourself (rather than
through ``commit``/``release``) or hand over the same list object with
different contents, call ``invalidate()``. A scheduler instance is not
thread-safe and should own its device list (two schedulers committing into the
same list would not see each other's changes).
"""
from __future__ import annotations

from services.controller.scheduling.builtin import BuiltinScheduler
from services.controller.scheduling.kubernetes import KubernetesDefaultScheduler
from services.controller.scheduling.model import (
    ARCH_LABEL_PREFIX,
    ARCH_MISMATCH,
    EXCLUDED,
    NO_FREE_SLOT,
    NODE_NOT_READY,
    PIPELINE_CONFLICT,
    REASONS,
    SELECTOR_MISMATCH,
    SLOT_RESOURCE,
    TARGET_LABEL_PREFIX,
    TARGET_MISMATCH,
    Decision,
    DeviceState,
    Request,
    devices_from,
)

__all__ = [
    "ARCH_LABEL_PREFIX", "ARCH_MISMATCH", "EXCLUDED", "NODE_NOT_READY", "NO_FREE_SLOT", "PIPELINE_CONFLICT",
    "POLICIES", "REASONS", "SELECTOR_MISMATCH", "SLOT_RESOURCE", "TARGET_LABEL_PREFIX", "TARGET_MISMATCH",
    "BuiltinScheduler", "Decision", "DeviceState", "KubernetesDefaultScheduler", "Request", "devices_from",
    "make_scheduler",
]

POLICIES: dict[str, type[BuiltinScheduler | KubernetesDefaultScheduler]] = {
    BuiltinScheduler.name: BuiltinScheduler,
    KubernetesDefaultScheduler.name: KubernetesDefaultScheduler,
}


def make_scheduler(policy: str = "builtin", *,
                   indexed: bool = True) -> BuiltinScheduler | KubernetesDefaultScheduler:
    """A scheduler by policy name (``builtin`` or ``kubernetes``)."""
    try:
        cls = POLICIES[policy]
    except KeyError:
        raise ValueError(f"unknown scheduling policy {policy!r} "
                         f"(expected one of {', '.join(POLICIES)})") from None
    return cls(indexed=indexed)

