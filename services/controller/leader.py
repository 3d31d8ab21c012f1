"""Leader election through an etcd lease: the key exists while its holder keeps the lease alive."""
from __future__ import annotations

import asyncio
import logging

from kubep4 import store as st
from kubep4.backoff import Backoff

log = logging.getLogger(__name__)
LEADER_KEY = f"{st.ROOT}/leader/controller"


class LeaderElector:
    def __init__(self, store: st.Store, identity: str, ttl: int = 5, key: str = LEADER_KEY):
        self.store, self.identity, self.ttl, self.key = store, identity, ttl, key
        self.lease_id = 0
        self.lost = asyncio.Event()
        self._expires = 0.0  # event-loop time until which the lease is known to be valid

    async def acquire(self) -> None:
        """Block until this process holds the leader key."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(initial=0.1, cap=1.0)  # at least once a second, as the etcd channels reconnect
        while True:
            try:
                granted = loop.time()
                self.lease_id = await self.store.grant_lease(self.ttl)
                if await self.store.put_if_absent(self.key, self.identity.encode(), self.lease_id):
                    self.lost.clear()
                    self._expires = granted + self.ttl
                    log.info("%s is the leader", self.identity)
                    return
                backoff.reset()  # etcd answers: somebody else holds the key
                await self.store.revoke_lease(self.lease_id)
                holder = await self.store.get_raw(self.key)
                if holder is None:
                    continue
                log.info("%s waits: %s leads", self.identity, holder[0].decode())
                async for etype, _kv, _prev in self.store.watch_raw(self.key.encode(), holder[1] + 1):
                    if etype == "DELETE":
                        break
            except st.StoreError as e:
                await backoff.sleep(log.warning, "leader election: %s; trying again in %.1fs", e)

    async def keep(self) -> None:
        """Keep the lease alive; returns (and sets ``lost``) when leadership is lost.

        The lease is known to be valid until ``sent + remaining TTL`` of the last answered keepalive
        (times taken *before* sending, so a slow answer only shortens it). Leadership is given up a
        margin before that moment when etcd does not answer, not after the lease has lapsed.
        """
        loop = asyncio.get_running_loop()
        margin = max(0.2, self.ttl * 0.2)
        try:
            while True:
                await asyncio.sleep(max(0.0, min(self.ttl / 3, self._expires - margin - loop.time())))
                left = self._expires - margin - loop.time()
                if left <= 0:
                    log.warning("%s: leader lease unconfirmed for too long; stepping down", self.identity)
                    return
                sent = loop.time()
                try:
                    remaining = await asyncio.wait_for(self.store.keepalive(self.lease_id), left)
                except (st.Unavailable, asyncio.TimeoutError) as e:
                    log.warning("leader keepalive failed: %s", e or "timeout")
                    continue
                if remaining <= 0:
                    log.warning("%s lost the leader lease", self.identity)
                    return
                self._expires = sent + remaining
        finally:
            self.lost.set()

    async def release(self) -> None:
        if self.lease_id:
            await self.store.revoke_lease(self.lease_id)
