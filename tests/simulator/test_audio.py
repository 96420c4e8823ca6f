"""Speech to text: multipart forms parsed like vLLM's FastAPI, deterministic text and usage."""

from __future__ import annotations

import io
import math
import wave

import httpx
import openai

from tests.simulator.helpers import AUTH, KEY, typed_events
from tests.support.servers import RunningServer


def wav(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x01\x00" * int(seconds * rate))
    return buffer.getvalue()


def multipart(fields: list[tuple[str, str]], audio: bytes) -> tuple[bytes, str]:
    """A hand-made multipart body, to send what clients send (duplicates, unquoted names)."""
    boundary = "simboundary"
    parts = [
        f"--{boundary}\r\nContent-Disposition: form-data; {name}\r\n\r\n{value}\r\n"
        for name, value in fields
    ]
    head = "".join(parts).encode()
    file_part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    body = head + file_part + audio + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_transcription_with_the_official_client(server: RunningServer) -> None:
    audio = wav(2.2)
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0) as client:
        first = client.audio.transcriptions.create(model="sim-model", file=("a.wav", audio))
        again = client.audio.transcriptions.create(model="sim-model", file=("b.wav", audio))
        other = client.audio.transcriptions.create(model="sim-model", file=("c.wav", wav(1)))
    assert first.text and first.text == again.text != other.text
    assert not first.text.startswith(" ")
    raw = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("a.wav", audio)},
        data={"model": "sim-model"},
        headers=AUTH,
    ).json()
    assert raw == {"text": first.text, "usage": {"type": "duration", "seconds": 3}}
    # (the client's translations resource is deprecated: warnings are errors here)
    translation = httpx.post(
        f"{server.url}/v1/audio/translations",
        files={"file": ("a.wav", audio)},
        headers=AUTH,
    ).json()
    assert list(translation) == ["text"]  # vLLM reports no usage for translations
    assert translation["text"] and translation["text"] != first.text


def test_non_wav_bytes_count_as_16khz_pcm(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("a.mp3", b"\x07" * 100_000)},
        headers=AUTH,
    ).json()
    assert answer["usage"]["seconds"] == math.ceil(100_000 / 32_000)


def test_form_parsing_follows_starlette(server: RunningServer) -> None:
    body, content_type = multipart(
        [("name=model", "other-model"), ('name="model"', "sim-model"), ("name=stream", "true")],
        wav(1),
    )
    answer = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        content=body,
        headers={**AUTH, "Content-Type": content_type},
    )
    assert answer.status_code == 200, answer.text
    chunks = [data for _, data in typed_events(answer.content) if data != "[DONE]"]
    assert {chunk["model"] for chunk in chunks} == {"sim-model"}  # the last value wins
    unknown, content_type = multipart([("name=model", "nope")], wav(1))
    refused = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        content=unknown,
        headers={**AUTH, "Content-Type": content_type},
    )
    assert refused.status_code == 404


def test_stream_with_usage(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("a.wav", wav(1.5))},
        data={"stream": "true", "stream_include_usage": "true", "prompt": "two words"},
        headers={**AUTH, "X-Request-Id": "t1"},
    )
    events = [data for _, data in typed_events(answer.content)]
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {chunk["id"] for chunk in chunks} == {"transcribe-t1"}
    assert {chunk["object"] for chunk in chunks} == {"transcription.chunk"}
    assert chunks[-1]["choices"] == []
    pieces = chunks[:-1]
    assert all("usage" not in chunk for chunk in pieces)
    assert pieces[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 2 + 2,  # two started seconds, two words of prompt
        "total_tokens": 4 + len(pieces),
        "completion_tokens": len(pieces),
    }
    whole = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("a.wav", wav(1.5))},
        headers=AUTH,
    ).json()
    text = "".join(chunk["choices"][0]["delta"]["content"] for chunk in pieces)
    assert text == whole["text"]


def test_bad_forms(server: RunningServer) -> None:
    url = f"{server.url}/v1/audio/transcriptions"
    missing = httpx.post(url, data={"model": "sim-model"}, headers=AUTH)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    as_text = httpx.post(url, data={"file": "not a file"}, files={"x": ("x", b"")}, headers=AUTH)
    assert as_text.status_code == 422
    options = httpx.post(
        url, files={"file": ("a.wav", wav(1))}, data={"stream_include_usage": "true"}, headers=AUTH
    )
    assert options.status_code == 400
    assert options.json()["error"]["param"] == "stream_include_usage"
    verbose = httpx.post(
        url,
        files={"file": ("a.wav", wav(1))},
        data={"response_format": "verbose_json"},
        headers=AUTH,
    )
    assert verbose.status_code == 400
