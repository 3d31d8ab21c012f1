"""kubep4: the command line client (and the local stack launcher).

Errors print the field and the reason, never a traceback, and exit non-zero.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone

import yaml

from kubep4 import clientconfig, config, errors, manifest
from kubep4 import conditions as cond
from kubep4.client import Client, kind_of
from kubep4.config import DEFAULT_API
from kubep4.extras import MissingExtra
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.tls import TLSFileError


def _age(ts) -> str:
    if not ts.seconds:
        return "-"
    secs = int(datetime.now(timezone.utc).timestamp() - ts.seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{secs // n}{unit}"
    return f"{max(secs, 0)}s"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _rows(kind: str, items: list, wide: bool) -> list[list[str]]:
    if kind == "pipeline":
        head = ["NAMESPACE", "NAME", "TARGET", "ARCH", "DIGEST", "AGE"]
        rows = [[p.metadata.namespace, p.metadata.name, p.spec.target, p.spec.arch,
                 p.status.digest[:19], _age(p.metadata.creation_timestamp)] for p in items]
        if wide:
            head.append("SOURCE")
            for r, p in zip(rows, items):
                r.append("artifacts" if p.spec.p4info_ref.digest else p.spec.source.backend)
    elif kind == "deployment":
        head = ["NAMESPACE", "NAME", "PIPELINE", "READY", "PHASE", "AGE"]
        rows = [[d.metadata.namespace, d.metadata.name, d.spec.pipeline,
                 f"{d.status.ready_replicas}/{d.spec.replicas}", d.status.phase,
                 _age(d.metadata.creation_timestamp)] for d in items]
        if wide:
            head += ["PLACEMENTS", "MESSAGE"]
            for r, d in zip(rows, items):
                r.append(",".join(f"{x.node}/{x.device}" for x in d.status.replicas) or "-")
                c = cond.get(d.status.conditions, cond.READY)
                r.append(c.message if c and c.status != cond.TRUE else "")
    else:
        head = ["NAME", "STATUS", "DEVICES", "REACHABLE", "ADDRESS", "HEARTBEAT", "AGE"]
        rows = [[n.metadata.name, n.status.phase or "Unknown",
                 ",".join(f"{d.name}({d.target}/{d.arch})" for d in n.spec.devices) if wide
                 else str(len(n.spec.devices)),
                 f"{sum(d.phase == 'Reachable' for d in n.status.devices)}/{len(n.spec.devices)}",
                 n.spec.address, _age(n.status.last_heartbeat), _age(n.metadata.creation_timestamp)]
                for n in items]
        if wide:
            head += ["P4RUNTIME", "DEVICE STATUS"]
            for r, n in zip(rows, items):
                r.append(",".join(f"{d.p4rt_address}#{d.device_id}" for d in n.spec.devices))
                r.append(",".join(f"{d.name}={d.phase}({d.used_slots} used)" for d in n.status.devices) or "-")
    return [head, *rows]


def _print_objects(kind: str, items: list, output: str | None) -> None:
    if output == "json":
        docs = [manifest.to_dict(o) for o in items]
        print(json.dumps(docs[0] if len(docs) == 1 else {"items": docs}, indent=2))
    elif output == "yaml":
        print(manifest.dump_yaml(items), end="")
    elif not items:
        print(f"No {kind}s found.", file=sys.stderr)
    else:
        print(_table(_rows(kind, items, output == "wide")))


def _duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30s, 2m)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def _describe(obj) -> str:
    d = manifest.to_dict(obj)
    lines = yaml.safe_dump(d, sort_keys=False).rstrip().splitlines()
    if isinstance(obj, kr.Deployment):
        lines += ["", "Conditions:", _table([["TYPE", "STATUS", "REASON", "MESSAGE"]] + [
            [c.type, c.status, c.reason, c.message] for c in obj.status.conditions])]
    return "\n".join(lines)


def cmd_apply(c: Client, args) -> int:
    for obj in manifest.load(args.filename):
        out, how = c.apply(obj)
        print(f"{type(out).__name__.lower()}/{out.metadata.name} {how}")
    return 0


def cmd_get(c: Client, args) -> int:
    kind = kind_of(args.kind)
    ns = "" if kind == "node" else (args.namespace or "")
    if args.name:
        items = [c.get(kind, args.name, args.namespace or "default")]
    else:
        items = c.list(kind, "" if args.all_namespaces else ns)
    _print_objects(kind, items, args.output)
    return 0


def cmd_describe(c: Client, args) -> int:
    print(_describe(c.get(kind_of(args.kind), args.name, args.namespace or "default")))
    return 0


def cmd_delete(c: Client, args) -> int:
    kind = kind_of(args.kind)
    c.delete(kind, args.name, args.namespace or "default")
    print(f"{kind}/{args.name} deleted")
    return 0


def cmd_wait(c: Client, args) -> int:
    if kind_of(args.kind) != "deployment":
        raise errors.InvalidArgument("only deployments can be waited for")
    condition = args.for_.split("=", 1)[-1] if args.for_.startswith("condition=") else args.for_
    d = c.wait_ready(args.name, args.namespace or "default", args.timeout, condition)
    print(f"deployment/{d.metadata.name} condition met ({condition}): "
          f"{d.status.ready_replicas}/{d.spec.replicas} ready")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubep4", description="Deploy P4 programs onto programmable switches.")
    # where and who: flags, then the environment, then the client config's context (kubep4 config)
    p.add_argument("--server", "--api", dest="api", default=None,
                   help=f"apiserver address [env KUBEP4_API; default: the context's cluster, else {DEFAULT_API}]")
    config.secret_flag(p, "--token", "KUBEP4_TOKEN", help="the bearer token")
    p.add_argument("--context", default=None,
                   help=f"context of the client config [env KUBEP4_CONTEXT; config ${clientconfig.ENV}, "
                        f"default {clientconfig.DEFAULT_PATH}; default its current-context]")
    p.add_argument("--certificate-authority", default=None, metavar="PEM", help="TLS: the apiserver's CA")
    p.add_argument("--client-certificate", default=None, metavar="PEM", help="TLS: a client certificate")
    p.add_argument("--client-key", default=None, metavar="PEM", help="TLS: the client certificate's key")
    p.add_argument("--tls-server-name", default=None, help="TLS: the name in the apiserver's certificate")
    sub = p.add_subparsers(dest="command", required=True)

    def with_ns(sp):
        sp.add_argument("-n", "--namespace", default="", help="namespace (default: default)")
        return sp

    a = sub.add_parser("apply", help="create or update objects from a YAML manifest")
    a.add_argument("-f", "--filename", required=True)
    a.set_defaults(fn=cmd_apply)
    g = with_ns(sub.add_parser("get", help="list or get pipelines, deployments, nodes"))
    g.add_argument("kind")
    g.add_argument("name", nargs="?")
    g.add_argument("-o", "--output", choices=["wide", "json", "yaml"])
    g.add_argument("-A", "--all-namespaces", action="store_true")
    g.set_defaults(fn=cmd_get)
    d = with_ns(sub.add_parser("describe", help="show one object in detail"))
    d.add_argument("kind")
    d.add_argument("name")
    d.set_defaults(fn=cmd_describe)
    rm = with_ns(sub.add_parser("delete", help="delete a pipeline or deployment"))
    rm.add_argument("kind")
    rm.add_argument("name")
    rm.set_defaults(fn=cmd_delete)
    w = with_ns(sub.add_parser("wait", help="wait for a deployment condition"))
    w.add_argument("kind")
    w.add_argument("name")
    w.add_argument("--for", dest="for_", default="Ready", help="condition: Ready, Scheduled, Installed")
    w.add_argument("--timeout", type=_duration, default=30.0, help="e.g. 30s, 2m")
    w.set_defaults(fn=cmd_wait)
    from kubep4.cli import auth, configcmd, extra, read
    read.register(sub)
    auth.register(sub)
    configcmd.register(sub)
    extra.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "bench", None) != "schedule":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.args = extra  # bench schedule passes its own flags through
    if getattr(args, "local", False):
        try:
            return args.fn(args)
        except OSError as e:  # a missing file, a busy port: say which, no traceback
            print(f"Error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
            return 1
        except errors.KubeP4Error as e:
            print(f"Error ({e.code.name}): {e.message}", file=sys.stderr)
            return 1
        except MissingExtra as e:  # a feature of an extra that is not installed: which one to install
            print(f"Error: {e}", file=sys.stderr)
            return 1
        except clientconfig.ConfigError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
    try:
        conn = clientconfig.connection(server=args.api, token=config.read_secret(args, "--token") or None,
                                       context=args.context, ca=args.certificate_authority,
                                       cert=args.client_certificate, key=args.client_key,
                                       server_name=args.tls_server_name)
        if getattr(args, "namespace", None) == "":
            args.namespace = conn.namespace  # the context's, when -n is not given
        with Client(**conn.client_args()) as c:
            return args.fn(c, args)
    except (clientconfig.ConfigError, TLSFileError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except errors.KubeP4Error as e:
        print(f"Error ({e.code.name}): {e.message}", file=sys.stderr)
        for v in e.violations:
            print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 1
    except manifest.ManifestError as e:
        print(f"Error: {e}", file=sys.stderr)
        for field, description in e.problems[1:]:
            print(f"  {field}: {description}" if field else f"  {description}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
