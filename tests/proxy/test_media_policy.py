"""The media URL policy keeps tenants from making the GPU host fetch internal addresses."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import assert_error, post_json
from tests.support.servers import RunningServer
from vllm_gateway.proxy.media_policy import is_public, media_urls

PUBLIC = "http://93.184.216.34/cat.png"  # a literal public address: no DNS needed here
DATA = "data:image/png;base64,iVBORw0KGgo="


def chat_with_image(url: str) -> dict[str, Any]:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    return {
        "model": "sim-model",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 2,
    }


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.5/internal",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",  # IPv4 in IPv6
        "http://[fd00:ec2::254]/latest",  # AWS metadata over IPv6
        "http://localhost:8000/v1/models",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://2130706433/",  # 127.0.0.1 as one number: resolves to loopback
        "http://unresolvable.invalid/x.png",
        "file:///etc/passwd",
        "ftp://93.184.216.34/x",
    ],
)
def test_internal_and_odd_urls_are_refused_naming_the_field(
    gateway: Gateway, simulator: RunningServer, url: str
) -> None:
    _, key = gateway.create_key()
    before = len(simulator.app.state.simulator.requests)
    response = post_json(gateway, key, "/v1/chat/completions", chat_with_image(url))
    error = assert_error(response, 400, "media_url_not_allowed")
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert len(simulator.app.state.simulator.requests) == before


@pytest.mark.parametrize("url", [PUBLIC, DATA])
def test_public_and_inline_media_pass(gateway: Gateway, url: str) -> None:
    _, key = gateway.create_key()
    assert post_json(gateway, key, "/v1/chat/completions", chat_with_image(url)).status_code == 200


def test_every_place_a_url_can_hide_is_checked(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    responses_input = {
        "model": "sim-model",
        "input": [
            {
                "role": "user",
                "content": [{"type": "input_image", "image_url": "http://127.0.0.1/a.png"}],
            }
        ],
    }
    error = assert_error(
        post_json(gateway, key, "/v1/responses", responses_input), 400, "media_url_not_allowed"
    )
    assert error["param"] == "input[0].content[0].image_url"
    anthropic = {
        "model": "sim-model",
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": "http://10.1.1.1/"}}
                ],
            }
        ],
    }
    error = assert_error(
        post_json(gateway, key, "/v1/messages", anthropic), 400, "media_url_not_allowed"
    )
    assert error["param"] == "messages[0].content[0].source.url"
    audio = chat_with_image(PUBLIC)
    audio["messages"][0]["content"][1] = {
        "type": "audio_url",
        "audio_url": {"url": "http://192.168.1.1/a.wav"},
    }
    assert_error(
        post_json(gateway, key, "/v1/chat/completions", audio), 400, "media_url_not_allowed"
    )


def test_data_only_refuses_every_fetched_url(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(gateway_media_urls="data-only")
    _, key = gateway.create_key()
    assert_error(
        post_json(gateway, key, "/v1/chat/completions", chat_with_image(PUBLIC)),
        400,
        "media_url_not_allowed",
    )
    assert post_json(gateway, key, "/v1/chat/completions", chat_with_image(DATA)).status_code == 200


def test_a_domain_list_limits_hosts_and_any_allows_all(gateway_factory: GatewayFactory) -> None:
    listed = gateway_factory(gateway_media_urls="any", gateway_media_domains="*.example.com")
    _, key = listed.create_key()
    refused = post_json(listed, key, "/v1/chat/completions", chat_with_image(PUBLIC))
    assert "allowed media domains" in assert_error(refused, 400, "media_url_not_allowed")["message"]
    anything = gateway_factory(gateway_media_urls="any")
    _, key = anything.create_key()
    local = chat_with_image("http://127.0.0.1/x.png")
    assert post_json(anything, key, "/v1/chat/completions", local).status_code == 200


def test_addresses_are_judged_through_their_ipv6_embeddings() -> None:
    for text in ("8.8.8.8", "2606:4700::1111"):
        assert is_public(ipaddress.ip_address(text))
    for text in (
        "127.0.0.1",
        "100.64.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:7f00:1::1",
        "ff02::1",
    ):
        assert not is_public(ipaddress.ip_address(text)), text


def test_urls_are_found_in_every_shape_vllm_accepts() -> None:
    messages = [
        {"role": "user", "content": "plain text has no URL"},
        {
            "role": "user",
            "content": [{"image_url": "http://a/1"}, {"video_url": {"url": "http://a/2"}}],
        },
    ]
    assert list(media_urls(messages, "messages")) == [
        ("messages[1].content[0].image_url", "http://a/1"),
        ("messages[1].content[1].video_url.url", "http://a/2"),
    ]
