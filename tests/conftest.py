"""Shared fixtures: a real etcd per test, the front half (admission + apiserver) in-process,
and helpers. Services under test are real gRPC servers on loopback ports."""
from __future__ import annotations

import asyncio
import os
import pathlib
import time

import pytest

from kubep4 import manifest
from kubep4.etcd_server import EtcdServer
from kubep4.store import Store
from services.admission.server import create_server as create_admission
from services.admission.validation import Policy
from services.apiserver.server import Settings, create_server, shutdown

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "basic" / "deployment.yaml"


@pytest.fixture
def etcd(tmp_path):
    server = EtcdServer(data_dir=str(tmp_path / "etcd")).start()
    yield server
    server.cleanup()


@pytest.fixture
async def store(etcd):
    async with Store(etcd.endpoint) as s:
        yield s


class Front:
    """admission + apiserver in this process, against the test's etcd."""

    def __init__(self, etcd_endpoint: str, token: str = "", policy: Policy | None = None):
        self.etcd = etcd_endpoint
        self.token = token
        self.policy = policy or Policy(namespaces=frozenset({"default", "team-a"}))
        self.api_port = 0

    async def start(self) -> "Front":
        self.adm, self.adm_port = await create_admission("127.0.0.1:0", self.policy)
        await self.start_api()
        return self

    async def start_api(self) -> None:
        settings = Settings(f"127.0.0.1:{self.api_port}", self.etcd, f"127.0.0.1:{self.adm_port}", self.token)
        self.server, self.api_port, self._store, self._channel = await create_server(settings)

    async def stop_api(self) -> None:
        await shutdown(self.server, self._store, self._channel, grace=0)

    async def stop(self) -> None:
        await self.stop_api()
        await self.adm.stop(0)

    @property
    def api(self) -> str:
        return f"127.0.0.1:{self.api_port}"


@pytest.fixture
async def front(etcd):
    f = await Front(etcd.endpoint).start()
    yield f
    await f.stop()


def example_objects():
    """[Pipeline, Deployment] from the example manifest."""
    return manifest.load(str(EXAMPLE))


async def eventually(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll an (async or sync) predicate until it returns a truthy value; fail after the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def pytest_report_header(config):
    return f"etcd: {os.popen('etcd --version 2>/dev/null | head -1').read().strip() or 'not found'}"
