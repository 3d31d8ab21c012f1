"""Software switches in containers, through the docker SDK (as virt-launcher hosts a VM); the SDK's
loader and the engine check are kubep4.compilers.container's (compilers in containers are the builder's)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from kubep4.compilers.container import docker_sdk

log = logging.getLogger(__name__)


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
