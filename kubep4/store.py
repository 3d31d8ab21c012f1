"""Typed access to etcd: KubeP4's only state.

Keys are laid out by kind / namespace / name::

    /kubep4/pipelines/<ns>/<name>
    /kubep4/deployments/<ns>/<name>
    /kubep4/nodes/<name>
    /kubep4/placements/<node>/<ns>/<name>     (name = <deployment>-<replica>; under its node, spec.node)
    /kubep4/blobs/<digest>/<chunk>            (content-addressed artifact chunks)
    /kubep4/leases/nodes/<name>               (node heartbeat, attached to a lease)

Every write is one etcd transaction guarded by the key's mod_revision (which is the
object's ``metadata.resource_version``): a stale write raises Conflict, never
overwrites. Watches resume from a revision and say when it was compacted.

Connection: one endpoint (``Store("127.0.0.1:2379")``, plaintext, no retry: an unreachable etcd
is Unavailable at once) or several members (``Store("h1:2379,h2:2379,h3:2379")`` or a list), with
``tls=ClientTLS(ca, cert, key)`` for https and a client certificate. With several members the
Store talks to one at a time and moves to the next when it fails: see ``_call`` for which failures
are retried there and ``watch_raw`` for how a watch carries on from its last revision.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.watcher
import grpc
from aetcd import rpc
from google.protobuf.message import Message
from opentelemetry import trace

from kubep4.backoff import Backoff
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import digest_of
from kubep4.reloading import ReloadingFiles
from kubep4.tls import ClientTLS

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.store")

ROOT = "/kubep4"
CHUNK_SIZE = 1 << 20  # 1 MiB: etcd's default request limit is 1.5 MiB
T = TypeVar("T", bound=Message)


class StoreError(Exception):
    """Base class of store errors."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """The object changed since it was read (resource_version mismatch)."""


class Unavailable(StoreError):
    """etcd cannot be reached."""


class NotLeader(StoreError):
    """A fenced write was refused: the writer's leader lease no longer holds the leader key."""


class Missing(StoreError):
    """An object the write depends on does not exist (any more)."""


class Crowded(Conflict):
    """A create guarded by ``no_new_since`` lost: another object appeared under the prefix since the
    caller counted it (a quota decided on that count must be decided again)."""


class TooLarge(StoreError):
    """etcd refused the request as too large, or its space quota is exhausted."""


class Rejected(StoreError):
    """etcd refused the request as invalid."""


class Forbidden(Unavailable):
    """etcd refused this client's identity (auth on: the certificate's CN is not a user, or its roles
    do not cover the key). An Unavailable to every retry loop: a deployment's roles are wrong, and
    nothing this process does will fix that, but it must not be mistaken for an answer."""


def _rpc_error(endpoint: str, e: "rpc.AioRpcError") -> StoreError:
    """One table from etcd's status codes to store errors: only an unreachable etcd is Unavailable
    (and a refused identity, Forbidden, a kind of it)."""
    code = e.code()
    msg = f"etcd at {endpoint}: {code.name} {e.details()}"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return TooLarge(msg)
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return Forbidden(msg)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
                grpc.StatusCode.FAILED_PRECONDITION):
        return Rejected(msg)
    return Unavailable(msg)


class Compacted(StoreError):
    """A watch asked for a revision etcd has already compacted."""

    def __init__(self, compact_revision: int):
        super().__init__(f"revision compacted; oldest available is {compact_revision}")
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class Kind(Generic[T]):
    name: str            # plural, used in keys
    message: type[T]
    namespaced: bool
    # extra key segment taken from the object (placements: spec.node)
    shard: Callable[[Any], str] | None = None

    def prefix(self, namespace: str | None = None, shard: str | None = None) -> str:
        parts = [ROOT, self.name]
        if self.shard is not None:
            if shard is None:
                return "/".join(parts) + "/"
            parts.append(shard)
        if self.namespaced and namespace:
            parts.append(namespace)
        return "/".join(parts) + "/"

    def key(self, obj: T) -> str:
        md = obj.metadata
        shard = self.shard(obj) if self.shard else None
        ns = md.namespace if self.namespaced else None
        return self.prefix(ns, shard) + md.name

    def key_for(self, namespace: str, name: str, shard: str | None = None) -> str:
        return self.prefix(namespace if self.namespaced else None, shard) + name


# gRPC's reconnect back-off grows to 120 s by default: after etcd was down half a minute, every
# service would go on answering UNAVAILABLE for many seconds after it is back. Try every second.
RECONNECT = {"grpc.initial_reconnect_backoff_ms": 100, "grpc.min_reconnect_backoff_ms": 100,
             "grpc.max_reconnect_backoff_ms": 1000}

# With several members, a member that hangs (a frozen process, a dead link: no error, no data) is
# noticed by keepalive pings on the calls open on it (a watch): unanswered for 5 s, the transport
# closes, the watch fails and is reopened on another member. etcd accepts pings every 5 s
# (--grpc-keepalive-min-time) while a call is open; none are sent on an idle channel.
MEMBER_KEEPALIVE = {"grpc.keepalive_time_ms": 10_000, "grpc.keepalive_timeout_ms": 5_000,
                    "grpc.http2.ping_timeout_ms": 5_000}

# keys per etcd range of a list: with objects of up to ~1 MiB, a page stays far below the
# client's 256 MiB message limit and etcd's own request bounds
LIST_PAGE = 100

PIPELINES: Kind[kr.Pipeline] = Kind("pipelines", kr.Pipeline, True)
DEPLOYMENTS: Kind[kr.Deployment] = Kind("deployments", kr.Deployment, True)
NODES: Kind[kr.Node] = Kind("nodes", kr.Node, False)
# under their node: /kubep4/placements/<node>/<namespace>/<name>, so each node agent lists and
# watches only its own (moving to another node is a `move`: delete and create in one transaction)
PLACEMENTS: Kind[kr.Placement] = Kind("placements", kr.Placement, True, shard=lambda p: p.spec.node)
# a Deployment's immutable revisions, <deployment>-<n>, written by the controller (docs/rollouts.md)
REVISIONS: Kind[kr.Revision] = Kind("revisions", kr.Revision, True)
NODE_LEASES = f"{ROOT}/leases/nodes/"
BLOBS = f"{ROOT}/blobs/"
BUILDS = f"{ROOT}/builds/"  # the builders' claims: one compile per digest (services/builder)


@dataclass
class Event(Generic[T]):
    type: str  # ADDED | MODIFIED | DELETED
    object: T
    revision: int


def _range_end(prefix: bytes) -> bytes:
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def _decode(kind: Kind[T], value: bytes, mod_revision: int) -> T:
    obj = kind.message.FromString(value)
    obj.metadata.resource_version = mod_revision
    return obj


def _encode(obj: Message) -> bytes:
    copy = type(obj)()
    copy.CopyFrom(obj)
    copy.metadata.resource_version = 0  # the key's mod_revision is the truth
    return copy.SerializeToString(deterministic=True)


class Store:
    """An asyncio etcd client for KubeP4 objects. One per process."""

    def __init__(self, endpoints: str | Sequence[str] = "127.0.0.1:2379", timeout: float = 5.0,
                 tls: ClientTLS | None = None):
        """``endpoints``: host:port, several comma-separated, or a list. ``tls``: https to every
        member, with the client certificate when it has one (read now: a missing file is named at
        once, not at the first request)."""
        self.endpoints = parse_endpoints(endpoints, tls)
        # (key, lease id): when set, every transaction also compares that the key is held under that
        # lease — a controller's writes are fenced by its leadership
        self.fence: tuple[str, int] | None = None
        self._releasing: set[asyncio.Future] = set()  # releases of creates whose caller was cancelled
        self._client = _Client(self.endpoints, tls, timeout,
                               {"grpc.max_receive_message_length": 64 << 20, **RECONNECT,
                                **(MEMBER_KEEPALIVE if len(self.endpoints) > 1 else {})})
        # with several members: tries of one call before it fails (each on the next member, after a
        # backoff: about 5 s in all, the time an election takes after the leader died)
        self._attempts = 1 if len(self.endpoints) == 1 else max(6, 3 * len(self.endpoints))

    @property
    def endpoint(self) -> str:
        """The member this Store talks to now."""
        return self.endpoints[self._client.current]

    async def __aenter__(self) -> "Store":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        try:
            await self._client.connect()
        except aetcd.exceptions.ClientError as e:
            raise Unavailable(f"etcd at {self.endpoint}: {e}") from e

    async def close(self) -> None:
        await self._client.close()

    @property
    def client(self) -> aetcd.Client:
        return self._client

    async def _call(self, call: Callable[["_Client"], Any], idempotent: bool) -> Any:
        """``await call(client)`` on the current member; with several members, a failure of that
        member moves the Store to the next one and, when it is safe, tries the call there.

        Reads (``idempotent``) are tried again on any UNAVAILABLE or DEADLINE_EXCEEDED. A write
        is tried again only when etcd surely did not apply it: no connection could be made, or the
        member refused it for having no leader (the "hasleader" metadata, checked before the
        request is handled). A write whose connection broke while in flight may have been applied:
        it raises Unavailable, as etcd's own client does (its retry policy for mutations). Writes
        are conditional (on a resource version, on absence), so a caller that tries again sees
        Conflict or AlreadyExists where the first try had landed, never a write applied twice
        over a newer one. With one endpoint nothing is tried again, as before."""
        await self.connect()
        self._client.renew_if_changed()
        backoff: Backoff | None = None
        attempt = 0
        while True:
            index = self._client.current
            try:
                return await call(self._client)
            except rpc.AioRpcError as e:
                attempt += 1
                if len(self.endpoints) == 1 or e.code() not in _MEMBER_FAILED:
                    raise _rpc_error(self.endpoints[index], e) from e
                self._client.failover(index)
                if attempt >= self._attempts or not (idempotent or _not_sent(e)):
                    raise _rpc_error(self.endpoints[index], e) from e
                backoff = backoff or Backoff(initial=0.05, cap=1.0)
                await backoff.sleep(log.info, "etcd at %s: %s %s; trying %s in %.2fs", self.endpoints[index],
                                    e.code().name, e.details(), self.endpoint)

    # ------------------------------------------------------------------ raw KV
    async def _txn(self, compare: list, success: list, failure: list | None = None) -> rpc.TxnResponse:
        await self.connect()
        failure = list(failure or [])
        fence = self.fence
        if fence is not None:  # every write also requires that we still hold the leader lease
            key, lease = fence
            compare = [*compare, rpc.Compare(key=key.encode(), target=rpc.Compare.LEASE,
                                             result=rpc.Compare.EQUAL, lease=lease)]
            failure.append(self._get_op(key.encode()))
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        resp = await self._call(lambda c: c.kvstub.Txn(request, timeout=c._timeout, metadata=c.metadata),
                                idempotent=False)
        if fence is not None and not resp.succeeded:
            holder = resp.responses[-1].response_range.kvs
            if not holder or holder[0].lease != fence[1]:
                raise NotLeader(f"the leader lease {fence[1]:x} is gone: this controller no longer leads")
        return resp

    async def _range(self, key: bytes, range_end: bytes | None = None, revision: int = 0,
                     keys_only: bool = False, limit: int = 0) -> rpc.RangeResponse:
        request = rpc.RangeRequest(key=key, range_end=range_end or b"", revision=revision,
                                   keys_only=keys_only, limit=limit)
        return await self._call(lambda c: c.kvstub.Range(request, timeout=c._timeout, metadata=c.metadata),
                                idempotent=True)

    @staticmethod
    def _cmp_mod(key: bytes, rev: int) -> rpc.Compare:
        return rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=rev)

    @staticmethod
    def _cmp_absent(key: bytes) -> rpc.Compare:
        return rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)

    @staticmethod
    def _put(key: bytes, value: bytes, lease: int = 0) -> rpc.RequestOp:
        return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))

    @staticmethod
    def _get_op(key: bytes) -> rpc.RequestOp:
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))

    @staticmethod
    def _count_op(key: bytes, range_end: bytes = b"", min_mod_revision: int = 0) -> rpc.RequestOp:
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=key, range_end=range_end, count_only=True,
                                                            min_mod_revision=min_mod_revision))

    async def count(self, kind: Kind[T], namespace: str | None = None) -> tuple[int, int]:
        """How many objects are under the prefix, and the revision counted at."""
        prefix = kind.prefix(namespace).encode()
        request = rpc.RangeRequest(key=prefix, range_end=_range_end(prefix), count_only=True)
        r = await self._call(lambda c: c.kvstub.Range(request, timeout=c._timeout, metadata=c.metadata),
                             idempotent=True)
        return r.count, r.header.revision

    async def db_size(self) -> int:
        """The size of etcd's database (what its --quota-backend-bytes limits), from Maintenance Status."""
        r = await self._call(lambda c: c.maintenancestub.Status(rpc.StatusRequest(), timeout=c._timeout,
                                                                metadata=c.metadata), idempotent=True)
        return r.dbSize

    async def revision(self) -> int:
        r = await self._range(f"{ROOT}/".encode(), keys_only=True)
        return r.header.revision

    # ------------------------------------------------------------------ objects
    async def create(self, kind: Kind[T], obj: T, lease: int = 0, requires: str | Sequence[str] = "",
                     no_new_since: tuple[str, int] | None = None) -> T:
        """Create if absent; sets uid, generation 1 and creation time. Returns the stored object.

        ``requires``: a key (or keys) that must exist in the same transaction (a Deployment's
        Pipeline, a Pipeline's artifact chunks), else Missing. ``no_new_since`` (prefix, revision): no
        key under the prefix was created after that revision, else Crowded ("the namespace still holds
        what I counted").
        """
        obj = _copy(obj)
        md = obj.metadata
        if not md.uid:
            md.uid = str(uuid.uuid4())
        md.generation = md.generation or 1
        if not md.HasField("creation_timestamp"):
            md.creation_timestamp.GetCurrentTime()
        key = kind.key(obj).encode()
        needed = [k for k in ([requires] if isinstance(requires, str) else requires) if k]
        cmp = [self._cmp_absent(key)]
        cmp += [rpc.Compare(key=k.encode(), target=rpc.Compare.CREATE, result=rpc.Compare.GREATER,
                            create_revision=0) for k in needed]
        if no_new_since is not None:
            prefix = no_new_since[0].encode()
            cmp.append(rpc.Compare(key=prefix, range_end=_range_end(prefix), target=rpc.Compare.CREATE,
                                   result=rpc.Compare.LESS, create_revision=no_new_since[1] + 1))
        with tracer.start_as_current_span("etcd txn create", attributes={"etcd.key": key.decode()}):
            resp = await self._txn(cmp, [self._put(key, _encode(obj), lease)],
                                   [self._count_op(key)] + [self._count_op(k.encode()) for k in needed])
        if not resp.succeeded:
            if resp.responses[0].response_range.count:
                raise AlreadyExists(f"{kind.name[:-1]} {_ident(md)} already exists")
            for k, r in zip(needed, resp.responses[1:]):
                if not r.response_range.count:
                    raise Missing(f"{k.rsplit('/', 3)[-3][:-1]} {'/'.join(k.rsplit('/', 2)[-2:])} "
                                  "no longer exists")
            raise Crowded(f"{kind.name[:-1]} {_ident(md)}: another object was created under "
                          f"{no_new_since[0] if no_new_since else ''} meanwhile; retry")
        md.resource_version = resp.header.revision
        return obj

    async def create_all(self, kind: Kind[T], objs: Sequence[T]) -> list[T]:
        """Create several objects in one transaction: all of them, or none (AlreadyExists names the
        first that exists). Sets uid, generation 1 and creation time as ``create`` does."""
        out, keys = [], []
        for obj in objs:
            obj = _copy(obj)
            md = obj.metadata
            md.uid = md.uid or str(uuid.uuid4())
            md.generation = md.generation or 1
            if not md.HasField("creation_timestamp"):
                md.creation_timestamp.GetCurrentTime()
            out.append(obj)
            keys.append(kind.key(obj).encode())
        if len(set(keys)) != len(keys):
            raise ValueError("create_all: the same key twice")
        with tracer.start_as_current_span("etcd txn create", attributes={"etcd.keys": len(keys)}):
            resp = await self._txn([self._cmp_absent(k) for k in keys],
                                   [self._put(k, _encode(o)) for k, o in zip(keys, out)],
                                   [self._count_op(k) for k in keys])
        if not resp.succeeded:
            for obj, r in zip(out, resp.responses):
                if r.response_range.count:
                    raise AlreadyExists(f"{kind.name[:-1]} {_ident(obj.metadata)} already exists")
            raise Conflict(f"{kind.name}: the transaction failed")
        for obj in out:
            obj.metadata.resource_version = resp.header.revision
        return out

    async def get(self, kind: Kind[T], namespace: str, name: str, shard: str | None = None) -> T:
        key = kind.key_for(namespace, name, shard).encode()
        r = await self._range(key)
        if not r.kvs:
            raise NotFound(f"{kind.name[:-1]} {namespace + '/' if kind.namespaced else ''}{name} not found")
        return _decode(kind, r.kvs[0].value, r.kvs[0].mod_revision)

    async def list(self, kind: Kind[T], namespace: str | None = None,
                   shard: str | None = None, page: int = LIST_PAGE) -> tuple[list[T], int]:
        """All objects under the prefix, and the etcd revision they were read at.

        Read ``page`` keys at a time, every page at the first page's revision (one consistent
        view, as a Kubernetes list with ``continue``): no answer from etcd outgrows the message
        limit however much the prefix holds.
        """
        prefix = kind.prefix(namespace, shard).encode()
        end, key, revision, out = _range_end(prefix), prefix, 0, []
        while True:
            r = await self._range(key, end, revision=revision, limit=page)
            revision = revision or r.header.revision
            out += [_decode(kind, kv.value, kv.mod_revision) for kv in r.kvs]
            if not r.more or not r.kvs:
                return out, revision
            key = r.kvs[-1].key + b"\0"

    async def list_page(self, kind: Kind[T], namespace: str | None, after: bytes = b"", revision: int = 0,
                        limit: int = LIST_PAGE, max_bytes: int = 0) -> tuple[list[T], int, bytes]:
        """One page of a list: up to ``limit`` objects (and, with ``max_bytes``, about that many bytes)
        after the key ``after``, read at ``revision`` (0: now). Returns the objects, the revision read
        at, and the key to continue after (b"" on the last page)."""
        prefix = kind.prefix(namespace).encode()
        start = after + b"\0" if after else prefix
        if not start.startswith(prefix):
            raise Rejected("the continue token is not for this list")
        r = await self._range(start, _range_end(prefix), revision=revision, limit=limit)
        out, size, last = [], 0, b""
        for kv in r.kvs:
            if out and max_bytes and size + len(kv.value) > max_bytes:
                return out, revision or r.header.revision, last
            out.append(_decode(kind, kv.value, kv.mod_revision))
            size, last = size + len(kv.value), kv.key
        return out, revision or r.header.revision, last if r.more else b""

    async def update(self, kind: Kind[T], obj: T, lease: int = 0) -> T:
        """Write obj if its resource_version is still the stored mod_revision, else Conflict."""
        key = kind.key(obj).encode()
        rv = obj.metadata.resource_version
        with tracer.start_as_current_span("etcd txn update", attributes={"etcd.key": key.decode()}):
            resp = await self._txn([self._cmp_mod(key, rv)], [self._put(key, _encode(obj), lease)],
                                   [self._get_op(key)])
        if not resp.succeeded:
            if not resp.responses[0].response_range.kvs:
                raise NotFound(f"{kind.name[:-1]} {_ident(obj.metadata)} not found")
            raise Conflict(f"{kind.name[:-1]} {_ident(obj.metadata)} was modified "
                           f"(resource_version {rv} is stale)")
        return _written(obj, resp.header.revision)

    async def mutate(self, kind: Kind[T], namespace: str, name: str, fn: Callable[[T], T | None],
                     shard: str | None = None, attempts: int = 20, current: T | None = None) -> T | None:
        """Read-modify-write with retry on conflict. fn returns the new object, or None to skip.

        ``current``: a recent copy (an informer's) to try first, saving the read when it is still current.
        """
        for _ in range(attempts):
            cached = current is not None
            if cached:
                cur, current = current, None
            else:
                try:
                    cur = await self.get(kind, namespace, name, shard)
                except NotFound:
                    return None
            new = fn(_copy(cur))
            if new is None or new == cur:
                if cached:
                    continue  # decide "nothing to do" on what etcd holds, not on a copy
                return cur
            try:
                return await self.update(kind, new)
            except Conflict:
                await asyncio.sleep(0)
            except NotFound:
                return None
        raise Conflict(f"{kind.name[:-1]} {namespace}/{name}: too many conflicting writers")

    async def move(self, kind: Kind[T], obj: T, from_shard: str) -> T:
        """Write obj, whose shard changed, under its new key: the old key (still at obj's
        resource_version, else Conflict) is deleted and the new one created, in one transaction."""
        md = obj.metadata
        old = kind.key_for(md.namespace, md.name, from_shard).encode()
        new = kind.key(obj).encode()
        with tracer.start_as_current_span("etcd txn move", attributes={"etcd.key": new.decode()}):
            resp = await self._txn([self._cmp_mod(old, md.resource_version), self._cmp_absent(new)],
                                   [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=old)),
                                    self._put(new, _encode(obj))],
                                   [self._get_op(old), self._get_op(new)])
        if not resp.succeeded:
            if not resp.responses[0].response_range.kvs:
                raise NotFound(f"{kind.name[:-1]} {_ident(md)} not found")
            if resp.responses[1].response_range.kvs:
                raise AlreadyExists(f"{kind.name[:-1]} {_ident(md)} already exists under {new.decode()}")
            raise Conflict(f"{kind.name[:-1]} {_ident(md)} was modified "
                           f"(resource_version {md.resource_version} is stale)")
        return _written(obj, resp.header.revision)

    async def delete(self, kind: Kind[T], namespace: str, name: str, resource_version: int = 0,
                     shard: str | None = None, quiet_prefix: tuple[str, int] | None = None) -> int:
        """Delete (guarded by resource_version when given).

        ``quiet_prefix`` (prefix, revision): only if no key under the prefix changed after that
        revision, in the same transaction (else Conflict): "delete the Pipeline only if no Deployment
        appeared since I checked".
        """
        key = kind.key_for(namespace, name, shard).encode()
        cmp = [self._cmp_mod(key, resource_version)] if resource_version else \
              [rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.GREATER, create_revision=0)]
        if quiet_prefix is not None:
            prefix = quiet_prefix[0].encode()
            cmp.append(rpc.Compare(key=prefix, range_end=_range_end(prefix), target=rpc.Compare.MOD,
                                   result=rpc.Compare.LESS, mod_revision=quiet_prefix[1] + 1))
        with tracer.start_as_current_span("etcd txn delete", attributes={"etcd.key": key.decode()}):
            resp = await self._txn(cmp, [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
                                   [self._get_op(key)])
        if not resp.succeeded:
            if not resp.responses[0].response_range.kvs:
                raise NotFound(f"{kind.name[:-1]} {namespace}/{name} not found")
            raise Conflict(f"{kind.name[:-1]} {namespace}/{name} was modified "
                           f"(resource_version {resource_version} is stale)")
        return resp.header.revision

    async def watch(self, kind: Kind[T], namespace: str | None = None, start_revision: int = 0,
                    shard: str | None = None) -> AsyncIterator[Event[T]]:
        """Events under the prefix from start_revision (inclusive; 0 = from now)."""
        prefix = kind.prefix(namespace, shard).encode()
        async for ev in self.watch_raw(prefix, start_revision):
            etype, kv, prev = ev
            if etype == "DELETE":
                if prev is not None and prev.value:
                    obj = _decode(kind, prev.value, kv.mod_revision)
                else:  # no previous value (compacted): the key still names the object
                    log.warning("watch: DELETE of %s without its previous value", kv.key.decode())
                    obj = _from_key(kind, kv.key.decode(), kv.mod_revision)
                yield Event("DELETED", obj, kv.mod_revision)
            else:
                obj = _decode(kind, kv.value, kv.mod_revision)
                yield Event("ADDED" if kv.create_revision == kv.mod_revision else "MODIFIED",
                            obj, kv.mod_revision)

    async def watch_raw(self, prefix: bytes, start_revision: int = 0) -> AsyncIterator[tuple[str, Any, Any]]:
        """(kind, kv, prev_kv) under the prefix, on a watch stream of its own.

        Not aetcd's shared stream: it pairs a watch-create answer with whichever create is pending, so
        after one create timed out under load a later watch got another's events and its own were
        cancelled (seen at 5,000 hollow nodes: agents received other nodes' placements, or none of
        theirs). One stream per watch costs an HTTP/2 stream on the same channel.

        With several members, a stream that fails (its member died, or lost its leader) is opened
        again on the next member from the revision of the last event handed on (revisions are the
        cluster's, the same on every member); the events of that revision already handed on are
        skipped. The caller sees one unbroken watch, or Compacted, or Unavailable when no member
        answers. With one endpoint a failed stream raises Unavailable, as ever."""
        await self.connect()
        end = _range_end(prefix)
        if len(self.endpoints) == 1:
            async for ev in self._watch_stream(prefix, end, start_revision):
                yield ev
            return
        if not start_revision:  # "from now" must mean the same revision on the member we may move to
            start_revision = (await self._range(prefix, keys_only=True)).header.revision + 1
        last, delivered = 0, set()  # the last revision handed on, and its keys handed on
        backoff = Backoff(initial=0.05, cap=1.0)
        failures = 0

        def opened() -> None:  # a stream that opened is a member that answered: count afresh
            nonlocal failures
            failures = 0
            backoff.reset()
        while True:
            index = self._client.current
            try:
                async for ev in self._watch_stream(prefix, end, last or start_revision, opened):
                    rev, key = ev[1].mod_revision, ev[1].key
                    if rev < last or (rev == last and key in delivered):
                        continue  # handed on before the stream was reopened
                    if rev != last:
                        last, delivered = rev, set()
                    delivered.add(key)
                    yield ev
                raise Unavailable("etcd watch ended")
            except Forbidden:
                raise
            except Unavailable as e:
                failures += 1
                self._client.failover(index)
                if failures >= self._attempts:
                    raise
                await backoff.sleep(log.info, "etcd watch on %s at %s: %s; reopening on %s from revision %d "
                                    "in %.2fs", prefix.decode(errors="replace"), self.endpoints[index], e,
                                    self.endpoint, last or start_revision)

    async def _watch_stream(self, prefix: bytes, end: bytes, start_revision: int,
                            opened: Callable[[], None] | None = None) -> AsyncIterator[tuple[str, Any, Any]]:
        """One watch stream on the current member (``opened()`` once etcd created the watch);
        Unavailable when it fails."""
        events: asyncio.Queue = asyncio.Queue()

        async def deliver(ev) -> None:
            await events.put(ev)
        self._client.renew_if_changed()
        w = _Watcher(rpc.WatchStub(self._client.channel), timeout=self._client._timeout,
                     metadata=self._client.metadata)
        try:
            try:
                await w.add_callback(prefix, deliver, range_end=end, start_revision=start_revision or None,
                                     prev_kv=True)
            except aetcd.exceptions.RevisionCompactedError as e:
                raise Compacted(e.compacted_revision) from e
            except StoreError:  # etcd cancelled the watch (permission denied...)
                raise
            except Exception as e:  # a timeout, the stream failed
                raise Unavailable(f"etcd watch: {type(e).__name__}: {e}") from e
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # cancelled while add_callback waited for etcd's answer: its asyncio.wait_for
                # (Python 3.11) returns the answer and drops the cancel when both come at once,
                # and this watch would wait for events forever (a shutdown that never ends)
                raise asyncio.CancelledError
            if opened is not None:
                opened()
            while True:
                ev = await events.get()
                if isinstance(ev, aetcd.exceptions.RevisionCompactedError):
                    raise Compacted(ev.compacted_revision)
                if isinstance(ev, StoreError):
                    raise ev
                if ev is None or isinstance(ev, BaseException):
                    raise Unavailable(f"etcd watch: {type(ev).__name__}: {ev}" if ev else "etcd watch ended")
                key = ev.kv.key
                if not (prefix <= key and (key < end or end == b"\0")):  # never hand on another's event
                    log.error("etcd watch on %s got an event for %s: a misrouted watch; watching again",
                              prefix.decode(errors="replace"), key.decode(errors="replace"))
                    raise Unavailable(f"etcd watch on {prefix.decode(errors='replace')} was misrouted")
                yield ev.kind, ev.kv, ev.prev_kv
        finally:
            try:
                await w.shutdown()
            except Exception:  # the stream may already be gone
                pass

    # ------------------------------------------------------------------ leases
    async def grant_lease(self, ttl: int) -> int:
        try:  # not idempotent: a grant tried again may leave an unused lease, to expire after ttl
            r = await self._call(lambda c: c.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=c._timeout,
                                                                  metadata=c.metadata), idempotent=False)
        except StoreError as e:
            raise Unavailable(f"etcd lease: {e}") from e
        return r.ID

    async def keepalive(self, lease_id: int) -> int:
        """Refresh a lease; returns the remaining TTL (0 when the lease is gone)."""
        async def once(c: _Client):
            async for reply in c.leasestub.LeaseKeepAlive([rpc.LeaseKeepAliveRequest(ID=lease_id)],
                                                          timeout=c._timeout, metadata=c.metadata):
                return reply
            return None
        try:
            reply = await self._call(once, idempotent=True)
        except StoreError as e:
            raise Unavailable(f"etcd lease keepalive: {e}") from e
        return int(reply.TTL) if reply is not None else 0

    async def revoke_lease(self, lease_id: int) -> None:
        try:
            await self._call(lambda c: c.leasestub.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease_id), timeout=c._timeout,
                                                               metadata=c.metadata), idempotent=True)
        except StoreError:
            pass

    async def put_if_absent(self, key: str, value: bytes, lease: int = 0) -> bool:
        resp = await self._txn([self._cmp_absent(key.encode())], [self._put(key.encode(), value, lease)])
        return resp.succeeded

    async def put_raw(self, key: str, value: bytes, lease: int = 0) -> int:
        resp = await self._txn([], [self._put(key.encode(), value, lease)])
        return resp.header.revision

    async def get_raw(self, key: str) -> tuple[bytes, int] | None:
        r = await self._range(key.encode())
        return (r.kvs[0].value, r.kvs[0].mod_revision) if r.kvs else None

    async def list_raw(self, prefix: str) -> tuple[list[tuple[str, bytes]], int]:
        p = prefix.encode()
        r = await self._range(p, _range_end(p))
        return [(kv.key.decode(), kv.value) for kv in r.kvs], r.header.revision

    async def delete_raw(self, key: str) -> None:
        await self._txn([], [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key.encode()))])

    # ------------------------------------------------------------------ blobs
    async def put_blob(self, data: bytes) -> kr.ArtifactRef:
        """Store data chunked under its digest. No value exceeds CHUNK_SIZE.

        Always written, even when present: the fresh mod_revision tells the artifact collector that
        the blob is wanted again (a collection racing with this write then leaves it alone).
        """
        return (await self._write_blob(data))[0]

    async def _write_blob(self, data: bytes) -> tuple[kr.ArtifactRef, int]:
        """put_blob, and the revision of its last chunk write."""
        digest = digest_of(data)
        chunks = max(1, -(-len(data) // CHUNK_SIZE))
        ref = kr.ArtifactRef(digest=digest, size=len(data), chunks=chunks)
        base = f"{BLOBS}{digest}/"
        revision = 0
        with tracer.start_as_current_span("etcd put blob", attributes={"blob.size": len(data)}):
            for i in range(chunks):
                resp = await self._txn([], [self._put(f"{base}{i:06d}".encode(),
                                                      data[i * CHUNK_SIZE:(i + 1) * CHUNK_SIZE])])
                revision = resp.header.revision
        return ref, revision

    async def get_blob(self, ref: kr.ArtifactRef) -> bytes:
        base = f"{BLOBS}{ref.digest}/".encode()
        r = await self._range(base, _range_end(base))
        data = b"".join(kv.value for kv in r.kvs)
        if len(r.kvs) != ref.chunks or digest_of(data) != ref.digest:
            raise NotFound(f"artifact {ref.digest} is missing or incomplete in etcd")
        return data

    async def blob_digests(self) -> tuple[dict[str, int], int]:
        """Stored artifact digests with the newest mod_revision of their chunks, and the revision read at."""
        base = BLOBS.encode()
        r = await self._range(base, _range_end(base), keys_only=True)
        out: dict[str, int] = {}
        for kv in r.kvs:
            digest = kv.key.decode()[len(BLOBS):].split("/", 1)[0]
            out[digest] = max(out.get(digest, 0), kv.mod_revision)
        return out, r.header.revision

    async def delete_blob(self, digest: str, unchanged_since: int = 0) -> bool:
        """Delete an artifact's chunks; with ``unchanged_since``, only if none was written after that
        revision (in the same transaction). Returns whether it was deleted."""
        return await self._delete_blob(digest, unchanged_since) == "deleted"

    async def _delete_blob(self, digest: str, unchanged_since: int = 0, pipelines_since: int = 0) -> str:
        """delete_blob; with ``pipelines_since``, also only if no Pipeline was written after that
        revision. "deleted", "recheck" (a Pipeline was written: references must be read again) or
        "spared" (a chunk was written again: the blob is wanted)."""
        base = f"{BLOBS}{digest}/".encode()
        end = _range_end(base)
        cmp = [rpc.Compare(key=base, range_end=end, target=rpc.Compare.MOD, result=rpc.Compare.LESS,
                           mod_revision=unchanged_since + 1)] if unchanged_since else []
        failure = []
        if pipelines_since:
            p = PIPELINES.prefix().encode()
            cmp.append(rpc.Compare(key=p, range_end=_range_end(p), target=rpc.Compare.MOD,
                                   result=rpc.Compare.LESS, mod_revision=pipelines_since + 1))
            failure.append(self._count_op(p, _range_end(p), min_mod_revision=pipelines_since + 1))
        resp = await self._txn(cmp, [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(
            key=base, range_end=end))], failure)
        if resp.succeeded:
            return "deleted"
        return "recheck" if pipelines_since and resp.responses[0].response_range.count else "spared"

    async def referenced_digests(self) -> tuple[set[str], int]:
        """The artifact digests committed Pipelines reference, and the revision they were read at."""
        pipelines, revision = await self.list(PIPELINES)
        return {ref.digest for p in pipelines for ref in (p.spec.p4info_ref, p.spec.device_config_ref)
                if ref.digest}, revision

    async def collect_blobs(self, unchanged_since: int, digests: Iterable[str] | None = None,
                            attempts: int = 5) -> tuple[list[str], int]:
        """Delete the blobs no committed Pipeline references and none of whose chunks was written
        after ``unchanged_since`` (the artifact collector's previous mark; a failed create's own last
        write). ``digests``: only these (default: every stored blob). Each delete is conditional in
        etcd: the chunks unchanged since then (a concurrent create of the same artifact re-wrote them:
        spared) and no Pipeline written since the references were read (else they are read again).
        Returns the deleted digests and the revision the blobs were listed at (the next mark)."""
        referenced, seen = await self.referenced_digests()
        if digests is None:
            blobs, revision = await self.blob_digests()
            todo = [d for d, written in blobs.items() if written <= unchanged_since]
        else:
            todo, revision = list(dict.fromkeys(digests)), seen
        deleted: list[str] = []
        if not unchanged_since:  # nothing was written "before never": the first collection only marks
            return deleted, revision
        for attempt in range(attempts):
            recheck = []
            for digest in todo:
                if digest in referenced:
                    continue
                outcome = await self._delete_blob(digest, unchanged_since, pipelines_since=seen)
                if outcome == "deleted":
                    deleted.append(digest)
                elif outcome == "recheck":
                    recheck.append(digest)
            if not recheck or attempt == attempts - 1:
                break
            todo = recheck
            referenced, seen = await self.referenced_digests()
        return deleted, revision

    # ------------------------------------------------------------------ pipelines
    async def create_pipeline(self, pipeline: kr.Pipeline, no_new_since: tuple[str, int] | None = None,
                              attempts: int = 3) -> kr.Pipeline:
        """Store the artifacts as blobs, then the pipeline object referencing them, committed only
        while every chunk is still there (a collection that took one in between: written again).

        Nothing stays behind a create that fails: the blobs it wrote that no committed Pipeline
        references and nobody wrote since are deleted (collect_blobs) before the error is raised.
        ``no_new_since``: as for create (a quota counted at that revision).
        """
        p = _copy(pipeline)
        key = PIPELINES.key(p).encode()
        if (await self._range(key, keys_only=True)).kvs:  # before writing any artifact
            raise AlreadyExists(f"pipeline {_ident(p.metadata)} already exists")
        if not p.spec.HasField("artifacts"):
            return await self.create(PIPELINES, p, no_new_since=no_new_since)
        written: dict[str, int] = {}  # digest -> revision of this create's last write of it
        try:
            for _ in range(attempts):
                refs = []
                for data in (p.spec.artifacts.p4info, p.spec.artifacts.device_config):
                    ref, revision = await self._write_blob(data)
                    written[ref.digest] = revision
                    refs.append(ref)
                obj = _copy(p)
                obj.spec.artifacts.Clear()
                obj.spec.p4info_ref.CopyFrom(refs[0])
                obj.spec.device_config_ref.CopyFrom(refs[1])
                chunks = [f"{BLOBS}{r.digest}/{i:06d}" for r in refs for i in range(r.chunks)]
                try:
                    return await self.create(PIPELINES, obj, requires=chunks, no_new_since=no_new_since)
                except Missing:
                    continue
            raise Conflict(f"pipeline {_ident(p.metadata)}: its artifacts were collected while it was "
                           "being created; retry")
        except BaseException as e:
            if written:
                release = self._release(written)
                if isinstance(e, asyncio.CancelledError):  # the caller is gone: finish without it
                    task = asyncio.ensure_future(release)
                    self._releasing.add(task)
                    task.add_done_callback(self._releasing.discard)
                else:
                    await release
            raise

    async def _release(self, written: dict[str, int]) -> None:
        """Delete what a failed create wrote, unless referenced or written again since."""
        try:
            for digest, revision in written.items():
                await self.collect_blobs(revision, [digest])
        except StoreError as e:  # left to the artifact collector
            log.warning("could not release the artifacts of a failed create: %s", e)

    async def load_artifacts(self, pipeline: kr.Pipeline) -> kr.Pipeline:
        """A copy of the pipeline with spec.artifacts filled from the blobs (a source Pipeline stays as
        given: its refs name what the builder compiled, and spec.artifacts would replace the source)."""
        p = _copy(pipeline)
        if p.spec.p4info_ref.digest and p.spec.WhichOneof("program") != "source":
            p.spec.artifacts.p4info = await self.get_blob(p.spec.p4info_ref)
            p.spec.artifacts.device_config = await self.get_blob(p.spec.device_config_ref)
        return p


# a member failed (died, lost its leader, timed out): the next member may answer
_MEMBER_FAILED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# UNAVAILABLE details that say the request was never handled: no connection was made, or the
# member refused it before handling it (no leader, with the "hasleader" metadata)
_NOT_SENT = ("failed to connect to all addresses", "connection refused", "etcdserver: no leader")


def _not_sent(e: "rpc.AioRpcError") -> bool:
    details = (e.details() or "").lower()
    return e.code() == grpc.StatusCode.UNAVAILABLE and any(s in details for s in _NOT_SENT)


def parse_endpoints(endpoints: str | Sequence[str], tls: ClientTLS | None = None) -> list[str]:
    """host:port endpoints from "h1:p1,h2:p2", a list of them, or URLs (http://, https:// with
    ``tls``); a missing port is 2379, a missing host 127.0.0.1."""
    items = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    out = []
    for item in items:
        for e in item.split(","):
            e = e.strip()
            if not e:
                continue
            scheme, sep, rest = e.partition("://")
            if sep:
                if scheme not in ("http", "https"):
                    raise ValueError(f"etcd endpoint {e}: the scheme must be http or https")
                if scheme == "https" and tls is None:
                    raise ValueError(f"etcd endpoint {e}: https needs TLS settings (a CA)")
                if scheme == "http" and tls is not None:
                    raise ValueError(f"etcd endpoint {e}: TLS settings were given for an http endpoint")
                e = rest.rstrip("/")
            host, colon, port = e.rpartition(":")
            if not colon:
                host, port = e, ""
            if port and not port.isdigit():
                raise ValueError(f"etcd endpoint {e}: the port must be a number")
            out.append(f"{host or '127.0.0.1'}:{port or 2379}")
    if not out:
        raise ValueError("no etcd endpoint given")
    return out


class _Watcher(aetcd.watcher.Watcher):
    """aetcd's watcher, also hearing etcd cancel a watch: aetcd drops ``canceled``, so a watch etcd
    refused (permission denied: created and cancelled at once) or ended (its member lost the
    leader) would wait for events forever. The cancel reaches the watch as Forbidden or
    Unavailable."""

    async def _handle_response(self, response):
        if not response.canceled or response.compact_revision:  # compaction: aetcd's own path
            return await super()._handle_response(response)
        reason = response.cancel_reason or "etcd cancelled the watch"
        error = (Forbidden if "permission denied" in reason else Unavailable)(f"etcd watch: {reason}")
        async with self._lock:
            if response.created and self._new_callback is not None:
                self._new_callback.error = error
                self._new_callback_ready.notify_all()
                return
            callback = self._callbacks.pop(response.watch_id, None)
        if callback is not None:
            await self._process_callback(callback, error)


class _Client(aetcd.Client):
    """aetcd's client, on one member of several at a time, over TLS when configured.

    aetcd opens an insecure channel to one host; this opens a channel per member (TLS with the
    client certificate when configured), lazily, and points aetcd's stubs (``kvstub``,
    ``leasestub``...) at the current member's. ``failover`` moves to the next member: calls in
    flight on the old channel finish or fail there, none is cancelled. With several members every
    call carries etcd's "hasleader" metadata: a member that lost its leader refuses at once (and a
    watch stream on it ends) instead of serving stale or waiting out a timeout.

    A client certificate renewed in place (its files rewritten) is presented from the next call
    on: ``renew_if_changed`` opens new channels with it; calls and watches in flight finish on the
    old ones, closed with the client."""

    def __init__(self, endpoints: list[str], tls: ClientTLS | None, timeout: float, options: dict):
        host, _, port = endpoints[0].rpartition(":")
        super().__init__(host=host, port=int(port), timeout=timeout, options=options)
        self.endpoints = endpoints
        self.current = 0
        self._tls_files = ReloadingFiles([tls.ca, tls.cert, tls.key], tls.checked_credentials,
                                         what=f"etcd client certificate {tls.cert or tls.ca}") if tls else None
        self._credentials = self._tls_files.current() if tls else None
        self._channel_options = list(options.items()) + (tls.options() if tls else [])
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._retired: list[grpc.aio.Channel] = []  # channels of a certificate since renewed
        self._require_leader = (("hasleader", "true"),) if len(endpoints) > 1 else None

    def _init_channel_attrs(self):
        super()._init_channel_attrs()
        self._channels = {}

    def renew_if_changed(self) -> None:
        """Open new channels when the client certificate's files changed (and still make a pair)."""
        if self._tls_files is None or not self._connected.is_set():
            return
        renewed = self._tls_files.changed()
        if renewed is None:
            return
        self._credentials = renewed
        self._retired += self._channels.values()
        self._channels = {}
        self._point(self.current)

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        self._point(self.current)
        self._connected.set()

    def _point(self, index: int) -> None:
        channel = self._channels.get(index)
        if channel is None:
            target = self.endpoints[index]
            channel = (grpc.aio.secure_channel(target, self._credentials, options=self._channel_options)
                       if self._credentials else
                       grpc.aio.insecure_channel(target, options=self._channel_options))
            self._channels[index] = channel
        self.current = index
        self.channel = channel
        self.metadata = self._require_leader
        self.kvstub = rpc.KVStub(channel)
        self.clusterstub = rpc.ClusterStub(channel)
        self.leasestub = rpc.LeaseStub(channel)
        self.maintenancestub = rpc.MaintenanceStub(channel)
        self.auth_stub = rpc.AuthStub(channel)
        # aetcd's shared watcher (its own watch helpers; the Store opens a stream per watch)
        self._watcher = aetcd.watcher.Watcher(rpc.WatchStub(channel), timeout=self._timeout,
                                              metadata=self.metadata)

    def failover(self, failed: int) -> None:
        """Move to the member after ``failed``, unless another call has moved already."""
        if self.current == failed and len(self.endpoints) > 1 and self._connected.is_set():
            self._point((failed + 1) % len(self.endpoints))

    async def close(self) -> None:
        channels = list(self._channels.values()) + self._retired
        self._retired = []
        if self._watcher is not None:
            await self._watcher.shutdown()
        self._init_channel_attrs()
        self._connected.clear()
        for channel in channels:
            await channel.close()


def _from_key(kind: Kind[T], key: str, revision: int) -> T:
    """An object carrying only the identity its key holds (namespace, name)."""
    obj = kind.message()
    rest = key[len(kind.prefix()):].split("/")  # [shard/]namespace/name
    obj.metadata.name = rest[-1]
    if kind.namespaced and len(rest) > 1:
        obj.metadata.namespace = rest[-2]
    obj.metadata.resource_version = revision
    return obj


def _written(obj: T, revision: int) -> T:
    """A copy of ``obj`` as stored at ``revision``."""
    out = _copy(obj)
    out.metadata.resource_version = revision
    return out


def _copy(obj: T) -> T:
    out = type(obj)()
    out.CopyFrom(obj)
    return out


def _ident(md: kr.ObjectMeta) -> str:
    return f"{md.namespace}/{md.name}" if md.namespace else md.name
