"""One etcd watch per kind feeding every client watch, as kube-apiserver's watch cache does.

The cache keeps the last ``capacity`` events of its kind. A client watch starting at a revision
the cache still covers is served from it (the events it missed replayed from the buffer, then
live); one starting further back is served by its own etcd watch (see ``KubeP4Servicer``).
Each subscriber has a bounded queue: one that falls ``limit`` events behind is dropped and told
so, and nothing piles up for it.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque

from kubep4 import store as st
from kubep4.backoff import Backoff

log = logging.getLogger(__name__)


class TooSlow(Exception):
    """The subscriber fell its queue's length behind."""


class Subscriber:
    def __init__(self, namespace: str | None, name: str, limit: int, start: int = 0):
        self.namespace, self.name, self.limit = namespace, name, limit
        # the first revision it wants: a cache whose etcd watch lags behind the subscriber's own list
        # still delivers older events live, and an object older than the list would go back in time
        self.start = start
        self.queue: asyncio.Queue = asyncio.Queue()
        self.ended = asyncio.Event()
        self.error: Exception | None = None  # why it ended: TooSlow, or the watch broke

    def wants(self, ev: st.Event) -> bool:
        md = ev.object.metadata
        return ev.revision >= self.start and (not self.namespace or md.namespace == self.namespace) and \
            (not self.name or md.name == self.name)

    def offer(self, ev: st.Event) -> bool:
        """False once the subscriber is too far behind (it is then ended)."""
        if not self.wants(ev):
            return True
        if self.queue.qsize() >= self.limit:
            self.end(TooSlow())
            return False
        self.queue.put_nowait(ev)
        return True

    def end(self, error: Exception) -> None:
        if not self.ended.is_set():
            self.error = error
            self.ended.set()


class WatchCache:
    def __init__(self, store: st.Store, kind: st.Kind, capacity: int = 1000):
        self.store, self.kind = store, kind
        self.events: deque[st.Event] = deque(maxlen=capacity)
        self.complete_after = -1   # every event after this revision is in the buffer (or yet to come)
        self.revision = 0          # the last revision the cache's watch reached
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task | None = None
        self.watches_started = 0   # etcd watches this cache opened (one, unless etcd broke it)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def subscribe(self, namespace: str | None, name: str, start: int, limit: int) -> Subscriber | None:
        """A subscriber receiving every event from revision ``start`` on, or None when the cache does
        not cover ``start`` (the caller watches etcd itself)."""
        if self.complete_after < 0 or start - 1 < self.complete_after:
            return None
        sub = Subscriber(namespace, name, limit, start)
        for ev in self.events:  # no await from here on: nothing can slip in between
            if not sub.offer(ev):
                return sub
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def _run(self) -> None:
        backoff = Backoff(initial=0.1, cap=5.0)
        while True:
            try:
                if self.complete_after < 0:
                    self.revision = self.complete_after = await self.store.revision()
                self.watches_started += 1
                async for ev in self.store.watch(self.kind, start_revision=self.revision + 1):
                    backoff.reset()
                    if len(self.events) == self.events.maxlen:
                        self.complete_after = self.events[0].revision
                    self.events.append(ev)
                    self.revision = ev.revision
                    for sub in list(self.subscribers):
                        if not sub.offer(ev):
                            self.subscribers.discard(sub)
                raise st.Unavailable("watch ended")
            except Exception as e:  # subscribers are told, and resume on their own
                if isinstance(e, st.Compacted):  # events were lost: start afresh from now
                    self.events.clear()
                    self.complete_after = -1
                for sub in list(self.subscribers):
                    sub.end(e if isinstance(e, st.StoreError) else st.Unavailable(str(e)))
                self.subscribers.clear()
                await backoff.sleep(log.warning, "%s watch cache: %s; watching again in %.1fs",
                                    self.kind.name, e)
