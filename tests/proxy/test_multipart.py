"""Audio forms are read with the backend's own parser: the model checked is the model served."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Gateway
from tests.support.clients import assert_error
from tests.support.servers import RunningServer
from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.multipart import multipart_fields

BOUNDARY = "vgwboundary"
AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32)


def form(*parts: tuple[str, bytes]) -> bytes:
    """A multipart body from (Content-Disposition parameters, value) pairs, as given."""
    chunks = []
    for disposition, value in parts:
        chunks.append(
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode()
            + value
            + b"\r\n"
        )
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


FILE = ('name="file"; filename="a.wav"', AUDIO)


def transcribe(gateway: Gateway, key: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/audio/transcriptions",
        content=body,
        headers={"x-api-key": key, "content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        timeout=30,
    )


def test_the_allowed_model_is_transcribed(gateway: Gateway, simulator: RunningServer) -> None:
    _, key = gateway.create_key(models=["other-model"])
    response = transcribe(gateway, key, form(FILE, ('name="model"', b"other-model")))
    assert response.status_code == 200, response.text
    assert simulator.app.state.simulator.requests[-1].path == "/v1/audio/transcriptions"


@pytest.mark.parametrize(
    "parts",
    [
        # The first model part is allowed, the backend would serve the last one.
        [FILE, ('name="model"', b"other-model"), ('name="model"', b"sim-model")],
        # Unquoted, the way python-multipart (and so vLLM) also reads it.
        [FILE, ('name="model"', b"other-model"), ("name=model", b"sim-model")],
    ],
)
def test_two_model_parts_are_refused(gateway: Gateway, parts: list[tuple[str, bytes]]) -> None:
    _, key = gateway.create_key(models=["other-model"])
    error = assert_error(transcribe(gateway, key, form(*parts)), 400, "invalid_request")
    assert error["param"] == "model"


def test_an_unquoted_model_part_is_checked(gateway: Gateway) -> None:
    _, key = gateway.create_key(models=["other-model"])
    response = transcribe(gateway, key, form(FILE, ("name=model", b"sim-model")))
    assert_error(response, 403, "model_not_allowed")


def test_a_restricted_key_must_name_a_model(gateway: Gateway, simulator: RunningServer) -> None:
    _, key = gateway.create_key(models=["other-model"])
    before = len(simulator.app.state.simulator.requests)
    assert_error(transcribe(gateway, key, form(FILE)), 400, "model_required")
    assert len(simulator.app.state.simulator.requests) == before


def test_parser_skips_file_contents_and_reads_fields() -> None:
    body = form(('name="model"; filename="model.txt"', b"sim-model"), ('name="language"', b"en"))
    fields = multipart_fields(body, f"multipart/form-data; boundary={BOUNDARY}")
    assert fields == {"language": "en"}  # a file named model is not the model field
    with pytest.raises(GatewayError) as raised:
        multipart_fields(b"garbage", "multipart/form-data")
    assert raised.value.status == 400
    with pytest.raises(GatewayError) as raised:
        multipart_fields(body, "application/json")
    assert raised.value.status == 415
