"""Packaging: every imported package is declared in pyproject.toml, the services and the CLI start with
the core dependencies alone (the extras' packages blocked in a subprocess), a feature of a missing extra
says which extra to install, and the layers contract covers every module of the shared runtime and
breaks on a violation."""
from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache

import pytest

from .conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FIRST_PARTY = {"kubep4", "services", "tests"}


def _name(requirement: str) -> str:
    """The canonical distribution name of a requirement (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group()).lower()


def _requirements(group: str | None) -> set[str]:
    reqs = (PYPROJECT["project"]["dependencies"] if group is None
            else PYPROJECT["project"]["optional-dependencies"][group])
    return {_name(r) for r in reqs} - {"kubep4"}  # kubep4[...]: the package's own extras


CORE = _requirements(None)
EXTRAS = {e: _requirements(e) for e in PYPROJECT["project"]["optional-dependencies"]}
RUNTIME = CORE.union(*(reqs for e, reqs in EXTRAS.items() if e != "test"))


@cache
def _module_index() -> dict[str, set[str]]:
    """Dotted module name -> the installed distributions whose files provide it."""
    index: dict[str, set[str]] = {}
    for dist in md.distributions():
        name = _name(dist.metadata["Name"] or "")
        for f in dist.files or ():
            parts = f.parts
            if not parts or parts[0].endswith((".dist-info", ".egg-info", ".data")) or ".." in parts:
                continue
            leaf = parts[-1]
            if leaf.endswith(".py"):
                stem = leaf[:-3]
            elif leaf.endswith((".so", ".pyd")):
                stem = leaf.split(".")[0]
            else:
                continue
            dotted = list(parts[:-1]) + ([] if stem == "__init__" else [stem])
            for i in range(1, len(dotted) + 1):  # a package is provided by whoever ships a file in it
                index.setdefault(".".join(dotted[:i]), set()).add(name)
    return index


def _imports(paths) -> dict[str, set[str]]:
    """Absolute imports (dotted; ``from a import b`` gives ``a.b``) -> the files that make them."""
    out: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for n in names:
                top = n.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY and top != "__future__":
                    out.setdefault(n, set()).add(str(path.relative_to(ROOT)))
    return out


def _providers(module: str) -> set[str]:
    """The distributions of the longest prefix of ``module`` that an installed distribution provides.

    A namespace package (``opentelemetry``, ``google``) is shipped by several; its submodules by one."""
    index = _module_index()
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        found = index.get(".".join(parts[:i]))
        if found:
            return found
    return set()


def _undeclared(paths, declared: set[str]) -> list[str]:
    problems = []
    for module, files in sorted(_imports(paths).items()):
        providers = _providers(module)
        if not providers:
            problems.append(f"{module} ({', '.join(sorted(files))}): no installed distribution provides it")
        elif not providers & declared:
            problems.append(f"{module} ({', '.join(sorted(files))}): from {', '.join(sorted(providers))}, "
                            f"which pyproject.toml does not declare")
    return problems


def _sources(*tops: str):
    return [p for top in tops for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]


def test_every_package_the_code_imports_is_declared():
    assert not _undeclared(_sources("kubep4", "services"), RUNTIME), \
        "\n".join(_undeclared(_sources("kubep4", "services"), RUNTIME))


def test_every_package_the_tests_import_is_declared():
    problems = _undeclared(_sources("tests"), RUNTIME | EXTRAS["test"])
    assert not problems, "\n".join(problems)


def _imports_of(source: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_the_check_finds_an_undeclared_import():
    imports = _imports_of("import yaml\nfrom google.rpc import status_pb2\nfrom opentelemetry import trace\n")
    assert imports == {"yaml", "google.rpc.status_pb2", "opentelemetry.trace"}
    assert _providers("google.rpc.status_pb2") == {"googleapis-common-protos"}
    assert _providers("opentelemetry.trace") == {"opentelemetry-api"}  # not every opentelemetry-* dist
    assert _providers("yaml") == {"pyyaml"}
    declared = {"pyyaml", "googleapis-common-protos", "opentelemetry-api"}
    assert not [m for m in imports if not _providers(m) & declared]
    without_api = declared - {"opentelemetry-api"}
    assert [m for m in imports if not _providers(m) & without_api] == ["opentelemetry.trace"]


def test_the_extras_hold_what_the_features_need():
    assert {"kubernetes", "docker", "matplotlib", "aiohttp", "p4runtime"}.isdisjoint(CORE)
    assert EXTRAS["kube"] == {"kubernetes"} and EXTRAS["docker"] == {"docker"}
    assert EXTRAS["plot"] == {"matplotlib"} and EXTRAS["traces"] == {"aiohttp"}
    extras_of = lambda group: set(re.findall(r"kubep4\[([^\]]*)\]", " ".join(  # noqa: E731
        PYPROJECT["project"]["optional-dependencies"][group])))
    assert extras_of("all") == {"kube,docker,plot,traces"}
    assert extras_of("test") == {"all"}, "the tests exercise every feature"
    from kubep4.extras import EXTRAS as NAMED
    assert {extra for extra, _ in NAMED.values()} <= set(EXTRAS), "kubep4.extras names an unknown extra"


# ------------------------------------------------------------------ core dependencies only

def _blocked_top_levels() -> set[str]:
    """Top-level import names of every distribution that only an extra (test included) brings."""
    only_extras = set().union(*EXTRAS.values()) - CORE
    return {m for m, dists in _module_index().items() if "." not in m and dists & only_extras
            and not dists & CORE} - FIRST_PARTY


_BLOCK = r"""
import sys
BLOCKED = set(sys.argv[1].split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: an extra)", name=name)
sys.meta_path.insert(0, Blocker())
for m in list(sys.modules):
    if m.split(".")[0] in BLOCKED:
        del sys.modules[m]
"""

_PROBE = _BLOCK + r"""
import contextlib, importlib, io, json, pkgutil
report = {"scripts": {}, "modules": {}, "features": {}}
for name, target in json.loads(sys.argv[2]).items():
    module, _, fn = target.partition(":")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            getattr(importlib.import_module(module), fn)(["--help"])
        report["scripts"][name] = [None, out.getvalue()]
    except SystemExit as e:
        report["scripts"][name] = [e.code, out.getvalue()]
    except BaseException as e:
        report["scripts"][name] = ["raised", repr(e)]
for top in ("kubep4", "services"):
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        try:
            importlib.import_module(info.name)
            report["modules"][info.name] = None
        except BaseException as e:
            report["modules"][info.name] = f"{type(e).__name__}: {e}"
for name, (module, argv) in json.loads(sys.argv[3]).items():
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = importlib.import_module(module).main(argv)
    except SystemExit as e:
        code = e.code
    except BaseException as e:
        code = "raised " + repr(e)
    report["features"][name] = [code, out.getvalue()]
print(json.dumps(report))
"""

CONTROLLER, AGENT, CLI = "services.controller.__main__", "services.node_agent.__main__", "kubep4.cli.main"
AGENT_ARGS = ["--node-name", "n", "--device", "name=d,address=127.0.0.1:1"]
#: a feature of an extra: (entry module, argv), and the extra its error must name
FEATURES = {
    "controller --placement kubernetes": ((CONTROLLER, ["--placement", "kubernetes"]), "kube"),
    "node agent --kubernetes-node": ((AGENT, AGENT_ARGS + ["--kubernetes-node", "k"]), "kube"),
    "node agent --switch-image": ((AGENT, AGENT_ARGS + ["--switch-image", "d=img"]), "docker"),
    "kubep4 bench deploy --plot": ((CLI, ["bench", "deploy", "--plot", "x.png"]), "plot"),
}


@cache
def _core_only_report() -> dict:
    blocked = _blocked_top_levels()
    assert {"kubernetes", "docker", "matplotlib", "aiohttp"} <= blocked
    r = subprocess.run([sys.executable, "-c", _PROBE, ",".join(sorted(blocked)),
                        json.dumps(PYPROJECT["project"]["scripts"]),
                        json.dumps({name: call for name, (call, _) in FEATURES.items()})],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("script", sorted(PYPROJECT["project"]["scripts"]))
def test_every_entry_point_starts_with_the_core_dependencies_alone(script):
    code, out = _core_only_report()["scripts"][script]
    assert code in (0, None) and "usage:" in out, f"{script} --help: {code}\n{out}"


def test_every_module_imports_without_the_extras_or_names_its_extra():
    modules = _core_only_report()["modules"]
    assert "services.controller.__main__" in modules and "kubep4.cli.main" in modules
    wrong = {m: e for m, e in modules.items() if e is not None and "pip install 'kubep4[" not in e}
    assert not wrong, json.dumps(wrong, indent=1)
    entry = {t.partition(":")[0] for t in PYPROJECT["project"]["scripts"].values()}
    assert not {m for m in entry if modules.get(m)}, "an entry module needs an extra to import"


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_a_feature_of_a_missing_extra_names_it(feature):
    code, out = _core_only_report()["features"][feature]
    extra = FEATURES[feature][1]
    assert code in (1, 2), f"{feature}: exit {code}\n{out}"
    assert f"pip install 'kubep4[{extra}]'" in out, out
    assert "Traceback" not in out, out


def test_up_traces_without_aiohttp_names_the_traces_extra():
    cli = _BLOCK + "from kubep4.cli.main import main\nsys.exit(main(sys.argv[2:]))"
    r = subprocess.run([sys.executable, "-c", cli,
                        "aiohttp", "up", "--traces", "--port", "0", "--jaeger-port", "0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "pip install 'kubep4[traces]'" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ------------------------------------------------------------------ the layers contract

def _layers_contract() -> dict:
    contracts = [c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    assert len(contracts) == 1
    return contracts[0]


def _layer_modules(layer: str) -> list[str]:
    return [m.strip() for m in re.split(r"[|:]", layer)]


def test_the_layers_contract_covers_every_module_of_kubep4():
    layers = [_layer_modules(layer) for layer in _layers_contract()["layers"]]
    assert layers[0] == ["kubep4.cli", "kubep4.bench"] and layers[1] == ["services"]
    assert layers[-1] == ["kubep4.gen"]
    shared = set(layers[2])
    children = {p.stem if p.is_file() else p.name for p in (ROOT / "kubep4").iterdir()
                if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").exists()}
    missing = {f"kubep4.{c}" for c in children} - shared - {"kubep4.cli", "kubep4.bench", "kubep4.gen"}
    assert not missing, f"add {sorted(missing)} to the shared-runtime layer in pyproject.toml"
    assert not shared - {f"kubep4.{c}" for c in children}, "the layer names a module that does not exist"


@pytest.mark.skipif(shutil.which("lint-imports") is None and not os.environ.get("CI"),
                    reason="import-linter is not installed (CI must have it: the test extra)")
@pytest.mark.parametrize("module, imports", [
    ("kubep4/reftarget/_probe.py", "services.apiserver"),  # the shared runtime above services
    ("kubep4/gen/_probe.py", "kubep4.store"),  # generated code above the shared runtime
    ("services/_probe.py", "kubep4.cli.main"),  # services above the CLI
])
def test_the_layers_contract_breaks_on_a_violation(tmp_path, module, imports):
    """On a copy of the tree, so that nothing in the working tree changes."""
    for top in ("kubep4", "services"):
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / module).write_text(f"import {imports}  # noqa: F401\n")
    r = subprocess.run([shutil.which("lint-imports"), "--no-cache"], cwd=tmp_path, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "layers: CLI and benchmarks, services, shared runtime, generated code BROKEN" in r.stdout, r.stdout
    assert f"-> {imports} (l.1)" in r.stdout, r.stdout
