"""Commands that do not talk to the apiserver: up, trace, bench."""
from __future__ import annotations


def register(sub) -> None:
    from kubep4.cli import up
    up.register(sub)
