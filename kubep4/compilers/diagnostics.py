"""Compiler diagnostics parsed from a compiler's output into ``kubep4.v1.Diagnostic``.

Two formats, as the tools print them:

* p4c (and p4test, and every p4c fork): ``FILE(LINE): [--Wwarn=KIND] warning: MESSAGE`` and
  ``FILE(LINE): [--Werror=KIND] error: MESSAGE``; the KIND bracket may be missing, and so may
  ``FILE(LINE):`` (an error about the whole program). p4c follows each with the source line and
  a caret line, which are not diagnostics and are skipped.
* gcc (T4P4S's C phase): ``FILE:LINE:COL: warning: MESSAGE [-WKIND]``.

A path inside the compile's working directory is shown relative to it (``program.p4``), so the
temporary directory never reaches the Pipeline's status.
"""
from __future__ import annotations

import re

from kubep4.gen.kubep4.v1 import resources_pb2 as kr

MAX_DIAGNOSTICS = 50   # kept on the Pipeline's status (the rest are counted in the message)
MAX_MESSAGE = 400      # characters of one diagnostic's message

_P4C = re.compile(r"^(?:(?P<file>[^\s()][^()]*)\((?P<line>\d+)\):\s*)?"
                  r"(?:\[--W(?:warn|error)=(?P<kind>[\w.-]+)\]\s*)?"
                  r"(?P<sev>warning|error|fatal error):\s*(?P<msg>.*)$")
_GCC = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:\d+:)?\s*(?P<sev>warning|error|fatal error):\s*"
                  r"(?P<msg>.*?)(?:\s*\[-W(?:error=)?(?P<kind>[\w=-]+)\])?$")


def parse(output: str, workdir: str = "") -> list[kr.Diagnostic]:
    """Every diagnostic in ``output``, in order (at most MAX_DIAGNOSTICS, errors kept first)."""
    prefix = workdir.rstrip("/") + "/" if workdir else ""
    found: list[kr.Diagnostic] = []
    for raw in output.splitlines():
        line = raw.strip()
        m = _P4C.match(line) or _GCC.match(line)
        if m is None:
            continue
        file = (m.group("file") or "").strip()
        if prefix and file.startswith(prefix):
            file = file[len(prefix):]
        sev = "error" if "error" in m.group("sev") else "warning"
        found.append(kr.Diagnostic(severity=sev, file=file, line=int(m.group("line") or 0),
                                   kind=m.group("kind") or "", message=m.group("msg").strip()[:MAX_MESSAGE]))
    if len(found) > MAX_DIAGNOSTICS:
        errors = [d for d in found if d.severity == "error"]
        found = (errors + [d for d in found if d.severity != "error"])[:MAX_DIAGNOSTICS]
    return found


def render(d: kr.Diagnostic) -> str:
    """One diagnostic as p4c prints it: ``program.p4(12): [--Werror=type-error] error: …``."""
    where = f"{d.file}({d.line}): " if d.file and d.line else (f"{d.file}: " if d.file else "")
    kind = f"[--W{'error' if d.severity == 'error' else 'warn'}={d.kind}] " if d.kind else ""
    return f"{where}{kind}{d.severity}: {d.message}"


def summary(diagnostics: list[kr.Diagnostic], limit: int = 3) -> str:
    """The first errors (else warnings), rendered, for a condition's message."""
    errors = [d for d in diagnostics if d.severity == "error"]
    shown = errors or list(diagnostics)
    text = "; ".join(render(d) for d in shown[:limit])
    if len(shown) > limit:
        text += f" (and {len(shown) - limit} more)"
    return text
