"""Compilers in throw-away containers, through the docker SDK (the ``docker`` extra).

The compile's working directory is mounted at the same path, so the argv is the one a local run
would use. The container is bounded as a local child is: a memory limit, no network, and killed at
the time limit.
"""
from __future__ import annotations

import time

from kubep4.compilers.run import Limits, Ran
from kubep4.extras import MissingExtra


def docker_sdk():
    """The docker SDK, or :class:`MissingExtra` naming the extra that brings it."""
    try:
        import docker
    except ModuleNotFoundError as e:
        raise MissingExtra("docker", "containers for compilers and switches (--compiler-image, --switch-image)"
                           ) from e
    return docker


def _client(base_url: str | None):
    docker = docker_sdk()
    return docker.DockerClient(base_url=base_url) if base_url else docker.from_env()


def docker_available(base_url: str | None = None) -> tuple[bool, str]:
    """(True, version) when a Docker engine answers, else (False, why)."""
    try:
        client = _client(base_url)
        version = client.version().get("Version", "?")
        client.close()
        return True, version
    except MissingExtra as e:
        return False, str(e)
    except Exception as e:  # no socket, permission, engine down: all mean "no engine"
        return False, f"no Docker engine: {e}"


def run_in_container(image: str, argv: list[str], workdir: str, limits: Limits,
                     base_url: str | None = None) -> Ran:
    """Run ``argv`` in ``image`` with ``workdir`` mounted read-write (blocking)."""
    client = _client(base_url)
    start = time.perf_counter()
    try:
        container = client.containers.run(image, argv, volumes={workdir: {"bind": workdir, "mode": "rw"}},
                                          working_dir=workdir, detach=True, network_disabled=True,
                                          mem_limit=limits.memory_bytes)
        timed_out = False
        try:
            result = container.wait(timeout=limits.seconds)
        except Exception:  # the SDK raises the transport's timeout
            container.kill()
            result, timed_out = {"StatusCode": None}, True
        output = container.logs().decode(errors="replace")
        container.remove(force=True)
        code = result.get("StatusCode")
        return Ran(list(argv), None if timed_out else int(code if code is not None else 1), output,
                   time.perf_counter() - start, 0, timed_out)
    finally:
        client.close()
