"""Authentication and authorization, in a server interceptor, before the request body is read.

Every KubeP4 RPC is served through a request-streaming handler of our own: gRPC hands it an
iterator of request messages and the call's context, and nothing of the body is read or parsed
until the iterator is pulled. In that order:

1. authenticate from the metadata and the TLS peer (``authn``): no identity, UNAUTHENTICATED;
2. authorize what can be known without the body (``authz.RULES``): the verb and kind of the RPC
   in the namespace the client names in ``kubep4-namespace`` metadata (the SDK sends it), or, when
   it names none, in any namespace at all. A caller who may not do it is refused here,
   PERMISSION_DENIED, still without a byte of the body read;
3. read the one request (bounded by the server's message limit) and authorize it in the
   namespace it names: the body decides, the metadata is only a hint that lets a refusal come
   early. A list or watch of every namespace by a caller bound in some of them is filtered to those.

So an unauthenticated caller, or one who may not do that kind of thing anywhere, never makes the
server buffer its message; only a caller allowed the verb on the kind somewhere can, and its
request is still refused when it names another namespace.
"""
from __future__ import annotations

import contextvars

import grpc

from services.apiserver.authn import ANONYMOUS, MASTERS, Authenticator, Caller
from services.apiserver.authz import CLUSTER_KINDS, RULES, Authorizer, Rule, kind_of, q, refusal

OPEN_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")
NAMESPACE_HEADER = "kubep4-namespace"
UNAUTHENTICATED = "missing or invalid bearer token or client certificate"

# (caller, authorizer) of the request being served: for WhoAmI and CanI
_CURRENT: contextvars.ContextVar[tuple[Caller, Authorizer | None]] = contextvars.ContextVar(
    "kubep4_caller", default=(ANONYMOUS, None))


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authn: Authenticator, authz: Authorizer, service: str):
        self.authn, self.authz, self.service = authn, authz, service

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_METHODS):
            return handler
        service, _, name = method.lstrip("/").partition("/")
        rule = RULES.get(name) if service == self.service else None
        md = dict(handler_call_details.invocation_metadata or ())
        return _handler(self, handler, method, rule, md)

    # ---------------------------------------------------------------- the checks
    async def before_reading(self, context, method: str, rule: Rule | None, md: dict) -> Caller:
        caller = self.authn.authenticate(md.get("authorization"), context)
        if caller is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)
        if rule is None:
            if not self.superuser(caller):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"user {q(caller.user)} cannot call {q(method)}: only {MASTERS} may "
                                    "(no authorization rule names it)")
            return caller
        if rule.verb is None:
            return caller
        hint = md.get(NAMESPACE_HEADER) or None
        if rule.kind in CLUSTER_KINDS:
            if self.authz.decide(caller, rule.verb, rule.kind, "") is None:
                await self._deny(context, caller, rule, "")
        elif hint is not None:
            if self.authz.decide(caller, rule.verb, rule.kind, hint) is None:
                await self._deny(context, caller, rule, hint)
        elif not self.anywhere(caller, rule.verb, rule.kind):
            await self._deny(context, caller, rule, "*")
        return caller

    async def after_reading(self, context, caller: Caller, rule: Rule | None, request) -> frozenset[str] | None:
        """Authorize the decoded request; the namespaces a list or watch of all is cut to (None: no cut)."""
        if rule is None or rule.verb is None or rule.kind in CLUSTER_KINDS:
            return None
        ns = rule.namespace(request)
        if self.authz.decide(caller, rule.verb, rule.kind, ns) is not None:
            return None
        if ns is None and rule.lists:
            keep = self.authz.namespaces(caller, rule.verb, rule.kind)
            if keep:
                return keep
        await self._deny(context, caller, rule, ns)

    def superuser(self, caller: Caller) -> bool:
        return MASTERS in caller.groups or self.authz.policy is None

    def anywhere(self, caller: Caller, verb: str, kind: str) -> bool:
        return self.authz.namespaces(caller, verb, kind) != frozenset()

    async def _deny(self, context, caller: Caller, rule: Rule, namespace: str | None):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal(caller, rule.verb, rule.kind, namespace))


def _handler(auth: AuthInterceptor, handler, method: str, rule: Rule | None, md: dict):
    """``handler`` behind the checks, registered as request-streaming so that the body is read only
    once the caller is authenticated and may do this kind of thing somewhere. On the wire a unary
    call and a streaming one look the same."""
    deserializer, serializer = handler.request_deserializer, handler.response_serializer

    async def first(requests, context):
        try:
            return await requests.__anext__()
        except StopAsyncIteration:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request message")
        except grpc.aio.AbortError:
            raise
        except Exception:  # noqa: BLE001 - the deserializer on hostile bytes
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "undecodable request message")

    if handler.request_streaming:  # passed on as it is, once authorized before reading
        if handler.response_streaming:
            async def stream_stream(requests, context):
                caller = await auth.before_reading(context, method, rule, md)
                _CURRENT.set((caller, auth.authz))
                async for resp in handler.stream_stream(requests, context):
                    yield resp
            return grpc.stream_stream_rpc_method_handler(stream_stream, deserializer, serializer)

        async def stream_unary(requests, context):
            caller = await auth.before_reading(context, method, rule, md)
            _CURRENT.set((caller, auth.authz))
            return await handler.stream_unary(requests, context)
        return grpc.stream_unary_rpc_method_handler(stream_unary, deserializer, serializer)

    if handler.response_streaming:
        async def watch(requests, context):
            caller = await auth.before_reading(context, method, rule, md)
            request = await first(requests, context)
            keep = await auth.after_reading(context, caller, rule, request)
            _CURRENT.set((caller, auth.authz))
            async for resp in handler.unary_stream(request, context):
                obj = getattr(resp, "object", None)
                ns = obj.metadata.namespace if obj is not None and obj.HasField("metadata") else ""
                if keep is None or not ns or ns in keep:  # "" : a SYNCED marker
                    yield resp
        return grpc.stream_stream_rpc_method_handler(watch, deserializer, serializer)

    async def unary(requests, context):
        caller = await auth.before_reading(context, method, rule, md)
        request = await first(requests, context)
        keep = await auth.after_reading(context, caller, rule, request)
        _CURRENT.set((caller, auth.authz))
        resp = await handler.unary_unary(request, context)
        if keep is not None and hasattr(resp, "items"):
            kept = [o for o in resp.items if o.metadata.namespace in keep]
            del resp.items[:]
            resp.items.extend(kept)
        return resp
    return grpc.stream_unary_rpc_method_handler(unary, deserializer, serializer)


# ---------------------------------------------------------------- WhoAmI, CanI

def who_am_i(api):
    caller, _ = _CURRENT.get()
    return api.WhoAmIResponse(user=caller.user, uid=caller.uid, groups=list(caller.groups),
                              authenticated_by=caller.by)


def can_i(api, request):
    """May the caller do request.verb on request.kind in request.namespace ("": every namespace)?"""
    caller, authz = _CURRENT.get()
    verb, kind = request.verb.strip().lower(), kind_of(request.kind)
    if authz is None:
        return api.CanIResponse(allowed=True, reason="allowed: the apiserver authenticates no one "
                                                     "(no token, token file or client CA is configured)")
    from services.apiserver.authz import KINDS, VERBS
    if verb not in VERBS:
        return api.CanIResponse(allowed=False, reason=f"unknown verb {q(verb)} ({', '.join(VERBS)})")
    if kind not in KINDS:
        return api.CanIResponse(allowed=False, reason=f"unknown kind {q(kind)} ({', '.join(KINDS)})")
    ns = "" if kind in CLUSTER_KINDS else (request.namespace or None)
    why = authz.decide(caller, verb, kind, ns)
    if why is not None:
        return api.CanIResponse(allowed=True, reason=why)
    if ns is None and verb in ("list", "watch"):
        keep = authz.namespaces(caller, verb, kind)
        if keep:
            return api.CanIResponse(allowed=True, reason="allowed, filtered to namespaces " +
                                    ", ".join(q(n) for n in sorted(keep)))
    return api.CanIResponse(allowed=False, reason=refusal(caller, verb, kind, ns))


# ---------------------------------------------------------------- from the settings

def from_settings(settings, service: str, warn: bool = True
                  ) -> tuple[AuthInterceptor | None, grpc.ServerCredentials | None]:
    """The checks (None: authentication is off, every caller may do everything) and the TLS server
    credentials (None: plaintext) the settings ask for; ValueError naming what does not fit or
    cannot be read. Logs a warning for every way the API is left open."""
    import logging

    from kubep4 import tls
    say = logging.getLogger(__name__).warning if warn else (lambda *a: None)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if settings.client_ca and not settings.tls_cert:
        raise ValueError("--client-ca needs --tls-cert and --tls-key (client certificates come over TLS)")
    credentials = None
    if settings.tls_cert:
        # grpc's Python server either requires and verifies client certificates or never asks for
        # one: with --client-ca every client must show a certificate of that CA
        credentials = tls.server_credentials(settings.tls_cert, settings.tls_key, settings.client_ca or None,
                                             require_client_auth=bool(settings.client_ca))
    authn = Authenticator.configured(settings.token, settings.token_auth_file, bool(settings.client_ca))
    authz = Authorizer(policy_file=settings.authorization_policy_file)  # the file read at once: errors now
    policy = authz.policy
    if not authn.enabled:
        if policy is not None:
            raise ValueError("--authorization-policy-file needs identities: --token-auth-file, --token "
                             "or --client-ca")
        say("no token, token file or client CA is configured: the API is open, every caller may "
                    "do everything (docs/security.md)")
        return None, credentials
    if policy is None:
        say("no --authorization-policy-file: every authenticated caller may do everything")
    if credentials is None:
        say("serving plaintext: bearer tokens cross the network in clear (--tls-cert, --tls-key)")
    return AuthInterceptor(authn, authz, service), credentials
