"""OpenTelemetry traces of the /v1 hot path, on only when an OTLP endpoint is configured.

provider.py opens the SDK per worker (OTLP/HTTP exporter behind a batch processor) and
flushes it on shutdown; request_trace.py is one request's spans; pipeline.py is the pipeline
with a span around each step. Only the lifespan imports them, and only when
`Settings.traces_endpoint` is set: a gateway without tracing never imports the SDK.
"""
