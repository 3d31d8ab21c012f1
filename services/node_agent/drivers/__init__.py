"""Device drivers for devices the agent does not program over P4Runtime.

The agent's own P4Runtime path (``NodeAgent._converge`` / ``_clear``: read the device, diff, write)
is the driver of every other device and stays where it is. A driver here has the same duty for
its kind of device, behind one method the agent calls per reconcile::

    await driver.converge(dev, active, leaving)   # make the device hold the active placements
    await driver.close()                           # the agent stops: stop what the driver started

Placement status (Installing, Running, Failed with a reason), the release of leaving placements and
the device's back-off stay the agent's (a driver raises, the agent classifies: kubep4.faults).
"""
from __future__ import annotations


def drivers_for(agent) -> dict:
    """A driver per device that needs one: devices with ``launch: t4p4s``."""
    out = {}
    for name, dev in agent.devices.items():
        if dev.launch.kind == "t4p4s":
            from services.node_agent.drivers.t4p4s import T4P4SDriver
            out[name] = T4P4SDriver(agent, dev)
    return out
