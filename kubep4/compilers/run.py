"""Running a compiler as a child process with bounded time and memory, measured.

The child gets resource limits before it executes (``RLIMIT_AS``: address space, ``RLIMIT_CPU``:
CPU seconds, ``RLIMIT_CORE``: no core files), its own process group (a timeout kills the whole
tree: t4p4s.sh runs p4test, meson, ninja and gcc), and ``PR_SET_PDEATHSIG`` so that it dies with
the builder: a builder killed mid-compile leaves no compiler running. Both are set by util-linux's
``prlimit`` and ``setpriv --pdeathsig KILL``, which exec the compiler in the same process: no
Python runs between fork and exec (a ``preexec_fn`` in a process with gRPC's threads can crash the
child). Without them, the limits are applied to the child just after it started (``prlimit(2)``)
and it does not die with the builder (the process group is still killed on timeout or stop).
The wall-clock timeout is enforced by the parent.

Peak RSS is the largest ``VmHWM`` (/proc/PID/status) seen of the child and its descendants, sampled
every POLL while it runs. Not ``wait4``'s or ``RUSAGE_CHILDREN``'s ``ru_maxrss``: Linux carries the
RSS of the forked copy of the parent (the builder, tens of MB) over the exec into it, so every tool
would look at least as large as the builder.
"""
from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

POLL = 0.01  # seconds between checks of a running child (it is reaped the moment it exits)


@dataclass(frozen=True)
class Limits:
    seconds: float = 600.0           # wall clock, enforced by the parent
    memory_bytes: int = 4 << 30      # RLIMIT_AS of the child (each process of the tree)


@dataclass
class Ran:
    argv: list[str]
    code: int | None      # None: killed at the time limit
    output: str           # stdout and stderr, interleaved
    seconds: float
    peak_rss_kb: int
    timed_out: bool = False


class Cancelled(Exception):
    """The compile was cancelled (the builder is stopping); the child was killed."""


def _rlimits(limits: Limits) -> list[tuple[int, int]]:
    cpu = max(1, int(limits.seconds) + 1)
    return [(resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CORE, 0)]


def wrapped(argv: list[str], limits: Limits) -> tuple[list[str], bool]:
    """``argv`` under prlimit and setpriv when both are installed (True), else as it is (False)."""
    prlimit, setpriv = shutil.which("prlimit"), shutil.which("setpriv")
    if not (prlimit and setpriv):
        return list(argv), False
    cpu = max(1, int(limits.seconds) + 1)
    return [prlimit, f"--cpu={cpu}", f"--as={limits.memory_bytes}", "--core=0", "--",
            setpriv, "--pdeathsig", "KILL", "--", *argv], True


def run_blocking(argv: list[str], cwd: str, limits: Limits, env: dict[str, str] | None = None,
                 stop: threading.Event | None = None) -> Ran:
    """Run ``argv`` in ``cwd`` to its end (or the time limit, or ``stop``). Blocks: use :func:`run`."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        command, limited = wrapped(argv, limits)
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        if not limited:
            for which, value in _rlimits(limits):
                with _suppress():
                    resource.prlimit(proc.pid, which, (value, value))
        deadline = start + limits.seconds
        timed_out = cancelled = False
        status = usage = None
        peak = 0
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                peak = max(peak, _tree_hwm_kb(proc.pid))
                if stop is not None and stop.is_set():
                    cancelled = True
                elif time.perf_counter() > deadline:
                    timed_out = True
                if timed_out or cancelled:
                    with _suppress():
                        os.killpg(proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(POLL)
        finally:
            proc.returncode = 0  # reaped by wait4 above: Popen must not wait for it again
            with _suppress():   # whatever the child left running in its group
                os.killpg(proc.pid, signal.SIGKILL)
        seconds = time.perf_counter() - start
        out.seek(0)
        output = out.read().decode(errors="replace")
    if cancelled:
        raise Cancelled(f"{argv[0]} was stopped")
    code = None if timed_out else (os.waitstatus_to_exitcode(status) if status is not None else None)
    return Ran(list(argv), code, output, seconds, peak, timed_out)


def _tree_hwm_kb(root: int) -> int:
    """The largest VmHWM (kB) of ``root`` and its descendants now (0 for what is gone already)."""
    best, todo, seen = 0, [root], set()
    while todo and len(seen) < 4096:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        best = max(best, int(line.split()[1]))
                        break
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return best


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        return typ is not None and issubclass(typ, (ProcessLookupError, PermissionError))


async def run(argv: list[str], cwd: str, limits: Limits, env: dict[str, str] | None = None) -> Ran:
    """:func:`run_blocking` in a thread; cancelling the caller kills the child (and waits for it)."""
    stop = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(run_blocking, argv, cwd, limits, env, stop))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        try:
            await task
        except Cancelled:
            pass
        raise
