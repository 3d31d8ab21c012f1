"""Ports are exclusive: a KubeP4 server binds without SO_REUSEPORT, and a second one on a taken port
stops at start with a message naming the port (it used to bind silently and split the clients)."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import grpc
import pytest

from kubep4 import serving
from kubep4.client import AsyncClient
from kubep4.otlp_receiver import OTLPReceiver
from kubep4.reftarget import serve

from .conftest import ROOT


async def run_module(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", *args, cwd=ROOT,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def held():
    """A KubeP4 server (serving.start_server) holding a loopback port; yields the port."""
    server, port, _ = await serving.start_server("127.0.0.1:0", lambda s: None, [])
    yield port
    await server.stop(None)


async def test_a_default_grpc_server_cannot_share_a_kubep4_port(held):
    other = grpc.aio.server()  # SO_REUSEPORT on, as gRPC's Python server has it by default
    with pytest.raises(RuntimeError):
        other.add_insecure_port(f"127.0.0.1:{held}")
    await other.stop(None)


async def test_start_server_names_the_taken_port(held):
    with pytest.raises(serving.ListenError) as err:
        await serving.start_server(f"127.0.0.1:{held}", lambda s: None, [])
    assert str(err.value) == (f"cannot listen on 127.0.0.1:{held}: port {held} is already in use "
                              "(is another instance running?)")


async def test_reference_device_and_trace_receiver_refuse_a_taken_port(held):
    with pytest.raises(serving.ListenError) as err:
        await serve([(7, "127.0.0.1", held)])
    assert str(err.value).startswith(f"device 7: cannot listen on 127.0.0.1:{held}: port {held} is already")
    with pytest.raises(serving.ListenError):
        await OTLPReceiver().start(f"127.0.0.1:{held}")


async def test_second_apiserver_on_a_taken_port_exits_naming_it(front, etcd):
    r = await run_module("services.apiserver", "--listen", f"127.0.0.1:{front.api_port}",
                         "--etcd", etcd.endpoint, "--admission", f"127.0.0.1:{front.adm_port}")
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{front.api_port}: port {front.api_port} is already in use" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout and "listening on" not in r.stdout
    async with AsyncClient(f"127.0.0.1:{front.api_port}") as c:  # the first one still answers, alone
        assert await c.list("pipelines") == []


async def test_second_admission_on_a_taken_port_exits_naming_it(held):
    r = await run_module("services.admission", "--listen", f"127.0.0.1:{held}")
    assert r.returncode == 1
    assert f"admission: error: cannot listen on 127.0.0.1:{held}" in r.stderr
    assert "Traceback" not in r.stderr


async def test_kubep4_up_on_a_taken_port_fails_naming_it(held, tmp_path):
    r = await run_module("kubep4.cli.main", "up", "--port", str(held), "--nodes", "1",
                         "--devices-per-node", "1", "--data-dir", str(tmp_path / "stack"))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "apiserver exited with 1" in out
    assert f"cannot listen on 127.0.0.1:{held}: port {held} is already in use" in out

