"""Google's Gemini API with the official `google-genai` client pointed at Bodhi: only the base URL
and key change."""

from __future__ import annotations

import httpx
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer
from google import genai
from google.genai import errors, types


@pytest.fixture(scope="module")
def gemini(bodhi: BodhiServer) -> genai.Client:
    return genai.Client(api_key=bodhi.token, http_options=types.HttpOptions(base_url=bodhi.base_url, api_version="v1beta",
                                                                            timeout=120_000))


def test_models_are_listed_and_read_by_name(gemini: genai.Client):
    names = [model.name for model in gemini.models.list()]
    assert f"models/{DEFAULT_MODEL}" in names
    model = gemini.models.get(model=DEFAULT_MODEL)
    assert model.name == f"models/{DEFAULT_MODEL}" and "generateContent" in model.supported_actions


def test_generate_content_with_a_system_instruction_and_config(gemini: genai.Client):
    response = gemini.models.generate_content(
        model=DEFAULT_MODEL, contents="Say hello.",
        config=types.GenerateContentConfig(system_instruction="You are terse.", max_output_tokens=12, temperature=0))
    assert response.text and response.candidates[0].finish_reason in (types.FinishReason.STOP, types.FinishReason.MAX_TOKENS)
    usage = response.usage_metadata
    assert usage.prompt_token_count > 0 and 0 < usage.candidates_token_count <= 12
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count


def test_a_stream_equals_the_whole_answer(gemini: genai.Client):
    config = types.GenerateContentConfig(max_output_tokens=16, temperature=0)
    whole = gemini.models.generate_content(model=DEFAULT_MODEL, contents="Say hello.", config=config)
    chunks = list(gemini.models.generate_content_stream(model=DEFAULT_MODEL, contents="Say hello.", config=config))
    assert len(chunks) > 2
    assert "".join(chunk.text or "" for chunk in chunks) == whole.text
    assert chunks[-1].candidates[0].finish_reason == whole.candidates[0].finish_reason
    assert chunks[-1].usage_metadata.candidates_token_count == whole.usage_metadata.candidates_token_count


def test_a_chat_keeps_its_history(gemini: genai.Client):
    chat = gemini.chats.create(model=DEFAULT_MODEL, config=types.GenerateContentConfig(max_output_tokens=8))
    first = chat.send_message("My name is Zanzibar.")
    second = chat.send_message("What is my name?")
    assert first.text and second.text
    assert second.usage_metadata.prompt_token_count > first.usage_metadata.prompt_token_count


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def test_a_required_function_call_comes_back_and_its_response_is_answered(gemini: genai.Client):
    declaration = types.FunctionDeclaration(
        name="get_weather", description="The weather in a city.",
        parameters=types.Schema(type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING, max_length=30)},
                                required=["city"]))
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[declaration])], max_output_tokens=60, temperature=0,
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    asked = gemini.models.generate_content(model=DEFAULT_MODEL, contents="What is the weather in Paris?", config=config)
    call = asked.function_calls[0]
    assert call.name == "get_weather" and isinstance(call.args.get("city"), str)

    history = [
        types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")]),
        asked.candidates[0].content,
        types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather", response={"result": "Sunny"})]),
    ]
    answered = gemini.models.generate_content(model=DEFAULT_MODEL, contents=history,
                                              config=types.GenerateContentConfig(max_output_tokens=16))
    assert answered.text


def test_embeddings_one_and_many(gemini: genai.Client):
    one = gemini.models.embed_content(model=DEFAULT_MODEL, contents="a sentence")
    many = gemini.models.embed_content(model=DEFAULT_MODEL, contents=["first", "second", "third"])
    assert len(one.embeddings) == 1 and len(one.embeddings[0].values) > 100
    assert len(many.embeddings) == 3 and all(len(e.values) == len(one.embeddings[0].values) for e in many.embeddings)


def test_errors_in_googles_shape(gemini: genai.Client, bodhi: BodhiServer):
    with pytest.raises(errors.ClientError) as missing:
        gemini.models.generate_content(model="nobody/nothing:Q4_0", contents="hi")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    stranger = genai.Client(api_key="wrong", http_options=types.HttpOptions(base_url=bodhi.base_url, api_version="v1beta"))
    with pytest.raises(errors.ClientError) as refused:
        stranger.models.generate_content(model=DEFAULT_MODEL, contents="hi")
    assert refused.value.code == 401 and refused.value.status == "UNAUTHENTICATED"
    empty = httpx.post(f"{bodhi.base_url}/v1beta/models/{DEFAULT_MODEL}:generateContent?key={bodhi.token}", json={"contents": []},
                       timeout=30)
    assert empty.status_code == 400 and empty.json()["error"]["status"] == "INVALID_ARGUMENT"
