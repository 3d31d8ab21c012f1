"""Generated code is current, the P4Runtime bindings import under the default (upb) backend,
and the services stay independent."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT


def test_generated_code_is_not_stale():
    r = subprocess.run([sys.executable, "scripts/gen_protos.py", "--check"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_p4runtime_bindings_import_with_the_fast_backend():
    code = ("from google.protobuf.internal import api_implementation as a\n"
            "from kubep4.gen.p4.v1 import p4runtime_pb2 as p, p4runtime_pb2_grpc as g\n"
            "from kubep4.gen.p4.config.v1 import p4info_pb2 as i\n"
            "print(a.Type(), p.WriteRequest.DESCRIPTOR.full_name, i.P4Info.DESCRIPTOR.full_name,"
            " hasattr(g, 'P4RuntimeStub'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["upb", "p4.v1.WriteRequest", "p4.config.v1.P4Info", "True"]


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed")
def test_services_never_import_each_other():
    r = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
