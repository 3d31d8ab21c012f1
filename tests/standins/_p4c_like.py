"""Shared by the p4c and p4test STAND-INS: what they "compile" and the diagnostics they print.

These are stand-ins, not compilers (no P4 compiler can be installed on this machine). They know the
example programs (examples/*/*.p4) by their text and answer with the real p4c 1.2.5 outputs committed
next to them (BMv2 JSON, P4Info). Diagnostics come from marker comments, printed in p4c's format at
the marker's line, followed by the source line and a caret line as p4c prints them:

    // STAND-IN: warning KIND: MESSAGE   ->  FILE(LINE): [--Wwarn=KIND] warning: MESSAGE
    // STAND-IN: error KIND: MESSAGE     ->  FILE(LINE): [--Werror=KIND] error: MESSAGE   (exit 1)
    // STAND-IN: hold                    ->  the compile blocks while $KUBEP4_STANDIN_HOLD exists

Marker lines are ignored when the program is recognised. Any other program fails at line 1.
Every invocation appends one line (tool, source) to $KUBEP4_STANDIN_LOG when it is set.
"""
import os
import pathlib
import re
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = {  # source text -> directory and stem of the real outputs
    (ROOT / "examples" / d / f"{stem}.p4").read_text(): (ROOT / "examples" / d, stem)
    for d, stem in (("basic", "basic"), ("basic-v2", "basic"), ("multipath", "multipath"))}
MARKER = re.compile(r"//\s*STAND-IN:\s*(?P<what>warning|error|hold)\b\s*(?P<kind>[\w-]*):?\s*(?P<msg>.*)$")
VERSION = "1.2.5 (SHA: STAND-IN)"


def log(tool: str, src: str) -> None:
    path = os.environ.get("KUBEP4_STANDIN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{tool} {src}\n")


def check(src: pathlib.Path):
    """Print the program's diagnostics; return (example dir, stem) when it compiles, else exit 1."""
    text = src.read_text()
    lines = text.splitlines()
    errors = 0
    hold = False
    for number, line in enumerate(lines, 1):
        m = MARKER.search(line)
        if m is None:
            continue
        if m["what"] == "hold":
            hold = True
            continue
        flag = "Wwarn" if m["what"] == "warning" else "Werror"
        print(f"{src}({number}): [--{flag}={m['kind'] or 'stand-in'}] {m['what']}: {m['msg']}", file=sys.stderr)
        print(line, file=sys.stderr)
        print("^" * max(1, len(line.strip())), file=sys.stderr)
        errors += m["what"] == "error"
    plain = "\n".join(x for x in lines if not MARKER.search(x)) + ("\n" if text.endswith("\n") else "")
    known = EXAMPLES.get(plain)
    if known is None and not errors:
        print(f"{src}(1): [--Werror=stand-in] error: this STAND-IN only compiles the example programs "
              "(examples/*/*.p4)", file=sys.stderr)
        errors = 1
    if errors:
        print(f"{errors} error(s)", file=sys.stderr)
        sys.exit(1)
    return known, hold


def wait_while_held() -> None:
    hold = os.environ.get("KUBEP4_STANDIN_HOLD")
    while hold and os.path.exists(hold):
        time.sleep(0.05)
