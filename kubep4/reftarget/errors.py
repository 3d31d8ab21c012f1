"""The refusal every reference-target state class raises, and the helpers that build its message.

Shared by ``device.py`` and the per-kind modules (``profiles.py``, ``pre.py``, ``indexed.py``,
``direct.py``, ``value_sets.py``) so that none of them imports another.
"""
from __future__ import annotations

from google.rpc import code_pb2

__all__ = ["P4RuntimeError", "Code", "fail", "q"]

Code = code_pb2


class P4RuntimeError(Exception):
    """A refused request: ``code`` is a ``google.rpc.Code`` value."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"P4RuntimeError({code_pb2.Code.Name(self.code)}, {self.message!r})"


def q(name: str, limit: int = 80) -> str:
    """A P4Info name as quoted in a message: a hostile 100k-character name becomes its two ends."""
    return name if len(name) <= limit else f"{name[:limit // 2]}...{name[-(limit // 4):]}"


def fail(code: int, message: str) -> P4RuntimeError:
    return P4RuntimeError(code, message)
