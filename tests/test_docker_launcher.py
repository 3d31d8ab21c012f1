"""The Docker launcher against a real Docker engine; skipped with the reason where there is none."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubep4.compilers.container import docker_available
from services.node_agent.docker_launcher import SwitchContainer

ENGINE, WHY = docker_available()
needs_engine = pytest.mark.skipif(not ENGINE, reason=f"{WHY} (the Docker client alone cannot run containers)")
IMAGE = os.environ.get("KUBEP4_TEST_IMAGE", "busybox:latest")


def test_docker_available_says_why_when_there_is_no_engine():
    ok, why = docker_available("unix:///nonexistent/docker.sock")
    assert not ok and why.startswith("no Docker engine")


def test_node_agent_rejects_a_malformed_switch_image_flag():
    r = subprocess.run([sys.executable, "-m", "services.node_agent", "--device", "address=127.0.0.1:1",
                        "--switch-image", "dev0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--switch-image wants KEY=IMAGE" in r.stderr


@needs_engine
def test_switch_container_starts_and_stops():
    sw = SwitchContainer(image=IMAGE, name="kubep4-test-switch", grpc_port=29559,
                         command=["sleep", "30"])
    cid = sw.start()
    try:
        assert cid and sw.container_id == cid
    finally:
        sw.stop()
    assert sw.container_id is None
