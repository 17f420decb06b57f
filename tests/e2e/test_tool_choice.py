"""A tool choice that binds: `required` or a named function yields a call of that tool, whatever
the model's chat template (SmolLM2's has no tools), through OpenAI's chat completions, Anthropic's
messages and LangChain on top of the `openai` client. (The Responses API's are in test_responses.py.)"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]},
}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 30}}, "required": ["zone"]},
}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_required_yields_a_call_of_one_of_the_tools(client: openai.OpenAI):
    answer = client.chat.completions.create(model=DEFAULT_MODEL, messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
                                            max_tokens=60, temperature=0)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_") and call.function.name in ("get_weather", "get_time")
    assert isinstance(json.loads(call.function.arguments), dict)


def test_a_named_function_is_the_one_called_streamed(client: openai.OpenAI):
    stream = client.chat.completions.create(
        model=DEFAULT_MODEL, messages=ASK, tools=[WEATHER, TIME], max_tokens=60, temperature=0, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, stream_options={"include_usage": True})
    chunks = list(stream)
    calls = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or []]
    assert [call.function.name for call in calls] == ["get_time"]
    assert "zone" in json.loads(calls[0].function.arguments)
    assert not any(chunk.choices and chunk.choices[0].delta.content for chunk in chunks), "the call's JSON leaked as text"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].usage.completion_tokens > 0


def test_a_choice_the_tools_cannot_meet_is_a_400(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError, match="not among the tools"):
        client.chat.completions.create(model=DEFAULT_MODEL, messages=ASK, tools=[WEATHER], max_tokens=8,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    with pytest.raises(openai.BadRequestError, match="needs at least one tool"):
        client.chat.completions.create(model=DEFAULT_MODEL, messages=ASK, tool_choice="required", max_tokens=8)


def test_anthropics_any_and_named_tool_choices_yield_tool_use(bodhi: BodhiServer):
    claude = anthropic.Anthropic(base_url=bodhi.base_url, api_key=bodhi.token, max_retries=0, timeout=120)
    tools = [{"name": t["function"]["name"], "description": t["function"]["description"],
              "input_schema": t["function"]["parameters"]} for t in (WEATHER, TIME)]
    message = claude.messages.create(model=DEFAULT_MODEL, max_tokens=60, tools=tools, tool_choice={"type": "any"}, messages=ASK)
    assert message.stop_reason == "tool_use" and message.content[-1].type == "tool_use"
    with claude.messages.stream(model=DEFAULT_MODEL, max_tokens=60, tools=tools, messages=ASK,
                                tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        final = stream.get_final_message()
    use = next(block for block in final.content if block.type == "tool_use")
    assert use.name == "get_weather" and "city" in use.input and final.stop_reason == "tool_use"


class Weather(BaseModel):
    """The weather asked about."""

    city: str = Field(description="The city", max_length=30)


def test_langchain_binds_tools_and_structures_output_through_function_calling(bodhi: BodhiServer):
    chat = ChatOpenAI(model=DEFAULT_MODEL, base_url=bodhi.api_url, api_key=bodhi.token, temperature=0, max_tokens=60,
                      max_retries=0, timeout=120)
    bound = chat.bind_tools([WEATHER, TIME], tool_choice="get_weather")
    reply = bound.invoke("What is the weather in Paris?")
    assert [call["name"] for call in reply.tool_calls] == ["get_weather"] and "city" in reply.tool_calls[0]["args"]

    structured = chat.with_structured_output(Weather, method="function_calling")
    weather = structured.invoke("What is the weather in Paris?")
    assert isinstance(weather, Weather) and weather.city
