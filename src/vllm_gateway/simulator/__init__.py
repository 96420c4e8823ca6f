"""A vLLM-compatible simulated backend for demos, load tests and the test suite.

It answers like vLLM's OpenAI-compatible server (see /work/shared/vllm-protocol.md) with
deterministic, model-free text.

Routes (vLLM's shapes; each module's docstring has the details):
- GET /health (unless `health_route=False`: then 404, like servers without it), /ping, /version,
  /load, /metrics, /v1/models;
- generation: /v1/chat/completions, /v1/completions (routes.py, completion_format.py),
  /v1/responses with GET /v1/responses/{id} and POST /v1/responses/{id}/cancel (responses.py),
  /v1/messages (messages.py), /v1/audio/transcriptions and /v1/audio/translations (audio.py,
  multipart forms);
- pooling: /v1/embeddings, /pooling, /classify, /score, /v1/score, /rerank, /v1/rerank,
  /v2/rerank (pooling.py); /tokenize, /detokenize;
- with `control=True`, the control API under /_sim/ (control.py).
A request that omits `model` (or sends null or "") is served by the first served model on
every route except /v1/messages (vLLM requires it there); the answer names the model that
served it. JSON routes answer 400 when Content-Type is not application/json.

Token rules, so tests can predict every count:
- A token is a whitespace-separated word (a generated token keeps the whitespace before it).
- Completion prompt tokens = words in the prompt (a token-id prompt: one token per id; several
  prompts add up). Chat prompt tokens = words in every message's content + 3 per message
  (a non-text content part, e.g. an image, is 1 token). Responses and messages requests count
  like the chat conversation they become.
- The answer is seeded by the prompt (and `seed`, and the choice index for n > 1): the same
  request always gets the same text. Chat answers are Markdown (a sentence or two, sometimes a
  short list or a fenced code block); completion answers are plain sentences starting with a space.
- Generation stops naturally ("stop") after the answer, or at max_tokens ("length"; default
  max_tokens = min(default_max_tokens, max_model_len - prompt tokens)). `ignore_eos` always
  generates max_tokens, `min_tokens` pads, `stop` strings cut the text ("stop", stop_reason set;
  the token that completed the stop string still counts).
- Time (engine.py): with tokens_per_second = 0 nothing waits, and everything above stays
  deterministic. With a speed set, each instance behaves like a small vLLM engine: at most
  `max_num_seqs` requests run (the others wait, FIFO, also while the KV cache is full); the
  prefill of the prompt tokens not in the instance's prefix cache (16-token blocks, chained
  hashes, LRU) produces the first token; each further token is a decode step of
  1 / tokens_per_second, slower by `batch_slowdown` per other running request. A
  non-streaming answer takes the whole generation time; a client that disconnects aborts
  the request wherever it is (queue, prefill, decode).
- /metrics (metrics.py) shows the engine with vLLM's metric names, types and labels.

For tests (`app.state.simulator` is the `SimulatorState`):
- recordings: `requests` (every `RecordedRequest`: method, path, headers, body, json,
  request_id, status, aborted), `requests_with_id(id)`, `aborted_request_ids`, `completed`,
  `active`, `prompt_tokens_total`, `generation_tokens_total`, stored `responses`;
- the engine: `engine` (running, waiting, kv_usage, prefix_queries, prefix_hits) and each
  generation request's `RecordedRequest.sequence` (`SequenceStats`: cached tokens, queue
  time, modelled prefill and per-step times, batch sizes); `metrics` (the Prometheus registry);
- knobs: `tokens_per_second`, `set_extra_headers(...)`;
- faults (faults.py), each for the next `count` generation requests: `inject_failure(status,
  body=, delay=)` (status 0 drops the connection), `inject_traceback()`, `inject_bare_error()`,
  `inject_queue_full()`; for the next streams: `inject_stream_error(n)`,
  `inject_truncated_stream(n)`, `inject_malformed_chunk(n)`, `inject_stall(n, seconds=)`;
  `clear_faults()`.

Several instances: `vllm-gateway simulator --instances N [--speeds 1,1,0.25]` (fleet.py).
"""

from vllm_gateway.simulator.app import create_simulator_app
from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.faults import InjectedFailure, StreamFault
from vllm_gateway.simulator.state import (
    RecordedRequest,
    SequenceStats,
    SimulatorState,
    StoredResponse,
)

__all__ = [
    "InjectedFailure",
    "RecordedRequest",
    "SequenceStats",
    "SimulatorConfig",
    "SimulatorState",
    "StoredResponse",
    "StreamFault",
    "create_simulator_app",
]
