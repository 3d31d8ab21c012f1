"""An unauthenticated request is refused before its message is read (security issue): the apiserver,
a real process with a token configured, answers UNAUTHENTICATED to a 64 MiB CreatePipeline without
its resident memory growing by anything like the request (before: one 250 MiB request grew it by
~830 MiB). The bound is generous; RSS from /proc.

The stack serves mTLS (its default): a client without a certificate of its CA never gets past
the handshake, so the caller here shows one and a wrong bearer token, which decides (an unknown
token is refused even with a certificate: docs/security.md)."""
from __future__ import annotations

import grpc
import pytest

from kubep4.config import GRPC_OPTIONS
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import api_pb2_grpc as api_grpc
from kubep4.localstack import LocalStack

from .conftest import example_objects


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def secure_channel(stack: LocalStack, who: str = "observer") -> grpc.aio.Channel:
    """A channel to the stack's apiserver over TLS, with the certificate of ``who`` (no etcd role,
    no group: an identity only its certificate names)."""
    t = stack.pki.client_tls(who)
    return grpc.aio.secure_channel(stack.api, t.credentials(), options=[*GRPC_OPTIONS, *t.options()])


async def test_a_large_unauthenticated_request_is_refused_unread(tmp_path):
    with LocalStack(nodes=0, data_dir=str(tmp_path), env={"KUBEP4_TOKEN": "s3cret"}) as stack:
        pid = stack.procs["apiserver"].popen.pid
        pipeline, _ = example_objects()
        pipeline.spec.artifacts.device_config = b"x" * (64 << 20)
        async with secure_channel(stack) as ch:
            stub = api_grpc.KubeP4Stub(ch)
            before = rss_mib(pid)
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.CreatePipeline(api.CreatePipelineRequest(pipeline=pipeline), timeout=60,
                                              metadata=(("authorization", "Bearer not-the-token"),))
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            grown = rss_mib(pid) - before
            assert grown < 32, f"the apiserver grew by {grown:.0f} MiB for three refused 64 MiB requests"
            # and an authenticated small request still works
            ok = await stub.ListPipelines(api.ListRequest(namespace="default"),
                                          metadata=(("authorization", "Bearer s3cret"),), timeout=10)
            assert list(ok.items) == []
