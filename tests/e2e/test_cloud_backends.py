"""Cloud APIs behind Bodhi: OpenAI, Anthropic and Gemini, each a local stand-in speaking the
provider's wire protocol (cloud_standins.py), added with one command each. Bodhi's clients (the
official openai, anthropic and ollama packages) talk to their models through every API Bodhi
speaks; requests reach the provider in its own format, streams and tools included."""

from __future__ import annotations

import json

import anthropic
import httpx
import ollama
import openai
import pytest
from bodhi_process import HELLO, BodhiServer
from cloud_standins import RATE_LIMIT_WORD, StandIn
from test_gateway import metric

TIMEOUT_S = 60.0
KEYS = {"openai": "sk-standin-openai", "anthropic": "sk-ant-standin", "gemini": "gm-standin-key"}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def providers():
    with StandIn("openai", KEYS["openai"], [MODELS["openai"], "text-embedding-3-small"]) as o, \
            StandIn("anthropic", KEYS["anthropic"], [MODELS["anthropic"]]) as a, \
            StandIn("gemini", KEYS["gemini"], [MODELS["gemini"], "text-embedding-004"]) as g:
        yield {"openai": o, "anthropic": a, "gemini": g}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, providers: dict[str, StandIn]):
    server = BodhiServer(tmp_path_factory.mktemp("cloud"), env={"BODHI_LOG_LEVEL": "trace", "BODHI_RATE_LIMITS": "off"})
    server.start()
    for kind, standin in providers.items():
        url = standin.url + ("/v1" if kind == "openai" else "")
        added = server.cli("backends", "add", kind, url, "--format", kind, "--api-key-stdin", stdin=KEYS[kind] + "\n")
        assert added.returncode == 0, added.stderr
        assert f"{kind}/{MODELS[kind]}" in added.stdout
    yield server
    server.stop()
    log = server.log_path.read_text()
    for key in KEYS.values():
        assert key not in log, "an API key reached the log"


def openai_client(gateway: BodhiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
def test_each_provider_answers_the_openai_client_whole_and_streamed(gateway: BodhiServer, providers, kind: str):
    model = f"{kind}/{MODELS[kind]}"
    with openai_client(gateway) as client:
        assert model in {m.id for m in client.models.list()}
        messages = [{"role": "system", "content": "Be brief."}, *HELLO]
        reply = client.chat.completions.create(model=model, messages=messages, max_tokens=50)
        assert reply.choices[0].message.content.strip() == "echo: Say hello."
        assert reply.choices[0].finish_reason == "stop"
        assert reply.model == model
        assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens == 3

        chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=50, stream=True,
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.strip() == "echo: Say hello."
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
        assert chunks[-1].usage and chunks[-1].usage.completion_tokens == 3

    # The provider got the request in its own format, with the key it takes.
    sent = providers[kind].requests[-1]
    if kind == "anthropic":
        assert sent["body"]["system"] == "Be brief." and sent["body"]["max_tokens"] == 50
        assert sent["body"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}]
    elif kind == "gemini":
        assert sent["body"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert sent["body"]["contents"] == [{"role": "user", "parts": [{"text": "Say hello."}]}]
        assert sent["body"]["generationConfig"]["maxOutputTokens"] == 50
        assert sent["path"].endswith(":streamGenerateContent?alt=sse")
    else:
        assert sent["body"]["model"] == MODELS["openai"]
    assert metric(gateway, "bodhi_completion_tokens_total", model=model, backend=kind) >= 6


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_tool_round_trip_through_each_provider(gateway: BodhiServer, kind: str, stream: bool):
    model = f"{kind}/{MODELS[kind]}"
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    with openai_client(gateway) as client:
        if stream:
            chunks = list(client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], stream=True))
            deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
            call_id = next(d.id for d in deltas if d.id)
            name = "".join(d.function.name or "" for d in deltas if d.function)
            arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            assert finish == ["tool_calls"]
        else:
            reply = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
            assert reply.choices[0].finish_reason == "tool_calls"
            call = reply.choices[0].message.tool_calls[0]
            call_id, name, arguments = call.id, call.function.name, call.function.arguments
        assert name == "get_weather"
        assert json.loads(arguments) == {"city": "Paris"}

        messages += [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        ]
        answer = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
        assert answer.choices[0].message.content.strip() == "tool said: sunny"


def test_bodhis_anthropic_and_ollama_apis_reach_cloud_models(gateway: BodhiServer):
    messages = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0)
    reply = messages.messages.create(model="gemini/" + MODELS["gemini"], max_tokens=50, messages=HELLO)
    assert reply.content[0].text.strip() == "echo: Say hello."
    assert reply.usage.output_tokens == 3
    with messages.messages.stream(model="openai/" + MODELS["openai"], max_tokens=50, messages=HELLO) as stream:
        assert "".join(stream.text_stream).strip() == "echo: Say hello."

    client = ollama.Client(host=gateway.base_url, headers=gateway.auth, timeout=TIMEOUT_S)
    tags = {m.model for m in client.list().models}
    assert {f"{k}/{m}" for k, m in MODELS.items()} <= tags
    parts = list(client.chat(model="anthropic/" + MODELS["anthropic"], messages=HELLO, stream=True))
    assert "".join(p.message.content for p in parts).strip() == "echo: Say hello."
    assert parts[-1].done and parts[-1].eval_count == 3


def test_a_provider_at_its_rate_limit_answers_429_naming_the_backend(gateway: BodhiServer):
    with openai_client(gateway) as client:
        for kind in ("openai", "anthropic", "gemini"):
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(model=f"{kind}/{MODELS[kind]}", max_tokens=10,
                                               messages=[{"role": "user", "content": RATE_LIMIT_WORD}])
            assert f"backend '{kind}'" in refused.value.message


def test_an_error_page_that_is_not_json_comes_back_in_openais_shape(gateway: BodhiServer, providers):
    openai_standin = providers["openai"]
    openai_standin.fail_status, openai_standin.fail_html = 502, "<html><body>Bad gateway</body></html>"
    try:
        with openai_client(gateway) as client, pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="openai/" + MODELS["openai"], messages=HELLO)
    finally:
        openai_standin.fail_status, openai_standin.fail_html = None, None
    assert failed.value.status_code == 502
    assert "backend 'openai'" in failed.value.message and "Bad gateway" in failed.value.message


def test_gemini_embeddings_through_the_openai_client(gateway: BodhiServer):
    with openai_client(gateway) as client:
        embedded = client.embeddings.create(model="gemini/text-embedding-004", input=["a", "abc"])
    assert [e.embedding for e in embedded.data] == [[0.5, 1.0], [0.5, 3.0]]


def test_anthropic_serves_chat_only_and_says_so(gateway: BodhiServer):
    with openai_client(gateway) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(model="anthropic/" + MODELS["anthropic"], input="x")
    assert "chat completions only" in refused.value.message


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
def test_a_wrong_key_is_refused_when_adding_and_nothing_is_added(gateway: BodhiServer, providers, kind: str):
    url = providers[kind].url + ("/v1" if kind == "openai" else "")
    added = gateway.cli("backends", "add", f"wrong-{kind}", url, "--format", kind, "--api-key-stdin", stdin="not-the-key\n")
    assert added.returncode != 0
    assert "API key" in added.stderr, added.stderr
    listed = httpx.get(f"{gateway.base_url}/bodhi/v1/backends", headers=gateway.auth, timeout=30).json()["data"]
    assert f"wrong-{kind}" not in {b["name"] for b in listed}
    assert not any(k in json.dumps(listed) for k in KEYS.values())
