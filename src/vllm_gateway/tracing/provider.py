"""The worker's tracer: the OpenTelemetry SDK set up from the OTEL_* settings, flushed on exit.

Imported only when tracing is configured (it imports the SDK). One TracerProvider per worker
process, opened by the lifespan after uvicorn started the worker (so several workers each
have their own exporter thread) and never installed as the global provider: the gateway's
spans are made with this tracer explicitly, parented by explicit contexts, so nothing else
in the process (nor another gateway in the same process, as in the tests) shares it.

Spans are batched (BatchSpanProcessor) and exported on the processor's own thread over
OTLP/HTTP: a request never waits for the collector, and a collector that is down costs
dropped spans (the queue is bounded), never a slower or failed request. On shutdown the
queue is flushed for at most SHUTDOWN_SECONDS; what is still unsent then is dropped.

The endpoint, headers, service name and sampler come from the settings (so a `.env` file
works too); the SDK reads the rest of the standard variables itself (OTEL_BSP_*,
OTEL_EXPORTER_OTLP_TIMEOUT, _COMPRESSION, _CERTIFICATE, OTEL_RESOURCE_ATTRIBUTES).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.re import parse_env_headers
from yarl import URL

from vllm_gateway import __version__
from vllm_gateway.settings import Settings

SHUTDOWN_SECONDS = 5.0
"""How long shutdown waits for the last spans to be exported."""


def sampler_for(settings: Settings) -> sampling.Sampler:
    """OTEL_TRACES_SAMPLER (and _ARG) as the SDK's sampler."""
    name, ratio = settings.otel_traces_sampler, settings.otel_traces_sampler_arg
    if name == "parentbased_traceidratio":
        return sampling.ParentBasedTraceIdRatio(ratio)
    if name == "traceidratio":
        return sampling.TraceIdRatioBased(ratio)
    own = sampling.ALWAYS_OFF if name.endswith("always_off") else sampling.ALWAYS_ON
    return sampling.ParentBased(own) if name.startswith("parentbased_") else own


def export_headers(settings: Settings) -> dict[str, str]:
    """The export's headers: the traces' own, else the general ones (W3C baggage format)."""
    secret = settings.otel_exporter_otlp_traces_headers or settings.otel_exporter_otlp_headers
    return dict(parse_env_headers(secret.get_secret_value(), liberal=True)) if secret else {}


@dataclass(slots=True)
class Tracing:
    """What the traced pipeline needs: the tracer, the W3C propagator, backend addresses."""

    tracer: Tracer
    propagator: TraceContextTextMapPropagator = field(default_factory=TraceContextTextMapPropagator)
    _addresses: dict[str, tuple[str, int]] = field(default_factory=dict)

    def address(self, base_url: str) -> tuple[str, int]:
        """server.address and server.port of a backend (parsed once per backend URL)."""
        known = self._addresses.get(base_url)
        if known is None:
            url = URL(base_url)
            known = self._addresses[base_url] = (url.host or "", url.port or 0)
        return known


@asynccontextmanager
async def open_tracing(settings: Settings) -> AsyncIterator[Tracing]:
    """The worker's tracer while the block runs; its last spans flushed afterwards."""
    endpoint = settings.traces_endpoint
    assert endpoint is not None
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name,
            "service.version": __version__,
            "service.instance.id": str(uuid.uuid4()),  # one per worker process
        }
    )
    provider = TracerProvider(
        sampler=sampler_for(settings), resource=resource, shutdown_on_exit=False
    )
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=export_headers(settings))
    processor = BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    try:
        yield Tracing(provider.get_tracer("vllm_gateway", __version__))
    finally:
        # The SDK's shutdown exports what is queued, retrying up to the export timeout (10 s
        # by default) when the collector is away: a daemon thread, waited for a bounded time.
        flushing = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
        flushing.start()
        await asyncio.to_thread(flushing.join, SHUTDOWN_SECONDS)
