"""Pooling routes: vLLM's shapes, deterministic results, usage."""

from __future__ import annotations

import math

import httpx
import pytest

from tests.simulator.helpers import AUTH, HELLO
from tests.support.servers import RunningServer


def post(server: RunningServer, path: str, body: dict[str, object]) -> dict[str, object]:
    answer = httpx.post(f"{server.url}{path}", json=body, headers={**AUTH, "X-Request-Id": "p1"})
    assert answer.status_code == 200, answer.text
    payload: dict[str, object] = answer.json()
    return payload


def test_pooling_vectors(server: RunningServer) -> None:
    answer = post(server, "/pooling", {"input": ["one two", "three"]})
    assert answer["id"] == "pool-p1" and answer["object"] == "list"
    data = answer["data"]
    assert isinstance(data, list) and [d["object"] for d in data] == ["pooling", "pooling"]
    assert math.isclose(sum(v * v for v in data[0]["data"]), 1.0, rel_tol=1e-6)
    assert answer["usage"] == {
        "prompt_tokens": 3,
        "total_tokens": 3,
        "completion_tokens": 0,
        "prompt_tokens_details": None,
    }
    chat = post(server, "/pooling", {"messages": HELLO})
    assert chat["usage"]["prompt_tokens"] == 8  # type: ignore[index]


def test_classify(server: RunningServer) -> None:
    answer = post(server, "/classify", {"input": ["good", "bad"]})
    again = post(server, "/classify", {"input": ["good", "bad"]})
    assert answer["id"] == "classify-p1" and answer["data"] == again["data"]
    for item in answer["data"]:  # type: ignore[attr-defined]
        assert item["num_classes"] == 2 and math.isclose(sum(item["probs"]), 1.0)
        assert item["label"] == ("positive" if item["probs"][1] >= 0.5 else "negative")


@pytest.mark.parametrize("path", ["/score", "/v1/score"])
def test_score_pairs_one_to_many(server: RunningServer, path: str) -> None:
    answer = post(server, path, {"text_1": "red apple", "text_2": ["a red apple", "blue sky"]})
    scores = [item["score"] for item in answer["data"]]  # type: ignore[attr-defined]
    assert answer["id"] == "score-p1"
    assert [item["object"] for item in answer["data"]] == ["score", "score"]  # type: ignore[attr-defined]
    assert scores[0] > scores[1] and all(0 <= s <= 1 for s in scores)
    assert answer["usage"]["prompt_tokens"] == (2 + 3) + (2 + 2)  # type: ignore[index]
    paired = post(server, path, {"queries": ["a", "b"], "documents": ["a", "c"]})
    assert len(paired["data"]) == 2  # type: ignore[arg-type]
    bad = httpx.post(
        f"{server.url}{path}", json={"text_1": ["a", "b"], "text_2": ["a", "b", "c"]}, headers=AUTH
    )
    assert bad.status_code == 400


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/v2/rerank"])
def test_rerank_sorts_and_cuts(server: RunningServer, path: str) -> None:
    documents = ["blue sky", "a red apple", "red"]
    answer = post(server, path, {"query": "red apple", "documents": documents, "top_n": 2})
    results = answer["results"]
    assert isinstance(results, list) and len(results) == 2
    assert results[0]["index"] == 1 and results[0]["document"] == {"text": "a red apple"}
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert answer["usage"] == {"prompt_tokens": 2 * 3 + 2 + 3 + 1, "total_tokens": 12}
    everything = post(server, path, {"query": "red apple", "documents": documents})
    assert len(everything["results"]) == 3  # type: ignore[arg-type]


def test_pooling_routes_need_json(server: RunningServer) -> None:
    for path in ("/pooling", "/classify", "/score", "/rerank"):
        answer = httpx.post(
            f"{server.url}{path}", content=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert answer.status_code == 400
