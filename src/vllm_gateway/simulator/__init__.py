"""A vLLM-compatible simulated backend for demos, load tests and the test suite.

It answers like vLLM's OpenAI-compatible server (see /work/shared/vllm-protocol.md) with
deterministic, model-free text. Token rules, so tests can predict every count:

- A token is a whitespace-separated word (a generated token keeps the whitespace before it).
- Completion prompt tokens = words in the prompt (a token-id prompt: one token per id; several
  prompts add up). Chat prompt tokens = words in every message's content + 3 per message
  (a non-text content part, e.g. an image, is 1 token).
- The answer is seeded by the prompt (and `seed`, and the choice index for n > 1): the same
  request always gets the same text. Chat answers are Markdown (a sentence or two, sometimes a
  short list or a fenced code block); completion answers are plain sentences starting with a space.
- Generation stops naturally ("stop") after the answer, or at max_tokens ("length"; default
  max_tokens = min(default_max_tokens, max_model_len - prompt tokens)). `ignore_eos` always
  generates max_tokens, `min_tokens` pads, `stop` strings cut the text ("stop", stop_reason set;
  the token that completed the stop string still counts).
- Time: each token takes 1 / tokens_per_second (0: no waiting); a non-streaming answer takes the
  whole generation time and is aborted if the client disconnects meanwhile.
"""

from vllm_gateway.simulator.app import create_simulator_app
from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.state import InjectedFailure, RecordedRequest, SimulatorState

__all__ = [
    "InjectedFailure",
    "RecordedRequest",
    "SimulatorConfig",
    "SimulatorState",
    "create_simulator_app",
]
