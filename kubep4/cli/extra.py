"""Commands beyond CRUD: up (local stack), trace (waterfall), bench."""
from __future__ import annotations


def register(sub) -> None:
    from kubep4.cli import bench, trace, up
    up.register(sub)
    trace.register(sub)
    bench.register(sub)
