"""Files a running service reads again when they change: certificates renewed in place, a token
file with a revoked token, a new authorization policy.

``ReloadingFiles(paths, load)`` holds what ``load()`` made of the files. ``current()`` checks their
size, modification time and inode (a Secret's files are swapped by a rename, a renewal may
rewrite one in place) and, when they changed, loads them again. A load that fails (a file
half-written, a syntax error) keeps the value in use, logged once per change of the files, and
is tried again when they change next::

    tokens = ReloadingFiles([path], lambda: load_token_file(path), what="token file")
    tokens.current()   # the tokens, as the file says now
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def _signature(paths: Sequence[str]) -> tuple:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


class ReloadingFiles(Generic[T]):
    def __init__(self, paths: Sequence[str], load: Callable[[], T], what: str = "files"):
        """Loads at once: an error here (the files cannot be used at start) is the caller's."""
        self.paths = [p for p in paths if p]
        self.what = what
        self._load = load
        self._lock = threading.Lock()  # gRPC asks from its own threads (TLS handshakes)
        self._signature = _signature(self.paths)
        self._value = load()
        self._refused: tuple | None = None  # the files' signature when they last failed to load
        self.reloads = 0

    def changed(self) -> T | None:
        """The newly loaded value when the files changed (and load), else None."""
        signature = _signature(self.paths)
        if signature == self._signature or signature == self._refused:
            return None
        with self._lock:
            if signature == self._signature:  # another thread got there first
                return None
            try:
                value = self._load()
            except Exception as e:  # noqa: BLE001 - any failure keeps the value in use
                self._refused = signature
                log.warning("%s changed but cannot be used (%s): keeping what was loaded before", self.what, e)
                return None
            self._signature, self._refused, self._value = signature, None, value
            self.reloads += 1
            log.info("%s changed: loaded again (%s)", self.what, ", ".join(self.paths))
            return value

    def current(self) -> T:
        self.changed()
        return self._value
