"""Bearer-token authentication (off when no token is configured)."""
from __future__ import annotations

import hmac

import grpc

OPEN_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(OPEN_METHODS):
            return await continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(given.encode(), self._expected):
            return await continuation(handler_call_details)
        return _deny(await continuation(handler_call_details))


def _deny(handler):
    """A handler that refuses without reading the request: registered as request-streaming, so gRPC
    hands it an iterator it never pulls, and an unauthenticated caller's message (up to the 256 MiB
    limit) is never buffered or parsed. On the wire a unary call and a streaming one look the same."""
    async def unary(requests, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

    async def stream(requests, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        yield  # pragma: no cover

    if handler is None:
        return None
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(stream, request_deserializer=handler.request_deserializer,
                                                     response_serializer=handler.response_serializer)
    return grpc.stream_unary_rpc_method_handler(unary, request_deserializer=handler.request_deserializer,
                                                response_serializer=handler.response_serializer)
