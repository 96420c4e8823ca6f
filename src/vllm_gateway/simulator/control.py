"""The control API (only with `SimulatorConfig(control=True)` / `--control`), for simulators
running as subprocesses: the same knobs tests turn on `SimulatorState`, over HTTP.

- `POST /_sim/faults` {"fault": KIND, "count": N, ...}: queue a fault for the next N generation
  requests (or a list of such objects). Kinds and their fields:
  answer faults: "status" (status, body?, delay?), "drop", "delay" (seconds), "traceback"
  (status=500), "bare_error" (status=400), "queue_full";
  stream faults: "stream_error", "truncate", "malformed" (after_chunks), "stall"
  (after_chunks=0, seconds: null for until the client leaves).
- `DELETE /_sim/faults`: forget the faults not yet taken.
- `PUT /_sim/headers` {"headers": {name: value} or [[name, value], ...]}: extra headers on
  every answer from now on.
- `PUT /_sim/speed` {"tokens_per_second": R}: change the generation speed.
- `GET /_sim/stats`: counters (completed, active, aborted_request_ids, prompt and generation
  tokens, recorded requests, pending faults, speed) and the engine's running, waiting,
  kv_cache_usage, prefix_cache_queries and prefix_cache_hits.
- `GET /_sim/requests?limit=N`: the last N recorded requests (method, path, request_id,
  headers, json or body text, status, aborted).
The control API is not recorded, needs no key, and never gets injected faults.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vllm_gateway.simulator.state import RecordedRequest, SimulatorState

_ANSWER_FAULTS = {"status", "drop", "delay", "traceback", "bare_error", "queue_full"}
_STREAM_FAULTS = {"stream_error", "truncate", "malformed", "stall"}


class ControlError(Exception):
    """A control request that cannot be honoured (answered 400)."""


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _number(spec: dict[str, Any], name: str, default: float | None) -> float | None:
    value = spec.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ControlError(f"{name} must be a number of at least 0")
    return float(value)


def _int(spec: dict[str, Any], name: str, default: int) -> int:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ControlError(f"{name} must be an integer of at least 0")
    return value


def inject(state: SimulatorState, spec: Any) -> None:
    """Queue the fault a control request describes."""
    if not isinstance(spec, dict) or not isinstance(spec.get("fault"), str):
        raise ControlError('a fault is an object with a "fault" kind')
    kind = spec["fault"]
    count = _int(spec, "count", 1)
    if kind in _STREAM_FAULTS:
        after = _int(spec, "after_chunks", 0)
        if kind == "stall":
            state.inject_stall(after, seconds=_number(spec, "seconds", None), count=count)
        elif kind == "stream_error":
            state.inject_stream_error(after, count=count)
        elif kind == "truncate":
            state.inject_truncated_stream(after, count=count)
        else:
            state.inject_malformed_chunk(after, count=count)
        return
    if kind not in _ANSWER_FAULTS:
        known = ", ".join(sorted(_ANSWER_FAULTS | _STREAM_FAULTS))
        raise ControlError(f"unknown fault {kind!r} (known: {known})")
    if kind == "traceback":
        state.inject_traceback(_int(spec, "status", 500), count=count)
    elif kind == "bare_error":
        state.inject_bare_error(_int(spec, "status", 400), count=count)
    elif kind == "queue_full":
        state.inject_queue_full(count=count)
    elif kind == "drop":
        state.inject_failure(0, count=count)
    elif kind == "delay":
        state.inject_failure(200, delay=_number(spec, "seconds", 0.0) or 0.0, count=count)
    else:
        body = spec.get("body")
        if body is not None and not isinstance(body, dict):
            raise ControlError("body must be an object")
        state.inject_failure(
            _int(spec, "status", 500),
            body=body,
            delay=_number(spec, "delay", 0.0) or 0.0,
            count=count,
        )


def _recorded(record: RecordedRequest) -> dict[str, Any]:
    return {
        "method": record.method,
        "path": record.path,
        "request_id": record.request_id,
        "headers": record.headers,
        "json": record.json,
        "body": None if record.json is not None else record.body.decode("utf-8", "replace"),
        "status": record.status,
        "aborted": record.aborted,
    }


class Control:
    """The control API's handlers, bound to one simulator's state."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        """The control API's routes."""
        return [
            Route("/_sim/faults", self.faults, methods=["POST", "DELETE"]),
            Route("/_sim/headers", self.headers, methods=["PUT"]),
            Route("/_sim/speed", self.speed, methods=["PUT"]),
            Route("/_sim/stats", self.stats, methods=["GET"]),
            Route("/_sim/requests", self.requests, methods=["GET"]),
        ]

    async def _body(self, request: Request) -> Any:
        try:
            return orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise ControlError("the body must be JSON") from None

    async def _guarded(self, request: Request, action: Any) -> Response:
        try:
            await action(await self._body(request))
        except ControlError as error:
            return _json({"error": str(error)}, 400)
        return _json({"pending_faults": self.state.pending_faults})

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.clear_faults()
            return _json({"pending_faults": self.state.pending_faults})

        async def add(specs: Any) -> None:
            for spec in specs if isinstance(specs, list) else [specs]:
                inject(self.state, spec)

        return await self._guarded(request, add)

    async def headers(self, request: Request) -> Response:
        async def replace(spec: Any) -> None:
            headers = spec.get("headers") if isinstance(spec, dict) else None
            if isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values()):
                self.state.set_extra_headers(headers)
            elif isinstance(headers, list) and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                for p in headers
            ):
                self.state.set_extra_headers([(name, value) for name, value in headers])
            else:
                raise ControlError('"headers" must be an object or a list of [name, value]')

        return await self._guarded(request, replace)

    async def speed(self, request: Request) -> Response:
        async def change(spec: Any) -> None:
            rate = _number(spec if isinstance(spec, dict) else {}, "tokens_per_second", None)
            if rate is None:
                raise ControlError('"tokens_per_second" is required')
            self.state.tokens_per_second = rate

        return await self._guarded(request, change)

    async def stats(self, request: Request) -> Response:
        state = self.state
        engine = state.engine
        return _json(
            {
                "completed": state.completed,
                "active": state.active,
                "aborted_request_ids": list(state.aborted_request_ids),
                "prompt_tokens_total": state.prompt_tokens_total,
                "generation_tokens_total": state.generation_tokens_total,
                "requests": len(state.requests),
                "pending_faults": state.pending_faults,
                "tokens_per_second": state.tokens_per_second,
                "running": len(engine.running),
                "waiting": len(engine.waiting),
                "kv_cache_usage": engine.kv_usage,
                "prefix_cache_queries": engine.prefix_queries,
                "prefix_cache_hits": engine.prefix_hits,
            }
        )

    async def requests(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            return _json({"error": "limit must be an integer"}, 400)
        recent = list(self.state.requests)[-limit:] if limit > 0 else []
        return _json([_recorded(record) for record in recent])
