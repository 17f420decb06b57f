"""Bad requests are refused before any engine sees them: a 400 in the caller's API format that names
the field, never a 500 with an engine's parser message (which clients retry as a server fault)."""

from __future__ import annotations

import httpx
import pytest
from bodhi_process import DEFAULT_MODEL, HELLO

GOOD = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("fields, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"content": "no role"}]}, "messages[0].role"),
    ({"messages": [{"role": 5, "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
    ({"messages": "hi"}, "messages"),
    ({"messages": GOOD, "tools": "x"}, "tools"),
    ({"messages": GOOD, "temperature": -1}, "temperature"),
    ({"messages": GOOD, "temperature": 2.5}, "temperature"),
    ({"messages": GOOD, "top_p": 1.5}, "top_p"),
    ({"messages": GOOD, "n": 0}, "n"),
    ({"messages": GOOD, "n": 3}, "n"),
    ({"messages": GOOD, "max_tokens": -5}, "max_tokens"),
    ({"messages": GOOD, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": GOOD, "stream": "yes"}, "stream"),
])
def test_openai_chat_refuses_bad_fields_by_name(http: httpx.Client, fields: dict, param: str):
    answer = http.post("/v1/chat/completions", json={"model": DEFAULT_MODEL, "max_tokens": 2, **fields})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_every_api_refuses_a_stream_flag_that_is_not_a_boolean(http: httpx.Client):
    for path, body, shape in [
        ("/v1/messages", {"model": DEFAULT_MODEL, "max_tokens": 2, "messages": GOOD, "stream": "yes"}, "anthropic"),
        ("/api/chat", {"model": DEFAULT_MODEL, "messages": GOOD, "stream": "yes"}, "ollama"),
        ("/api/generate", {"model": DEFAULT_MODEL, "prompt": "hi", "stream": 1}, "ollama"),
        ("/v1/responses", {"model": DEFAULT_MODEL, "input": "hi", "stream": "yes"}, "openai"),
    ]:
        answer = http.post(path, json=body)
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()
        if shape == "anthropic":
            assert error["type"] == "error" and "stream" in error["error"]["message"]
        elif shape == "ollama":
            assert "stream" in error["error"]
        else:
            assert error["error"]["param"] == "stream"


def test_json_is_equally_strict_on_every_api(http: httpx.Client):
    trailing = '{"model": "%s", "messages": [{"role": "user", "content": "hi"}],}' % DEFAULT_MODEL
    for path in ("/v1/chat/completions", "/v1/messages", "/api/chat", "/bodhi/v1/chats", "/v1/responses"):
        answer = http.post(path, content=trailing, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (path, answer.status_code, answer.text)


def test_anthropic_and_ollama_malformed_messages_are_400s(http: httpx.Client):
    anthropic = http.post("/v1/messages", json={"model": DEFAULT_MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": 5}]})
    assert anthropic.status_code == 400 and anthropic.json()["type"] == "error"
    ollama = http.post("/api/chat", json={"model": DEFAULT_MODEL, "stream": False, "messages": [{"role": "robot", "content": "x"}]})
    assert ollama.status_code == 400 and "role" in ollama.json()["error"]


def test_a_good_request_still_passes(http: httpx.Client):
    answer = http.post("/v1/chat/completions", json={
        "model": DEFAULT_MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 2, "temperature": 0, "top_p": 1, "n": 1, "stop": ["a", "b", "c", "d"], "tools": None})
    assert answer.status_code == 200, answer.text


def test_ollama_chat_with_no_messages_only_loads_the_model(http: httpx.Client):
    answer = http.post("/api/chat", json={"model": DEFAULT_MODEL, "messages": [], "stream": False})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["done"] is True and body["done_reason"] == "load" and body["message"]["content"] == ""


def test_openais_limit_of_four_stops_is_openais_alone(http: httpx.Client):
    stops = ["zz1", "zz2", "zz3", "zz4", "zz5", "zz6"]
    openai_answer = http.post("/v1/chat/completions", json={"model": DEFAULT_MODEL, "messages": GOOD, "max_tokens": 2, "stop": stops})
    assert openai_answer.status_code == 400 and openai_answer.json()["error"]["param"] == "stop"
    ollama = http.post("/api/chat", json={"model": DEFAULT_MODEL, "messages": GOOD, "stream": False,
                                         "options": {"stop": stops, "num_predict": 2}})
    assert ollama.status_code == 200, ollama.text
    claude = http.post("/v1/messages", json={"model": DEFAULT_MODEL, "messages": GOOD, "max_tokens": 2, "stop_sequences": stops})
    assert claude.status_code == 200, claude.text


def test_ollamas_own_ranges_are_its_own(http: httpx.Client):
    # Ollama takes temperatures above OpenAI's 2.
    answer = http.post("/api/chat", json={"model": DEFAULT_MODEL, "messages": GOOD, "stream": False,
                                          "options": {"temperature": 3, "num_predict": 2}})
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory):
    """A Bodhi whose requests may generate 5 tokens at most."""
    from bodhi_process import BodhiServer
    server = BodhiServer(tmp_path_factory.mktemp("capped"), env={"BODHI_MAX_OUTPUT_TOKENS": "5"})
    server.start()
    yield server
    server.stop()


def test_an_output_cap_refuses_more_and_bounds_what_names_no_limit(capped):
    with httpx.Client(base_url=capped.base_url, headers=capped.auth, timeout=120) as http:
        over = http.post("/v1/chat/completions", json={"model": DEFAULT_MODEL, "messages": GOOD, "max_tokens": 50})
        assert over.status_code == 400 and "BODHI_MAX_OUTPUT_TOKENS" in over.json()["error"]["message"]
        unbounded = http.post("/v1/chat/completions", json={
            "model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Write a long story."}], "ignore_eos": True})
        assert unbounded.status_code == 200, unbounded.text
        assert unbounded.json()["usage"]["completion_tokens"] == 5 and unbounded.json()["choices"][0]["finish_reason"] == "length"


def test_openai_refuses_max_tokens_beyond_a_slots_context_on_either_path(http: httpx.Client):
    """The engine gives each request a slot of 8192 tokens (SmolLM2's trained context): asking for
    more is a 400 naming the field and the figure, whether the request took the fast path (engine
    ready, slot free) or the task path (engine loading)."""
    for _ in range(2):
        for field in ("max_tokens", "max_completion_tokens"):
            answer = http.post("/v1/chat/completions", json={"model": DEFAULT_MODEL, "messages": HELLO, field: 100_000})
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["param"] == field and "8192" in error["message"]
    fits = http.post("/v1/chat/completions", json={"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 8192, "stop": ["!", "."]})
    assert fits.status_code == 200, fits.text
    # Anthropic's clients send their model family's maximum as a matter of course: the reply ends
    # when the context is full instead.
    claude = http.post("/v1/messages", json={"model": DEFAULT_MODEL, "max_tokens": 64_000, "messages": HELLO, "stop_sequences": ["!", "."]})
    assert claude.status_code == 200, claude.text
