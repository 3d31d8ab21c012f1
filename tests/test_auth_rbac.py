"""Identities and per-namespace authorization at the apiserver (issue 11, item 3): real etcd, real
admission and apiserver on loopback, a token file and a policy file; client certificates from
kubep4.tls. Every refusal is PERMISSION_DENIED naming the verb, the kind and the namespace."""
from __future__ import annotations

import textwrap

import grpc
import pytest

from kubep4 import store as st
from kubep4 import tls
from kubep4.client import AsyncClient
from kubep4.errors import PermissionDenied, Unauthenticated
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.admission.validation import Policy
from services.apiserver import authz
from services.apiserver.authn import Authenticator, TokenFileError, load_token_file
from services.apiserver.server import SERVICE_NAME, Settings, create_server

from .conftest import Front, example_objects

TOKENS = textwrap.dedent("""\
    # token,user,uid,groups
    tok-viewer,vera,uid-vera,"viewers"
    tok-alice,alice,uid-alice,"team-a,devs"
    tok-ops,olga,uid-olga,ops
    tok-nobody,nobody,uid-nobody
    """)
POLICY = textwrap.dedent("""\
    bindings:
      - role: view
        namespaces: [a]
        groups: [viewers]
      - role: edit
        namespace: a
        users: [alice]
      - role: admin
        namespace: a
        users: [carol]          # a client certificate's CN
    clusterBindings:
      - role: view
        kinds: [nodes]
        groups: [ops]
      - role: edit
        groups: [operators]     # a client certificate's O
    """)
NAMESPACES = frozenset({"default", "a", "b"})


class AuthFront(Front):
    def __init__(self, etcd_endpoint: str, **settings):
        super().__init__(etcd_endpoint, policy=Policy(namespaces=NAMESPACES))
        self.settings = settings

    async def start_api(self) -> None:
        s = Settings(f"127.0.0.1:{self.api_port}", self.etcd, f"127.0.0.1:{self.adm_port}", **self.settings)
        self.server, self.api_port, self._store, self._channel = await create_server(s)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "tokens.csv").write_text(TOKENS)
    (tmp_path / "policy.yaml").write_text(POLICY)
    return tmp_path


@pytest.fixture
async def front(etcd, files):
    f = await AuthFront(etcd.endpoint, token="legacy-token", token_auth_file=str(files / "tokens.csv"),
                        authorization_policy_file=str(files / "policy.yaml")).start()
    yield f
    await f.stop()


def objects(namespace: str):
    p, d = example_objects()
    p.metadata.namespace = d.metadata.namespace = namespace
    return p, d


def test_every_rpc_of_the_service_has_a_rule():
    names = {m.name for m in api.DESCRIPTOR.services_by_name["KubeP4"].methods}
    assert names - set(authz.RULES) == set(), "RPCs without an authorization rule (services/apiserver/authz.py)"
    assert set(authz.RULES) - names == set()
    for name, rule in authz.RULES.items():
        assert rule.verb is None or (rule.verb in authz.VERBS and rule.kind in authz.KINDS), name


async def test_view_lists_but_cannot_create(front):
    async with AsyncClient(front.api, token="legacy-token") as admin:
        p, _ = objects("a")
        await admin.create(p)
    async with AsyncClient(front.api, token="tok-viewer") as c:
        assert [x.metadata.name for x in await c.list("pipelines", "a")] == [p.metadata.name]
        await c.get("pipeline", p.metadata.name, "a")
        _, d = objects("a")
        with pytest.raises(PermissionDenied) as info:
            await c.create(d)
        assert info.value.message == 'user "vera" cannot create deployments in namespace "a"'
        with pytest.raises(PermissionDenied) as info:
            await c.delete("pipeline", p.metadata.name, "a")
        assert info.value.message == 'user "vera" cannot delete pipelines in namespace "a"'
        with pytest.raises(PermissionDenied) as info:
            await c.list("pipelines", "b")
        assert info.value.message == 'user "vera" cannot list pipelines in namespace "b"'
        with pytest.raises(PermissionDenied) as info:  # live values: admin only
            await c.read_deployment("x", "counter", namespace="a")
        assert info.value.message == 'user "vera" cannot get deployments/read in namespace "a"'
    async with AsyncClient(front.api, token="legacy-token") as admin:
        assert [x.metadata.name for x in await admin.list("pipelines", "a")] == [p.metadata.name]


async def test_edit_of_namespace_a_cannot_touch_namespace_b(front):
    async with AsyncClient(front.api, token="tok-alice") as c:
        p, d = objects("a")
        await c.create(p)
        await c.create(d)
        await c.edit(d.metadata.name, lambda d: setattr(d.spec, "replicas", 2), "a")
        pb, db = objects("b")
        for call, words in ((c.create(pb), "create pipelines"), (c.create(db), "create deployments"),
                            (c.get("deployment", d.metadata.name, "b"), "get deployments"),
                            (c.delete("deployment", d.metadata.name, "b"), "delete deployments"),
                            (c.list("deployments", "b"), "list deployments")):
            with pytest.raises(PermissionDenied) as info:
                await call
            assert info.value.message == f'user "alice" cannot {words} in namespace "b"'
        with pytest.raises(PermissionDenied) as info:  # nodes are cluster-scoped
            await c.list("nodes")
        assert info.value.message == 'user "alice" cannot list nodes at the cluster scope'
        await c.delete("deployment", d.metadata.name, "a")


async def test_the_body_decides_not_the_namespace_header(front):
    """A client naming namespace a in its metadata and b in its request is refused: the header lets a
    refusal come before the body is read, it never allows anything."""
    async with grpc.aio.insecure_channel(front.api) as ch:
        stub = api_grpc.KubeP4Stub(ch)
        p, _ = objects("b")
        for md in ((("kubep4-namespace", "a"),), ()):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.CreatePipeline(api.CreatePipelineRequest(pipeline=p), timeout=10,
                                          metadata=(("authorization", "Bearer tok-alice"), *md))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert info.value.details() == 'user "alice" cannot create pipelines in namespace "b"'
        # no header and no right anywhere: refused unread, "in any namespace"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreatePipeline(api.CreatePipelineRequest(pipeline=p), timeout=10,
                                      metadata=(("authorization", "Bearer tok-viewer"),))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details() == 'user "vera" cannot create pipelines in any namespace'


async def test_lists_and_watches_of_every_namespace_are_filtered(front):
    async with AsyncClient(front.api, token="legacy-token") as admin:
        for ns in ("a", "b"):
            await admin.create(objects(ns)[0])
        assert sorted(x.metadata.namespace for x in await admin.list("pipelines")) == ["a", "b"]
    async with AsyncClient(front.api, token="tok-viewer") as c:
        assert [x.metadata.namespace for x in await c.list("pipelines")] == ["a"]
        seen, events = [], c.watch("pipeline")
        try:
            async for etype, obj, _ in events:
                seen.append((etype, obj.metadata.namespace))
                if etype == "SYNCED":
                    break
        finally:
            await events.aclose()
        assert seen == [("ADDED", "a"), ("SYNCED", "")]
    async with AsyncClient(front.api, token="tok-nobody") as c:  # bound nowhere
        with pytest.raises(PermissionDenied) as info:
            await c.list("pipelines")
        assert info.value.message == 'user "nobody" cannot list pipelines in any namespace'


async def test_a_cluster_binding_lists_nodes(front, store):
    n = kr.Node()
    n.metadata.name = "node-1"
    await store.create(st.NODES, n)
    async with AsyncClient(front.api, token="tok-ops") as c:
        assert [x.metadata.name for x in await c.list("nodes")] == ["node-1"]
        assert (await c.get("node", "node-1")).metadata.name == "node-1"
        with pytest.raises(PermissionDenied) as info:  # kinds: [nodes] only
            await c.list("pipelines", "a")
        assert info.value.message == 'user "olga" cannot list pipelines in namespace "a"'
    async with AsyncClient(front.api, token="tok-viewer") as c:
        with pytest.raises(PermissionDenied):
            await c.list("nodes")


async def test_unauthenticated_and_the_legacy_token(front):
    async with AsyncClient(front.api) as c:
        with pytest.raises(Unauthenticated):
            await c.list("pipelines", "a")
    async with AsyncClient(front.api, token="wrong") as c:
        with pytest.raises(Unauthenticated):
            await c.whoami()
    async with AsyncClient(front.api, token="legacy-token") as c:
        me = await c.whoami()
        assert (me.user, list(me.groups), me.authenticated_by) == (
            "admin", ["system:masters", "system:authenticated"], "token")
        assert (await c.can_i("delete", "deployments", "b")).allowed


async def test_whoami_and_can_i(front):
    async with AsyncClient(front.api, token="tok-alice") as c:
        me = await c.whoami()
        assert (me.user, me.uid, list(me.groups), me.authenticated_by) == (
            "alice", "uid-alice", ["team-a", "devs", "system:authenticated"], "token")
        yes = await c.can_i("create", "deployments", "a")
        assert yes.allowed and "bindings[1]" in yes.reason
        no = await c.can_i("create", "deploy", "b")
        assert not no.allowed and no.reason == 'user "alice" cannot create deployments in namespace "b"'
        assert not (await c.can_i("get", "deployments/read", "a")).allowed  # admin only
        assert not (await c.can_i("list", "nodes")).allowed
        assert not (await c.can_i("frobnicate", "deployments", "a")).allowed


async def test_open_without_tokens_and_admin_with_a_token_but_no_policy(etcd, caplog):
    f = await AuthFront(etcd.endpoint).start()
    try:
        assert "the API is open" in caplog.text
        async with AsyncClient(f.api) as c:
            me = await c.whoami()
            assert (me.user, me.authenticated_by) == ("system:anonymous", "none")
            await c.create(objects("b")[0])
            assert (await c.can_i("delete", "pipelines", "b")).allowed
    finally:
        await f.stop()
    f = await AuthFront(etcd.endpoint, token="t0k").start()
    try:
        assert "every authenticated caller may do everything" in caplog.text
        async with AsyncClient(f.api, token="t0k") as c:
            assert len(await c.list("pipelines", "b")) == 1
            assert (await c.can_i("get", "deployments/read", "b")).allowed
    finally:
        await f.stop()


# ---------------------------------------------------------------- client certificates

@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    ca = tls.make_ca(str(d))
    other = tls.make_ca(str(d / "other"), "another-ca", name="other")
    return {"ca": ca, "server": tls.issue(ca, "apiserver", str(d), "kubep4-apiserver", client=False),
            "carol": tls.issue(ca, "carol", str(d), "carol", server=False),
            "oscar": tls.issue(ca, "oscar", str(d), "oscar", ["operators"], server=False),
            "mallory": tls.issue(other, "mallory", str(d / "other"), "carol", server=False)}


@pytest.fixture
async def tls_front(etcd, files, pki):
    f = await AuthFront(etcd.endpoint, token_auth_file=str(files / "tokens.csv"),
                        authorization_policy_file=str(files / "policy.yaml"),
                        tls_cert=pki["server"].cert, tls_key=pki["server"].key, client_ca=pki["ca"].cert).start()
    yield f
    await f.stop()


def _stub(front, pki, who: str | None):
    creds = tls.channel_credentials(pki["ca"].cert, pki[who].cert, pki[who].key) if who else \
        tls.channel_credentials(pki["ca"].cert)
    ch = grpc.aio.secure_channel(f"localhost:{front.api_port}", creds)
    return ch, api_grpc.KubeP4Stub(ch)


async def test_a_client_certificate_is_authorized_by_its_cn_and_o(tls_front, pki):
    ch, stub = _stub(tls_front, pki, "carol")
    async with ch:
        me = await stub.WhoAmI(api.WhoAmIRequest(), timeout=10)
        assert (me.user, me.authenticated_by) == ("carol", "certificate")
        p, _ = objects("a")
        await stub.CreatePipeline(api.CreatePipelineRequest(pipeline=p), timeout=10)  # admin in a
        assert (await stub.CanI(api.CanIRequest(verb="get", kind="deployments/read", namespace="a"))).allowed
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListPipelines(api.ListRequest(namespace="b"), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details() == 'user "carol" cannot list pipelines in namespace "b"'
    ch, stub = _stub(tls_front, pki, "oscar")
    async with ch:  # O=operators: edit in every namespace
        me = await stub.WhoAmI(api.WhoAmIRequest(), timeout=10)
        assert (me.user, list(me.groups)) == ("oscar", ["operators", "system:authenticated"])
        p, _ = objects("b")
        await stub.CreatePipeline(api.CreatePipelineRequest(pipeline=p), timeout=10)
        assert len((await stub.ListPipelines(api.ListRequest(), timeout=10)).items) == 2
        # a token, when sent, decides over the certificate
        me = await stub.WhoAmI(api.WhoAmIRequest(), metadata=(("authorization", "Bearer tok-viewer"),))
        assert me.user == "vera"


async def test_a_tls_apiserver_refuses_plaintext_and_other_cas(tls_front, pki):
    async with grpc.aio.insecure_channel(tls_front.api) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api_grpc.KubeP4Stub(ch).WhoAmI(api.WhoAmIRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    for who in ("mallory", None):  # a certificate of another CA (CN carol), and none at all
        ch, stub = _stub(tls_front, pki, who)
        async with ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.WhoAmI(api.WhoAmIRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------- the files

def test_token_file_errors_name_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('tok1,u1,1,"g1,g2"\n\ntok2,u2\n')
    with pytest.raises(TokenFileError, match="line 3: 2 fields"):
        load_token_file(str(path))
    path.write_text("tok1,u1,1\ntok1,u2,2\n")
    with pytest.raises(TokenFileError, match="line 2: this token is already"):
        load_token_file(str(path))
    path.write_text("legacy,u1,1\n")
    with pytest.raises(TokenFileError, match="--token is also a token"):
        Authenticator.configured("legacy", str(path))
    with pytest.raises(TokenFileError, match="does-not-exist"):
        load_token_file(str(tmp_path / "does-not-exist"))


@pytest.mark.parametrize("doc, words", [
    ({"bindings": [{"role": "owner", "namespace": "a", "users": ["x"]}]}, "bindings[0].role: 'owner'"),
    ({"bindings": [{"role": "view", "users": ["x"]}]}, "bindings[0]: no namespace"),
    ({"bindings": [{"role": "view", "namespace": "a"}]}, "bindings[0]: binds no one"),
    ({"clusterBindings": [{"role": "view", "namespace": "a", "users": ["x"]}]},
     "clusterBindings[0].namespace: unknown field"),
    ({"clusterBindings": [{"role": "view", "kinds": ["pods"], "users": ["x"]}]}, "'pods' is not a kind"),
    ({"roles": []}, "roles: unknown field"),
])
def test_policy_errors_name_the_field(doc, words):
    with pytest.raises(authz.PolicyError) as info:
        authz.Policy.parse(doc)
    assert words in str(info.value)


async def test_a_policy_without_identities_does_not_start(etcd, files):
    with pytest.raises(ValueError, match="needs identities"):
        await create_server(Settings("127.0.0.1:0", etcd.endpoint, "127.0.0.1:1",
                                     authorization_policy_file=str(files / "policy.yaml")))
    assert SERVICE_NAME == "kubep4.v1.KubeP4"


async def test_a_large_request_of_a_caller_without_the_right_is_refused_unread(tmp_path, files):
    """Authenticated, but allowed to create nothing anywhere (vera: view in a): refused before the
    64 MiB body is read, as an unauthenticated caller is (tests/test_auth_before_reading.py)."""
    from kubep4.localstack import LocalStack

    from .test_auth_before_reading import rss_mib, secure_channel
    env = {"KUBEP4_TOKEN_AUTH_FILE": str(files / "tokens.csv"),
           "KUBEP4_AUTHORIZATION_POLICY_FILE": str(files / "policy.yaml")}
    with LocalStack(nodes=0, data_dir=str(tmp_path / "stack"), env=env) as stack:
        pid = stack.procs["apiserver"].popen.pid
        pipeline, _ = example_objects()
        pipeline.spec.artifacts.device_config = b"x" * (64 << 20)
        async with secure_channel(stack) as ch:  # the stack's mTLS; the token decides who calls
            stub = api_grpc.KubeP4Stub(ch)
            before = rss_mib(pid)
            for md in ((), (("kubep4-namespace", "a"),)):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.CreatePipeline(api.CreatePipelineRequest(pipeline=pipeline), timeout=60,
                                              metadata=(("authorization", "Bearer tok-viewer"), *md))
                assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            grown = rss_mib(pid) - before
            assert grown < 32, f"the apiserver grew by {grown:.0f} MiB for two refused 64 MiB requests"
            ok = await stub.ListPipelines(api.ListRequest(namespace="a"),
                                          metadata=(("authorization", "Bearer tok-viewer"),), timeout=10)
            assert list(ok.items) == []


async def test_the_token_and_policy_files_take_effect_without_a_restart(front, files):
    """A token removed from the token file is refused from the next request on; a new binding in
    the policy file applies at once; a file made unusable keeps what was loaded last."""
    async with AsyncClient(front.api, token="tok-viewer") as vera, AsyncClient(front.api, token="tok-ops") as olga:
        assert await vera.list("pipelines", "a") == []
        with pytest.raises(PermissionDenied):
            await vera.list("pipelines", "b")
        (files / "policy.yaml").write_text(POLICY.replace("namespaces: [a]", "namespaces: [a, b]"))
        assert await vera.list("pipelines", "b") == []

        (files / "tokens.csv").write_text(TOKENS.replace('tok-viewer,vera,uid-vera,"viewers"\n', ""))
        with pytest.raises(Unauthenticated):
            await vera.list("pipelines", "a")
        assert (await olga.whoami()).user == "olga"

        (files / "tokens.csv").write_text("tok-ops,olga\n")  # two fields: not a token file
        (files / "policy.yaml").write_text("bindings: [{role: nothing}]\n")
        assert (await olga.whoami()).user == "olga", "the last good token file is kept"
        with pytest.raises(Unauthenticated):
            await vera.list("pipelines", "a")
        assert [x.metadata.name for x in await olga.list("nodes")] == [], "the last good policy is kept"

        (files / "tokens.csv").unlink()  # gone: it revokes every token it held
        with pytest.raises(Unauthenticated):
            await olga.whoami()
