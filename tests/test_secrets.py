"""Secrets stay secret (security issue, item 6): a token is never printed by --help, can be read from
a file so it is not in ps, and under the local stack only the apiserver's environment holds it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubep4.errors import Unauthenticated
from kubep4.localstack import LocalStack


def test_help_never_prints_the_token():
    env = {**os.environ, "KUBEP4_TOKEN": "s3cret-value"}
    for module in ("services.apiserver", "kubep4.cli.main"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], env=env, capture_output=True, text=True)
        assert out.returncode == 0 and "--token-file" in out.stdout
        assert "s3cret-value" not in out.stdout + out.stderr


def environ_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(kv.split("=", 1) for kv in f.read().decode(errors="replace").split("\0") if "=" in kv)


async def test_only_the_apiserver_child_holds_the_token_and_a_token_file_works(tmp_path):
    # the API over TLS, identities from the token (no client certificates)
    with LocalStack(nodes=1, data_dir=str(tmp_path), env={"KUBEP4_TOKEN": "s3cret-value"},
                    api_client_certs=False) as stack:
        holders = {name for name, proc in stack.procs.items()
                   if environ_of(proc.popen.pid).get("KUBEP4_TOKEN") == "s3cret-value"}
        assert holders == {"apiserver"}
        async with stack.client() as c:
            with pytest.raises(Unauthenticated):
                await c.list("pipelines")
        path = tmp_path / "token"
        path.write_text("s3cret-value\n")
        env = {k: v for k, v in os.environ.items() if k != "KUBEP4_TOKEN"}
        ca = ["--certificate-authority", stack.pki.ca.cert]
        out = subprocess.run([sys.executable, "-m", "kubep4.cli.main", "--api", stack.api, *ca, "--token-file",
                              str(path), "get", "pipelines"], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        warned = subprocess.run([sys.executable, "-m", "kubep4.cli.main", "--api", stack.api, *ca, "--token",
                                 "s3cret-value", "get", "pipelines"], env=env, capture_output=True, text=True)
        assert warned.returncode == 0 and "visible in ps" in warned.stderr
