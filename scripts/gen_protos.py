#!/usr/bin/env python3
"""Regenerate all Python protobuf/gRPC code under kubep4/gen/ (never edit it by hand).

Two sources:
  * protos/kubep4/v1/*.proto — KubeP4's own API;
  * the `p4runtime` package's descriptors (p4/v1, p4/config/v1). Its shipped
    _pb2 modules are too old to import under protobuf 7, so their serialized
    FileDescriptorProtos are read from the source text (never executed) and
    regenerated here.

Every file is renamed under kubep4/gen/ in a FileDescriptorSet, so the Python
modules import as kubep4.gen.p4.v1.p4runtime_pb2 etc., while the proto package
(the wire names p4.v1.*, kubep4.v1.*) stays the same.

  python scripts/gen_protos.py           # rewrite kubep4/gen
  python scripts/gen_protos.py --check   # exit 1 if the committed code is stale
"""
from __future__ import annotations

import argparse
import ast
import filecmp
import importlib.util
import pathlib
import shutil
import sys
import tempfile

import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN_PACKAGE = "kubep4/gen"
P4_FILES = ["p4/config/v1/p4types.proto", "p4/config/v1/p4info.proto",
            "p4/v1/p4data.proto", "p4/v1/p4runtime.proto"]


def _p4runtime_descriptors() -> list[descriptor_pb2.FileDescriptorProto]:
    spec = importlib.util.find_spec("p4")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the p4runtime package is not installed (pip install p4runtime)")
    base = pathlib.Path(list(spec.submodule_search_locations)[0]).parent
    out = []
    for name in P4_FILES:
        module = base / name.replace(".proto", "_pb2.py")
        serialized = None
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "serialized_pb":
                serialized = ast.literal_eval(node.value)
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile"):
                serialized = ast.literal_eval(node.args[0])
        if serialized is None:
            sys.exit(f"no serialized descriptor found in {module}")
        out.append(descriptor_pb2.FileDescriptorProto.FromString(serialized))
    return out


def _own_descriptors(tmp: pathlib.Path) -> list[descriptor_pb2.FileDescriptorProto]:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    out_file = tmp / "own.pb"
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTOS}", f"-I{well_known}", "--include_imports",
            f"--descriptor_set_out={out_file}", *sources]
    if protoc.main(args) != 0:
        sys.exit("protoc failed on protos/")
    return list(descriptor_pb2.FileDescriptorSet.FromString(out_file.read_bytes()).file)


def _well_known(name: str) -> descriptor_pb2.FileDescriptorProto:
    module = name.replace(".proto", "_pb2").replace("/", ".")
    mod = __import__(module, fromlist=["DESCRIPTOR"])
    fdp = descriptor_pb2.FileDescriptorProto()
    mod.DESCRIPTOR.CopyToProto(fdp)
    return fdp


def _renamed(name: str) -> str:
    if name.startswith(("p4/", "kubep4/v1/")):
        return f"{GEN_PACKAGE}/{name}"
    return name


def generate(out_root: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        files = {f.name: f for f in _own_descriptors(tmp)}
        for f in _p4runtime_descriptors():
            files[f.name] = f
        for f in list(files.values()):
            for dep in f.dependency:
                if dep not in files:
                    files[dep] = _well_known(dep)
        to_generate = []
        fds = descriptor_pb2.FileDescriptorSet()
        for f in files.values():
            new = descriptor_pb2.FileDescriptorProto()
            new.CopyFrom(f)
            new.name = _renamed(f.name)
            del new.dependency[:]
            new.dependency.extend(_renamed(d) for d in f.dependency)
            fds.file.append(new)
            if new.name != f.name:
                to_generate.append(new.name)
        (tmp / "all.pb").write_bytes(fds.SerializeToString())
        args = ["protoc", f"--descriptor_set_in={tmp / 'all.pb'}", f"--python_out={out_root}",
                f"--pyi_out={out_root}", f"--grpc_python_out={out_root}", *sorted(to_generate)]
        if protoc.main(args) != 0:
            sys.exit("protoc failed generating Python code")
    for d in (out_root / GEN_PACKAGE).rglob("*"):
        if d.is_dir() and not (d / "__init__.py").exists():
            (d / "__init__.py").write_text("")
    if not (out_root / GEN_PACKAGE / "__init__.py").exists():
        (out_root / GEN_PACKAGE / "__init__.py").write_text('"""Generated code: run scripts/gen_protos.py, never edit."""\n')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if kubep4/gen is stale")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(ROOT / GEN_PACKAGE, ignore_errors=True)
        generate(ROOT)
        print(f"generated {ROOT / GEN_PACKAGE}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        generate(tmp)
        cmp = filecmp.dircmp(tmp / GEN_PACKAGE, ROOT / GEN_PACKAGE, ignore=["__pycache__"])
        stale = _diff(cmp)
        if stale:
            print("generated code is stale; run scripts/gen_protos.py:\n  " + "\n  ".join(stale))
            return 1
    print("generated code is up to date")
    return 0


def _diff(cmp: filecmp.dircmp, prefix: str = "") -> list[str]:
    out = [prefix + n for n in cmp.left_only + cmp.right_only + cmp.diff_files]
    for name, sub in cmp.subdirs.items():
        out += _diff(sub, prefix + name + "/")
    return out


if __name__ == "__main__":
    sys.exit(main())
