"""Keep child processes running, the way a kubelet keeps a pod's containers running.

A ``Supervisor`` watches a set of children from background threads (one per child, so one slow
restart never delays noticing another exit). A child that exits while the supervisor is not
stopping is started again after an exponential back-off — 0.5 s, doubling up to 10 s, back to
0.5 s once the child has stayed up 30 s — and every attempt is reported in one line:

    restarted agent-1 (exit -9), 2 restarts
    restart of etcd failed (etcd exited with 1; see ...), 3 restarts; next try in 2.0s

A start that does not become ready within ``ready_timeout`` counts as a failed start: the child is
killed and tried again after the next back-off. ``stop()`` ends supervision (and waits for the
threads) before anyone stops the children, so stopping never triggers a restart.

The supervisor knows nothing about what a child is: a ``Child`` is a name and four callables.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kubep4.backoff import Backoff


def print_line(line: str) -> None:
    print(line, flush=True)


@dataclass
class Child:
    name: str
    alive: Callable[[], bool]
    exit_code: Callable[[], int | None]
    # start the child and return once it is ready; raise if it exits first, if ``cancel`` is set,
    # or after ``timeout`` seconds
    start: Callable[[float, threading.Event], None]
    kill: Callable[[], None]  # SIGKILL, wait for the exit


class Supervisor:
    def __init__(self, children: list[Child], report: Callable[[str], None] = print_line, *,
                 initial_backoff: float = 0.5, max_backoff: float = 10.0, reset_after: float = 30.0,
                 ready_timeout: float = 20.0, poll_interval: float = 0.1):
        self.children = {c.name: c for c in children}
        self.report = report
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.reset_after = reset_after
        self.ready_timeout = ready_timeout
        self.poll_interval = poll_interval
        self.restarts: dict[str, int] = {name: 0 for name in self.children}
        self._stopping = threading.Event()
        self._locks = {name: threading.Lock() for name in self.children}
        self._threads: list[threading.Thread] = []

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> "Supervisor":
        for child in self.children.values():
            t = threading.Thread(target=self._watch, args=(child,), daemon=True, name=f"supervise-{child.name}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        """No restart begins after this returns (a start under way is cancelled and waited for)."""
        self._stopping.set()
        for t in self._threads:
            t.join(self.ready_timeout + 5)

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    @contextmanager
    def holding(self, name: str) -> Iterator[None]:
        """Keep the supervisor's hands off ``name`` meanwhile (e.g. while restarting it by hand)."""
        with self._locks[name]:
            yield

    def backoff(self) -> Backoff:
        """A child's restart delays: no jitter (children restart independently of one another)."""
        return Backoff(initial=self.initial_backoff, cap=self.max_backoff, jitter=0.0)

    def _watch(self, child: Child) -> None:
        backoff = self.backoff()
        up_since = time.monotonic()
        lock = self._locks[child.name]
        code: int | None = None
        failed_start = False  # the child is down because its last start failed (keep the exit it had)
        while not self._stopping.wait(self.poll_interval):
            with lock:
                if child.alive():
                    continue
                if not failed_start:
                    code = child.exit_code()
            if time.monotonic() - up_since >= self.reset_after:
                backoff.reset()
            if self._stopping.wait(backoff.next()):
                return
            with lock:
                if child.alive() or self._stopping.is_set():  # restarted by hand meanwhile, or stopping
                    up_since, failed_start = time.monotonic(), False
                    continue
                self.restarts[child.name] += 1
                n = self.restarts[child.name]
                try:
                    child.start(self.ready_timeout, self._stopping)
                    failed_start = False
                except Exception as e:  # noqa: BLE001 - any failed start is retried
                    why = str(e).splitlines()[0] if str(e) else type(e).__name__
                    child.kill()
                    failed_start = True
                up_since = time.monotonic()
            if self._stopping.is_set():
                return
            if failed_start:
                self.report(f"restart of {child.name} failed ({why}), {_restarts(n)}; "
                            f"next try in {backoff.peek():.1f}s")
            else:
                self.report(f"restarted {child.name} (exit {code}), {_restarts(n)}")


def _restarts(n: int) -> str:
    return f"{n} restart" + ("" if n == 1 else "s")
