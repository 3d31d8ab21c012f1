"""Containers for software switches and compilers, through the docker SDK (as virt-launcher hosts a VM)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from kubep4.extras import MissingExtra

log = logging.getLogger(__name__)


def docker_sdk():
    """The docker SDK, or :class:`MissingExtra` naming the extra that brings it."""
    try:
        import docker
    except ModuleNotFoundError as e:  # the docker extra
        raise MissingExtra("docker", "containers for switches and compilers (--switch-image, --compiler-image)"
                           ) from e
    return docker


def docker_available(base_url: str | None = None) -> tuple[bool, str]:
    """(True, version) when a Docker engine answers, else (False, why)."""
    try:
        docker = docker_sdk()
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        version = client.version().get("Version", "?")
        client.close()
        return True, version
    except MissingExtra as e:
        return False, str(e)
    except Exception as e:  # no socket, permission, engine down: all mean "no engine"
        return False, f"no Docker engine: {e}"


def run_compiler_container(image: str, argv: list[str], workdir: str, base_url: str | None = None
                           ) -> tuple[int, str]:
    """Run a compiler in a throw-away container with ``workdir`` mounted at the same path."""
    docker = docker_sdk()
    client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
    try:
        container = client.containers.run(image, argv, volumes={workdir: {"bind": workdir, "mode": "rw"}},
                                          working_dir=workdir, detach=True)
        result = container.wait()
        logs = container.logs().decode(errors="replace")
        container.remove(force=True)
        return int(result.get("StatusCode", 1)), logs
    finally:
        client.close()


@dataclass
class SwitchContainer:
    """A software switch (BMv2 simple_switch_grpc, or the reference target) in a container."""
    image: str
    name: str
    grpc_port: int
    device_id: int = 1
    command: list[str] | None = None
    base_url: str | None = None
    container_id: str | None = None

    def start(self) -> str:
        docker = docker_sdk()
        client = docker.DockerClient(base_url=self.base_url) if self.base_url else docker.from_env()
        try:
            cmd = self.command or ["simple_switch_grpc", "--device-id", str(self.device_id), "--no-p4",
                                   "--", f"--grpc-server-addr=0.0.0.0:{self.grpc_port}"]
            c = client.containers.run(self.image, cmd, name=self.name, detach=True,
                                      ports={f"{self.grpc_port}/tcp": ("127.0.0.1", self.grpc_port)},
                                      labels={"kubep4.io/switch": self.name})
            self.container_id = c.id
            return c.id
        finally:
            client.close()

    def stop(self) -> None:
        if not self.container_id:
            return
        docker = docker_sdk()
        client = docker.DockerClient(base_url=self.base_url) if self.base_url else docker.from_env()
        try:
            c = client.containers.get(self.container_id)
            c.stop(timeout=5)
            c.remove(force=True)
        finally:
            client.close()
            self.container_id = None
