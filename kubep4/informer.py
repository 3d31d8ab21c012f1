"""List-then-watch caches of etcd objects, and a deduplicating work queue.

An Informer keeps an in-memory copy of one kind, calls ``handler(event_type, obj)``
for every change, and relists from scratch when the watch breaks (etcd restart,
compaction). Handlers should only enqueue keys: reconcilers read the cache.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from kubep4 import store as st
from kubep4.backoff import Backoff

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """FIFO of keys; a key already waiting is not added twice, a key being processed is re-queued after.

    ``add(key, cause=revision)`` names the etcd revision of the event that asks; a reconciler tells the
    queue which revisions it wrote itself (``wrote(key, revision)``), and the event of a key's own write
    (before or after its reconcile ends) does not make it processed again: it has acted on it already."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: dict[K, set | None] = {}  # key -> causes seen while processing (None: unconditional)
        self._own: dict[K, set] = {}           # key -> revisions it wrote whose events have not come yet
        self._timers: dict[K, asyncio.TimerHandle] = {}  # at most one pending retry per key

    def add(self, key: K, cause: Hashable | None = None) -> None:
        own = self._own.get(key)
        if cause is not None and own and cause in own:  # the event of our own write
            own.discard(cause)
            if not own:
                del self._own[key]
            return
        if key in self._processing:
            causes = self._dirty.get(key, set())
            if causes is not None and cause is not None:
                causes.add(cause)
            self._dirty[key] = causes if cause is not None else None
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Add the key after ``delay`` seconds; an earlier pending retry of the same key wins."""
        loop = asyncio.get_running_loop()
        pending = self._timers.get(key)
        if pending is not None and pending.when() <= loop.time() + delay:
            return
        if pending is not None:
            pending.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        key = await self._queue.get()
        self._waiting.discard(key)
        self._processing.add(key)
        timer = self._timers.pop(key, None)  # processing now makes a pending retry moot
        if timer is not None:
            timer.cancel()
        return key

    def wrote(self, key: K, revision: int) -> None:
        """The reconcile of ``key`` wrote ``revision``: that write's event needs no new pass."""
        own = self._own.setdefault(key, set())
        own.add(revision)
        if len(own) > 64:  # events that never came (a relist passed them): forget the oldest
            own.discard(min(own))

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            causes = self._dirty.pop(key)
            own = self._own.get(key, set())
            left = None if causes is None else causes - own
            if causes is not None:
                own -= causes  # their events came while we worked
                if not own:
                    self._own.pop(key, None)
            if left is None or left:
                self.add(key)

    def __len__(self) -> int:
        return len(self._waiting)


def object_key(obj) -> tuple[str, str]:
    return obj.metadata.namespace, obj.metadata.name


class Informer(Generic[st.T]):
    """``shard``: list and watch only that shard of a sharded kind (a node agent: its placements).
    ``indexes``: name -> function of an object giving its index key; ``by(name, value)`` returns
    the objects with that key without scanning the cache (client-go's Indexer). ``add_listener(fn)``:
    ``fn(old, new)`` on every change of the cache (``old`` None when added, ``new`` None when removed),
    our own writes (``observe``/``forget``) and relists included, so a derived cache follows exactly."""

    def __init__(self, store: st.Store, kind: st.Kind, handler: Callable[[str, object], None] | None = None,
                 key: Callable[[object], Hashable] = object_key, shard: str | None = None,
                 indexes: dict[str, Callable[[object], Hashable]] | None = None):
        self.store = store
        self.kind = kind
        self.shard = shard
        self._index_fns = dict(indexes or {})
        self._indexes: dict[str, dict[Hashable, dict[Hashable, object]]] = {n: {} for n in self._index_fns}
        self.handler = handler or (lambda t, o: None)
        self.key = key
        self.cache: dict[Hashable, object] = {}
        self.synced = asyncio.Event()
        self.revision = 0
        self.error = ""  # why the last list or watch failed, until the next list succeeds
        self._listeners: list[Callable[[object | None, object | None], None]] = []

    def add_listener(self, fn: Callable[[object | None, object | None], None]) -> None:
        self._listeners.append(fn)

    def get(self, key: Hashable):
        return self.cache.get(key)

    def items(self) -> list:
        return list(self.cache.values())

    def by(self, index: str, value: Hashable) -> list:
        """The cached objects whose ``index`` key is ``value``."""
        return list(self._indexes[index].get(value, {}).values())

    # every change of the cache goes through these two, so the indexes follow it
    def _set(self, k: Hashable, obj) -> None:
        old = self.cache.get(k)
        if old is not None:
            self._unindex(k, old)
        self.cache[k] = obj
        for name, fn in self._index_fns.items():
            self._indexes[name].setdefault(fn(obj), {})[k] = obj
        for listener in self._listeners:
            listener(old, obj)

    def _pop(self, k: Hashable):
        old = self.cache.pop(k, None)
        if old is not None:
            self._unindex(k, old)
            for listener in self._listeners:
                listener(old, None)
        return old

    def _unindex(self, k: Hashable, obj) -> None:
        for name, fn in self._index_fns.items():
            value = fn(obj)
            bucket = self._indexes[name].get(value)
            if bucket is not None:
                bucket.pop(k, None)
                if not bucket:
                    del self._indexes[name][value]

    def observe(self, obj) -> None:
        """Record our own write at once (the watch event follows and is idempotent).

        A write the watch has already passed is not recorded: if the object is missing from the
        cache by then, it was deleted after our write, and re-adding it would leave a ghost.
        """
        k = self.key(obj)
        cur = self.cache.get(k)
        rv = obj.metadata.resource_version
        if cur is None:
            if rv > self.revision:
                self._set(k, obj)
        elif cur.metadata.resource_version <= rv:
            self._set(k, obj)

    def forget(self, obj) -> None:
        self._pop(self.key(obj))

    async def run(self) -> None:
        backoff = Backoff(initial=0.1, cap=5.0)
        while True:
            try:
                items, rev = await self.store.list(self.kind, shard=self.shard)
                fresh = {self.key(o): o for o in items}
                gone = [self._pop(k) for k in [k for k in self.cache if k not in fresh]]
                for k, o in fresh.items():
                    self._set(k, o)
                self.revision = rev
                for o in gone:
                    self.handler("DELETED", o)
                for o in items:
                    self.handler("SYNC", o)
                self.synced.set()
                self.error = ""
                backoff.reset()
                async for ev in self.store.watch(self.kind, start_revision=rev + 1, shard=self.shard):
                    k = self.key(ev.object)
                    if ev.type == "DELETED":
                        # hand on the last state we knew (a delete may carry only the key)
                        ev.object = self._pop(k) or ev.object
                    else:
                        cur = self.cache.get(k)
                        if cur is None or cur.metadata.resource_version <= ev.revision:
                            self._set(k, ev.object)
                    self.revision = ev.revision
                    self.handler(ev.type, ev.object)
                raise st.Unavailable("watch ended")
            except (st.Unavailable, st.Compacted) as e:
                self.error = str(e)
                await backoff.sleep(log.warning, "%s informer: %s; relisting in %.1fs", self.kind.name, e)
            except Exception as e:  # never a silent stall: any failure (a list too large...) is retried
                self.error = f"{type(e).__name__}: {e}"
                await backoff.sleep(log.exception, "%s informer failed; relisting in %.1fs", self.kind.name)


async def report_health(health, informers: list[Informer], period: float = 1.0) -> None:
    """Keep a gRPC health servicer NOT_SERVING while any informer's list or watch is failing."""
    from grpc_health.v1 import health_pb2
    while True:
        bad = [i for i in informers if i.error]
        await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING if bad
                         else health_pb2.HealthCheckResponse.SERVING)
        await asyncio.sleep(period)


async def run_workers(queue: WorkQueue, reconcile: Callable[[Hashable], Awaitable[float | None]],
                      workers: int = 4, name: str = "reconcile") -> None:
    """Process keys forever. reconcile returns a requeue delay (seconds) or None."""
    async def worker() -> None:
        while True:
            key = await queue.get()
            try:
                delay = await reconcile(key)
            except st.Conflict:
                delay = 0.0
            except (st.Unavailable, st.NotLeader) as e:
                log.warning("%s %s: %s", name, key, e)
                delay = 1.0
            except Exception:
                log.exception("%s %s failed", name, key)
                delay = 2.0
            finally:
                queue.done(key)
            if delay is not None:
                if delay <= 0:
                    queue.add(key)
                else:
                    queue.add_after(key, delay)

    await asyncio.gather(*(worker() for _ in range(workers)))
