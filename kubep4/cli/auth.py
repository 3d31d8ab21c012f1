"""`kubep4 whoami` and `kubep4 auth can-i VERB KIND [-n NS]`: who the apiserver takes you for,
and whether it lets you do something (docs/security.md)."""
from __future__ import annotations

import json


def register(sub) -> None:
    w = sub.add_parser("whoami", help="who the apiserver takes you for: user, uid, groups")
    w.add_argument("-o", "--output", choices=["json"])
    w.set_defaults(fn=cmd_whoami)
    a = sub.add_parser("auth", help="inspect authorization")
    asub = a.add_subparsers(dest="auth", required=True)
    c = asub.add_parser("can-i", help="may you do VERB on KIND? prints yes or no (exit 0 or 1)")
    c.add_argument("verb", help="get, list, watch, create, update, delete")
    c.add_argument("kind", help="pipelines, deployments, revisions, nodes, deployments/read, deployments/rollout")
    c.add_argument("-n", "--namespace", default="", help="namespace (default: the context's, else default)")
    c.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    c.add_argument("--reason", action="store_true", help="also say which binding allows it, or why none does")
    c.set_defaults(fn=cmd_can_i)


def cmd_whoami(c, args) -> int:
    me = c.whoami()
    if args.output == "json":
        print(json.dumps({"user": me.user, "uid": me.uid, "groups": list(me.groups),
                          "authenticatedBy": me.authenticated_by}, indent=2))
        return 0
    rows = [("ATTRIBUTE", "VALUE"), ("Username", me.user), ("UID", me.uid or "-"),
            ("Groups", "[" + " ".join(me.groups) + "]"), ("Authenticated by", me.authenticated_by)]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{k.ljust(width)}   {v}" for k, v in rows))
    return 0


def cmd_can_i(c, args) -> int:
    ns = "" if args.all_namespaces else (args.namespace or "default")
    answer = c.can_i(args.verb, args.kind, ns)
    print("yes" if answer.allowed else "no")
    if args.reason:
        print(answer.reason)
    return 0 if answer.allowed else 1
