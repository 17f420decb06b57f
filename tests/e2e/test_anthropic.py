"""The official `anthropic` client against Bodhi's /v1/messages: only the base URL and key change."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def claude(bodhi: BodhiServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=bodhi.base_url, api_key=bodhi.token, max_retries=0, timeout=120)


def test_a_message_with_a_system_prompt(claude: anthropic.Anthropic):
    message = claude.messages.create(model=DEFAULT_MODEL, max_tokens=12, system="You are terse.", messages=HELLO,
                                     extra_body={"temperature": 0})
    assert message.type == "message" and message.role == "assistant" and message.model == DEFAULT_MODEL
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 12 and message.usage.input_tokens > 0


def test_a_streamed_message_equals_the_whole_one(claude: anthropic.Anthropic):
    whole = claude.messages.create(model=DEFAULT_MODEL, max_tokens=10, messages=HELLO, extra_body={"temperature": 0})
    with claude.messages.stream(model=DEFAULT_MODEL, max_tokens=10, messages=HELLO, extra_body={"temperature": 0}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text == final.content[0].text
    assert final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens


def test_tools_and_tool_blocks_reach_the_model(claude: anthropic.Anthropic):
    # SmolLM2's template has no tool calling, so the model answers in text; what is checked
    # here is that tools and tool_use/tool_result blocks translate into a valid request.
    # (Tool calls coming back are covered by the translation's unit tests.)
    weather = {"name": "get_weather", "description": "The weather in a city.",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    message = claude.messages.create(
        model=DEFAULT_MODEL, max_tokens=16, tools=[weather], tool_choice={"type": "auto"},
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny, 21 degrees"}]},
        ])
    assert message.content and message.stop_reason in ("end_turn", "max_tokens")


def test_errors_in_anthropics_shape(claude: anthropic.Anthropic, bodhi: BodhiServer):
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="nobody/nothing:Q4_0", max_tokens=4, messages=HELLO)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=bodhi.base_url, api_key="wrong", max_retries=0).messages.create(
            model=DEFAULT_MODEL, max_tokens=4, messages=HELLO)
    missing = httpx.post(f"{bodhi.base_url}/v1/messages", json={"model": DEFAULT_MODEL, "messages": HELLO},
                         headers={"x-api-key": bodhi.token}, timeout=30)
    assert missing.status_code == 400
    assert missing.json()["type"] == "error" and missing.json()["error"]["type"] == "invalid_request_error"
