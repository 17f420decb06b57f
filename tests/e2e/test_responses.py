"""OpenAI's Responses API with the official `openai` client's `client.responses`: create, stream,
continue a stored conversation, call a function tool and answer it, read, list and delete."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer

WEATHER = {
    "type": "function", "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_a_response_from_a_string_with_instructions(client: openai.OpenAI):
    response = client.responses.create(model=DEFAULT_MODEL, input="Say hello.", instructions="You are terse.",
                                       max_output_tokens=12, temperature=0)
    assert response.id.startswith("resp_") and response.object == "response" and response.model == DEFAULT_MODEL
    assert response.status in ("completed", "incomplete")
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.output_text and response.output_text == response.output[0].content[0].text
    assert response.instructions == "You are terse."
    assert 0 < response.usage.output_tokens <= 12 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_a_response_cut_at_its_limit_is_incomplete(client: openai.OpenAI):
    response = client.responses.create(model=DEFAULT_MODEL, input="Write a long story about a dragon.",
                                       max_output_tokens=3, temperature=0)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 3


def test_a_streamed_response_has_every_event_and_equals_the_whole_one(client: openai.OpenAI):
    # Room to finish: the client's final response needs `response.completed`.
    whole = client.responses.create(model=DEFAULT_MODEL, input="Say hello.", max_output_tokens=80, temperature=0)
    assert whole.status == "completed"
    with client.responses.stream(model=DEFAULT_MODEL, input="Say hello.", max_output_tokens=80, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert "response.output_text.delta" in types
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == final.output_text == whole.output_text
    assert final.usage.output_tokens == whole.usage.output_tokens and final.status == whole.status


def test_a_follow_up_continues_the_stored_conversation(client: openai.OpenAI):
    first = client.responses.create(model=DEFAULT_MODEL, input="My name is Zanzibar. Say ok.", max_output_tokens=8)
    second = client.responses.create(model=DEFAULT_MODEL, input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=8)
    # The engine saw the first turn: the follow-up's prompt holds it, so it is longer than a fresh one's.
    fresh = client.responses.create(model=DEFAULT_MODEL, input="What is my name?", max_output_tokens=8)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > fresh.usage.input_tokens + 5

    assert client.responses.retrieve(first.id).output_text == first.output_text
    items = client.responses.input_items.list(second.id)
    assert [item.type for item in items.data] == ["message"]
    assert items.data[0].role == "user" and items.data[0].content[0].text == "What is my name?"

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model=DEFAULT_MODEL, input="again", previous_response_id=first.id, max_output_tokens=4)
    assert first.id in str(missing.value)


def test_store_false_keeps_nothing(client: openai.OpenAI):
    response = client.responses.create(model=DEFAULT_MODEL, input="Say hi.", store=False, max_output_tokens=4)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_input_items_page_in_either_order(client: openai.OpenAI):
    turns = [{"role": "user", "content": f"turn {n}"} for n in range(5)]
    response = client.responses.create(model=DEFAULT_MODEL, input=turns, max_output_tokens=2)
    newest_first = [item.content[0].text for item in client.responses.input_items.list(response.id)]
    assert newest_first == [f"turn {n}" for n in reversed(range(5))]
    page = client.responses.input_items.list(response.id, order="asc", limit=2)
    assert [item.content[0].text for item in page.data] == ["turn 0", "turn 1"] and page.has_more
    everything = [item.content[0].text for item in client.responses.input_items.list(response.id, order="asc", limit=2)]
    assert everything == [f"turn {n}" for n in range(5)]  # the client follows `after` page by page


def test_a_function_call_and_its_output_reach_the_model(client: openai.OpenAI):
    # The client answers a call the model made, as an agent does, and the conversation goes on.
    call = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    output = {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21 degrees"}
    answered = client.responses.create(model=DEFAULT_MODEL, tools=[WEATHER], max_output_tokens=16,
                                       input=[{"role": "user", "content": "What is the weather in Paris?"}, call, output])
    assert answered.status in ("completed", "incomplete") and answered.output_text
    listed = client.responses.input_items.list(answered.id, order="asc")
    assert [item.type for item in listed.data] == ["message", "function_call", "function_call_output"]
    assert listed.data[1].call_id == listed.data[2].call_id == "call_1"
    # The next turn's prompt holds the call and its output, so it is longer than theirs.
    thanks = client.responses.create(model=DEFAULT_MODEL, previous_response_id=answered.id, tools=[WEATHER],
                                     input="Thanks!", max_output_tokens=4)
    assert thanks.usage.input_tokens > answered.usage.input_tokens


def test_a_required_tool_choice_yields_a_call_and_its_answer_closes_the_loop(client: openai.OpenAI):
    asked = client.responses.create(model=DEFAULT_MODEL, input="What is the weather in Paris?", tools=[WEATHER],
                                    tool_choice="required", max_output_tokens=60, temperature=0)
    calls = [item for item in asked.output if item.type == "function_call"]
    assert calls, asked.output
    assert calls[0].name == "get_weather" and isinstance(json.loads(calls[0].arguments), dict)
    assert calls[0].call_id and calls[0].id.startswith("fc_")

    answered = client.responses.create(
        model=DEFAULT_MODEL, previous_response_id=asked.id, tools=[WEATHER], max_output_tokens=16,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 degrees"}])
    assert answered.status in ("completed", "incomplete") and answered.output


def test_a_named_function_choice_is_followed_streamed(client: openai.OpenAI):
    with client.responses.stream(model=DEFAULT_MODEL, input="Weather in Rome?", tools=[WEATHER], max_output_tokens=60,
                                 tool_choice={"type": "function", "name": "get_weather"}, temperature=0) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
    call = next(item for item in final.output if item.type == "function_call")
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)


def test_a_json_schema_text_format_gives_that_json(client: openai.OpenAI):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
              "additionalProperties": False}
    response = client.responses.create(model=DEFAULT_MODEL, input="Name a city in France.", max_output_tokens=60,
                                       text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}})
    assert isinstance(json.loads(response.output_text)["city"], str)
    assert response.text.format.type == "json_schema"


def test_another_users_responses_do_not_exist_for_you(client: openai.OpenAI, bodhi: BodhiServer):
    mine = client.responses.create(model=DEFAULT_MODEL, input="A secret.", max_output_tokens=2)
    with openai.OpenAI(base_url=bodhi.api_url, api_key=second_user_token(bodhi), max_retries=0, timeout=120) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model=DEFAULT_MODEL, input="go on", previous_response_id=mine.id, max_output_tokens=2)
    assert client.responses.retrieve(mine.id).id == mine.id


def test_bad_requests_are_400_in_openais_shape(http: httpx.Client):
    for body, param in [
        ({"model": DEFAULT_MODEL}, "input"),
        ({"model": DEFAULT_MODEL, "input": []}, "input"),
        ({"model": DEFAULT_MODEL, "input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"model": DEFAULT_MODEL, "input": "hi", "temperature": 3}, "temperature"),
        ({"model": DEFAULT_MODEL, "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": DEFAULT_MODEL, "input": "hi", "tools": [{"type": "web_search"}]}, "tools"),
        ({"model": DEFAULT_MODEL, "input": "hi", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
    ]:
        answer = http.post("/v1/responses", json=body)
        assert answer.status_code == 400, (body, answer.text)
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param, (body, error)
    unknown = http.post("/v1/responses", json={"model": "nobody/nothing:Q4_0", "input": "hi"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert http.get("/v1/responses/resp_nothing").status_code == 404


def second_user_token(bodhi: BodhiServer) -> str:
    """A user-role token of a second person, who registered and was let in by the admin."""
    with httpx.Client(base_url=bodhi.base_url, timeout=30) as person, httpx.Client(base_url=bodhi.base_url, timeout=30) as admin:
        assert person.post("/bodhi/v1/auth/register", json={"username": "responder", "password": "responder password"}
                           ).status_code in (201, 409)
        login = person.post("/bodhi/v1/auth/login", json={"username": "responder", "password": "responder password"})
        person.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        request = person.post("/bodhi/v1/access-requests")
        if request.status_code == 201:
            admin_login = admin.post("/bodhi/v1/auth/login", json={"username": bodhi.ADMIN, "password": bodhi.ADMIN_PASSWORD})
            admin.headers["X-CSRF-Token"] = admin_login.json()["csrf_token"]
            assert admin.post(f"/bodhi/v1/access-requests/{request.json()['id']}/approve", json={"role": "user"}).status_code == 200
        made = person.post("/bodhi/v1/tokens", json={"name": "responses", "scope": "user"})
        assert made.status_code == 201, made.text
        return made.json()["token"]
