"""Flag helpers for the service entry points: every flag has a KUBEP4_* environment default.

Only entry points (``__main__``) call these; modules receive a frozen settings object.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping

DEFAULT_API = "127.0.0.1:50051"
DEFAULT_ADMISSION = "127.0.0.1:50052"
DEFAULT_ETCD = "127.0.0.1:2379"
MAX_MESSAGE = 256 << 20  # device configs can be several MiB
GRPC_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.max_receive_message_length", MAX_MESSAGE)]


def flag(parser: argparse.ArgumentParser, name: str, env: str, default=None, *,
         environ: Mapping[str, str] = os.environ, type=str, help: str = "", **kw):
    """Add --name whose default comes from the env var, then the given default."""
    raw = environ.get(env)
    value = type(raw) if raw is not None and type is not bool else default
    if type is bool:
        value = raw.lower() in ("1", "true", "yes", "on") if raw is not None else bool(default)
        parser.add_argument(name, action=argparse.BooleanOptionalAction, default=value,
                            help=f"{help} [env {env}, default {value}]", **kw)
        return
    parser.add_argument(name, type=type, default=value, help=f"{help} [env {env}, default {value}]", **kw)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
