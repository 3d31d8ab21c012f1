"""An in-process OTLP/gRPC receiver that keeps spans (and metric names) in memory.

`kubep4 up --traces` runs one so a deployment's trace can be inspected on a
machine with no Jaeger: it also serves the two calls of Jaeger's HTTP query API
that `kubep4 trace` uses (GET /api/traces/{id}, GET /api/services), in the same
JSON shape. The tests use it to collect the spans of a real deployment.
"""
from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

from kubep4.extras import MissingExtra
from kubep4.serving import bind


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    start_ns: int
    end_ns: int
    attributes: dict = field(default_factory=dict)
    kind: int = 0
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id) this span links to

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def _value(v) -> object:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


class _Traces(tgrpc.TraceServiceServicer):
    def __init__(self, sink: "OTLPReceiver"):
        self.sink = sink

    async def Export(self, request, context):
        for rs in request.resource_spans:
            service = next((_value(a.value) for a in rs.resource.attributes if a.key == "service.name"), "?")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.sink.add(Span(s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name,
                                       service, s.start_time_unix_nano, s.end_time_unix_nano,
                                       {a.key: _value(a.value) for a in s.attributes}, s.kind,
                                       [(lk.trace_id.hex(), lk.span_id.hex()) for lk in s.links]))
        return tpb.ExportTraceServiceResponse()


class _Metrics(mgrpc.MetricsServiceServicer):
    def __init__(self, sink: "OTLPReceiver"):
        self.sink = sink

    async def Export(self, request, context):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    self.sink.metrics[m.name] = m
        return mpb.ExportMetricsServiceResponse()


class OTLPReceiver:
    def __init__(self) -> None:
        self.spans_by_trace: dict[str, list[Span]] = defaultdict(list)
        self.metrics: dict[str, object] = {}
        self.changed = asyncio.Event()
        self._lock = threading.Lock()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    def add(self, span: Span) -> None:
        with self._lock:
            self.spans_by_trace[span.trace_id].append(span)
        self.changed.set()

    def spans(self, trace_id: str | None = None) -> list[Span]:
        with self._lock:
            if trace_id is not None:
                return list(self.spans_by_trace.get(trace_id, []))
            return [s for spans in self.spans_by_trace.values() for s in spans]

    async def start(self, listen: str = "127.0.0.1:0") -> "OTLPReceiver":
        self.server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                               ("grpc.so_reuseport", 0)])
        tgrpc.add_TraceServiceServicer_to_server(_Traces(self), self.server)
        mgrpc.add_MetricsServiceServicer_to_server(_Metrics(self), self.server)
        self.port = bind(self.server, listen)
        await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ Jaeger query API shape
    def jaeger_trace(self, trace_id: str) -> dict:
        return to_jaeger(trace_id, self.spans(trace_id))

    async def serve_query_api(self, host: str = "127.0.0.1", port: int = 16686):
        """Serve GET /api/traces/{id} and /api/services like Jaeger's query service. Returns the runner."""
        try:
            from aiohttp import web
        except ModuleNotFoundError as e:  # the traces extra
            raise MissingExtra("aiohttp", "the Jaeger-style query API (kubep4 up --traces)") from e

        async def trace(request):
            tid = request.match_info["trace_id"].lower().rjust(32, "0")
            if not self.spans(tid):
                return web.json_response({"data": None, "errors": [{"code": 404, "msg": "trace not found"}]},
                                         status=404)
            return web.json_response({"data": [self.jaeger_trace(tid)], "errors": None})

        async def services(request):
            names = sorted({s.service for s in self.spans()})
            return web.json_response({"data": names, "total": len(names), "errors": None})

        app = web.Application()
        app.router.add_get("/api/traces/{trace_id}", trace)
        app.router.add_get("/api/services", services)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        return runner


def to_jaeger(trace_id: str, spans: list[Span]) -> dict:
    """Spans in the JSON shape of Jaeger's query API (times in microseconds)."""
    processes: dict[str, str] = {}
    out = []
    for s in spans:
        pid = processes.setdefault(s.service, f"p{len(processes) + 1}")
        refs = [{"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_span_id}] \
            if s.parent_span_id else []
        out.append({"traceID": s.trace_id, "spanID": s.span_id, "operationName": s.name, "references": refs,
                    "startTime": s.start_ns // 1000, "duration": s.duration_ns // 1000, "processID": pid,
                    "tags": [{"key": k, "type": "string" if isinstance(v, str) else "float64"
                              if isinstance(v, float) else "int64" if isinstance(v, int) else "string",
                              "value": v if isinstance(v, (str, int, float)) else str(v)}
                             for k, v in s.attributes.items()]})
    return {"traceID": trace_id, "spans": out,
            "processes": {pid: {"serviceName": name, "tags": []} for name, pid in processes.items()}}
