"""Fixtures: a reference target on loopback (port 0) and P4Runtime clients for it."""
from __future__ import annotations

import pytest

from kubep4.reftarget import serve

from .p4rt_client import (
    P4RTClient,
    basic_device_config,
    basic_p4info,
    multipath_device_config,
    multipath_p4info,
)


@pytest.fixture
async def target():
    t = await serve([(1, "127.0.0.1", 0)])
    try:
        yield t
    finally:
        await t.stop()


@pytest.fixture
def address(target) -> str:
    return target.address(1)


@pytest.fixture
def device(target):
    return target.devices[1]


@pytest.fixture
async def make_client(address):
    """Factory for extra clients, all closed at teardown."""
    clients: list[P4RTClient] = []

    def make(role: str = "", device_id: int = 1) -> P4RTClient:
        c = P4RTClient(address, device_id=device_id, role=role)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
async def client(make_client) -> P4RTClient:
    """The primary client (election id 10), no pipeline yet."""
    c = make_client()
    reply = await c.arbitrate(10)
    assert reply.status.code == 0
    return c


@pytest.fixture
async def loaded(client) -> P4RTClient:
    """The primary client with the basic pipeline committed (cookie 42)."""
    await client.set_pipeline(basic_p4info(), basic_device_config(), cookie=42)
    return client


@pytest.fixture
async def mp(client) -> P4RTClient:
    """The primary client with the multipath pipeline committed (cookie 7): action selector, PRE,
    direct and indexed counters and meters, a register."""
    await client.set_pipeline(multipath_p4info(), multipath_device_config(), cookie=7)
    return client
