"""Compiling P4 source into P4Info + device config, cached by pipeline digest.

Backends: p4c (BMv2 / eBPF / DPDK targets), T4P4S (P4 -> C -> DPDK) and P4LLVM.
Each runs as a local process when its binary is on PATH, or in a container when
an image is configured and a Docker engine answers (see docker_launcher).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from opentelemetry import trace

from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import compiler_option_problem, parse_p4info

tracer = trace.get_tracer("kubep4.node_agent.compiler")


class CompileError(Exception):
    """The program does not compile, or no compiler for the backend is available.

    ``temporary``: worth trying again (the compiler ran out of time), unlike a program that fails.
    """

    def __init__(self, message: str, temporary: bool = False):
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True)
class Backend:
    name: str
    binary: str
    # argv template: {src} {outdir} {p4info} {arch} {target} {options}
    argv: tuple[str, ...]
    output: str  # device config file inside {outdir}, with {stem}


BACKENDS = {
    "p4c": Backend("p4c", "p4c", ("p4c", "--target", "{target}", "--arch", "{arch}", "--p4runtime-files",
                                  "{p4info}", "-o", "{outdir}", "{options}", "{src}"), "{stem}.json"),
    "t4p4s": Backend("t4p4s", "t4p4s.sh", ("t4p4s.sh", "{src}", "p4c_opts={options}", "outdir={outdir}",
                                           "p4info={p4info}", "nocompile=0"), "{stem}.c"),
    "p4llvm": Backend("p4llvm", "p4c-llvm", ("p4c-llvm", "--target", "{target}", "--arch", "{arch}",
                                             "--p4runtime-files", "{p4info}", "-o", "{outdir}", "{options}",
                                             "{src}"), "{stem}.ll"),
}


@dataclass
class Result:
    p4info: bytes
    device_config: bytes
    cache_hit: bool
    seconds: float
    backend: str


@dataclass
class Compiler:
    cache_dir: str = field(default_factory=lambda: os.path.join(tempfile.gettempdir(), "kubep4-compile-cache"))
    images: dict[str, str] = field(default_factory=dict)  # backend -> container image
    docker_url: str | None = None
    timeout: float = 600.0  # seconds a compile may take

    def availability(self) -> dict[str, str | None]:
        """backend -> how it runs ('local:/usr/bin/p4c', 'docker:image'), or None when unavailable."""
        out: dict[str, str | None] = {}
        for name, b in BACKENDS.items():
            path = shutil.which(b.binary)
            if path:
                out[name] = f"local:{path}"
            elif name in self.images and self._docker_ok():
                out[name] = f"docker:{self.images[name]}"
            else:
                out[name] = None
        return out

    def _docker_ok(self) -> bool:
        from services.node_agent.docker_launcher import docker_available
        return docker_available(self.docker_url)[0]

    async def compile(self, source: kr.P4Source, digest: str, arch: str, target: str) -> Result:
        backend = source.backend or "p4c"
        with tracer.start_as_current_span("compile", attributes={"compile.backend": backend,
                                                                 "kubep4.digest": digest}) as span:
            key = digest.replace(":", "_")
            cached = os.path.join(self.cache_dir, key)
            if os.path.exists(os.path.join(cached, "done")):
                span.set_attribute("compile.cache_hit", True)
                with open(os.path.join(cached, "p4info.bin"), "rb") as f, \
                        open(os.path.join(cached, "device_config"), "rb") as g:
                    return Result(f.read(), g.read(), True, 0.0, backend)
            span.set_attribute("compile.cache_hit", False)
            start = time.perf_counter()
            p4info, config = await self._run(backend, source, arch, target)
            seconds = time.perf_counter() - start
            span.set_attribute("compile.seconds", seconds)
            os.makedirs(cached, exist_ok=True)
            for name, data in (("p4info.bin", p4info), ("device_config", config), ("done", b"")):
                with open(os.path.join(cached, name), "wb") as f:
                    f.write(data)
            return Result(p4info, config, False, seconds, backend)

    async def _run(self, backend: str, source: kr.P4Source, arch: str, target: str) -> tuple[bytes, bytes]:
        for opt in source.options:  # admission refuses these too; a Pipeline may come from elsewhere
            if problem := compiler_option_problem(opt):
                raise CompileError(problem)
        b = BACKENDS.get(backend)
        if b is None:
            raise CompileError(f"unknown compiler backend {backend!r}")
        how = self.availability()[backend]
        if how is None:
            raise CompileError(f"compiler backend {backend} is not available on this node "
                               f"({b.binary} not on PATH and no container image configured)")
        with tempfile.TemporaryDirectory(prefix="kubep4-compile-") as work:
            src = os.path.join(work, "program.p4")
            with open(src, "w") as f:
                f.write(source.program)
            outdir = os.path.join(work, "out")
            os.makedirs(outdir)
            p4info_path = os.path.join(outdir, "program.p4info.txtpb")
            values = {"src": src, "outdir": outdir, "p4info": p4info_path, "arch": arch or "v1model",
                      "target": target or "bmv2", "options": " ".join(source.options)}
            argv: list[str] = []
            for a in b.argv:
                if a == "{options}":  # each option its own argument
                    argv += list(source.options)
                elif a:
                    argv.append(a.format(**values))
            if how.startswith("docker:"):
                from services.node_agent.docker_launcher import run_compiler_container
                code, output = await asyncio.to_thread(run_compiler_container, how[len("docker:"):], argv,
                                                       work, self.docker_url)
            else:
                proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                            stderr=asyncio.subprocess.STDOUT, cwd=work)
                try:
                    out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
                except asyncio.TimeoutError:
                    raise CompileError(f"{backend} did not finish within {self.timeout:.0f}s", temporary=True) from None
                finally:
                    if proc.returncode is None:  # timed out or cancelled: no orphaned compiler
                        proc.kill()
                        await proc.wait()
                code, output = proc.returncode, out.decode(errors="replace")
            if code != 0:
                raise CompileError(f"{backend} failed (exit {code}): {output.strip()[-2000:]}")
            config_path = os.path.join(outdir, b.output.format(stem="program"))
            try:
                with open(p4info_path, "rb") as f:
                    p4info = parse_p4info(f.read()).SerializeToString()
                with open(config_path, "rb") as f:
                    config = f.read()
            except OSError as e:
                raise CompileError(f"{backend} produced no {e.filename}") from None
            return p4info, config
