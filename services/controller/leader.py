"""Leader election through an etcd lease: the key exists while its holder keeps the lease alive."""
from __future__ import annotations

import asyncio
import logging

from kubep4 import store as st

log = logging.getLogger(__name__)
LEADER_KEY = f"{st.ROOT}/leader/controller"


class LeaderElector:
    def __init__(self, store: st.Store, identity: str, ttl: int = 5, key: str = LEADER_KEY):
        self.store, self.identity, self.ttl, self.key = store, identity, ttl, key
        self.lease_id = 0
        self.lost = asyncio.Event()

    async def acquire(self) -> None:
        """Block until this process holds the leader key."""
        while True:
            try:
                self.lease_id = await self.store.grant_lease(self.ttl)
                if await self.store.put_if_absent(self.key, self.identity.encode(), self.lease_id):
                    self.lost.clear()
                    log.info("%s is the leader", self.identity)
                    return
                await self.store.revoke_lease(self.lease_id)
                holder = await self.store.get_raw(self.key)
                if holder is None:
                    continue
                log.info("%s waits: %s leads", self.identity, holder[0].decode())
                async for etype, _kv, _prev in self.store.watch_raw(self.key.encode(), holder[1] + 1):
                    if etype == "DELETE":
                        break
            except st.StoreError as e:
                log.warning("leader election: %s", e)
                await asyncio.sleep(1)

    async def keep(self) -> None:
        """Keep the lease alive; returns (and sets ``lost``) when leadership is lost."""
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        try:
            while True:
                await asyncio.sleep(self.ttl / 3)
                try:
                    remaining = await self.store.keepalive(self.lease_id)
                    last_ok = loop.time()
                except st.Unavailable as e:
                    log.warning("leader keepalive failed: %s", e)
                    if loop.time() - last_ok < self.ttl:
                        continue
                    remaining = 0  # the lease has lapsed by now: another controller may lead
                if remaining <= 0:
                    log.warning("%s lost the leader lease", self.identity)
                    return
        finally:
            self.lost.set()

    async def release(self) -> None:
        if self.lease_id:
            await self.store.revoke_lease(self.lease_id)
