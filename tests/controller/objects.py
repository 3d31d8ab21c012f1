"""Builders of the objects the controller's reconcilers read, as the other writers leave them:
Deployments as the apiserver stores them (admission's initial status, ``status.pipeline_digest``),
Placements as the controller wrote them and their node agent last reported, Nodes as their agent
registers them."""
from __future__ import annotations

from kubep4 import conditions as cond
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

NS = "default"
DIGEST = "sha256:aaaa"      # the pipeline every deployment runs unless a row says otherwise
NEW_DIGEST = "sha256:bbbb"  # the pipeline a changed deployment moved to


def deployment(name: str = "web", replicas: int = 1, generation: int = 1, *, digest: str = DIGEST,
               strategy: str = "", max_unavailable: int = 0, target: str = "bmv2",
               deleting: bool = False) -> kr.Deployment:
    d = kr.Deployment()
    d.metadata.name, d.metadata.namespace, d.metadata.generation = name, NS, generation
    d.spec.pipeline, d.spec.replicas, d.spec.target, d.spec.arch = "basic", replicas, target, "v1model"
    d.spec.strategy.type, d.spec.strategy.max_unavailable = strategy, max_unavailable
    cond.initial_deployment_status(d.status)
    d.status.pipeline_digest = digest
    if deleting:
        d.metadata.deletion_timestamp.GetCurrentTime()
    return d


def placement(replica: int, node: str = "node-a", device: str = "dev0", *, deployment: str = "web",
              generation: int = 1, phase: str = "Running", observed: int | None = None,
              digest: str = DIGEST, reason: str = "", message: str = "", deleting: bool = False) -> kr.Placement:
    """``observed``: the generation the agent last verified (default: ``generation`` when Running)."""
    p = kr.Placement()
    p.metadata.name, p.metadata.namespace = f"{deployment}-{replica}", NS
    p.metadata.labels["kubep4.io/deployment"] = deployment
    p.spec.deployment, p.spec.namespace, p.spec.replica = deployment, NS, replica
    p.spec.node, p.spec.device, p.spec.pipeline = node, device, "basic"
    p.spec.pipeline_digest, p.spec.deployment_generation = digest, generation
    p.status.phase, p.status.reason, p.status.message = phase, reason, message
    p.status.observed_generation = (generation if phase == "Running" else 0) if observed is None else observed
    if deleting:
        p.metadata.deletion_timestamp.GetCurrentTime()
    return p


def node(name: str, devices: int = 1, slots: int = 1, target: str = "bmv2") -> kr.Node:
    n = kr.Node()
    n.metadata.name = name
    n.status.phase = "Ready"
    for i in range(devices):
        n.spec.devices.add(name=f"dev{i}", p4rt_address=f"127.0.0.1:{9000 + i}", device_id=i + 1,
                           target=target, arch="v1model", pipeline_slots=slots)
    return n
