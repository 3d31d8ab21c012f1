"""What the scheduler reasons about: devices, requests, decisions and the filter reasons."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubep4.gen.kubep4.v1 import resources_pb2 as pb

# ----------------------------------------------------------------- reasons

NODE_NOT_READY = "NodeNotReady"
TARGET_MISMATCH = "TargetMismatch"
ARCH_MISMATCH = "ArchMismatch"
SELECTOR_MISMATCH = "SelectorMismatch"
EXCLUDED = "Excluded"
NO_FREE_SLOT = "NoFreeSlot"
PIPELINE_CONFLICT = "PipelineConflict"
#: Filter reasons in evaluation order (a device/node is counted under the first it fails).
REASONS = (NODE_NOT_READY, TARGET_MISMATCH, ARCH_MISMATCH, SELECTOR_MISMATCH,
           EXCLUDED, NO_FREE_SLOT, PIPELINE_CONFLICT)
_REASON_ORDER = {r: i for i, r in enumerate(REASONS)}

SLOT_RESOURCE = "kubep4.io/pipeline-slots"
TARGET_LABEL_PREFIX = "kubep4.io/target-"
ARCH_LABEL_PREFIX = "kubep4.io/arch-"

# kube-scheduler constants used by the Kubernetes model.
_MAX_NODE_SCORE = 100
_FIT_WEIGHT = 1          # NodeResourcesFit score weight in the default profile
_SPREAD_WEIGHT = 2       # PodTopologySpread score weight in the default profile
_HOSTNAME_MAX_SKEW = 3   # system default constraint for kubernetes.io/hostname


# ----------------------------------------------------------------- model

@dataclass(slots=True)
class DeviceState:
    """Scheduling view of one device: static description plus current usage."""

    node: str
    device: str
    target: str
    arch: str
    labels: dict[str, str]
    slots: int
    used: int = 0
    pipeline_digest: str = ""   # '' when the device is empty
    node_ready: bool = True

    @property
    def free(self) -> int:
        return self.slots - self.used

    @property
    def key(self) -> tuple[str, str]:
        return (self.node, self.device)

    @classmethod
    def from_nodes(cls, nodes: Iterable[pb.Node],
                   placements: Iterable[Any] = ()) -> list[DeviceState]:
        """Alias of :func:`devices_from`."""
        return devices_from(nodes, placements)


def devices_from(nodes: Iterable[pb.Node], placements: Iterable[Any] = ()) -> list[DeviceState]:
    """Build the device list from Node messages and the current placements.

    ``placements`` holds ``(node, device, pipeline_digest)`` tuples (``pb.Placement``
    messages are accepted too). Each adds one used slot; the device's digest is
    that of its first placement. Placements on unknown devices are ignored.
    Devices come out in node order, then in the node's spec order (the order the
    Kubernetes model's agent uses for first-fit). ``pipeline_slots`` 0 (unset)
    means 1. A node is ready iff ``status.phase == "Ready"``.
    """
    out: list[DeviceState] = []
    by_key: dict[tuple[str, str], DeviceState] = {}
    for node in nodes:
        name = node.metadata.name
        ready = node.status.phase == "Ready"
        node_labels = dict(node.metadata.labels)
        for dev in node.spec.devices:
            if (name, dev.name) in by_key:
                raise ValueError(f"node {name!r} lists device {dev.name!r} twice")
            labels = dict(node_labels)
            labels.update(dev.labels)
            st = DeviceState(node=name, device=dev.name, target=dev.target, arch=dev.arch,
                             labels=labels, slots=dev.pipeline_slots if dev.pipeline_slots > 0 else 1,
                             used=0, pipeline_digest="", node_ready=ready)
            by_key[(name, dev.name)] = st
            out.append(st)
    for p in placements:
        if isinstance(p, pb.Placement):
            p = (p.spec.node, p.spec.device, p.spec.pipeline_digest)
        node_name, dev_name, digest = p
        st = by_key.get((node_name, dev_name))
        if st is None:
            continue
        st.used += 1
        if not st.pipeline_digest:
            st.pipeline_digest = digest
    return out


@dataclass(frozen=True)
class Request:
    """One replica of one deployment to place."""

    namespace: str
    deployment: str
    replica: int
    target: str = ""                    # '' = any
    arch: str = ""                      # '' = any
    selector: pb.LabelSelector | None = field(default=None, hash=False)  # None/empty = all
    pipeline_digest: str = ""
    avoid_nodes: frozenset[str] = frozenset()                 # nodes hosting this deployment's replicas
    exclude_devices: frozenset[tuple[str, str]] = frozenset()  # (node, device) never to use

    @classmethod
    def for_deployment(cls, deployment: pb.Deployment, replica: int, *,
                       pipeline_digest: str | None = None,
                       avoid_nodes: Iterable[str] = (),
                       exclude_devices: Iterable[tuple[str, str]] = ()) -> Request:
        """Request for ``replica`` of ``deployment`` (digest defaults to ``status.pipeline_digest``)."""
        spec = deployment.spec
        selector = None
        if spec.HasField("selector"):
            selector = pb.LabelSelector()
            selector.CopyFrom(spec.selector)  # a snapshot: the request must not change with the message
        return cls(namespace=deployment.metadata.namespace or "default",
                   deployment=deployment.metadata.name, replica=replica,
                   target=spec.target, arch=spec.arch,
                   selector=selector,
                   pipeline_digest=(deployment.status.pipeline_digest if pipeline_digest is None
                                    else pipeline_digest),
                   avoid_nodes=frozenset(avoid_nodes), exclude_devices=frozenset(exclude_devices))


@dataclass
class Decision:
    """Outcome of one ``schedule`` call.

    ``device`` is the chosen device (None when unschedulable, or when the
    Kubernetes model picked a node where no device fits). ``scheduled`` is True
    only if the replica can actually run there; ``failure`` names the reason a
    chosen placement would fail at install (Kubernetes model only). Counts are
    in the policy's unit: devices for the builtin policy, nodes for the
    Kubernetes model. ``filtered`` maps filter reasons to non-zero counts.
    """

    device: DeviceState | None
    score: float
    candidates: int
    feasible: int
    filtered: dict[str, int]
    message: str = ""
    node: str = ""
    failure: str = ""
    request: Request | None = field(default=None, repr=False, compare=False)
    committed: bool = field(default=False, compare=False)

    @property
    def scheduled(self) -> bool:
        return self.device is not None and not self.failure


