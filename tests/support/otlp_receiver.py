"""A real OTLP/HTTP trace receiver, as its own process: what the gateway's exporter talks to.

`python -m tests.support.otlp_receiver --port P --spans FILE [--raw FILE] [--count-only]`
serves `POST /v1/traces` (protobuf `ExportTraceServiceRequest`, gzip'd or not), decoded with
opentelemetry-proto, and writes each span as one JSON line to FILE: trace, span and parent
ids in hex, name, kind, status, attributes and the resource's attributes. `--raw` keeps every
request body exactly as received (to grep for what must never be exported), `--headers` each
export's HTTP headers as a JSON line; `--count-only`
writes one line per export with its span count instead (the benchmark's receiver).

`running_receiver()` starts one on a free port for a test and stops it afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.servers import free_port

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUSES = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in any_value.array_value.values]
    if which == "kvlist_value":
        return _attributes(any_value.kvlist_value.values)
    return None if which is None else getattr(any_value, which)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(body: bytes) -> list[dict[str, Any]]:
    """The spans of one ExportTraceServiceRequest, as plain dicts."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": KINDS.get(span.kind, str(span.kind)),
                        "start_ns": span.start_time_unix_nano,
                        "end_ns": span.end_time_unix_nano,
                        "status": STATUSES.get(span.status.code, str(span.status.code)),
                        "attributes": _attributes(span.attributes),
                        "resource": resource,
                    }
                )
    return spans


def serve(
    port: int, spans_file: Path, raw_file: Path | None, count_only: bool, headers_file: Path | None
) -> None:
    """Receive exports until killed."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    answer = ExportTraceServiceResponse().SerializeToString()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            status = 404 if self.path != "/v1/traces" else 200
            if status == 200:
                spans = decode(body)
                with lock:
                    if headers_file is not None:
                        with headers_file.open("a") as out:
                            out.write(json.dumps(dict(self.headers.items())) + "\n")
                    if raw_file is not None:
                        with raw_file.open("ab") as raw:
                            raw.write(body)
                    with spans_file.open("a") as out:
                        if count_only:
                            out.write(json.dumps({"spans": len(spans)}) + "\n")
                        else:
                            out.writelines(json.dumps(span) + "\n" for span in spans)
            self.send_response(status)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the spans file is the record

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


@dataclass
class Receiver:
    """A running receiver: its endpoint, and what it received so far."""

    process: subprocess.Popen[bytes]
    port: int
    spans_file: Path
    raw_file: Path
    headers_file: Path

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT)."""
        return f"http://127.0.0.1:{self.port}"

    def spans(self) -> list[dict[str, Any]]:
        """Every span received so far."""
        if not self.spans_file.exists():
            return []
        return [json.loads(line) for line in self.spans_file.read_text().splitlines()]

    def exported_spans(self) -> int:
        """Spans received so far by a --count-only receiver."""
        return sum(line["spans"] for line in self.spans())

    def export_headers(self) -> list[dict[str, str]]:
        """The HTTP headers of every export received so far."""
        if not self.headers_file.exists():
            return []
        return [json.loads(line) for line in self.headers_file.read_text().splitlines()]

    def raw(self) -> bytes:
        """Every export's body, as received."""
        return self.raw_file.read_bytes() if self.raw_file.exists() else b""

    def wait_for(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The spans once `done(spans)` holds (the exporter sends its batches every few s)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if done(spans):
                return spans
            assert time.monotonic() < deadline, f"spans received: {spans}"
            time.sleep(0.05)


@contextmanager
def running_receiver(
    directory: Path, count_only: bool = False, port: int | None = None
) -> Iterator[Receiver]:
    """A receiver process on `port` (a free one by default), ready; killed afterwards."""
    port = port or free_port()
    spans_file, raw_file = directory / "spans.jsonl", directory / "exports.bin"
    headers_file = directory / "headers.jsonl"
    args = [sys.executable, "-m", "tests.support.otlp_receiver", "--port", str(port)]
    args += ["--spans", str(spans_file), "--raw", str(raw_file), "--headers", str(headers_file)]
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([*args, *(["--count-only"] if count_only else [])], cwd=root)
    try:
        _wait_listening(port, process)
        yield Receiver(process, port, spans_file, raw_file, headers_file)
    finally:
        process.kill()
        process.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, "the OTLP receiver exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the OTLP receiver did not listen"
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spans", type=Path, required=True)
    parser.add_argument("--raw", type=Path)
    parser.add_argument("--headers", type=Path)
    parser.add_argument("--count-only", action="store_true")
    args = parser.parse_args()
    serve(args.port, args.spans, args.raw, args.count_only, args.headers)


if __name__ == "__main__":
    main()
