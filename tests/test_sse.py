"""The stream accountant: bytes kept as sent, usage found, the gateway's usage chunk removed."""

from __future__ import annotations

import orjson

from vllm_gateway.proxy.sse import StreamAccountant, usage_from_body


def chunk(content: str, finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


USAGE = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],'
    b'"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n'
)
DONE = b"data: [DONE]\n\n"
STREAM = chunk("a") + chunk("b") + chunk("c", "stop") + USAGE + DONE


def relay(accountant: StreamAccountant, pieces: list[bytes]) -> bytes:
    out = b"".join(accountant.feed(piece) for piece in pieces)
    return out + accountant.finish()


def test_usage_chunk_kept_when_the_client_asked() -> None:
    accountant = StreamAccountant(strip_usage_chunk=False)
    assert relay(accountant, [STREAM]) == STREAM
    assert (accountant.prompt_tokens, accountant.completion_tokens) == (7, 3)


def test_usage_chunk_removed_when_the_client_did_not_ask() -> None:
    accountant = StreamAccountant(strip_usage_chunk=True)
    assert relay(accountant, [STREAM]) == chunk("a") + chunk("b") + chunk("c", "stop") + DONE
    assert accountant.saw_usage and accountant.completion_tokens == 3


def test_events_split_anywhere_are_reassembled_byte_for_byte() -> None:
    for size in (1, 2, 5, 17, 64):
        pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
        accountant = StreamAccountant(strip_usage_chunk=True)
        out = relay(accountant, pieces)
        assert out == STREAM.replace(USAGE, b"")
        assert accountant.prompt_tokens == 7


def test_partial_event_waits_for_its_end() -> None:
    accountant = StreamAccountant(strip_usage_chunk=True)
    first = chunk("a")
    assert accountant.feed(first[:10]) == b""
    assert accountant.feed(first[10:]) == first


def test_keep_alive_comments_pass_through() -> None:
    accountant = StreamAccountant(strip_usage_chunk=True)
    stream = b": keep-alive\n\n" + chunk("a") + USAGE + DONE
    assert relay(accountant, [stream]) == b": keep-alive\n\n" + chunk("a") + DONE


def test_continuous_usage_keeps_every_chunk_and_the_last_total() -> None:
    running = [
        b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":%d}}\n\n' % n
        for n in (1, 2)
    ]
    final = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
    accountant = StreamAccountant(strip_usage_chunk=False)
    stream = b"".join(running) + final + DONE
    assert relay(accountant, [stream]) == stream
    assert (accountant.prompt_tokens, accountant.completion_tokens) == (5, 2)


def test_error_event_is_relayed_and_noted() -> None:
    error = b'data: {"error":{"message":"boom","type":"InternalServerError","code":500}}\n\n'
    accountant = StreamAccountant(strip_usage_chunk=True)
    assert relay(accountant, [chunk("a") + error + DONE]) == chunk("a") + error + DONE
    assert accountant.error_status == 500


def test_anthropic_style_events_report_input_and_output_separately() -> None:
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":'
        b'{"usage":{"input_tokens":11,"output_tokens":1}}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":9}}\n\n'
    )
    accountant = StreamAccountant(strip_usage_chunk=False)
    assert relay(accountant, [stream]) == stream
    assert (accountant.prompt_tokens, accountant.completion_tokens) == (11, 9)


def test_responses_completed_event() -> None:
    stream = (
        b'event: response.completed\ndata: {"type":"response.completed","response":'
        b'{"usage":{"input_tokens":4,"output_tokens":6}}}\n\n'
    )
    accountant = StreamAccountant(strip_usage_chunk=False)
    relay(accountant, [stream])
    assert (accountant.prompt_tokens, accountant.completion_tokens) == (4, 6)


def test_usage_from_a_whole_body() -> None:
    body = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    assert usage_from_body(body) == (3, 4)
    assert usage_from_body({"data": []}) is None
    assert usage_from_body({"response": {"usage": {"input_tokens": 2, "output_tokens": 5}}}) == (
        2,
        5,
    )


ROLE = (
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
)


def completion_chunk(text: str, finish: str | None = None) -> bytes:
    payload = {"id": "cmpl-1", "choices": [{"index": 0, "text": text, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def test_chunks_with_text_are_counted_one_rule_for_chat_and_completions() -> None:
    # Chat: a role chunk, text chunks, a finish chunk without text (Python spacing too).
    chat = StreamAccountant(strip_usage_chunk=False)
    spaced = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
    relay(chat, [ROLE, chunk("a"), chunk("b"), chunk("c"), spaced, DONE])
    assert (chat.generated(), chat.finished, chat.saw_usage) == (3, True, False)
    # The last token may come with the finish: it counts.
    with_text = StreamAccountant(strip_usage_chunk=False)
    relay(with_text, [ROLE + chunk("a") + chunk("b", "length") + DONE])
    assert with_text.generated() == 2
    # Completions have no role chunk.
    plain = StreamAccountant(strip_usage_chunk=False)
    relay(plain, [completion_chunk(" a"), completion_chunk(" b"), completion_chunk("", "stop")])
    assert (plain.generated(), plain.finished) == (2, False)  # no [DONE] yet: not finished


def test_the_final_event_of_responses_and_messages_streams_ends_them() -> None:
    for final in (b"event: response.completed\ndata: {}\n\n", b"event: message_stop\ndata: {}\n\n"):
        accountant = StreamAccountant(strip_usage_chunk=False, events=True)
        relay(accountant, [b"event: x\ndata: {}\n\n"])
        assert not accountant.finished
        relay(accountant, [final])
        assert accountant.finished
