"""`kubep4 apply -f` on bad manifests, as a user runs it (a subprocess): every one is refused with a
message naming the file, the document and the field, exit status 1 and no traceback, before anything
reaches the apiserver."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubep4 import manifest

from .conftest import EXAMPLE, ROOT

# No apiserver listens here: a manifest that got past the checks would fail with UNAVAILABLE instead.
NOWHERE = "127.0.0.1:1"
HEAD = "apiVersion: kubep4.io/v1alpha1\n"


def pipeline(spec: str, metadata: str = "{name: p}") -> str:
    return f"{HEAD}kind: Pipeline\nmetadata: {metadata}\nspec: {spec}\n"


def deployment(spec: str, metadata: str = "{name: d}") -> str:
    return f"{HEAD}kind: Deployment\nmetadata: {metadata}\nspec: {spec}\n"


LPM = "{table: t, action: a, match: [{field: f, lpm: {value: 10.0.0.0, prefixLen: 8}}]}"

P = "{f}, document 1 (Pipeline p): "      # how the file and document are named
D = "{f}, document 1 (Deployment d): "
DEEP_LIST = pipeline("[" * 20_000 + "]" * 20_000)
DEEP_MAP = pipeline("{a: " * 20_000 + "}" * 20_000)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
WRONG_DEEP = f"{{pipeline: basic, tableEntries: [{LPM}, {{table: t, match: [{{field: f, lpm: {{prefixLen: [1]}}}}]}}]}}"
TWO_KINDS = "{pipeline: basic, tableEntries: [{table: t, match: [{field: f, exact: {value: '1'}, lpm: {}}]}]}"
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

# name -> (manifest text or bytes, what stderr must say; "{f}" stands for the file)
CASES: dict[str, tuple[str | bytes, str]] = {
    "binary programFile": (pipeline("{source: {programFile: prog.p4}}"),
                           P + "spec.source.programFile: not P4 source: not UTF-8 text (invalid byte at offset 0)"),
    "binary manifest": (PNG, "{f}: a binary file (NUL byte at offset 8), not YAML"),
    "trailing binary garbage": (pipeline("{arch: v1model}").encode() + b"\xff\xfe garbage",
                                "{f}: not UTF-8 text (invalid byte at offset "),
    "trailing YAML garbage": (pipeline("{arch: v1model}") + "}}} ::: [\n", "{f}: invalid YAML at line 5, column 1: "),
    "a control character": (pipeline("{arch: v1model}") + "\x07\n",
                            "{f}: invalid YAML at line 5: character U+0007 is not allowed"),
    "p4infoFile: 42": (pipeline("{artifacts: {p4infoFile: 42}}"),
                       P + "spec.artifacts.p4infoFile: expected a file name, got an integer"),
    "spec as a list": (pipeline("[1, 2]"), P + "spec: expected a mapping, got a list"),
    "artifacts as a string": (pipeline("{artifacts: hello}"), P + "spec.artifacts: expected a mapping, got a string"),
    "source as a list": (pipeline("{source: [a]}"), P + "spec.source: expected a mapping, got a list"),
    "a 20,000-deep list": (DEEP_LIST, "{f}: nested deeper than 64 levels (line 4)"),
    "a 20,000-deep mapping": (DEEP_MAP, "{f}: nested deeper than 64 levels"),
    "an empty file": ("", "{f}: no objects: the manifest is empty"),
    "only comments and separators": ("# nothing here\n---\n---\n", "{f}: no objects: the manifest is empty"),
    "unknown metadata field": (deployment("{pipeline: basic}", "{name: d, colour: red}"),
                               D + "metadata.colour: unknown field (known: "),
    "unknown spec field": (deployment("{pipeline: basic, replica: 2}"), D + "spec.replica: unknown field (known: "),
    "unknown top-level field": (deployment("{pipeline: basic}") + "specs: {}\n",
                                D + "specs: unknown field (known: apiVersion, kind, metadata, spec)"),
    "replicas as a word": (deployment("{pipeline: basic, replicas: two}"),
                           D + "spec.replicas: expected an integer, got a string"),
    "replicas out of range": (deployment("{pipeline: basic, replicas: 1099511627776}"),
                              D + "spec.replicas: 1099511627776 is out of range"),
    "tableEntries as a mapping": (deployment("{pipeline: basic, tableEntries: {a: 1}}"),
                                  D + "spec.tableEntries: expected a list, got a mapping"),
    "a wrong type deep inside": (deployment(WRONG_DEEP),
                                 D + "spec.tableEntries[1].match[0].lpm.prefixLen: expected an integer, got a list"),
    "two match kinds at once": (deployment(TWO_KINDS),
                                D + "spec.tableEntries[0].match[0].lpm: exact is already given: choose one of "),
    "a label that is a number": (deployment("{pipeline: basic}", "{name: d, labels: {app: 7}}"),
                                 D + "metadata.labels.app: expected a string, got an integer (quote it)"),
    "metadata as a string": (deployment("{pipeline: basic}", "just-a-name"),
                             "{f}, document 1: metadata: expected a mapping, got a string"),
    "a document that is a list": ("- 1\n- 2\n", "{f}, document 1: a manifest document must be a mapping, got a list"),
    "a wrong kind": (f"{HEAD}kind: Pod\nmetadata: {{name: x}}\n",
                     "{f}, document 1: kind: expected Pipeline or Deployment, got 'Pod'"),
    "a missing p4info file": (pipeline("{artifacts: {p4infoFile: nothere.txtpb}}"),
                              P + "spec.artifacts.p4infoFile: cannot read "),
    "a p4info file that is not one": (pipeline("{artifacts: {p4infoFile: prog.p4}}"),
                                      P + "spec.artifacts.p4infoFile: not a P4Info: "),
    "a NUL in a file name": (pipeline('{artifacts: {deviceConfigFile: "a\\0b"}}'),
                             P + "spec.artifacts.deviceConfigFile: not a usable file name"),
    "aliases expanding to a billion values": (LAUGHS, "{f}, document 1: more than 1000000 values once its "
                                                      "aliases are expanded"),
    "a bad second document": (pipeline("{arch: v1model}") + "---\n" + deployment("{pipeline: [x]}"),
                              "{f}, document 2 (Deployment d): spec.pipeline: expected a string, got a list"),
}


async def kubep4(*args: str, api: str = NOWHERE) -> subprocess.CompletedProcess:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kubep4.cli.main", "--api", api, *args,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out, err = await proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def write_manifest(directory: Path, content: str | bytes) -> Path:
    (directory / "prog.p4").write_bytes(b"\xff\xfe\x00\x01 compiled, not source")
    path = directory / "m.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_manifest_is_refused_naming_file_document_and_field(tmp_path, case):
    content, want = CASES[case]
    path = write_manifest(tmp_path, content)
    r = await kubep4("apply", "-f", str(path))
    assert r.returncode == 1, r.stdout
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert want.format(f=path) in r.stderr, r.stderr
    assert len(r.stderr) < 2000 and "UNAVAILABLE" not in r.stderr


async def test_every_problem_of_a_document_is_listed(tmp_path):
    path = write_manifest(tmp_path, deployment("{pipeline: 1, replicas: x, colour: red}"))
    r = await kubep4("apply", "-f", str(path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    first, *rest = r.stderr.splitlines()
    assert first == f"Error: {D.format(f=path)}spec.pipeline: expected a string, got an integer (quote it)"
    assert rest[0] == "  spec.replicas: expected an integer, got a string"
    assert rest[1].startswith("  spec.colour: unknown field (known: ")


@pytest.mark.parametrize("target", ["missing.yaml", "."])
async def test_unreadable_manifest_path_is_refused(tmp_path, target):
    path = tmp_path / target
    r = await kubep4("apply", "-f", str(path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"Error: {path}: ")


async def test_nothing_is_applied_when_a_later_document_is_bad(front, tmp_path):
    for name in os.listdir(EXAMPLE.parent):
        if name.startswith("basic."):
            shutil.copy(EXAMPLE.parent / name, tmp_path / name)
    good = EXAMPLE.read_text().replace("../", "")
    path = tmp_path / "m.yaml"
    path.write_text(good + "---\n" + deployment("{pipeline: basic}", "{name: other, colour: red}"))
    r = await kubep4("apply", "-f", str(path), api=front.api)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{path}, document 3 (Deployment other): metadata.colour: unknown field" in r.stderr
    r = await kubep4("get", "pipelines", api=front.api)
    assert r.returncode == 0 and "No pipelines found." in r.stderr

    path.write_text(good)  # the same documents without the bad one apply as before
    r = await kubep4("apply", "-f", str(path), api=front.api)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["pipeline/basic created", "deployment/basic created"]


def test_what_yaml_output_prints_applies_again():
    """`-o yaml` writes 64-bit integers (meter rates, indexes) as strings, as proto3's JSON form does:
    reading them back gives the same object; a string that is not a number is still refused."""
    multipath = ROOT / "examples" / "multipath" / "deployment.yaml"
    _, d = manifest.load(str(multipath))
    doc = manifest.to_dict(d)
    assert doc["spec"]["meterEntries"][0]["config"]["cir"] == "1000"
    assert manifest.from_dict(doc) == d
    doc["spec"]["meterEntries"][0]["config"]["cir"] = "fast"
    with pytest.raises(manifest.ManifestError, match="cir"):
        manifest.from_dict(doc)
