"""What every KubeP4 gRPC service shares: server construction, health, reflection, signals."""
from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kubep4.config import GRPC_OPTIONS
from kubep4.reloading import ReloadingFiles

log = logging.getLogger(__name__)

# gRPC's Python server sets SO_REUSEPORT by default: a second server on a port another one holds would
# bind without a word and the kernel would spread clients over both.  Every KubeP4 server turns it off.
SERVER_OPTIONS = [*GRPC_OPTIONS, ("grpc.so_reuseport", 0)]


class ListenError(OSError):
    """A server cannot bind its listen address (most often: another process holds the port)."""


def _bind_problem(listen: str) -> str:
    """Why ``listen`` cannot be bound, found by binding a plain socket (gRPC only says "Failed to bind")."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit():
        return "not a host:port address"
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(addr)
    except socket.gaierror as e:
        return f"cannot resolve {host!r} ({e.strerror})"
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return f"port {port} is already in use (is another instance running?)"
        return os.strerror(e.errno) if e.errno else str(e)
    return "gRPC could not bind it"


def bind(server: grpc.aio.Server, listen: str, credentials: grpc.ServerCredentials | None = None) -> int:
    """``server.add_insecure_port(listen)`` (``add_secure_port`` with ``credentials``), raising
    :class:`ListenError` naming the address and the cause."""
    try:
        port = server.add_secure_port(listen, credentials) if credentials else server.add_insecure_port(listen)
    except RuntimeError:  # grpcio >= 1.60 raises "Failed to bind to address ..."
        port = 0
    if not port:
        raise ListenError(f"cannot listen on {listen}: {_bind_problem(listen)}")
    return port


class UndecodableRequest(ValueError):
    """A request whose bytes do not parse as the method's request message (a client error)."""


@dataclass(frozen=True)
class _Undecodable:
    message: str


def _deserializer(cls) -> Callable[[bytes], object]:
    name = cls.DESCRIPTOR.full_name

    def deserialize(data: bytes):
        try:
            return cls.FromString(data)
        except Exception:  # noqa: BLE001 - DecodeError, or whatever the parser raises on hostile bytes
            return _Undecodable(f"undecodable request: {len(data)} bytes that are not a {name} message")
    return deserialize


async def _checked(requests):
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise UndecodableRequest(request.message)
        yield request


def _guarded(method: pb_descriptor.MethodDescriptor, behavior):
    """``behavior`` answering an undecodable request with INVALID_ARGUMENT (never UNKNOWN + traceback)."""
    if not method.client_streaming and not method.server_streaming:
        async def unary_unary(request, context):
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result
        return unary_unary
    if not method.client_streaming:
        async def unary_stream(request, context):
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            async for response in behavior(request, context):
                yield response
        return unary_stream

    async def abort_undecodable(context, e: UndecodableRequest):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))

    if not method.server_streaming:
        async def stream_unary(requests, context):
            try:
                return await behavior(_checked(requests), context)
            except UndecodableRequest as e:
                await abort_undecodable(context, e)
        return stream_unary

    async def stream_stream(requests, context):
        try:
            async for response in behavior(_checked(requests), context):
                yield response
        except UndecodableRequest as e:
            await abort_undecodable(context, e)
    return stream_stream


_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_servicer(server: grpc.aio.Server, servicer, service: pb_descriptor.ServiceDescriptor) -> None:
    """Serve ``service`` with ``servicer`` (like the generated ``add_XServicer_to_server``), except that
    undecodable request bytes get INVALID_ARGUMENT instead of grpc.aio's UNKNOWN and logged traceback.

    A streaming servicer that reads requests outside the handler's own task sees
    :class:`UndecodableRequest` raised by its request iterator and must answer it itself.
    """
    handlers = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        factory = _HANDLER_FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(_guarded(method, getattr(servicer, method.name)),
                                        request_deserializer=_deserializer(request_cls),
                                        response_serializer=response_cls.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    if hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(service.full_name, handlers)


def open_channel(address: str, tls=None, interceptors: list | None = None) -> grpc.aio.Channel:
    """A client channel to another service: TLS with ``tls`` (a ``kubep4.tls.ClientTLS``), else
    plaintext. Over TLS, a RenewingChannel: a client certificate renewed in place is presented
    from the next call on."""
    options = list(GRPC_OPTIONS)
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return RenewingChannel(address, tls, options + tls.options(), interceptors)


class RenewingChannel:
    """A grpc.aio secure channel, opened again with the client certificate's files when they
    change (cert-manager renewing a mounted Secret): each call checks them (``ReloadingFiles``) and
    goes out on the channel of the newest complete pair. Calls in flight finish on the old channel,
    closed with this one. Stubs are made on it as on a channel (it has the four multicallables)."""

    def __init__(self, address: str, tls, options: list, interceptors: list | None):
        self.address, self._options, self._interceptors = address, options, interceptors
        self._files = ReloadingFiles([tls.ca, tls.cert, tls.key], tls.checked_credentials,
                                     what=f"client certificate {tls.cert or tls.ca} (to {address})")
        self._channel = self._open(self._files.current())
        self._retired: list[grpc.aio.Channel] = []

    def _open(self, credentials) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(self.address, credentials, options=self._options,
                                       interceptors=self._interceptors)

    def current(self) -> grpc.aio.Channel:
        renewed = self._files.changed()
        if renewed is not None:
            self._retired.append(self._channel)
            self._channel = self._open(renewed)
        return self._channel

    def _multicallable(self, kind: str, method: str, args, kwargs):
        made: list = [None, None]  # the channel, and the multicallable made on it

        def call(*a, **kw):
            channel = self.current()
            if made[0] is not channel:
                made[:] = [channel, getattr(channel, kind)(method, *args, **kwargs)]
            return made[1](*a, **kw)
        return call

    def unary_unary(self, method, *args, **kwargs):
        return self._multicallable("unary_unary", method, args, kwargs)

    def unary_stream(self, method, *args, **kwargs):
        return self._multicallable("unary_stream", method, args, kwargs)

    def stream_unary(self, method, *args, **kwargs):
        return self._multicallable("stream_unary", method, args, kwargs)

    def stream_stream(self, method, *args, **kwargs):
        return self._multicallable("stream_stream", method, args, kwargs)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    def get_state(self, try_to_connect: bool = False):
        return self.current().get_state(try_to_connect)

    async def close(self, grace: float | None = None) -> None:
        for channel in [*self._retired, self._channel]:
            await channel.close(grace)
        self._retired = []

    async def __aenter__(self) -> "RenewingChannel":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class PeerCheck(grpc.aio.ServerInterceptor):
    """Serve only callers whose client certificate names one of ``users`` (its CN): an mTLS server
    that answers one other service (admission serves the apiserver). Health checks are open (to
    anyone who passed the TLS handshake); any other call is PERMISSION_DENIED naming the caller."""

    def __init__(self, users: frozenset[str], service: str):
        self.users, self.service = frozenset(users), service

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith("/grpc.health.") or \
                details.method.startswith("/grpc.reflection."):
            return handler
        check = self._check

        def wrap(behavior, streaming_response: bool):
            if streaming_response:
                async def stream(request, context):
                    await check(context)
                    async for item in behavior(request, context):
                        yield item
                return stream

            async def unary(request, context):
                await check(context)
                return await behavior(request, context)
            return unary

        for kind, make in (("unary_unary", grpc.unary_unary_rpc_method_handler),
                           ("unary_stream", grpc.unary_stream_rpc_method_handler),
                           ("stream_unary", grpc.stream_unary_rpc_method_handler),
                           ("stream_stream", grpc.stream_stream_rpc_method_handler)):
            behavior = getattr(handler, kind)
            if behavior is not None:
                return make(wrap(behavior, kind.endswith("stream")),
                            request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)
        return handler

    async def _check(self, context) -> None:
        from kubep4.tls import peer_identity
        who = peer_identity(context)
        if who is None or who.user not in self.users:
            caller = f"user {who.user!r}" if who is not None else "a caller without a client certificate"
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{self.service} serves only {', '.join(sorted(self.users))}: not {caller}")


async def start_server(listen: str, register: Callable[[grpc.aio.Server], None], service_names: list[str],
                       interceptors: list | None = None, credentials: grpc.ServerCredentials | None = None
                       ) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A grpc.aio server on ``listen`` (port 0 picks one) with health checking and reflection; TLS
    with ``credentials`` (``kubep4.tls.server_credentials``).

    The port is exclusive (no SO_REUSEPORT): :class:`ListenError` when another process holds it.
    """
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors or [])
    register(server)
    health_servicer = health.aio.HealthServicer()
    for name in ["", *service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        port = bind(server, listen, credentials)
    except ListenError:
        await server.stop(None)
        raise
    await server.start()
    return server, port, health_servicer


async def run_all(*coros: Awaitable) -> None:
    """Run coroutines together until one fails or this is cancelled; then cancel the rest and wait."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _program() -> str:
    """The program's name: ``kubep4-apiserver``, or ``apiserver`` under ``python -m services.apiserver``."""
    path = sys.argv[0] if sys.argv and sys.argv[0] else "kubep4"
    name = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if name == "__main__.py" else name


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop_event)`` until it returns; SIGTERM / SIGINT set the stop event.

    A :class:`ListenError` ends the process with status 1 and a one-line message, no traceback.
    """
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(runner())
    except KeyboardInterrupt:
        pass
    except ListenError as e:
        print(f"{_program()}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
