"""OpenTelemetry setup and trace-context propagation through stored objects.

Export is configured by the standard OTEL_* variables and is off (no-op) when no
OTLP endpoint is set: then no provider, exporter or interceptor is created.

Hops that pass through etcd carry the W3C context inside the object
(``metadata.trace_context``): the writer injects the current context, the reader
continues it as the parent of its own span, so one deployment is one trace.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract, inject

log = logging.getLogger(__name__)

SERVICE_NAMES = ("kubep4-apiserver", "kubep4-admission", "kubep4-controller", "kubep4-node-agent", "kubep4-builder")


@dataclass
class Telemetry:
    service_name: str
    enabled: bool = False
    tracer_provider: object | None = None
    meter_provider: object | None = None
    exporters: list = field(default_factory=list)

    def server_interceptors(self) -> list:
        if not self.enabled:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor
        return [aio_server_interceptor(tracer_provider=self.tracer_provider)]

    def client_interceptors(self) -> list:
        if not self.enabled:
            return []
        from opentelemetry.instrumentation.grpc import aio_client_interceptors
        return aio_client_interceptors(tracer_provider=self.tracer_provider)

    def shutdown(self) -> None:
        for p in (self.tracer_provider, self.meter_provider):
            if p is not None:
                try:
                    p.shutdown()
                except Exception:  # exporter already gone: nothing to flush to
                    log.debug("telemetry shutdown failed", exc_info=True)


def export_configured(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup(service_name: str, environ: Mapping[str, str] = os.environ) -> Telemetry:
    """Install global tracer and meter providers exporting OTLP/gRPC, if configured."""
    if not export_configured(environ):
        return Telemetry(service_name)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", service_name)})
    span_exporter = OTLPSpanExporter()
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(span_exporter))  # OTEL_BSP_* tune it
    trace.set_tracer_provider(tp)
    exporters: list = [span_exporter]
    mp = None
    if environ.get("OTEL_METRICS_EXPORTER", "otlp").lower() != "none":  # Jaeger takes traces only
        metric_exporter = OTLPMetricExporter()
        interval = int(environ.get("OTEL_METRIC_EXPORT_INTERVAL", "5000"))
        mp = MeterProvider(resource=resource, metric_readers=[
            PeriodicExportingMetricReader(metric_exporter, export_interval_millis=interval)])
        metrics.set_meter_provider(mp)
        exporters.append(metric_exporter)
    log.info("OpenTelemetry export on for %s", service_name)
    return Telemetry(service_name, True, tp, mp, exporters)


def inject_context(carrier: dict | object) -> None:
    """Write the current W3C trace context into a dict or a protobuf map field."""
    tmp: dict[str, str] = {}
    inject(tmp)
    for k, v in tmp.items():
        carrier[k] = v


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    return extract(dict(carrier))


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


WRITTEN_AT = "kubep4-written-at"  # wall-clock ns when the writer stored the object (same map as traceparent)


def stamp_write(carrier) -> None:
    """Inject the current context and the write time into an object's trace_context before storing it."""
    import time
    inject_context(carrier)
    carrier[WRITTEN_AT] = str(time.time_ns())


def record_delivery(t: trace.Tracer, carrier: Mapping[str, str], received_ns: int, name: str,
                    attributes: dict | None = None) -> None:
    """A span from the write of an object to its arrival through an etcd watch, in the writer's trace."""
    written = carrier.get(WRITTEN_AT)
    if not written or "traceparent" not in carrier:
        return
    span = t.start_span(name, context=extract_context(carrier), start_time=int(written),
                        attributes=attributes or {})
    span.end(end_time=max(int(written), received_ns))
