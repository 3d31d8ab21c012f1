"""A Pipeline given as P4 source is compiled by the node agent (through a p4c STAND-IN, as no compiler
can be installed here), cached by digest, and installed; a compile error fails the deployment with it."""
from __future__ import annotations

import os

import pytest

from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from services.node_agent.compiler import CompileError, Compiler

from .conftest import ROOT, eventually, example_objects

STANDINS = str(ROOT / "tests" / "standins")
BASIC = (ROOT / "examples" / "basic" / "basic.p4").read_text()


def source_pipeline(name: str, program: str) -> kr.Pipeline:
    p = kr.Pipeline()
    p.metadata.name = name
    p.spec.source.CopyFrom(kr.P4Source(program=program, backend="p4c", arch="v1model", target="bmv2"))
    return p


async def test_compiler_caches_by_digest(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{STANDINS}:{os.environ['PATH']}")
    c = Compiler(cache_dir=str(tmp_path))
    src = kr.P4Source(program=BASIC, backend="p4c")
    first = await c.compile(src, "sha256:aa", "v1model", "bmv2")
    again = await c.compile(src, "sha256:aa", "v1model", "bmv2")
    assert not first.cache_hit and again.cache_hit
    assert first.p4info == again.p4info and first.device_config == again.device_config
    assert first.device_config == (ROOT / "examples" / "basic" / "basic.json").read_bytes()
    with pytest.raises(CompileError, match="only compiles examples/basic"):
        await c.compile(kr.P4Source(program="garbage", backend="p4c"), "sha256:bb", "v1model", "bmv2")
    with pytest.raises(CompileError, match="t4p4s is not available"):
        await c.compile(kr.P4Source(program=BASIC, backend="t4p4s"), "sha256:cc", "v1model", "bmv2")


async def test_source_pipeline_is_compiled_and_installed(tmp_path):
    env = {"PATH": f"{STANDINS}:{os.environ['PATH']}", "KUBEP4_COMPILE_CACHE": str(tmp_path / "cache")}
    with LocalStack(nodes=1, devices_per_node=2, data_dir=str(tmp_path / "stack"), env=env) as stack:
        async with AsyncClient(stack.api) as c:
            _, d = example_objects()
            await c.create(source_pipeline("basic", BASIC))
            d.spec.replicas = 1
            await c.create(d)
            ready = await c.wait_ready("basic", timeout=30)
            assert ready.status.ready_replicas == 1

            await c.create(source_pipeline("broken", "garbage"))
            bad = kr.Deployment()
            bad.CopyFrom(d)
            bad.metadata.name = "broken"
            bad.spec.pipeline = "broken"
            bad.spec.ClearField("table_entries")  # entries cannot be checked before a compile
            await c.create(bad)

            async def failed():
                x = await c.get("deployment", "broken")
                return x if x.status.phase == "Failed" else None
            got = await eventually(failed, 30, what="the broken deployment to fail")
            installed = [x for x in got.status.conditions if x.type == "Installed"][0]
            assert installed.reason == "InstallFailed" and "only compiles examples/basic" in installed.message


async def test_options_are_separate_arguments_and_a_hung_compiler_is_killed(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "p4c"
    fake.parent.mkdir()
    log = tmp_path / "argv.txt"
    fake.write_text("#!/usr/bin/env python3\n# STAND-IN p4c: records its arguments, then hangs\n"
                    f"import sys, time\nopen({str(log)!r}, 'w').write('\\n'.join(sys.argv[1:]))\ntime.sleep(60)\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    c = Compiler(cache_dir=str(tmp_path / "cache"), timeout=1.0)
    src = kr.P4Source(program=BASIC, backend="p4c", options=["--Wdisable", "-DX=1", "--std=p4-16"])
    with pytest.raises(CompileError, match="did not finish within 1s"):
        await c.compile(src, "sha256:dd", "v1model", "bmv2")
    argv = log.read_text().splitlines()
    assert argv[argv.index("--Wdisable"):argv.index("--Wdisable") + 3] == ["--Wdisable", "-DX=1", "--std=p4-16"]


async def test_a_disallowed_option_never_reaches_the_compiler(tmp_path):
    """Admission refuses it; a Pipeline written around admission is refused by the node too."""
    c = Compiler(cache_dir=str(tmp_path / "cache"))
    src = kr.P4Source(program=BASIC, backend="p4c", options=["-o", "/etc/kubep4"])
    with pytest.raises(CompileError, match="not allowed") as info:
        await c.compile(src, "sha256:ee", "v1model", "bmv2")
    assert not info.value.temporary
