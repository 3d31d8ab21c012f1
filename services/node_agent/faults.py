"""What an install failure means: which are worth retrying, and what a placement says about them.

Temporary faults (the device does not answer, another client is primary, a write raced with
another writer) are retried with backoff. Permanent ones (the device refuses the pipeline or an
entry, the program does not compile) stay Failed with the device's message until the
placements' spec changes: retrying the same request would get the same answer.
"""
from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import code_pb2

from kubep4 import store as st
from kubep4.p4 import EntryError
from kubep4.p4runtime_client import NotPrimary, P4RuntimeError
from services.node_agent.compiler import CompileError

DEVICE_UNREACHABLE, NOT_PRIMARY, INSTALL_FAILED, INSTALL_RETRYING = (
    "DeviceUnreachable", "NotPrimary", "InstallFailed", "InstallRetrying")
# the device does not implement an entity kind (or a way of programming it) the placement uses
UNSUPPORTED = "EntityUnsupported"
# a device that no SetForwardingPipelineConfig will change until it restarts (BMv2 through PI after a
# failed RECONCILE_AND_COMMIT), and a pipeline change the device cannot make without dropping traffic
DEVICE_WEDGED, UPGRADE_REFUSED = "DeviceWedged", "UpgradeRefused"
# how a device takes a new pipeline without dropping traffic (Device.upgrade)
SAVE_COMMIT, RECONCILE, RECREATE = "save-commit", "reconcile", "recreate"
UPGRADE_METHODS = (SAVE_COMMIT, RECONCILE, RECREATE)
_WEDGED_MESSAGES = ("Error in first phase of device update", "Error when reconciling config")


class DeviceWedged(Exception):
    """The device refuses every pipeline change until it restarts."""


class UpgradeRefused(Exception):
    """The placements' pipeline change cannot be made hitless and no fallback is allowed."""


def wedged(e: P4RuntimeError) -> bool:
    """PI's answers once a reconcile has broken the device (the real BMv2's words)."""
    return e.code == grpc.StatusCode.UNKNOWN and any(m in str(e) for m in _WEDGED_MESSAGES)

_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
# the request itself is wrong for this device: asking again gets the same answer (NOT_FOUND: the
# device has no such device_id). A call-level RESOURCE_EXHAUSTED is not here: a device out of
# connections, or an answer over a size limit, may well pass next time.
_PERMANENT = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED,
              grpc.StatusCode.NOT_FOUND}
_PERMANENT_UPDATE = {code_pb2.INVALID_ARGUMENT, code_pb2.OUT_OF_RANGE, code_pb2.UNIMPLEMENTED,
                     code_pb2.RESOURCE_EXHAUSTED, code_pb2.PERMISSION_DENIED}


def refused_for_itself(code: int) -> bool:
    """A Write's per-update error (google.rpc.Code) that the same update would get again."""
    return code in _PERMANENT_UPDATE


@dataclass(frozen=True)
class Fault:
    reason: str
    message: str
    permanent: bool = False

    @property
    def unreachable(self) -> bool:
        return self.reason == DEVICE_UNREACHABLE


def classify(e: Exception) -> Fault:
    if isinstance(e, DeviceWedged):
        return Fault(DEVICE_WEDGED, str(e), permanent=True)
    if isinstance(e, UpgradeRefused):
        return Fault(UPGRADE_REFUSED, str(e), permanent=True)
    if isinstance(e, NotPrimary):
        return Fault(NOT_PRIMARY, str(e))
    if isinstance(e, P4RuntimeError):
        if e.code in _UNREACHABLE:
            return Fault(DEVICE_UNREACHABLE, str(e))
        if e.code == grpc.StatusCode.PERMISSION_DENIED:  # primary lost between arbitration and the call
            return Fault(NOT_PRIMARY, str(e))
        failed = [x.canonical_code for x in e.errors if x.canonical_code != code_pb2.OK]
        if failed:  # a Write: permanent only if every refused update was refused for what it is
            return Fault(INSTALL_FAILED, str(e), all(c in _PERMANENT_UPDATE for c in failed))
        return Fault(INSTALL_FAILED, str(e), e.code in _PERMANENT)
    if isinstance(e, CompileError):
        return Fault(INSTALL_FAILED, str(e), permanent=not e.temporary)
    if isinstance(e, EntryError):
        return Fault("InvalidEntry", str(e), permanent=True)
    if isinstance(e, st.NotFound):
        return Fault("PipelineNotFound", str(e), permanent=True)
    if isinstance(e, st.StoreError):
        return Fault(INSTALL_FAILED, f"etcd: {e}")
    return Fault(INSTALL_FAILED, f"{type(e).__name__}: {e}")  # unforeseen: retried with back-off
