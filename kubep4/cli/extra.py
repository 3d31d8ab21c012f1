"""Commands beyond CRUD: up (local stack), trace (waterfall), bench, rollout."""
from __future__ import annotations


def register(sub) -> None:
    from kubep4.cli import bench, rollout, trace, up
    rollout.register(sub)
    up.register(sub)
    trace.register(sub)
    bench.register(sub)
