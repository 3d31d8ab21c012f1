"""What the fuzz suite found, pinned as plain regression tests (one case each)."""
from __future__ import annotations

import grpc
import pytest

from kubep4.config import GRPC_OPTIONS
from kubep4.gen.kubep4.v1 import admission_pb2 as ka
from kubep4.gen.kubep4.v1 import admission_pb2_grpc as ka_grpc
from services.admission.server import create_server as create_admission
from services.admission.validation import Policy

from .strategies import example_pipeline


@pytest.mark.parametrize("operation", [-(1 << 31), -1, 4, 77, (1 << 31) - 1])
async def test_admission_refuses_an_unknown_operation_clearly(operation):
    """Operation is an open enum: an undefined value reached Operation.Name and came back UNKNOWN
    ("Unexpected [ValueError]", a traceback in the log); it is INVALID_ARGUMENT naming the field."""
    server, port = await create_admission("127.0.0.1:0", Policy())
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await ka_grpc.AdmissionStub(ch).Review(
                    ka.AdmissionReview(operation=operation, pipeline=example_pipeline()), timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert e.value.details() == (f"operation: unknown value {operation} "
                                         "(known: OPERATION_UNSPECIFIED, CREATE, UPDATE, DELETE)")
            # a known one is still reviewed
            resp = await ka_grpc.AdmissionStub(ch).Review(
                ka.AdmissionReview(operation=ka.CREATE, pipeline=example_pipeline()), timeout=10)
            assert resp.allowed, resp.violations
    finally:
        await server.stop(0)
