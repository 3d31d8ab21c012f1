"""How long the API keeps answering UNAVAILABLE after etcd is back from an outage.

    python3 scripts/measure_etcd_reconnect.py 30     # etcd down 30 s, a client asking every 0.5 s

A local stack; etcd is stopped, a client keeps listing deployments while it is down, etcd is
started again on the same data dir and port, and the time to the first answer is printed.
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubep4 import errors  # noqa: E402
from kubep4.client import AsyncClient  # noqa: E402
from kubep4.localstack import LocalStack  # noqa: E402


async def main(down: float) -> None:
    with LocalStack(nodes=1, devices_per_node=1, data_dir=tempfile.mkdtemp(prefix="kubep4-reconnect-")) as s:
        async with AsyncClient(s.api) as c:
            await c.list("deployments")
            s.etcd.stop()
            end = time.monotonic() + down
            while time.monotonic() < end:  # clients keep asking while etcd is down
                try:
                    await c.list("deployments")
                except errors.Unavailable:
                    pass
                await asyncio.sleep(0.5)
            s.etcd.start()
            t = time.monotonic()
            while True:
                try:
                    await c.list("deployments")
                    break
                except errors.Unavailable:
                    await asyncio.sleep(0.05)
            print(f"etcd down {down:.0f} s: the API answered {time.monotonic() - t:.2f} s after etcd was back")


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0))
