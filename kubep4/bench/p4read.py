"""Read what a P4Runtime device really holds, with a client independent of the node agents.

Reading needs no arbitration (P4Runtime spec §6.4), so this never disturbs the primary client.
"""
from __future__ import annotations

import grpc

from kubep4.config import GRPC_OPTIONS
from kubep4.p4 import NO_PIPELINE, p4r, p4r_grpc


class DeviceReader:
    def __init__(self, address: str, device_id: int, timeout: float = 5.0):
        self.address, self.device_id, self.timeout = address, device_id, timeout

    async def pipeline(self) -> p4r.ForwardingPipelineConfig | None:
        """The installed pipeline (with its cookie), or None when there is none."""
        async with grpc.aio.insecure_channel(self.address, options=GRPC_OPTIONS) as ch:
            try:
                r = await p4r_grpc.P4RuntimeStub(ch).GetForwardingPipelineConfig(
                    p4r.GetForwardingPipelineConfigRequest(
                        device_id=self.device_id, response_type=p4r.GetForwardingPipelineConfigRequest.ALL),
                    timeout=self.timeout)
            except grpc.aio.AioRpcError as e:
                if e.code() in NO_PIPELINE:
                    return None
                raise
            return r.config

    async def entries(self) -> list[p4r.TableEntry]:
        """Every table entry of every table (none when no pipeline is installed)."""
        async with grpc.aio.insecure_channel(self.address, options=GRPC_OPTIONS) as ch:
            req = p4r.ReadRequest(device_id=self.device_id)
            req.entities.add().table_entry.SetInParent()
            out = []
            try:
                async for resp in p4r_grpc.P4RuntimeStub(ch).Read(req, timeout=self.timeout):
                    out += [e.table_entry for e in resp.entities]
            except grpc.aio.AioRpcError as e:
                if e.code() in NO_PIPELINE:
                    return []
                raise
            return out


    async def default_entry(self, table_id: int) -> p4r.TableEntry | None:
        """The table's default entry (None when no pipeline is installed)."""
        async with grpc.aio.insecure_channel(self.address, options=GRPC_OPTIONS) as ch:
            req = p4r.ReadRequest(device_id=self.device_id)
            req.entities.add().table_entry.CopyFrom(p4r.TableEntry(table_id=table_id, is_default_action=True))
            try:
                async for resp in p4r_grpc.P4RuntimeStub(ch).Read(req, timeout=self.timeout):
                    for e in resp.entities:
                        return e.table_entry
            except grpc.aio.AioRpcError as e:
                if e.code() in NO_PIPELINE:
                    return None
                raise
        return None


def stack_readers(device_ports: dict[str, list[int]], host: str = "127.0.0.1") -> dict[tuple[str, str], DeviceReader]:
    """(node, device name) -> reader, for a LocalStack's ``device_ports`` (devices dev0, dev1... numbered
    from device id 1 in node order, as LocalStack lays them out)."""
    out, device_id = {}, 1
    for node, ports in device_ports.items():
        for d, port in enumerate(ports):
            out[(node, f"dev{d}")] = DeviceReader(f"{host}:{port}", device_id)
            device_id += 1
    return out
