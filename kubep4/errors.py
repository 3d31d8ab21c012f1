"""Errors across the mesh: servers abort with rich google.rpc.Status; the SDK maps codes back.

Decisions are made on status codes, never on message text.
"""
from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class Violation:
    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


# An error must be deliverable: gRPC refuses trailers past its metadata limit (8 KiB by default), so
# what a status echoes is cut, and a long list of violations ends with a count of the rest.
SHOWN_CHARS = 40           # of a refused value quoted in a description
MESSAGE_CHARS = 300        # of a status message
FIELD_CHARS = 100          # of a violation's field path
DESCRIPTION_CHARS = 200    # of a violation's description
DETAILS_BYTES = 2048       # of the serialized BadRequest in a status
MORE = "..."               # the field of the violation that counts those left out


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def quoted(value: str, limit: int = SHOWN_CHARS) -> str:
    """The repr of a value echoed in an error, cut to ``limit`` characters with its length."""
    value = str(value)
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def _weight(v: Violation) -> int:
    if v.field == MORE:
        head = v.description.split(" ", 1)[0]
        if head.isdigit() and head.isascii():
            return int(head)
    return 1


def count(violations: list[Violation]) -> int:
    """How many violations a (possibly bounded) list stands for."""
    return sum(_weight(v) for v in violations)


def bounded(violations: list[Violation], max_count: int = 100, field_chars: int = FIELD_CHARS,
            description_chars: int = DESCRIPTION_CHARS, max_bytes: int | None = None) -> list[Violation]:
    """At most ``max_count`` violations (and ``max_bytes`` of text), each cut to size; when some
    are left out the last one, field "...", says how many."""
    total = count(violations)
    out: list[Violation] = []
    size = 0
    for v in violations:
        if v.field == MORE:
            continue
        cut = Violation(truncate(v.field, field_chars), truncate(v.description, description_chars))
        size += len(cut.field.encode()) + len(cut.description.encode()) + 8
        if len(out) >= max_count or (max_bytes is not None and size > max_bytes):
            break
        out.append(cut)
    if total > len(out):
        out.append(Violation(MORE, f"{total - len(out)} more violation(s) not shown"))
    return out


def status_with_violations(code: grpc.StatusCode, message: str, violations: list[Violation]) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
        for v in bounded(violations, max_bytes=DETAILS_BYTES)]))
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=truncate(message, MESSAGE_CHARS),
                                                  details=[detail]))


def plain_status(code: grpc.StatusCode, message: str) -> grpc.Status:
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=truncate(message, MESSAGE_CHARS)))


class KubeP4Error(Exception):
    """Base of the SDK's typed errors; ``code`` is the gRPC status code."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, violations: list[Violation] | None = None):
        super().__init__(message)
        self.message = message
        self.violations = violations or []

    def __str__(self) -> str:
        if not self.violations:
            return self.message
        return self.message + "\n" + "\n".join(f"  {v}" for v in self.violations)


class InvalidArgument(KubeP4Error):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(KubeP4Error):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(KubeP4Error):
    code = grpc.StatusCode.ALREADY_EXISTS


class Conflict(KubeP4Error):
    """ABORTED: the object changed since it was read; re-read and retry."""
    code = grpc.StatusCode.ABORTED


class FailedPrecondition(KubeP4Error):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(KubeP4Error):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(KubeP4Error):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(KubeP4Error):
    code = grpc.StatusCode.PERMISSION_DENIED


class OutOfRange(KubeP4Error):
    """A watch asked to resume from a version that etcd has compacted: re-list."""
    code = grpc.StatusCode.OUT_OF_RANGE


class DeadlineExceeded(KubeP4Error):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


_EXCEPTIONS_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, NotFound, AlreadyExists, Conflict, FailedPrecondition, Unavailable,
    Unauthenticated, PermissionDenied, OutOfRange, DeadlineExceeded)}


def from_rpc_error(err: grpc.RpcError) -> KubeP4Error:
    """Map a gRPC error to a typed KubeP4Error, with field violations from BadRequest details."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    violations: list[Violation] = []
    try:
        status = rpc_status.from_call(err)
    except Exception:  # malformed trailer: keep the plain message
        status = None
    if status is not None:
        for d in status.details:
            br = error_details_pb2.BadRequest()
            if d.Unpack(br):
                violations += [Violation(v.field, v.description) for v in br.field_violations]
    cls = _EXCEPTIONS_BY_CODE.get(code, KubeP4Error)
    exc = cls(err.details() or code.name, violations)
    if cls is KubeP4Error:
        exc.code = code
    return exc


OK = code_pb2.OK
