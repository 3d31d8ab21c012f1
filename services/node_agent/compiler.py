"""The node agent does not compile any more (issue 15): a source Pipeline is compiled once per
digest by the builder (``services/builder``, with the backends of ``kubep4.compilers``), which sets
its ``spec.p4info_ref`` / ``device_config_ref``; the agent loads those artifacts, as it does for a
precompiled Pipeline (``NodeAgent._fetch``).

What is left here:

* :class:`CompileError`: a placement's pipeline has no artifacts to load (not compiled yet: worth
  trying again; failed to compile: not), classified by ``faults.classify`` like before.
* :class:`Compiler`: kept only so that the agent's settings (``--compile-cache``,
  ``--compiler-image``) and constructor still work; it compiles nothing and is to go with them.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class CompileError(Exception):
    """The pipeline has no artifacts to load: not compiled yet (``temporary``) or failed to compile."""

    def __init__(self, message: str, temporary: bool = False):
        super().__init__(message)
        self.temporary = temporary


@dataclass
class Compiler:
    """Compiles nothing (the builder does): the agent's old settings are accepted and unused."""
    cache_dir: str = ""
    images: dict[str, str] = field(default_factory=dict)
    docker_url: str | None = None
    timeout: float = 600.0
