"""POST /v1/audio/transcriptions and /v1/audio/translations, multipart forms as vLLM reads them.

The form is parsed by Starlette's parser (python-multipart), like vLLM's FastAPI `Form()`
model: a field sent twice keeps its last value, an unquoted `name=model` is accepted, a
missing `file` is a 400, a `file` sent as a plain field is a 422. The audio is not decoded:
- text: deterministic, seeded by the task and the SHA-256 of the file's bytes (so the same
  file always gets the same text, a translation a different one than a transcription);
- duration: a WAV file's own (frames / rate); any other bytes count as 16 kHz 16-bit mono
  (32,000 bytes a second). A transcription's usage is vLLM's {"type": "duration", "seconds":
  duration rounded up}; a translation has no usage, like vLLM's;
- prompt tokens (shown by streamed usage): one per started second of audio plus the words
  of `prompt`.
`stream=true` answers chat-style chunks (`transcription.chunk` / `translation.chunk`, id
`transcribe-<request id>` / `translate-<request id>`) ending in [DONE];
`stream_include_usage` and `stream_continuous_usage_stats` are the form's flattened stream
options. Injected faults do not apply to these routes.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
import wave
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp

from vllm_gateway.simulator.completion_format import DONE, usage
from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.errors import SimulatorError, bad_request, error_payload
from vllm_gateway.simulator.generation import GenerationResponse
from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.routes import base_request_id
from vllm_gateway.simulator.state import SimulatorState
from vllm_gateway.simulator.streaming import data_frame
from vllm_gateway.simulator.text import Answer, generate, token_ids

_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}
_BYTES_PER_SECOND = 32_000
_SUPPORTED_FORMATS = ("json", "text")
_KNOWN_FORMATS = ("json", "text", "srt", "verbose_json", "diarized_json", "vtt")


def duration_of(audio: bytes) -> float:
    """Seconds of audio: a WAV header's own, else the bytes as 16 kHz 16-bit mono."""
    try:
        with wave.open(io.BytesIO(audio)) as wav:
            return float(wav.getnframes() / wav.getframerate())
    except (wave.Error, EOFError, ZeroDivisionError):
        return len(audio) / _BYTES_PER_SECOND


def _flag(form: FormData, name: str) -> bool:
    value = form.get(name)
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise bad_request(f"{name}: Input should be a valid boolean.", name)


def _optional_int(form: FormData, name: str) -> int | None:
    value = form.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise bad_request(f"{name}: Input should be a valid integer.", name) from None
    if number < 1:
        raise bad_request(f"{name} must be at least 1, got {number}.", name)
    return number


def _string(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value if isinstance(value, str) else default


class AudioRenderer:
    """The bytes of a transcription or translation."""

    terminator = DONE

    def __init__(self, plan: Plan, task: str, seconds: int) -> None:
        self.plan = plan
        self.task = task
        self.seconds = seconds
        self.object = "transcription.chunk" if task == "transcribe" else "translation.chunk"
        self.generated = 0

    def body(self) -> dict[str, Any]:
        text = self.plan.answers[0].text
        if self.task == "transcribe":
            return {"text": text, "usage": {"type": "duration", "seconds": self.seconds}}
        return {"text": text}

    def opening(self) -> list[bytes]:
        return []

    def token(self, index: int, step: int) -> list[bytes]:
        plan = self.plan
        answer = plan.answers[index]
        self.generated += 1
        choice: dict[str, Any] = {"delta": {"content": answer.pieces[step]}}
        if step == answer.tokens - 1:
            choice |= {"finish_reason": answer.finish_reason, "stop_reason": answer.stop_reason}
        chunk = self._base([choice])
        if plan.continuous_usage:
            chunk["usage"] = usage(plan.prompt_tokens, self.generated)
        return [data_frame(chunk)]

    def closing(self) -> list[bytes]:
        if not self.plan.include_usage:
            return []
        chunk = self._base([])
        chunk["usage"] = usage(self.plan.prompt_tokens, self.generated)
        return [data_frame(chunk)]

    def error_frames(self) -> list[bytes]:
        return [data_frame(error_payload(500, "Simulated engine error during generation."))]

    def _base(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        plan = self.plan
        return {
            "id": plan.request_id,
            "object": self.object,
            "created": plan.created,
            "model": plan.model,
            "choices": choices,
        }


class AudioRoutes:
    """The two speech-to-text routes."""

    def __init__(self, config: SimulatorConfig, state: SimulatorState) -> None:
        self.config = config
        self.state = state

    async def transcriptions(self, request: Request) -> ASGIApp:
        return await self._speech_to_text(request, "transcribe")

    async def translations(self, request: Request) -> ASGIApp:
        return await self._speech_to_text(request, "translate")

    async def _speech_to_text(self, request: Request, task: str) -> ASGIApp:
        async with request.form() as form:
            upload = form.get("file")
            if upload is None:
                raise bad_request("file: Field required.", "file")
            if not isinstance(upload, UploadFile):
                raise SimulatorError(422, "Expected 'file' to be a file-like object, not 'str'.")
            audio = await upload.read()
            plan, seconds = self._plan(form, audio, task, base_request_id(request))
        return GenerationResponse(
            self.state, plan, AudioRenderer(plan, task, seconds), faults=False
        )

    def _plan(self, form: FormData, audio: bytes, task: str, base_id: str) -> tuple[Plan, int]:
        stream = _flag(form, "stream")
        include_usage = _flag(form, "stream_include_usage")
        continuous = _flag(form, "stream_continuous_usage_stats")
        if (include_usage or continuous) and not stream:
            option = "stream_include_usage" if include_usage else "stream_continuous_usage_stats"
            raise bad_request("Stream options can only be defined when `stream=True`.", option)
        response_format = _string(form, "response_format", "json")
        if response_format not in _KNOWN_FORMATS:
            raise bad_request(
                f"response_format: Input should be one of {', '.join(_KNOWN_FORMATS)}.",
                "response_format",
            )
        model = self._model(form)
        if response_format == "verbose_json":
            raise bad_request(f"Currently do not support verbose_json for {model}")
        if response_format not in _SUPPORTED_FORMATS:
            raise bad_request(
                "Currently only support response_format: `text`, `json` or `verbose_json`"
            )
        requested = _optional_int(form, "max_completion_tokens")
        max_tokens = min(requested or self.config.max_model_len, self.config.max_model_len)
        digest = hashlib.sha256(audio).hexdigest()
        seconds = math.ceil(duration_of(audio))
        answer = generate(f"{task}:{digest}", chat=False, max_tokens=max_tokens)
        pieces = [answer.pieces[0].lstrip(), *answer.pieces[1:]] if answer.pieces else []
        audio_ids = [100 + (int(digest[:8], 16) + i) % 50_000 for i in range(seconds)]
        plan = Plan(
            model=model,
            base_id=base_id,
            request_id=f"{task}-{base_id}",
            created=int(time.time()),
            prompts=[audio_ids + token_ids(_string(form, "prompt"))],
            answers=[Answer(pieces, answer.finish_reason, answer.stop_reason)],
            answer_prompts=[0],
            stream=stream,
            include_usage=include_usage,
            continuous_usage=include_usage and continuous,
            max_tokens=max_tokens,
        )
        return plan, seconds

    def _model(self, form: FormData) -> str:
        model = _string(form, "model")
        if not model:
            return self.config.models[0]
        if model not in self.config.models:
            raise SimulatorError(404, f"The model `{model}` does not exist.", "model")
        return model
