"""kubep4.compilers: the backends' command lines and outputs as the real tools have them, through
the STAND-INS of tests/standins (no P4 compiler can be installed on this machine), bounded in time
and memory, and diagnostics parsed from p4c's and gcc's formats."""
from __future__ import annotations

import os

import pytest

from kubep4.compilers import P4LLVM_UNAVAILABLE, CompileFailed, Limits, Toolchain
from kubep4.compilers.diagnostics import parse, render
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import parse_p4info

from .conftest import ROOT

STANDINS = ROOT / "tests" / "standins"
BASIC = (ROOT / "examples" / "basic" / "basic.p4").read_text()
BASIC_P4INFO = parse_p4info((ROOT / "examples" / "basic" / "basic.p4info.txtpb").read_bytes()).SerializeToString()


@pytest.fixture
def standins(monkeypatch, tmp_path):
    log = tmp_path / "invocations.log"
    monkeypatch.setenv("PATH", f"{STANDINS}:{STANDINS / 't4p4s'}:{os.environ['PATH']}")
    monkeypatch.setenv("KUBEP4_STANDIN_LOG", str(log))
    monkeypatch.delenv("T4P4S_DIR", raising=False)
    return log


async def test_p4c_writes_outdir_program_json_and_its_p4info(standins, tmp_path):
    t = Toolchain()
    out = await t.compile(kr.P4Source(program=BASIC, backend="p4c"), "v1model", "bmv2", str(tmp_path / "w"))
    assert out.device_config == (ROOT / "examples" / "basic" / "basic.json").read_bytes()
    assert out.p4info == BASIC_P4INFO
    assert out.version == "p4c 1.2.5 (SHA: STAND-IN)" and out.how == f"local:{STANDINS / 'p4c'}"
    assert [p.name for p in out.phases] == ["p4c"] and out.phases[0].peak_rss_kb > 0
    assert out.diagnostics == [] and not out.device_config_unavailable
    assert standins.read_text().splitlines() == ["p4c program.p4"]


async def test_p4c_errors_and_warnings_come_with_file_and_line(standins, tmp_path):
    lines = BASIC.splitlines()
    lines.insert(4, "// STAND-IN: warning uninitialized: 'meta.x' may be uninitialized")
    lines.insert(9, "// STAND-IN: error type-error: no field 'ttl2'")
    with pytest.raises(CompileFailed) as info:
        await Toolchain().compile(kr.P4Source(program="\n".join(lines)), "v1model", "bmv2", str(tmp_path))
    e = info.value
    assert e.reason == "CompileFailed" and not e.temporary
    assert [(d.severity, d.file, d.line, d.kind) for d in e.diagnostics] == [
        ("warning", "program.p4", 5, "uninitialized"), ("error", "program.p4", 10, "type-error")]
    assert "p4c failed (exit 1): program.p4(10): [--Werror=type-error] error: no field 'ttl2'" in str(e)
    assert e.version == "p4c 1.2.5 (SHA: STAND-IN)"


async def test_t4p4s_two_phases_judged_by_their_files_with_p4info_from_p4c(standins, tmp_path):
    t = Toolchain()
    out = await t.compile(kr.P4Source(program=BASIC, backend="t4p4s"), "v1model", "t4p4s", str(tmp_path),
                          name="kubep4_0123abcd")
    # t4p4s.sh exited 1 in both phases (as the real one does): the output files said they worked
    assert [p.name for p in out.phases] == ["p4c --p4runtime-files (P4Info)", "t4p4s P4->C", "t4p4s C->binary"]
    assert out.p4info == BASIC_P4INFO  # T4P4S makes none: p4c's, on the same source
    assert out.device_config.startswith(b"#!/bin/sh\necho 'STAND-IN T4P4S switch")  # the switch program
    (w,) = out.diagnostics
    assert (w.severity, w.kind, w.line) == ("warning", "int-conversion", 1042) and "update_checksum" in w.message
    assert standins.read_text().splitlines() == [
        "p4c program.p4", "t4p4s.sh kubep4_0123abcd.p4 model=v1model p4", "p4test kubep4_0123abcd.p4",
        "t4p4s.sh kubep4_0123abcd.p4 model=v1model c macro=T4P4S_RTE_OFFLOADS=0"]
    assert "t4p4s STAND-IN" in out.version and "p4test p4test 1.2.5" in out.version
    assert not (STANDINS / "t4p4s" / "build" / "kubep4_0123abcd@std-v1model").exists()  # its build tree went

    small = Toolchain(max_device_config=10)
    out = await small.compile(kr.P4Source(program=BASIC, backend="t4p4s"), "v1model", "t4p4s", str(tmp_path / "2"))
    assert out.device_config is None and "more than the 10 stored" in out.device_config_unavailable


async def test_t4p4s_a_failing_p4_phase_is_its_p4test_error(standins, tmp_path):
    broken = BASIC.replace("control BasicIngress", "// STAND-IN: error parse: syntax error, unexpected IDENTIFIER\n"
                           "control BasicIngress", 1)
    assert broken != BASIC
    with pytest.raises(CompileFailed) as info:
        await Toolchain().compile(kr.P4Source(program=broken, backend="t4p4s", options=[]), "v1model", "t4p4s",
                                  str(tmp_path), name="kubep4_broken")
    # p4c (for the P4Info) fails first on the same source, with the same diagnostic
    assert [(d.file, d.kind) for d in info.value.diagnostics if d.severity == "error"] == [("program.p4", "parse")]


async def test_t4p4s_takes_no_options_and_p4llvm_is_unavailable_with_the_reason(standins, tmp_path):
    t = Toolchain()
    with pytest.raises(CompileFailed) as info:
        await t.compile(kr.P4Source(program=BASIC, backend="t4p4s", options=["-DX=1"]), "v1model", "t4p4s",
                        str(tmp_path))
    assert info.value.reason == "OptionNotAllowed" and info.value.field == "spec.source.options[0]"
    how, why = t.availability()["p4llvm"]
    assert how is None and why == P4LLVM_UNAVAILABLE and "llvm::make_unique" in why
    with pytest.raises(CompileFailed) as info:
        await t.compile(kr.P4Source(program=BASIC, backend="p4llvm"), "v1model", "bmv2", str(tmp_path))
    assert info.value.reason == "BackendUnavailable" and not info.value.temporary


async def test_missing_backends_say_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    avail = Toolchain().availability()
    assert avail["p4c"] == (None, "p4c is not on PATH and no container image is configured "
                                  "(--compiler-image p4c=IMAGE)")
    assert avail["t4p4s"][0] is None and "t4p4s.sh is not on PATH" in avail["t4p4s"][1]
    with pytest.raises(CompileFailed) as info:
        await Toolchain().compile(kr.P4Source(program=BASIC), "v1model", "bmv2", str(tmp_path))
    assert info.value.reason == "BackendUnavailable" and info.value.temporary  # it may be installed


def alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _fake_p4c(tmp_path, monkeypatch, body: str):
    fake = tmp_path / "bin" / "p4c"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("#!/usr/bin/env python3\n# STAND-IN p4c for one test\nimport sys, os, time, subprocess\n"
                    "if '--version' in sys.argv:\n    print('p4c 0.0 (test)'); sys.exit(0)\n" + body)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")


async def test_options_are_separate_arguments_and_a_hung_compiler_tree_is_killed(tmp_path, monkeypatch):
    log = tmp_path / "argv.txt"
    pids = tmp_path / "pids.txt"
    _fake_p4c(tmp_path, monkeypatch, f"open({str(log)!r}, 'w').write('\\n'.join(sys.argv[1:]))\n"
              f"child = subprocess.Popen(['sleep', '60'])\nopen({str(pids)!r}, 'w').write(str(child.pid))\n"
              "time.sleep(60)\n")
    t = Toolchain(limits=Limits(seconds=1.0))
    src = kr.P4Source(program=BASIC, backend="p4c", options=["--Wdisable", "-DX=1", "--std=p4-16"])
    with pytest.raises(CompileFailed, match="did not finish within 1s") as info:
        await t.compile(src, "v1model", "bmv2", str(tmp_path / "w"))
    assert info.value.reason == "CompileTimeout" and info.value.temporary
    argv = log.read_text().splitlines()
    assert argv[argv.index("--Wdisable"):argv.index("--Wdisable") + 3] == ["--Wdisable", "-DX=1", "--std=p4-16"]
    assert not alive(int(pids.read_text()))  # the compiler's own child went with it (its process group)


async def test_a_compiler_over_its_memory_limit_fails(tmp_path, monkeypatch):
    _fake_p4c(tmp_path, monkeypatch, "x = bytearray(512 << 20)\n")
    t = Toolchain(limits=Limits(seconds=30, memory_bytes=256 << 20))
    with pytest.raises(CompileFailed, match="p4c failed") as info:
        await t.compile(kr.P4Source(program=BASIC), "v1model", "bmv2", str(tmp_path / "w"))
    assert info.value.reason == "CompileFailed" and "MemoryError" in str(info.value)


async def test_a_disallowed_option_never_reaches_the_compiler(standins, tmp_path):
    """Admission refuses it; a Pipeline written around admission is refused by the builder too."""
    with pytest.raises(CompileFailed, match="not allowed") as info:
        await Toolchain().compile(kr.P4Source(program=BASIC, options=["-DOK", "-o", "/etc/kubep4"]), "v1model",
                                  "bmv2", str(tmp_path))
    assert info.value.field == "spec.source.options[1]" and not info.value.temporary
    assert not standins.exists()  # p4c never ran


def test_diagnostics_in_p4c_and_gcc_formats():
    work = "/tmp/kubep4-builder/123-abc"
    out = "\n".join([
        f"{work}/program.p4(42): [--Wwarn=uninitialized_use] warning: meta.x may be uninitialized",
        "        meta.x = meta.x + 1;",
        "                 ^^^^^^",
        f"{work}/program.p4(7): [--Werror=type-error] error: 'hdr.ipv4.ttl2': no such field",
        "[--Werror=invalid] error: Program does not contain a `main' module",
        "program.p4(3): error: syntax error, unexpected IDENTIFIER",
        "build/x@std-v1model/srcgen/dataplane.c:1042:31: warning: passing argument 2 of 'update_checksum' makes "
        "pointer from integer without a cast [-Wint-conversion]",
        "1 error(s)"])
    got = [(d.severity, d.file, d.line, d.kind, d.message) for d in parse(out, work)]
    assert got == [
        ("warning", "program.p4", 42, "uninitialized_use", "meta.x may be uninitialized"),
        ("error", "program.p4", 7, "type-error", "'hdr.ipv4.ttl2': no such field"),
        ("error", "", 0, "invalid", "Program does not contain a `main' module"),
        ("error", "program.p4", 3, "", "syntax error, unexpected IDENTIFIER"),
        ("warning", "build/x@std-v1model/srcgen/dataplane.c", 1042, "int-conversion",
         "passing argument 2 of 'update_checksum' makes pointer from integer without a cast")]
    assert render(parse(out, work)[1]) == "program.p4(7): [--Werror=type-error] error: 'hdr.ipv4.ttl2': no such field"
