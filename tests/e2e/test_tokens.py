"""Tokens as the model counts them: llama-server's /tokenize and /detokenize per model, Anthropic's
count_tokens and Gemini's countTokens, each equal to what a real request's usage says."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer, every_slot_generating
from google import genai
from google.genai import types

HELLO = [{"role": "user", "content": "Say hello to the whole wide world."}]


def test_tokenize_and_detokenize_round_trip(http: httpx.Client):
    text = "Bodhi counts tokens the way its engine does."
    tokens = http.post("/tokenize", json={"model": DEFAULT_MODEL, "content": text, "add_special": False})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["model"] == DEFAULT_MODEL and body["count"] == len(body["tokens"]) > 5
    assert all(isinstance(token, int) for token in body["tokens"])
    pieces = http.post("/tokenize", json={"model": DEFAULT_MODEL, "content": text, "add_special": False, "with_pieces": True}).json()
    assert "".join(piece["piece"] for piece in pieces["tokens"]) == text
    back = http.post("/detokenize", json={"model": DEFAULT_MODEL, "tokens": body["tokens"]})
    assert back.status_code == 200 and back.json()["content"].strip() == text


def test_a_chats_token_count_is_its_prompts(http: httpx.Client, client: openai.OpenAI):
    counted = http.post("/tokenize", json={"model": DEFAULT_MODEL, "messages": HELLO}).json()["count"]
    used = client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=1).usage.prompt_tokens
    assert counted == used


def test_anthropics_count_tokens_is_what_the_message_uses(bodhi: BodhiServer):
    claude = anthropic.Anthropic(base_url=bodhi.base_url, api_key=bodhi.token, max_retries=0, timeout=120)
    counted = claude.messages.count_tokens(model=DEFAULT_MODEL, system="You are terse.", messages=HELLO)
    used = claude.messages.create(model=DEFAULT_MODEL, system="You are terse.", messages=HELLO, max_tokens=1)
    assert counted.input_tokens == used.usage.input_tokens > 0


def test_geminis_count_tokens_is_what_generating_uses(bodhi: BodhiServer):
    gemini = genai.Client(api_key=bodhi.token, http_options=types.HttpOptions(base_url=bodhi.base_url, api_version="v1beta"))
    counted = gemini.models.count_tokens(model=DEFAULT_MODEL, contents="Say hello to the whole wide world.")
    used = gemini.models.generate_content(model=DEFAULT_MODEL, contents="Say hello to the whole wide world.",
                                          config=types.GenerateContentConfig(max_output_tokens=1))
    assert counted.total_tokens == used.usage_metadata.prompt_token_count > 0


def test_counting_does_not_wait_for_a_busy_models_slots(bodhi: BodhiServer, http: httpx.Client):
    # Every slot generates (BODHI_PARALLEL=4 in these tests); counting still answers before any ends.
    with every_slot_generating(bodhi) as finished:
        answer = http.post("/tokenize", json={"model": DEFAULT_MODEL, "content": "while busy"})
        assert answer.status_code == 200 and answer.json()["count"] > 0
        assert not finished, "a generation ended before counting answered"


def test_bad_token_requests_are_400s_and_unknown_models_404s(http: httpx.Client):
    assert http.post("/tokenize", json={"model": DEFAULT_MODEL}).status_code == 400
    assert http.post("/detokenize", json={"model": DEFAULT_MODEL, "tokens": ["a"]}).status_code == 400
    missing = http.post("/tokenize", json={"model": "nobody/nothing:Q4_0", "content": "x"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    with pytest.raises(httpx.HTTPStatusError):
        http.post("/tokenize", json={"content": "no model"}).raise_for_status()
