"""The Node's status as the agent sees its devices: reachability, installed cookie, used slots.

Device states are reported as they change and written together (one etcd write for a burst of
changes); the heartbeat time moves at least every ``report_seconds`` even when nothing changed.
Liveness itself is the lease (see NodeAgent.heartbeat): this write is for people and tools.
"""
from __future__ import annotations

import asyncio
import logging

from kubep4 import store as st
from kubep4.backoff import Backoff
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

log = logging.getLogger(__name__)
REACHABLE, UNREACHABLE, NOT_PRIMARY = "Reachable", "Unreachable", "NotPrimary"
WEDGED = "Wedged"  # it answers, but takes no pipeline change until it restarts


class NodeStatusReporter:
    def __init__(self, store: st.Store, node: str, devices: list[str], report_seconds: float = 60.0):
        self.store, self.node, self.report_seconds = store, node, report_seconds
        self.devices: dict[str, kr.DeviceStatus] = {n: kr.DeviceStatus(name=n, phase=UNREACHABLE,
                                                                       message="not contacted yet")
                                                    for n in devices}
        self._changed = asyncio.Event()

    def set(self, device: str, phase: str, cookie: int | None, used_slots: int, message: str = "",
            verified: bool = False) -> None:
        cur = self.devices[device]
        want = kr.DeviceStatus(name=device, phase=phase, cookie="" if cookie is None else str(cookie),
                               used_slots=used_slots, message=message[:500])
        if verified:
            want.last_verified.GetCurrentTime()
        elif cur.HasField("last_verified"):
            want.last_verified.CopyFrom(cur.last_verified)
        same = (cur.phase, cur.cookie, cur.used_slots, cur.message) == \
            (want.phase, want.cookie, want.used_slots, want.message)
        self.devices[device] = want
        if not same:
            self._changed.set()

    async def run(self) -> None:
        backoff = Backoff(initial=0.5, cap=10.0)
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), self.report_seconds)
                await asyncio.sleep(0.1)  # let a burst of device changes land in one write
            except asyncio.TimeoutError:
                pass
            self._changed.clear()
            try:
                await self.write()
                backoff.reset()
            except st.StoreError as e:  # etcd down, or the Node deleted under us: try again later
                self._changed.set()
                await backoff.sleep(log.warning, "node status: %s; writing again in %.1fs", e)

    async def write(self) -> None:
        def update(n: kr.Node) -> kr.Node:
            del n.status.devices[:]
            n.status.devices.extend(self.devices[d] for d in sorted(self.devices))
            n.status.last_heartbeat.GetCurrentTime()
            return n
        await self.store.mutate(st.NODES, "", self.node, update)
