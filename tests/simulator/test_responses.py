"""/v1/responses: the official client, stored responses, cancel, and the event stream."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.simulator.helpers import AUTH, HELLO, stream_raw, typed_events, wait_for
from tests.support.servers import RunningServer
from vllm_gateway.simulator import SimulatorState

STREAM_TYPES = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
CLOSING_TYPES = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_a_response_counts_like_the_same_chat(client: openai.OpenAI) -> None:
    response = client.responses.create(model="sim-model", input=HELLO[0]["content"])
    chat = client.chat.completions.create(model="sim-model", messages=HELLO)  # type: ignore[arg-type]
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("resp_") and response.model == "sim-model"
    assert response.output_text == chat.choices[0].message.content
    assert response.usage is not None and chat.usage is not None
    assert response.usage.input_tokens == chat.usage.prompt_tokens == 8
    assert response.usage.output_tokens == chat.usage.completion_tokens
    assert response.usage.total_tokens == 8 + response.usage.output_tokens


def test_instructions_and_max_output_tokens(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="sim-model", input="one two", instructions="be brief", max_output_tokens=3
    )
    assert response.usage is not None
    assert response.usage.input_tokens == (2 + 3) + (2 + 3)  # system + user message
    assert response.usage.output_tokens == 3
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 3 and response.instructions == "be brief"


def test_stored_responses_are_retrieved_and_not_cancelled(client: openai.OpenAI) -> None:
    created = client.responses.create(model="sim-model", input="remember me")
    again = client.responses.retrieve(created.id)
    assert again.id == created.id and again.output_text == created.output_text
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.cancel(created.id)
    assert refused.value.body == {
        "message": "Cannot cancel a synchronous response.",
        "type": "invalid_request_error",
        "param": "response_id",
        "code": 400,
    }
    unstored = client.responses.create(model="sim-model", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_unknown_response_is_vllms_404(server: RunningServer) -> None:
    for method, path in (
        ("GET", "/v1/responses/resp_nope"),
        ("POST", "/v1/responses/resp_nope/cancel"),
    ):
        answer = httpx.request(method, f"{server.url}{path}", headers=AUTH)
        assert answer.status_code == 404
        assert answer.json() == {
            "error": {
                "message": "Response with id 'resp_nope' not found.",
                "type": "invalid_request_error",
                "param": "response_id",
                "code": 404,
            }
        }


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model="sim-model", input="one two")
    assert first.usage is not None
    follow = client.responses.create(
        model="sim-model", input="three", previous_response_id=first.id
    )
    answer_words = len(first.output_text.split())
    assert follow.usage is not None
    assert follow.usage.input_tokens == (2 + 3) + (answer_words + 3) + (1 + 3)
    assert follow.previous_response_id == first.id
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="sim-model", input="x", previous_response_id="resp_gone")


def test_stream_events_in_vllms_order(server: RunningServer, client: openai.OpenAI) -> None:
    _, raw = stream_raw(server, "/v1/responses", {"input": "one two", "stream": True})
    events = typed_events(raw)
    kinds = [kind for kind, _ in events]
    deltas = kinds[len(STREAM_TYPES) : -len(CLOSING_TYPES)]
    assert kinds[: len(STREAM_TYPES)] == STREAM_TYPES
    assert kinds[-len(CLOSING_TYPES) :] == CLOSING_TYPES
    assert deltas and set(deltas) == {"response.output_text.delta"}
    assert all(data["type"] == kind for kind, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert b"[DONE]" not in raw
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["usage"]["input_tokens"] == 5
    assert completed["usage"]["output_tokens"] == len(deltas)
    text = "".join(data["delta"] for kind, data in events if kind == "response.output_text.delta")
    assert events[-4][1]["text"] == text == completed["output"][0]["content"][0]["text"]
    # the official client reads the same stream
    streamed = list(client.responses.create(model="sim-model", input="one two", stream=True))
    assert streamed[-1].type == "response.completed"
    assert client.responses.retrieve(completed["id"]).output_text == text


def test_background_response_can_be_cancelled(
    server: RunningServer, state: SimulatorState, client: openai.OpenAI
) -> None:
    state.tokens_per_second = 2  # a few seconds for the answer
    queued = client.responses.create(model="sim-model", input="long", background=True)
    assert queued.status == "queued" and queued.usage is None
    assert wait_for(lambda: state.active == 1)
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert wait_for(lambda: state.active == 0)
    assert client.responses.retrieve(queued.id).status == "cancelled"
    assert state.completed == 0
    state.tokens_per_second = 0
    done = client.responses.create(model="sim-model", input="short", background=True)
    assert wait_for(lambda: state.responses[done.id].response["status"] == "completed")
    assert client.responses.retrieve(done.id).usage is not None


def test_background_needs_store(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/responses",
        json={"input": "x", "background": True, "store": False},
        headers=AUTH,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "background"
