"""The node agent does not compile any more (issue 15): a source Pipeline is compiled once per
digest by the builder (``services/builder``, with the backends of ``kubep4.compilers``), which sets
its ``spec.p4info_ref`` / ``device_config_ref``; the agent loads those artifacts, as it does for a
precompiled Pipeline (``NodeAgent._fetch``).

What is left here:

* :class:`CompileError`: a placement's pipeline has no artifacts to load (not compiled yet: worth
  trying again; failed to compile: not), classified by ``faults.classify`` like before.
"""
from __future__ import annotations


class CompileError(Exception):
    """The pipeline has no artifacts to load: not compiled yet (``temporary``) or failed to compile."""

    def __init__(self, message: str, temporary: bool = False):
        super().__init__(message)
        self.temporary = temporary
