"""`kubep4 trace deployment NAME`: the deployment's trace as a per-hop waterfall, from Jaeger's query API."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from kubep4 import errors, waterfall
from kubep4.client import kind_of

DEFAULT_JAEGER = "http://127.0.0.1:16686"


def register(sub) -> None:
    t = sub.add_parser("trace", help="show a deployment's trace as a per-hop waterfall")
    t.add_argument("kind", help="deployment")
    t.add_argument("name")
    t.add_argument("-n", "--namespace", default="default")
    t.add_argument("--jaeger", default=os.environ.get("KUBEP4_JAEGER", DEFAULT_JAEGER),
                   help=f"Jaeger query URL, or `kubep4 up --traces` [env KUBEP4_JAEGER, default {DEFAULT_JAEGER}]")
    t.add_argument("-o", "--output", choices=["table", "json"], default="table")
    t.set_defaults(fn=run)


def trace_id_of(trace_context) -> str:
    parent = trace_context.get("traceparent", "")
    parts = parent.split("-")
    if len(parts) != 4:
        raise errors.FailedPrecondition("the deployment carries no trace context: was tracing on "
                                        "(OTEL_EXPORTER_OTLP_ENDPOINT) when it was created?")
    return parts[1]


def fetch(jaeger: str, trace_id: str) -> dict:
    url = f"{jaeger.rstrip('/')}/api/traces/{trace_id}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise errors.NotFound(f"trace {trace_id} not found at {jaeger} (spans are exported in batches: "
                                  "retry in a few seconds)") from None
        raise errors.Unavailable(f"{url}: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        raise errors.Unavailable(f"cannot reach Jaeger at {jaeger}: {getattr(e, 'reason', e)}") from None
    data = body.get("data") or []
    if not data:
        raise errors.NotFound(f"trace {trace_id} not found at {jaeger}")
    return data[0]


def run(c, args) -> int:
    if kind_of(args.kind) != "deployment":
        raise errors.InvalidArgument("only deployments have traces: kubep4 trace deployment NAME")
    d = c.get("deployment", args.name, args.namespace)
    tid = trace_id_of(d.metadata.trace_context)
    rows = waterfall.from_jaeger(fetch(args.jaeger, tid))
    if args.output == "json":
        print(json.dumps({"deployment": f"{args.namespace}/{args.name}", "traceID": tid,
                          "hops": waterfall.to_json(rows)}, indent=2))
    else:
        print(f"deployment {args.namespace}/{args.name}  trace {tid}")
        print(waterfall.render(rows))
    return 0
