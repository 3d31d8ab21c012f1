"""`kubep4 config view|get-contexts|current-context|use-context NAME`: the client config
($KUBEP4_CONFIG, default ~/.kubep4/config; kubep4.clientconfig), kubectl config style."""
from __future__ import annotations

import sys

import yaml

from kubep4 import clientconfig


def register(sub) -> None:
    c = sub.add_parser("config", help="the client config: clusters, users, contexts")
    csub = c.add_subparsers(dest="config", required=True)
    v = csub.add_parser("view", help="print the config (tokens REDACTED unless --raw)")
    v.add_argument("--raw", action="store_true", help="show tokens")
    v.add_argument("--minify", action="store_true", help="only the current context, its cluster and user")
    v.set_defaults(fn=cmd_view, local=True)
    g = csub.add_parser("get-contexts", help="list the contexts; * marks the current one")
    g.set_defaults(fn=cmd_get_contexts, local=True)
    cc = csub.add_parser("current-context", help="print the current context")
    cc.set_defaults(fn=cmd_current_context, local=True)
    u = csub.add_parser("use-context", help="make NAME the current context")
    u.add_argument("name")
    u.set_defaults(fn=cmd_use_context, local=True)


def _load() -> clientconfig.ClientConfig:
    return clientconfig.ClientConfig.load()


def cmd_view(args) -> int:
    cfg = _load()
    if args.minify:
        ctx = cfg.context(getattr(args, "context", None) or "")
        if ctx is not None:
            cfg = clientconfig.ClientConfig(
                cfg.path, {k: v for k, v in cfg.clusters.items() if k == ctx.cluster},
                {k: v for k, v in cfg.users.items() if k == ctx.user}, {ctx.name: ctx}, ctx.name)
    print(yaml.safe_dump(cfg.to_doc(redact=not args.raw), sort_keys=False), end="")
    return 0


def cmd_get_contexts(args) -> int:
    cfg = _load()
    if not cfg.contexts:
        print(f"No contexts in {cfg.path}.", file=sys.stderr)
        return 0
    rows = [["CURRENT", "NAME", "CLUSTER", "USER", "NAMESPACE"]] + [
        ["*" if c.name == cfg.current_context else "", c.name, c.cluster, c.user, c.namespace]
        for c in cfg.contexts.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows))
    return 0


def cmd_current_context(args) -> int:
    cfg = _load()
    if not cfg.current_context:
        print(f"Error: no current-context in {cfg.path}", file=sys.stderr)
        return 1
    print(cfg.current_context)
    return 0


def cmd_use_context(args) -> int:
    cfg = _load()
    cfg.context(args.name)  # ConfigError naming the contexts there are
    cfg.current_context = args.name
    cfg.save()
    print(f'Switched to context "{args.name}".')
    return 0
