"""P4Runtime reference target: an in-memory software switch speaking P4Runtime v1.

Used by KubeP4's local stack and tests in place of BMv2 ``simple_switch_grpc``.
It keeps the pipeline, arbitration state and every entity kind of the P4Runtime
spec of each device in memory (table and default entries, direct and indexed
counters and meters, action profile members and groups, one-shot selector sets,
multicast groups, clone sessions, registers, value sets; digests are
UNIMPLEMENTED; a restart is a switch reboot) and forwards no packets, so counters
only change when written.  Its bounds (table
size 0 holds 1024 entries, 65,536 entries per device, 10,000 updates per Write)
and its answers to hostile input are described in ``device.py`` and ``server.py``.
"""
from kubep4.reftarget.device import Device, DeviceStats, P4RuntimeError
from kubep4.reftarget.server import P4RuntimeServicer, ReferenceTarget, serve

__all__ = ["serve", "ReferenceTarget", "P4RuntimeServicer", "Device", "DeviceStats", "P4RuntimeError"]
