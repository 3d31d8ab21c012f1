"""`kubep4 whoami`, `kubep4 auth can-i` and the client config (kubeconfig style), as a user runs
them: the CLI as a subprocess, the SDK in-process, against a real apiserver with a token file and a
policy (and one serving TLS with client certificates)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
import yaml

from kubep4 import clientconfig
from kubep4.client import AsyncClient
from kubep4.errors import PermissionDenied

from .conftest import EXAMPLE, ROOT
from .test_auth_rbac import files, front, objects, pki, tls_front  # noqa: F401 - fixtures


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEP4_")}
    return {**env, **extra}


async def kubep4(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kubep4.cli.main", *args, env=env, cwd=ROOT,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def write_config(path, doc) -> str:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


async def test_whoami_and_can_i_through_the_cli(front):  # noqa: F811
    env = clean_env(KUBEP4_CONFIG="/nonexistent/config", KUBEP4_API=front.api, KUBEP4_TOKEN="tok-alice")
    r = await kubep4("whoami", env=env)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(None, 1) if not line.startswith("Authenticated") else ("Authenticated by",
                 line.split("by", 1)[1].strip()) for line in r.stdout.splitlines()[1:])
    assert lines == {"Username": "alice", "UID": "uid-alice", "Groups": "[team-a devs system:authenticated]",
                     "Authenticated by": "token"}
    r = await kubep4("auth", "can-i", "create", "deployments", "-n", "a", env=env)
    assert (r.returncode, r.stdout) == (0, "yes\n")
    r = await kubep4("auth", "can-i", "create", "deployments", "-n", "b", "--reason", env=env)
    assert (r.returncode, r.stdout) == (1, 'no\nuser "alice" cannot create deployments in namespace "b"\n')
    r = await kubep4("auth", "can-i", "list", "nodes", env=env)
    assert (r.returncode, r.stdout) == (1, "no\n")
    r = await kubep4("--token", "", "whoami", env={**env, "KUBEP4_TOKEN": ""})
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr and "Traceback" not in r.stderr
    # and a refusal through the CLI names verb, kind and namespace
    r = await kubep4("delete", "deployment", "x", "-n", "b", env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == 'Error (PERMISSION_DENIED): user "alice" cannot delete deployments in namespace "b"'


async def test_the_client_config_selects_server_token_and_namespace(front, tmp_path):  # noqa: F811
    (tmp_path / "alice.token").write_text("tok-alice\n")
    cfg = write_config(tmp_path / "config", {
        "clusters": [{"name": "here", "server": front.api}, {"name": "nowhere", "server": "127.0.0.1:1"}],
        "users": [{"name": "alice", "token-file": "alice.token"}, {"name": "vera", "token": "tok-viewer"}],
        "contexts": [{"name": "alice-a", "cluster": "here", "user": "alice", "namespace": "a"},
                     {"name": "vera-a", "cluster": "here", "user": "vera", "namespace": "a"},
                     {"name": "gone", "cluster": "nowhere", "user": "alice"}],
        "current-context": "alice-a"})
    env = clean_env(KUBEP4_CONFIG=cfg)
    async with AsyncClient(front.api, token="legacy-token") as admin:
        await admin.create(objects("b")[0])
    r = await kubep4("whoami", "-o", "json", env=env)
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["user"] == "alice", r.stderr
    r = await kubep4("apply", "-f", str(EXAMPLE), env=env)  # into the context's namespace
    assert r.returncode == 0, r.stderr
    r = await kubep4("get", "pipelines", env=env)  # the context's namespace, not all of them
    assert r.returncode == 0, r.stderr
    assert [line.split()[:2] for line in r.stdout.splitlines()[1:]] == [["a", "basic"]]
    r = await kubep4("auth", "can-i", "create", "pipelines", env=env)  # -n: the context's
    assert r.stdout == "yes\n"

    # --context, then KUBEP4_TOKEN over the context's token, flags over both
    r = await kubep4("--context", "vera-a", "auth", "can-i", "create", "pipelines", env=env)
    assert r.stdout == "no\n"
    r = await kubep4("--context", "vera-a", "whoami", "-o", "json", env={**env, "KUBEP4_TOKEN": "tok-alice"})
    assert yaml.safe_load(r.stdout)["user"] == "alice"
    r = await kubep4("--token", "tok-viewer", "whoami", "-o", "json", env={**env, "KUBEP4_TOKEN": "tok-alice"})
    assert yaml.safe_load(r.stdout)["user"] == "vera"
    r = await kubep4("get", "pipelines", "-n", "b", env=env)  # -n over the context's namespace
    assert r.returncode == 1 and 'cannot list pipelines in namespace "b"' in r.stderr

    # another server, by flag or env: the context's token is not sent to it
    r = await kubep4("--context", "gone", "--server", front.api, "whoami", env=env)
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr
    r = await kubep4("--context", "gone", "whoami", env={**env, "KUBEP4_API": front.api, "KUBEP4_TOKEN": "tok-ops"})
    assert r.returncode == 0 and "olga" in r.stdout
    r = await kubep4("--context", "gone", "whoami", env=env)
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr

    # kubep4 config
    r = await kubep4("config", "get-contexts", env=env)
    assert [line.split() for line in r.stdout.splitlines()] == [
        ["CURRENT", "NAME", "CLUSTER", "USER", "NAMESPACE"], ["*", "alice-a", "here", "alice", "a"],
        ["vera-a", "here", "vera", "a"], ["gone", "nowhere", "alice"]]
    r = await kubep4("config", "view", env=env)
    doc = yaml.safe_load(r.stdout)
    assert doc["users"][1] == {"name": "vera", "token": "REDACTED"} and doc["current-context"] == "alice-a"
    assert "tok-viewer" in (await kubep4("config", "view", "--raw", env=env)).stdout
    r = await kubep4("config", "use-context", "vera-a", env=env)
    assert r.returncode == 0 and (await kubep4("config", "current-context", env=env)).stdout == "vera-a\n"
    assert yaml.safe_load((await kubep4("whoami", "-o", "json", env=env)).stdout)["user"] == "vera"
    assert os.stat(cfg).st_mode & 0o777 == 0o600
    r = await kubep4("config", "use-context", "nope", env=env)
    assert r.returncode == 1 and "no context 'nope'" in r.stderr and "Traceback" not in r.stderr


async def test_the_sdk_reads_the_client_config_with_tls(tls_front, pki, tmp_path, monkeypatch):  # noqa: F811
    cfg = write_config(tmp_path / "config", {
        "clusters": [{"name": "tls", "server": f"localhost:{tls_front.api_port}",
                      "certificate-authority": pki["ca"].cert}],
        "users": [{"name": "carol", "client-certificate": pki["carol"].cert, "client-key": pki["carol"].key},
                  {"name": "oscar", "client-certificate": pki["oscar"].cert, "client-key": pki["oscar"].key}],
        "contexts": [{"name": "carol", "cluster": "tls", "user": "carol", "namespace": "a"},
                     {"name": "oscar", "cluster": "tls", "user": "oscar"}],
        "current-context": "carol"})
    for k in [k for k in os.environ if k.startswith("KUBEP4_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("KUBEP4_CONFIG", cfg)
    async with AsyncClient() as c:
        me = await c.whoami()
        assert (me.user, me.authenticated_by) == ("carol", "certificate")
        p, _ = objects("")
        created = await c.create(p)  # into the context's namespace
        assert created.metadata.namespace == "a"
        assert [x.metadata.namespace for x in await c.list("pipelines")] == ["a"]
        with pytest.raises(PermissionDenied):
            await c.list("pipelines", "b")
    async with AsyncClient(context="oscar") as c:
        assert (await c.whoami()).user == "oscar"
    # through the CLI too, and without the client certificate the TLS apiserver refuses it
    env = clean_env(KUBEP4_CONFIG=cfg)
    r = await kubep4("whoami", "-o", "json", env=env)
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["authenticatedBy"] == "certificate", r.stderr
    bare = write_config(tmp_path / "bare", {"clusters": [{"name": "tls", "server": f"localhost:{tls_front.api_port}",
                                                          "certificate-authority": pki["ca"].cert}],
                                            "contexts": [{"name": "x", "cluster": "tls"}], "current-context": "x"})
    r = await kubep4("whoami", env=clean_env(KUBEP4_CONFIG=bare))
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr
    r = await kubep4("--certificate-authority", str(tmp_path / "missing.pem"), "whoami", env=env)
    assert r.returncode == 1 and "missing.pem does not exist" in r.stderr and "Traceback" not in r.stderr


def test_config_errors_name_the_entry(tmp_path):
    with pytest.raises(clientconfig.ConfigError, match=r"users\[0\].password: unknown field"):
        clientconfig.ClientConfig.parse({"users": [{"name": "u", "password": "x"}]})
    cfg = clientconfig.ClientConfig.parse({"contexts": [{"name": "c", "cluster": "missing"}], "current-context": "c"})
    with pytest.raises(clientconfig.ConfigError, match="names cluster 'missing'"):
        clientconfig.connection(config=cfg, environ={})
    empty = clientconfig.ClientConfig.load(str(tmp_path / "none"))
    assert clientconfig.connection(config=empty, environ={}) == clientconfig.Connection()
