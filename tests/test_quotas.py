"""Quotas and storage guards (real etcd, real admission and apiserver): per-namespace limits in
admission in Kubernetes ResourceQuota words, decided on the usage the apiserver counts; creates and
updates refused before etcd's own NOSPACE alarm, deletes still passing."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from kubep4 import store as st
from kubep4.gen.kubep4.v1 import admission_pb2 as ka
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from services.admission.validation import Policy, quota_violations
from services.apiserver.server import Settings, create_server

from .conftest import Front, example_objects


class QuotaFront(Front):
    """The front half with the apiserver's storage guard settings of the test."""

    def __init__(self, etcd_endpoint: str, policy: Policy, **settings):
        super().__init__(etcd_endpoint, policy=policy)
        self.settings = settings

    async def start_api(self) -> None:
        s = Settings(f"127.0.0.1:{self.api_port}", self.etcd, f"127.0.0.1:{self.adm_port}", **self.settings)
        self.server, self.api_port, self._store, self._channel = await create_server(s)


@pytest.fixture
async def quota_front(etcd, request):
    policy, settings = request.param
    f = await QuotaFront(etcd.endpoint, Policy(namespaces=frozenset({"default", "team-a"}), **policy),
                         **settings).start()
    async with grpc.aio.insecure_channel(f.api) as ch:
        yield api_grpc.KubeP4Stub(ch)
    await f.stop()


def _pipeline(name: str, namespace: str = "default", device_config: bytes = b"{}"):
    p, _ = example_objects()
    p.metadata.name, p.metadata.namespace = name, namespace
    p.spec.artifacts.device_config = device_config
    return p


def _deployment(name: str):
    _, d = example_objects()
    d.metadata.name, d.metadata.namespace = name, "default"
    return d


async def _keys(store: st.Store) -> int:
    prefix = f"{st.ROOT}/".encode()
    r = await store.client.kvstub.Range(st.rpc.RangeRequest(key=prefix, range_end=st._range_end(prefix),
                                                            count_only=True))
    return r.count


async def _refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value


def test_quota_wording_is_kubernetes_resourcequota():
    policy = Policy(quota_name="team-quota", max_pipelines=10, max_artifact_bytes=100)
    p = _pipeline("p", device_config=b"x" * 200)
    out = quota_violations(p, ka.NamespaceUsage(pipelines=10, artifact_bytes=50), True, policy)
    assert [v.description for v in out] == [
        ("exceeded quota: team-quota, requested: artifacts.bytes="
         f"{len(p.spec.artifacts.p4info) + 200},pipelines=1, used: artifacts.bytes=50,pipelines=10, "
         "limited: artifacts.bytes=100,pipelines=10")]
    assert quota_violations(p, ka.NamespaceUsage(pipelines=9), True, Policy(max_pipelines=10)) == []
    assert quota_violations(p, ka.NamespaceUsage(pipelines=10), True, Policy(max_pipelines=0)) == []  # no limit


@pytest.mark.parametrize("quota_front", [({"max_pipelines": 2}, {})], indirect=True)
async def test_pipelines_per_namespace(quota_front, store):
    for name in ("a", "b"):
        await quota_front.CreatePipeline(api.CreatePipelineRequest(pipeline=_pipeline(name)))
    before = await _keys(store)
    err = await _refused(quota_front.CreatePipeline(api.CreatePipelineRequest(pipeline=_pipeline("c"))))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == ("pipelines 'c' is forbidden: exceeded quota: kubep4-quota, requested: pipelines=1, "
                             "used: pipelines=2, limited: pipelines=2")
    assert await _keys(store) == before  # no blob left behind either
    # per namespace: another one has its own
    await quota_front.CreatePipeline(api.CreatePipelineRequest(pipeline=_pipeline("c", "team-a")))
    # a delete frees room
    await quota_front.DeletePipeline(api.DeleteRequest(namespace="default", name="a"))
    await quota_front.CreatePipeline(api.CreatePipelineRequest(pipeline=_pipeline("c")))


@pytest.mark.parametrize("quota_front", [({"max_artifact_bytes": 20_000}, {})], indirect=True)
async def test_artifact_bytes_per_namespace(quota_front, store):
    await quota_front.CreatePipeline(api.CreatePipelineRequest(pipeline=_pipeline("a", device_config=b"1" * 9000)))
    used = sum(p.spec.p4info_ref.size + p.spec.device_config_ref.size
               for p in (await store.list(st.PIPELINES, "default"))[0])
    big = _pipeline("b", device_config=b"2" * 15_000)
    err = await _refused(quota_front.CreatePipeline(api.CreatePipelineRequest(pipeline=big)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    requested = len(big.spec.artifacts.p4info) + 15_000
    assert err.details().endswith(f"exceeded quota: kubep4-quota, requested: artifacts.bytes={requested}, "
                                  f"used: artifacts.bytes={used}, limited: artifacts.bytes=20000")


@pytest.mark.parametrize("quota_front", [({"max_deployments": 1, "max_table_entries": 2}, {})], indirect=True)
async def test_deployments_per_namespace_and_entries_per_deployment(quota_front, store):
    await quota_front.CreatePipeline(api.CreatePipelineRequest(pipeline=_pipeline("basic")))
    full = _deployment("full")  # the example carries 3 entries
    assert len(full.spec.table_entries) == 3
    err = await _refused(quota_front.CreateDeployment(api.CreateDeploymentRequest(deployment=full)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == ("deployments 'full' is forbidden: exceeded quota: kubep4-quota, requested: "
                             "deployment.table_entries=3, used: deployment.table_entries=0, "
                             "limited: deployment.table_entries=2")
    one = _deployment("one")
    del one.spec.table_entries[2:]
    created = await quota_front.CreateDeployment(api.CreateDeploymentRequest(deployment=one))
    two = _deployment("two")
    del two.spec.table_entries[1:]
    before = await _keys(store)
    err = await _refused(quota_front.CreateDeployment(api.CreateDeploymentRequest(deployment=two)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().endswith("requested: deployments=1, used: deployments=1, limited: deployments=1")
    assert await _keys(store) == before
    # an update that grows the deployment past the limit: used is what it holds now
    grown = _deployment("one")
    grown.metadata.resource_version = created.metadata.resource_version
    err = await _refused(quota_front.UpdateDeployment(api.UpdateDeploymentRequest(deployment=grown)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().endswith("requested: deployment.table_entries=3, used: deployment.table_entries=2, "
                                  "limited: deployment.table_entries=2")


# a guard of 1 byte: etcd's database is always above it
@pytest.mark.parametrize("quota_front", [({}, {"etcd_quota_bytes": 1 << 20, "storage_guard": 1e-6})],
                         indirect=True)
async def test_writes_are_refused_when_storage_is_nearly_full_and_deletes_pass(quota_front, store):
    p = await store.create_pipeline(_pipeline("basic"))
    d = await store.create(st.DEPLOYMENTS, _deployment("basic"), requires=st.PIPELINES.key(p))
    before = await _keys(store)
    for call in (quota_front.CreatePipeline(api.CreatePipelineRequest(pipeline=_pipeline("other"))),
                 quota_front.CreateDeployment(api.CreateDeploymentRequest(deployment=_deployment("other"))),
                 quota_front.UpdateDeployment(api.UpdateDeploymentRequest(deployment=d))):
        err = await _refused(call)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.details().startswith("storage is nearly full: etcd's database is ")
        assert "of its 1 MiB quota" in err.details() and "compact and defragment" in err.details()
        assert "127.0.0.1" not in err.details()
    assert await _keys(store) == before
    await quota_front.DeleteDeployment(api.DeleteRequest(namespace="default", name="basic"))
    assert (await store.get(st.DEPLOYMENTS, "default", "basic")).metadata.HasField("deletion_timestamp")
    await store.delete(st.DEPLOYMENTS, "default", "basic")
    await quota_front.DeletePipeline(api.DeleteRequest(namespace="default", name="basic"))


@pytest.mark.parametrize("quota_front", [({}, {"etcd_quota_bytes": 64 << 30})], indirect=True)
async def test_writes_pass_below_the_guard(quota_front, store):
    await quota_front.CreatePipeline(api.CreatePipelineRequest(pipeline=_pipeline("basic")))
    assert 0 < await store.db_size() < (64 << 30) * 0.8


async def test_without_a_quota_concurrent_creates_do_not_wait_for_each_other(front):
    """No limit set (the default): creates in one namespace commit without the quota's
    count-and-compare, so 24 at once all succeed instead of crowding each other out."""
    from kubep4.client import AsyncClient
    pipeline, template = example_objects()
    async with AsyncClient(front.api) as c:
        await c.apply(pipeline)

        async def create(i: int):
            d = type(template)()
            d.CopyFrom(template)
            d.metadata.name = f"many-{i:02d}"
            return await c.create(d)
        made = await asyncio.gather(*(create(i) for i in range(24)))
        assert len({d.metadata.uid for d in made}) == 24
        assert len(await c.list("deployments")) == 24
