"""Fuzzing manifests: kubep4.manifest.load and the CLI's `apply -f` path on generated YAML/JSON.

Properties: load returns Pipeline and Deployment objects or raises ManifestError naming the file,
with a bounded message (nothing else escapes); `kubep4 apply -f` returns 0 or 1, never raises, prints
a clear "Error" (no traceback, no INTERNAL/UNKNOWN/UNAVAILABLE status), and applies nothing when the
manifest does not load (the etcd key count is unchanged).
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import shutil

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from kubep4 import manifest
from kubep4 import store as kstore
from kubep4.cli.main import main as cli_main
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.store import Store

from ..conftest import EXAMPLE, Front
from .manifests import EXAMPLE_TEXT, edited_examples, texts
from .settings import fuzz

MAX_ERROR = 4000  # characters of what a bad manifest prints (ten problems at most)
BAD = ("INTERNAL", "UNKNOWN", "UNAVAILABLE", "Traceback")


@pytest.fixture
def workdir(tmp_path):
    """A directory holding the example's artifact files, where the manifests are written."""
    for f in EXAMPLE.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def write(workdir, content: str | bytes):
    path = workdir / "m.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


def load(path) -> list | manifest.ManifestError:
    try:
        objs = manifest.load(str(path))
    except manifest.ManifestError as e:
        return e
    return objs


@fuzz(100)
@given(content=texts)
def test_manifest_load_returns_objects_or_names_the_problem(workdir, content):
    path = write(workdir, content)
    got = load(path)
    if isinstance(got, manifest.ManifestError):
        text = str(got)
        assert text.startswith(str(path)), text
        assert got.description.strip() and len(text) < MAX_ERROR, text
        assert all(d for _, d in got.problems), got.problems
        event("load: ManifestError")
    else:
        assert got and all(isinstance(o, (kr.Pipeline, kr.Deployment)) for o in got), got
        event("load: objects")


@pytest.fixture
async def front_store(etcd):
    front = await Front(etcd.endpoint).start()
    store = Store(etcd.endpoint)
    yield front, store
    await store.close()
    await front.stop()


def apply(api: str, path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(["--api", api, "--token", "", "apply", "-f", str(path)])
    return rc, out.getvalue(), err.getvalue()


@fuzz(40)
@given(content=st.one_of(texts, edited_examples, st.just(EXAMPLE_TEXT)))
async def test_apply_answers_clearly_and_applies_nothing_from_a_bad_manifest(front_store, workdir, content):
    front, store = front_store
    path = write(workdir, content)
    loaded = load(path)
    before, _ = await store.list_raw(kstore.ROOT + "/")
    # the CLI is synchronous (its client runs a loop of its own): off this loop, which serves the front
    rc, out, err = await asyncio.to_thread(apply, front.api, path)
    assert rc in (0, 1), (rc, out, err)
    for bad in BAD:
        assert bad not in err, err
    if rc:
        assert err.startswith("Error"), err
        assert len(err) < MAX_ERROR, err
        event(f"apply: {err.split(':', 1)[0]}")
    else:
        assert not isinstance(loaded, manifest.ManifestError), (loaded, out)
        assert len(out.splitlines()) == len(loaded), out
        event("apply: 0")
    if isinstance(loaded, manifest.ManifestError):
        after, _ = await store.list_raw(kstore.ROOT + "/")
        assert len(after) == len(before), f"a manifest that does not load applied something: {err}"
        assert err.startswith(f"Error: {path}"), err
