"""Read what a P4Runtime device really holds, with a client independent of the node agents.

Reading needs no arbitration (P4Runtime spec §6.4), so this never disturbs the primary client:
each read is a kubep4.p4runtime_client reader (no election id, no stream) on a channel of its own.
"""
from __future__ import annotations

from kubep4.p4 import p4r
from kubep4.p4runtime_client import DeviceConnection


class DeviceReader:
    def __init__(self, address: str, device_id: int, timeout: float = 5.0, tls=None):
        self.address, self.device_id, self.timeout = address, device_id, timeout
        self.tls = tls  # a kubep4.tls.ClientTLS for a device serving TLS

    def _reader(self) -> DeviceConnection:
        return DeviceConnection(self.address, self.device_id, tls=self.tls)

    async def pipeline(self) -> p4r.ForwardingPipelineConfig | None:
        """The installed pipeline (with its cookie), or None when there is none."""
        async with self._reader() as r:
            return await r.get_pipeline(timeout=self.timeout)

    async def entries(self) -> list[p4r.TableEntry]:
        """Every table entry of every table (none when no pipeline is installed)."""
        async with self._reader() as r:
            return await r.read_entries(timeout=self.timeout)

    async def read(self, entities: list[p4r.Entity]) -> list[p4r.Entity]:
        """What one Read of ``entities`` (wildcards allowed) returns."""
        async with self._reader() as r:
            return await r.read(entities, timeout=self.timeout)

    async def default_entry(self, table_id: int) -> p4r.TableEntry | None:
        """The table's default entry (None when no pipeline is installed)."""
        async with self._reader() as r:
            return await r.default_entry(table_id, timeout=self.timeout)


def stack_readers(device_ports: dict[str, list[int]], host: str = "127.0.0.1", tls=None
                  ) -> dict[tuple[str, str], DeviceReader]:
    """(node, device name) -> reader, for a LocalStack's ``device_ports`` (devices dev0, dev1... numbered
    from device id 1 in node order, as LocalStack lays them out); ``tls``: the stack's
    ``device_tls()`` when its devices serve TLS."""
    out, device_id = {}, 1
    for node, ports in device_ports.items():
        for d, port in enumerate(ports):
            out[(node, f"dev{d}")] = DeviceReader(f"{host}:{port}", device_id, tls=tls)
            device_id += 1
    return out
