"""The compiler backends as the real tools are invoked (issue 15, "Facts from real builds").

* **p4c** (BMv2): ``p4c --target bmv2 --arch v1model --p4runtime-files X.p4info.txtpb -o OUTDIR X.p4``
  writes ``OUTDIR/X.json``. Exit 0 on success; diagnostics on stderr in p4c's format.
* **T4P4S**: two phases run from T4P4S's own directory (where ``t4p4s.sh`` lives, or
  ``$T4P4S_DIR``), with its environment. P4->C: ``./t4p4s.sh PROG.p4 model=v1model p4`` (it runs
  ``p4test`` and generates C into ``build/PROG@std-v1model/srcgen/``); C->binary:
  ``./t4p4s.sh PROG.p4 model=v1model c macro=T4P4S_RTE_OFFLOADS=0`` (meson, ninja, gcc), giving the
  DPDK switch ``build/PROG@std-v1model/build/PROG``. ``t4p4s.sh`` exits 1 even when a phase
  succeeds, so a phase is judged by its output files. T4P4S produces no P4Info: it is taken from
  p4c's ``--p4runtime-files`` on the same source (so T4P4S needs p4c too). Its output is a switch
  program, not a device config for a running switch: it is stored as the device config artifact
  only when at most ``max_device_config`` bytes, else recorded as unavailable.
  ``build/`` is T4P4S's own and shared by every build: builds there are serialised by a lock
  file, each program gets a name of its own (the digest), and its build tree is removed after.
* **P4LLVM**: unavailable, with the reason found when building it.

Each runs locally when its binary is on PATH, or (p4c) in a container image when one is
configured and a Docker engine answers. Versions come from ``--version``.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import time
from dataclasses import dataclass, field

from kubep4.compilers import container as ctr
from kubep4.compilers.diagnostics import parse, summary
from kubep4.compilers.run import Limits, Ran, run, run_blocking
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import compiler_option_problem, parse_p4info

P4LLVM_UNAVAILABLE = (
    "P4LLVM (IITH-Compilers/P4LLVM, last change 2019) is a 2018 p4c fork that needs LLVM 7.0 and "
    "protobuf 3.2; it does not build against any LLVM a current distribution ships (13-15): it uses "
    "APIs removed since (llvm::make_unique, SequentialType, sys::fs::F_RW, untyped CreateLoad/CreateGEP)")
T4P4S_OPTIONS = ("backend t4p4s takes no compiler options: t4p4s.sh runs p4test with its own fixed "
                 "arguments and has no way to pass others")
PROGRAM = "program"  # the source's file name in the working directory (program.p4)


class CompileFailed(Exception):
    """The program did not compile, or could not be compiled here.

    ``reason``: the Compiled condition's reason (CompileFailed, CompileTimeout, BackendUnavailable,
    OptionNotAllowed). ``temporary``: worth trying again later (a timeout, a missing backend that
    may be installed), unlike a program that fails. ``field``: the Pipeline field at fault."""

    def __init__(self, message: str, reason: str = "CompileFailed", diagnostics: list | None = None,
                 phases: list | None = None, temporary: bool = False, field: str = "", version: str = "",
                 how: str = ""):
        super().__init__(message)
        self.reason = reason
        self.diagnostics = list(diagnostics or [])
        self.phases = list(phases or [])
        self.temporary = temporary
        self.field = field
        self.version = version
        self.how = how


@dataclass
class Output:
    p4info: bytes                      # binary p4.config.v1.P4Info
    device_config: bytes | None        # None: not available (device_config_unavailable says why)
    diagnostics: list[kr.Diagnostic]
    phases: list[kr.CompilePhase]
    version: str
    how: str
    seconds: float = 0.0
    device_config_unavailable: str = ""


@dataclass
class Toolchain:
    """Every backend, how each runs on this machine, and the limits of a compile."""
    images: dict[str, str] = field(default_factory=dict)   # backend -> container image
    docker_url: str | None = None
    limits: Limits = field(default_factory=Limits)
    max_device_config: int = 4 << 20  # bytes of a T4P4S switch binary stored as the device config
    _versions: dict[tuple, str] = field(default_factory=dict)

    # ------------------------------------------------------------ what is here
    def availability(self) -> dict[str, tuple[str | None, str]]:
        """backend -> (how it runs: 'local:/usr/bin/p4c' | 'docker:IMAGE', or None; why not)."""
        return {name: self.how(name) for name in BACKENDS}

    def how(self, backend: str) -> tuple[str | None, str]:
        if backend == "p4llvm":
            return None, P4LLVM_UNAVAILABLE
        if backend == "t4p4s":
            path = shutil.which("t4p4s.sh")
            if path is None:
                return None, "t4p4s.sh is not on PATH (T4P4S runs from its own directory; no container support)"
            p4c, why = self.how("p4c")
            if p4c is None or not p4c.startswith("local:"):
                return None, f"T4P4S produces no P4Info and takes it from p4c, which is unavailable: {why}"
            return f"local:{path}", ""
        if backend == "p4c":
            path = shutil.which("p4c")
            if path:
                return f"local:{path}", ""
            image = self.images.get("p4c")
            if image:
                ok, why = ctr.docker_available(self.docker_url)
                if ok:
                    return f"docker:{image}", ""
                return None, f"p4c is not on PATH, and its image {image} cannot run: {why}"
            return None, "p4c is not on PATH and no container image is configured (--compiler-image p4c=IMAGE)"
        return None, f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})"

    async def version(self, backend: str, how: str) -> str:
        """The first line of the tool's ``--version`` (T4P4S: its p4test's and p4c's too)."""
        if how.startswith("docker:"):
            return f"(image {how[len('docker:'):]})"
        binary = how[len("local:"):]
        try:
            key = (backend, binary, os.stat(binary).st_mtime_ns)
        except OSError:
            key = (backend, binary, 0)
        cached = self._versions.get(key)
        if cached is not None:
            return cached
        lines = [await _first_line([binary, "--version"])]
        if backend == "t4p4s":
            for tool in ("p4test", "p4c"):
                path = shutil.which(tool)
                lines.append(f"{tool} " + (await _first_line([path, "--version"]) if path else "not on PATH"))
        version = "; ".join(x for x in lines if x)
        self._versions[key] = version
        return version

    # ------------------------------------------------------------ options
    @staticmethod
    def option_problem(backend: str, option: str) -> str | None:
        return option_problem(backend, option)

    # ------------------------------------------------------------ compiling
    async def compile(self, source: kr.P4Source, arch: str, target: str, work: str, name: str = "") -> Output:
        """Compile ``source`` in the empty directory ``work``. ``name``: a name for the program
        where a tool keeps builds of its own (T4P4S), unique per digest. Raises CompileFailed."""
        backend = source.backend or "p4c"
        for i, opt in enumerate(source.options):  # admission refuses these too: a Pipeline may come from elsewhere
            if problem := self.option_problem(backend, opt):
                raise CompileFailed(f"spec.source.options[{i}]: {problem}", reason="OptionNotAllowed",
                                    field=f"spec.source.options[{i}]")
        how, why = self.how(backend)
        if how is None:
            raise CompileFailed(f"backend {backend} is not available: {why}", reason="BackendUnavailable",
                                temporary=backend != "p4llvm" and backend in BACKENDS)
        version = await self.version(backend, how)
        start = time.perf_counter()
        try:
            if backend == "p4c":
                out = await self._p4c(source, arch, target, work, how)
            else:
                out = await self._t4p4s(source, arch, work, how, name or "kubep4_program")
        except CompileFailed as e:
            e.version, e.how = version, how
            raise
        out.version, out.how, out.seconds = version, how, time.perf_counter() - start
        return out

    async def _exec(self, how: str, argv: list[str], cwd: str, env: dict | None = None) -> Ran:
        if how.startswith("docker:"):
            return await asyncio.to_thread(ctr.run_in_container, how[len("docker:"):], argv, cwd, self.limits,
                                           self.docker_url)
        return await run(argv, cwd, self.limits, env)

    async def _p4c(self, source: kr.P4Source, arch: str, target: str, work: str, how: str,
                   phase: str = "p4c") -> Output:
        src = _write_source(work, source.program)
        outdir = os.path.join(work, "out")
        os.makedirs(outdir, exist_ok=True)
        p4info_path = os.path.join(work, f"{PROGRAM}.p4info.txtpb")
        binary = how[len("local:"):] if how.startswith("local:") else "p4c"
        argv = [binary, "--target", target or "bmv2", "--arch", arch or "v1model", "--p4runtime-files",
                p4info_path, "-o", outdir, *source.options, src]
        ran = await self._exec(how, argv, work)
        diags = parse(ran.output, work)
        phases = [kr.CompilePhase(name=phase, seconds=ran.seconds, peak_rss_kb=ran.peak_rss_kb)]
        _check_ran("p4c", ran, diags, phases, self.limits)
        config_path = os.path.join(outdir, f"{PROGRAM}.json")
        try:
            with open(p4info_path, "rb") as f:
                p4info = parse_p4info(f.read()).SerializeToString()
            with open(config_path, "rb") as f:
                config = f.read()
        except OSError as e:
            raise CompileFailed(f"p4c exited 0 but wrote no {os.path.relpath(e.filename, work)}",
                                diagnostics=diags, phases=phases) from None
        except Exception as e:  # a P4Info that does not parse
            raise CompileFailed(f"p4c wrote a P4Info that does not parse: {e}", diagnostics=diags,
                                phases=phases) from None
        return Output(p4info, config, diags, phases, "", how)

    async def _t4p4s(self, source: kr.P4Source, arch: str, work: str, how: str, name: str) -> Output:
        # the P4Info first, from p4c on the same source (T4P4S makes none)
        p4c_how, _ = self.how("p4c")
        p4info_out = await self._p4c(source, "v1model" if not arch else arch, "bmv2", os.path.join(work, "p4info"),
                                     p4c_how, phase="p4c --p4runtime-files (P4Info)")
        t4p4s = how[len("local:"):]
        home = os.environ.get("T4P4S_DIR") or os.path.dirname(os.path.realpath(t4p4s))
        src = os.path.join(work, f"{name}.p4")
        with open(src, "w") as f:
            f.write(source.program)
        model = arch or "v1model"
        tree = os.path.join(home, "build", f"{name}@std-{model}")
        phases = list(p4info_out.phases)
        diags = list(p4info_out.diagnostics)
        return await asyncio.to_thread(self._t4p4s_build, home, src, name, model, tree, work, phases, diags,
                                       p4info_out.p4info, how)

    def _t4p4s_build(self, home: str, src: str, name: str, model: str, tree: str, work: str,
                     phases: list, diags: list, p4info: bytes, how: str) -> Output:
        """Both phases, under T4P4S's build lock (blocking: run in a thread)."""
        with open(os.path.join(home, ".kubep4-build.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                shutil.rmtree(tree, ignore_errors=True)
                env = dict(os.environ)
                steps = [("t4p4s P4->C", ["./t4p4s.sh", src, f"model={model}", "p4"],
                          lambda: _has_c_files(os.path.join(tree, "srcgen"))),
                         ("t4p4s C->binary", ["./t4p4s.sh", src, f"model={model}", "c",
                                              "macro=T4P4S_RTE_OFFLOADS=0"],
                          lambda: os.path.isfile(os.path.join(tree, "build", name)))]
                for phase, argv, produced in steps:
                    ran = run_blocking(argv, home, self.limits, env)
                    found = parse(ran.output.replace(src, f"{PROGRAM}.p4"), work)
                    diags.extend(found)
                    phases.append(kr.CompilePhase(name=phase, seconds=ran.seconds, peak_rss_kb=ran.peak_rss_kb))
                    if ran.timed_out:
                        _check_ran("t4p4s.sh", ran, diags, phases, self.limits)
                    if not produced():  # t4p4s.sh exits 1 even on success: the files decide
                        raise CompileFailed(
                            f"{phase} produced nothing (t4p4s.sh exit {ran.code}): "
                            + (summary(found) or _tail(ran.output)), diagnostics=diags, phases=phases)
                binary = os.path.join(tree, "build", name)
                size = os.path.getsize(binary)
                config, unavailable = None, ""
                if size <= self.max_device_config:
                    with open(binary, "rb") as f:
                        config = f.read()
                else:
                    unavailable = (f"the T4P4S switch program is {size} bytes, more than the "
                                   f"{self.max_device_config} stored as an artifact")
                return Output(p4info, config, diags, phases, "", how, device_config_unavailable=unavailable)
            finally:
                shutil.rmtree(tree, ignore_errors=True)
                with _quiet():
                    os.unlink(os.path.join(home, "build", "last", "cache", f"{name}.p4.json.cached"))
                fcntl.flock(lock, fcntl.LOCK_UN)


BACKENDS = ("p4c", "t4p4s", "p4llvm")


def option_problem(backend: str, option: str) -> str | None:
    """Why ``option`` may not be given to ``backend`` (None when it may): p4c and its fork P4LLVM
    take the allowlist of kubep4.p4 (defines and diagnostics switches); T4P4S takes none."""
    if backend == "t4p4s":
        return T4P4S_OPTIONS
    return compiler_option_problem(option)


def _write_source(work: str, program: str) -> str:
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, f"{PROGRAM}.p4")
    with open(src, "w") as f:
        f.write(program)
    return src


def _check_ran(tool: str, ran: Ran, diags: list, phases: list, limits: Limits) -> None:
    if ran.timed_out:
        raise CompileFailed(f"{tool} did not finish within {limits.seconds:.0f}s", reason="CompileTimeout",
                            diagnostics=diags, phases=phases, temporary=True)
    if ran.code != 0:
        if ran.code is not None and ran.code < 0:
            why = f"killed by signal {-ran.code} (memory limit {limits.memory_bytes >> 20} MiB, "\
                  f"CPU limit {limits.seconds:.0f}s)"
        else:
            why = f"exit {ran.code}"
        raise CompileFailed(f"{tool} failed ({why}): " + (summary(diags) or _tail(ran.output)),
                            diagnostics=diags, phases=phases)


def _has_c_files(path: str) -> bool:
    try:
        return any(n.endswith(".c") for n in os.listdir(path))
    except OSError:
        return False


def _tail(output: str, chars: int = 500) -> str:
    text = output.strip()
    return text[-chars:] if text else "(no output)"


async def _first_line(argv: list[str]) -> str:
    try:
        ran = await run(argv, "/", Limits(seconds=20, memory_bytes=2 << 30))
    except OSError as e:
        return f"unknown ({e})"
    lines = [x.strip() for x in ran.output.splitlines() if x.strip()]
    return lines[0][:200] if lines else "unknown (no --version output)"


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        return typ is not None and issubclass(typ, OSError)
