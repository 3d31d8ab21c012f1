"""Artifact collection: delete the P4Info and device-config blobs no Pipeline references any more."""
from __future__ import annotations

import asyncio
import logging

from opentelemetry import trace

from kubep4 import store as st

log = logging.getLogger(__name__)
tracer = trace.get_tracer("kubep4.controller")


class ArtifactCollector:
    """A blob must be unreferenced and unwritten since the previous collection, so one stored just
    before its Pipeline is never taken (Store.collect_blobs)."""

    def __init__(self, store: st.Store, interval: float = 60.0) -> None:
        self.store = store
        self.interval = interval
        self._mark = 0  # etcd revision of the previous collection

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.collect()
            except st.StoreError as e:
                log.warning("artifact collection: %s", e)

    async def collect(self) -> list[str]:
        """One collection; returns the digests deleted."""
        with tracer.start_as_current_span("artifact collection"):
            doomed, revision = await self.store.collect_blobs(self._mark)
        if doomed:
            log.info("collected %d unreferenced artifact(s)", len(doomed))
        self._mark = revision
        return doomed
