"""Kubernetes placement end to end, against a STAND-IN Kubernetes API server.

Real etcd, the real apiserver and admission services, the real controller with
``KubernetesPlacer`` and real node agents driving reference-target P4Runtime
devices, all in this process; Kubernetes (API server and kube-scheduler) is the
stand-in of tests/k8s_standin.py. The node agents' Kubernetes side (advertising
slots and labels on their Kubernetes node) is done by calling
services.node_agent.kube_resources.advertise_slots, as the agent does.
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client as k8s

from kubep4 import errors, manifest
from kubep4 import store as st
from kubep4.client import AsyncClient, Client
from kubep4.etcd_server import EtcdServer
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.reftarget import serve
from services.admission.server import create_server as create_admission
from services.admission.validation import Policy
from services.apiserver.server import Settings as ApiSettings
from services.apiserver.server import create_server as create_apiserver
from services.apiserver.server import shutdown as shutdown_apiserver
from services.controller import scheduling as sched
from services.controller.controller import Controller
from services.controller.kube_placement import (
    ANNOTATION_CONSTRAINTS,
    LABEL_DEPLOYMENT,
    LABEL_NAMESPACE,
    LABEL_REPLICA,
    WAITING_MESSAGE,
    KubernetesPlacer,
    constraints_hash,
    kubernetes_placer,
    pod_manifest,
    pod_name,
)
from services.node_agent.agent import NodeAgent
from services.node_agent.agent import Settings as AgentSettings
from services.node_agent.kube_resources import (
    MANAGED_LABELS_ANNOTATION,
    SLOT_RESOURCE,
    advertise_slots,
    keep_advertised,
    node_labels,
    node_slots,
)
from tests.k8s_standin import K8sStandin

BASIC = Path(__file__).resolve().parents[1] / "examples" / "basic" / "deployment.yaml"
KUBE_NS = "kubep4"
TIMEOUT = 20.0


async def eventually(fn, timeout: float = TIMEOUT, what: str = "condition"):
    """Poll ``fn`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.05)


@dataclass
class Cluster:
    etcd: EtcdServer
    standin: K8sStandin
    api: str
    store: st.Store
    client: AsyncClient
    target: object
    kube: k8s.CoreV1Api
    agents: dict[str, tuple[NodeAgent, asyncio.Task, st.Store, asyncio.Task]] = field(default_factory=dict)
    controller: tuple[Controller, asyncio.Task, st.Store] | None = None
    next_device: int = 1

    async def add_node(self, name: str, kube_node: str, slots: int = 1, labels: dict | None = None) -> NodeAgent:
        """A node agent with one reference-target device, on Kubernetes node ``kube_node``."""
        if self.standin.node(kube_node) is None:
            self.standin.add_node(kube_node)
        device_id = self.next_device
        self.next_device += 1
        dev = kr.Device(name="dev0", p4rt_address=self.target.address(device_id), device_id=device_id,
                        target="bmv2", arch="v1model", pipeline_slots=slots, labels=labels or {})
        store = st.Store(self.etcd.endpoint)
        await store.connect()
        agent = NodeAgent(store, AgentSettings(node_name=name, etcd=self.etcd.endpoint, devices=(dev,),
                                               lease_ttl=10, resync_seconds=30, kubernetes_node=kube_node))
        task = asyncio.create_task(agent.run())
        await eventually(lambda: agent.registered.is_set() or task.done(), what=f"agent {name} registered")
        if task.done():
            task.result()
        # what the agent does for --placement=kubernetes (services.node_agent.kube_resources)
        advertiser = asyncio.create_task(keep_advertised(kube_node, [dev], api=self.kube))
        self.agents[name] = (agent, task, store, advertiser)
        await eventually(lambda: (self.standin.node(kube_node)["status"]["allocatable"].get(SLOT_RESOURCE)
                                  == str(slots)), what=f"slots advertised on {kube_node}")
        return agent

    async def start_controller(self, **placer_args) -> KubernetesPlacer:
        store = st.Store(self.etcd.endpoint)
        await store.connect()
        placer = KubernetesPlacer(host=self.standin.url, namespace=KUBE_NS, **placer_args)
        controller = Controller(store, placer, workers=2)
        self.controller = (controller, asyncio.create_task(controller.run()), store)
        return placer

    async def stop_controller(self) -> None:
        controller, task, store = self.controller
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        controller.placer.close()
        await store.close()
        self.controller = None

    async def deploy(self, name: str = "basic", replicas: int = 2, selector: dict | None = None) -> None:
        for obj in manifest.load(str(BASIC)):
            if isinstance(obj, kr.Deployment):
                obj.metadata.name = name
                obj.spec.replicas = replicas
                if selector:
                    obj.spec.selector.match_labels.update(selector)
            await self.client.apply(obj)

    async def deployment(self, name: str) -> kr.Deployment:
        return await self.client.get("deployment", name)

    def pods(self, deployment: str) -> list[dict]:
        return self.standin.pods(KUBE_NS, f"{LABEL_DEPLOYMENT}={deployment}")

    async def placements(self, deployment: str) -> dict[int, kr.Placement]:
        items, _ = await self.store.list(st.PLACEMENTS, "default")
        return {p.spec.replica: p for p in items if p.spec.deployment == deployment}


@pytest.fixture
async def cluster(tmp_path, monkeypatch):
    etcd = await asyncio.to_thread(EtcdServer(data_dir=str(tmp_path / "etcd")).start)
    standin = K8sStandin().start()
    monkeypatch.setenv("KUBECONFIG", standin.kubeconfig(str(tmp_path / "kubeconfig")))  # for the agents
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    adm_server, adm_port = await create_admission("127.0.0.1:0", Policy())
    api_server, api_port, api_store, api_channel = await create_apiserver(
        ApiSettings(listen="127.0.0.1:0", etcd=etcd.endpoint, admission=f"127.0.0.1:{adm_port}"))
    target = await serve([(i, "127.0.0.1", 0) for i in range(1, 5)])
    store = st.Store(etcd.endpoint)
    await store.connect()
    api_client = k8s.ApiClient(k8s.Configuration(host=standin.url))
    c = Cluster(etcd=etcd, standin=standin, api=f"127.0.0.1:{api_port}", store=store,
                client=AsyncClient(f"127.0.0.1:{api_port}", timeout=10), target=target,
                kube=k8s.CoreV1Api(api_client))
    try:
        yield c
    finally:
        if c.controller is not None:
            await c.stop_controller()
        for agent, task, agent_store, advertiser in c.agents.values():
            task.cancel()
            advertiser.cancel()
            await asyncio.gather(task, advertiser, return_exceptions=True)
            await agent_store.close()
        await c.client.close()
        await store.close()
        await target.stop(0)
        await shutdown_apiserver(api_server, api_store, api_channel, grace=0)
        await adm_server.stop(0)
        api_client.close()
        standin.stop()
        await asyncio.to_thread(etcd.cleanup)


# ---------------------------------------------------------------- end to end

async def test_deployment_runs_through_kubernetes_placement(cluster: Cluster):
    await cluster.add_node("node-a", "kn-a")
    await cluster.add_node("node-b", "kn-b")
    cluster.standin.add_node("kn-c")  # no KubeP4 agent: no slots, no target labels
    await cluster.start_controller()
    await cluster.deploy("basic", replicas=2)

    d = await eventually(lambda: _phase(cluster, "basic", "Running"), what="basic Running")
    assert d.status.ready_replicas == 2

    pods = cluster.pods("basic")
    assert sorted(p["metadata"]["name"] for p in pods) == ["kubep4-default-basic-0", "kubep4-default-basic-1"]
    for p in pods:
        md, spec = p["metadata"], p["spec"]
        assert md["labels"][LABEL_NAMESPACE] == "default"
        assert md["labels"][LABEL_DEPLOYMENT] == "basic"
        assert md["labels"][LABEL_REPLICA] == md["name"][-1]
        assert spec["nodeSelector"] == {"kubep4.io/target-bmv2": "true", "kubep4.io/arch-v1model": "true"}
        res = spec["containers"][0]["resources"]
        assert res["requests"] == {SLOT_RESOURCE: "1"} and res["limits"] == {SLOT_RESOURCE: "1"}
        term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
            LABEL_NAMESPACE: "default", LABEL_DEPLOYMENT: "basic"}
        assert "nodeAffinity" not in spec["affinity"]  # no selector on this deployment
    # kube-scheduler spread the replicas; each placement is on the KubeP4 node of its pod's Kubernetes node
    bound = {int(p["metadata"]["labels"][LABEL_REPLICA]): p["spec"]["nodeName"] for p in pods}
    assert sorted(bound.values()) == ["kn-a", "kn-b"]
    placements = await cluster.placements("basic")
    assert {r: p.spec.node for r, p in placements.items()} == {
        r: {"kn-a": "node-a", "kn-b": "node-b"}[kn] for r, kn in bound.items()}
    assert all(p.status.phase == "Running" and p.spec.device == "dev0" for p in placements.values())
    # the devices really run the pipeline the agents installed
    for p in placements.values():
        device_id = {"node-a": 1, "node-b": 2}[p.spec.node]
        assert cluster.target.devices[device_id].pipeline.cookie == p.status.cookie != 0
        assert sum(len(t) for t in cluster.target.devices[device_id].entries.values()) == 3


async def test_unplaceable_deployment_reports_kube_scheduler_message(cluster: Cluster):
    await cluster.add_node("node-a", "kn-a")
    await cluster.add_node("node-b", "kn-b")
    await cluster.start_controller()
    await cluster.deploy("mars", replicas=1, selector={"zone": "mars"})

    async def unschedulable_with_pod_message():
        d = await _phase(cluster, "mars", "Unschedulable")
        pods = cluster.pods("mars")
        conds = [c for p in pods for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled"]
        return d if d and conds and d.status.replicas[0].message == conds[0].get("message") else None

    d = await eventually(unschedulable_with_pod_message, what="mars Unschedulable with kube-scheduler's message")
    [pod] = cluster.pods("mars")
    assert pod["spec"]["affinity"]["nodeAffinity"] == {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["mars"]}]}]}}
    [cond] = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    assert cond["message"] == "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    [scheduled] = [c for c in d.status.conditions if c.type == "Scheduled"]
    assert (scheduled.status, scheduled.reason, scheduled.message) == ("False", "Unschedulable", cond["message"])
    assert d.status.replicas[0].message == cond["message"]
    assert not await cluster.placements("mars")

    # a node whose device is in zone mars joins: the stand-in kube-scheduler binds the pending pod, the
    # pod watch requeues the deployment and the replica lands on that node's device
    await cluster.add_node("node-c", "kn-c", labels={"zone": "mars"})
    await eventually(lambda: _phase(cluster, "mars", "Running"), what="mars Running")
    assert cluster.pods("mars")[0]["metadata"]["uid"] == pod["metadata"]["uid"]
    assert (await cluster.placements("mars"))[0].spec.node == "node-c"


async def test_deleting_the_deployment_deletes_its_pods(cluster: Cluster):
    await cluster.add_node("node-a", "kn-a", slots=2, labels={"zone": "a"})
    # one slot per node for "other": the node agent deletes a leaving placement only once its
    # device has no other placement
    await cluster.add_node("node-b", "kn-b", slots=1, labels={"zone": "b"})
    await cluster.add_node("node-c", "kn-c", slots=1, labels={"zone": "b"})
    await cluster.start_controller()
    await cluster.deploy("basic", replicas=2, selector={"zone": "a"})
    await cluster.deploy("other", replicas=2, selector={"zone": "b"})
    await eventually(lambda: _phase(cluster, "basic", "Running"), what="basic Running")
    await eventually(lambda: _phase(cluster, "other", "Running"), what="other Running")
    assert len(cluster.pods("basic")) == 2

    await cluster.client.delete("deployment", "basic")
    await eventually(lambda: not cluster.pods("basic"), what="basic's pods deleted")
    await eventually(lambda: _gone(cluster, "basic"), what="basic deleted")
    assert not await cluster.placements("basic")
    assert len(cluster.pods("other")) == 2  # other deployments keep theirs

    # scaling down releases the pods of the removed replicas
    d = await cluster.deployment("other")
    d.spec.replicas = 1
    await cluster.client.update(d)
    await eventually(lambda: [p["metadata"]["name"] for p in cluster.pods("other")] == ["kubep4-default-other-0"],
                     what="other's replica 1 pod deleted after scale-down")
    assert list(await cluster.placements("other")) == [0]


async def test_restarted_controller_adopts_existing_pods(cluster: Cluster):
    await cluster.add_node("node-a", "kn-a")
    await cluster.add_node("node-b", "kn-b")
    await cluster.start_controller()
    await cluster.deploy("basic", replicas=3)
    insufficient = "0/2 nodes are available: 2 Insufficient kubep4.io/pipeline-slots."

    async def two_running_one_unschedulable():
        d = await cluster.deployment("basic")
        scheduled = [c for c in d.status.conditions if c.type == "Scheduled"]
        return d.status.ready_replicas == 2 and scheduled and scheduled[0].message == insufficient

    await eventually(two_running_one_unschedulable, what="2 replicas running, 1 unschedulable")
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.pods("basic")}
    assert len(before) == 3
    await cluster.stop_controller()

    placer = await cluster.start_controller()
    await eventually(placer.synced.is_set, what="the new placer's pod cache")
    # a third node joins: only the new controller can place replica 2, on the pod it adopted
    await cluster.add_node("node-c", "kn-c")
    d = await eventually(lambda: _phase(cluster, "basic", "Running"), what="basic Running after restart")
    assert d.status.ready_replicas == 3
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.pods("basic")}
    assert after == before  # adopted (a create that raced the pod cache got 409 and adopted too)
    assert {p.spec.node for p in (await cluster.placements("basic")).values()} == {"node-a", "node-b", "node-c"}


async def test_pod_watch_relists_after_410_and_create_conflict_adopts(cluster: Cluster):
    await cluster.add_node("node-a", "kn-a")
    placer = await cluster.start_controller(watch_timeout=1)
    await eventually(placer.synced.is_set, what="pod cache")
    lists = _pod_lists(cluster)
    cluster.standin.compact()  # the watch's next resume gets 410 Gone
    await cluster.deploy("basic", replicas=1)
    await eventually(lambda: _phase(cluster, "basic", "Running"), what="basic Running")
    await eventually(lambda: _pod_lists(cluster) > lists, what="a relist")

    # a placer that never listed adopts an existing pod on create's 409
    request = sched.Request(namespace="default", deployment="basic", replica=0, target="bmv2", arch="v1model")
    fresh = KubernetesPlacer(host=cluster.standin.url, namespace=KUBE_NS)
    try:
        [pod] = cluster.pods("basic")
        decision = await fresh.scope(request)
        assert isinstance(decision, sched.Decision) and not decision.scheduled  # no view: no KubeP4 node for kn-a
        assert "kn-a" in decision.message
        assert fresh._pods[("default", "basic", 0)].metadata.uid == pod["metadata"]["uid"]
        assert [p["metadata"]["uid"] for p in cluster.pods("basic")] == [pod["metadata"]["uid"]]
    finally:
        fresh.close()


def test_controller_process_places_through_kubernetes(tmp_path):
    """The real processes (LocalStack): ``kubep4-controller --placement=kubernetes`` finds the
    stand-in through $KUBECONFIG; the agent says it runs on Kubernetes node kn-0."""
    with K8sStandin() as standin:
        standin.add_node("kn-0", slots=1, labels={"kubep4.io/target-bmv2": "true",
                                                  "kubep4.io/arch-v1model": "true"})
        env = {"KUBEP4_PLACEMENT": "kubernetes", "KUBEP4_KUBE_NAMESPACE": KUBE_NS,
               "KUBECONFIG": standin.kubeconfig(str(tmp_path / "kubeconfig")), "KUBEP4_KUBERNETES_NODE": "kn-0"}
        with LocalStack(nodes=1, data_dir=str(tmp_path / "stack"), env=env) as stack, Client(stack.api, **stack.client_args()) as c:
            for obj in manifest.load(str(BASIC)):
                if isinstance(obj, kr.Deployment):
                    obj.spec.replicas = 1
                c.apply(obj)
            d = c.wait_ready("basic", timeout=TIMEOUT)
            assert d.status.replicas[0].node == "node-0"
            [pod] = standin.pods(KUBE_NS)
            assert (pod["metadata"]["name"], pod["spec"]["nodeName"]) == ("kubep4-default-basic-0", "kn-0")


# ---------------------------------------------------------------- units (stand-in only)

def test_pod_names_are_dns_safe_and_unique():
    assert pod_name("default", "basic", 0) == "kubep4-default-basic-0"
    long = pod_name("default", "d" * 63, 12)
    assert len(long) <= 63 and long == pod_name("default", "d" * 63, 12)
    assert long != pod_name("default", "d" * 63, 13)
    assert pod_name("a-b", "c", 0) == pod_name("a", "b-c", 0)  # the plain form is ambiguous...
    assert pod_name("a-b", "c", 0, hashed=True) != pod_name("a", "b-c", 0, hashed=True)  # ...the fallback is not


def test_pod_manifest_selector_and_constraints():
    sel = kr.LabelSelector(match_labels={"zone": "a"}, match_expressions=[
        kr.LabelSelectorRequirement(key="rack", operator="NotIn", values=["r2", "r1"]),
        kr.LabelSelectorRequirement(key="fast", operator="Exists")])
    req = sched.Request(namespace="default", deployment="d", replica=1, target="tofino", arch="tna", selector=sel)
    pod = pod_manifest(req, namespace="ns", image="pause:x")
    assert pod["metadata"]["namespace"] == "ns"
    assert pod["spec"]["containers"][0]["image"] == "pause:x"
    assert pod["spec"]["nodeSelector"] == {"kubep4.io/target-tofino": "true", "kubep4.io/arch-tna": "true"}
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [  # canonical: by key (kubep4.labels)
            {"key": "fast", "operator": "Exists"},
            {"key": "rack", "operator": "NotIn", "values": ["r1", "r2"]},
            {"key": "zone", "operator": "In", "values": ["a"]}]}]}
    assert pod["metadata"]["annotations"][ANNOTATION_CONSTRAINTS] == constraints_hash(req)
    other = sched.Request(namespace="default", deployment="d", replica=1, target="tofino", arch="tna")
    assert constraints_hash(other) != constraints_hash(req)


def test_advertise_slots_patches_node_status_and_labels():
    with K8sStandin() as standin:
        standin.add_node("kn", labels={"keep": "me", "kubep4.io/target-old": "true"})
        api_client = k8s.ApiClient(k8s.Configuration(host=standin.url))
        api = k8s.CoreV1Api(api_client)
        devices = [kr.Device(name="a", target="bmv2", arch="v1model", pipeline_slots=2, labels={"zone": "z1"}),
                   kr.Device(name="b", target="dpdk", arch="psa", labels={"zone": "z2", "kubernetes.io/x": "no"})]
        assert node_slots(devices) == 3
        labels = node_labels(devices)
        assert labels == {"kubep4.io/target-bmv2": "true", "kubep4.io/arch-v1model": "true",
                          "kubep4.io/target-dpdk": "true", "kubep4.io/arch-psa": "true", "zone": "z1"}
        assert advertise_slots(api, "kn", 3, labels)
        node = standin.node("kn")
        assert node["status"]["capacity"][SLOT_RESOURCE] == node["status"]["allocatable"][SLOT_RESOURCE] == "3"
        assert node["status"]["allocatable"]["cpu"] == "4"  # the rest of the status is untouched
        assert {k: v for k, v in node["metadata"]["labels"].items() if not k.startswith("kubernetes.io/")} == {
            **labels, "keep": "me"}  # a stale target label went, a foreign label stayed
        assert not advertise_slots(api, "kn", 3, labels)  # nothing differs: no writes
        # devices change: labels set earlier and no longer wanted are removed
        assert advertise_slots(api, "kn", 1, node_labels(devices[:1]))
        node = standin.node("kn")
        assert node["metadata"]["labels"].get("kubep4.io/target-dpdk") is None
        assert "zone" in node["metadata"]["labels"] and node["metadata"]["labels"]["keep"] == "me"
        assert node["status"]["allocatable"][SLOT_RESOURCE] == "1"
        assert MANAGED_LABELS_ANNOTATION in node["metadata"]["annotations"]
        patches = [(m, p) for m, p, _ in standin.requests if m == "PATCH"]
        assert ("PATCH", "/api/v1/nodes/kn/status") in patches and ("PATCH", "/api/v1/nodes/kn") in patches
        with pytest.raises(k8s.exceptions.ApiException) as e:
            advertise_slots(api, "nope", 1, {})
        assert e.value.status == 404
        api_client.close()


def test_kubernetes_placer_loads_a_kubeconfig(tmp_path, monkeypatch):
    with K8sStandin() as standin:
        path = standin.kubeconfig(str(tmp_path / "kubeconfig"))
        monkeypatch.setenv("KUBECONFIG", path)
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

        class Settings:
            kube_namespace = "placements"
            kube_image = "pause:test"

        placer = kubernetes_placer(Settings())
        try:
            assert placer.api_client.configuration.host == standin.url
            assert (placer.namespace, placer.image) == ("placements", "pause:test")
            req = sched.Request(namespace="default", deployment="d", replica=0)
            decision = asyncio.run(placer.scope(req))
            assert decision.message in (WAITING_MESSAGE, "no nodes available to schedule pods")
            assert [p["metadata"]["name"] for p in standin.pods("placements")] == ["kubep4-default-d-0"]
        finally:
            placer.close()


# ---------------------------------------------------------------- helpers

async def _phase(cluster: Cluster, name: str, phase: str) -> kr.Deployment | None:
    d = await cluster.deployment(name)
    return d if d.status.phase == phase else None


async def _gone(cluster: Cluster, name: str) -> bool:
    try:
        await cluster.deployment(name)
    except errors.NotFound:
        return True
    return False


def _pod_lists(cluster: Cluster) -> int:
    return sum(1 for m, p, q in cluster.standin.requests
               if m == "GET" and p.endswith("/pods") and "watch=true" not in q)


if os.environ.get("KUBEP4_TEST_DEBUG"):
    import logging
    logging.basicConfig(level=logging.INFO)
