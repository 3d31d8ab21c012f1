"""P4Runtime reference target: an in-memory software switch speaking P4Runtime v1.

Used by KubeP4's local stack and tests in place of BMv2 ``simple_switch_grpc``.
It keeps the pipeline, table entries and arbitration state of each device in
memory (a restart is a switch reboot) and forwards no packets.
"""
from kubep4.reftarget.device import Device, DeviceStats, P4RuntimeError
from kubep4.reftarget.server import P4RuntimeServicer, ReferenceTarget, serve

__all__ = ["serve", "ReferenceTarget", "P4RuntimeServicer", "Device", "DeviceStats", "P4RuntimeError"]
