"""Fields as each API's own server answers them: legacy completions' echo and logprobs in the legacy
shape, refusals by name for what the engine cannot do."""

from __future__ import annotations

import math

import openai
import pytest
from bodhi_process import DEFAULT_MODEL

PROMPT = "The capital of France is"


def test_legacy_logprobs_come_in_the_legacy_shape_whole_and_streamed(client: openai.OpenAI):
    whole = client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=4, logprobs=2, temperature=0)
    choice = whole.choices[0]
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == len(logprobs.text_offset) > 0
    assert "".join(logprobs.tokens) == choice.text
    assert all(value <= 0 for value in logprobs.token_logprobs)
    assert all(1 <= len(alternatives) <= 2 for alternatives in logprobs.top_logprobs)
    # Offsets count from the prompt's start, as OpenAI's do.
    assert logprobs.text_offset[0] == len(PROMPT)
    assert logprobs.text_offset[1] == len(PROMPT) + len(logprobs.tokens[0])
    assert math.isclose(max(logprobs.top_logprobs[0].values()), logprobs.token_logprobs[0], abs_tol=1e-4)

    pieces = list(client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=4, logprobs=2, temperature=0, stream=True))
    streamed = [token for piece in pieces if piece.choices and piece.choices[0].logprobs for token in piece.choices[0].logprobs.tokens]
    offsets = [offset for piece in pieces if piece.choices and piece.choices[0].logprobs for offset in piece.choices[0].logprobs.text_offset]
    assert streamed == logprobs.tokens and offsets == logprobs.text_offset


def test_echo_puts_the_prompt_first(client: openai.OpenAI):
    plain = client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=3, temperature=0)
    echoed = client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=3, temperature=0, echo=True)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    pieces = client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=3, temperature=0, echo=True, stream=True)
    assert "".join(piece.choices[0].text for piece in pieces if piece.choices) == echoed.choices[0].text


@pytest.mark.parametrize("fields, param", [
    ({"best_of": 3}, "best_of"),
    ({"echo": True, "logprobs": 1}, "echo"),
    ({"suffix": " and that is all."}, "suffix"),
    ({"logprobs": 99}, "logprobs"),
])
def test_what_the_engine_cannot_do_is_refused_by_name(client: openai.OpenAI, fields: dict, param: str):
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=2, extra_body=fields)
    assert refused.value.body["param"] == param


def test_anthropic_says_which_stop_sequence_matched_whole_and_streamed(bodhi):
    import anthropic
    claude = anthropic.Anthropic(base_url=bodhi.base_url, api_key=bodhi.token, max_retries=0, timeout=120)
    ask = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    free = claude.messages.create(model=DEFAULT_MODEL, max_tokens=40, messages=ask, extra_body={"temperature": 0})
    text = free.content[0].text
    assert "4" in text, text  # the small model counts; the test needs a digit it writes
    stop = text[text.index("4"):text.index("4") + 1]
    whole = claude.messages.create(model=DEFAULT_MODEL, max_tokens=40, messages=ask, extra_body={"temperature": 0}, stop_sequences=["zebra", stop])
    assert whole.stop_reason == "stop_sequence" and whole.stop_sequence == stop
    assert whole.content[0].text == text[:text.index(stop)]
    assert whole.usage.input_tokens == free.usage.input_tokens and whole.usage.output_tokens > 0
    with claude.messages.stream(model=DEFAULT_MODEL, max_tokens=40, messages=ask, extra_body={"temperature": 0}, stop_sequences=[stop]) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == whole.content[0].text
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop
    # Without a match, the end is the model's own.
    unmatched = claude.messages.create(model=DEFAULT_MODEL, max_tokens=40, messages=ask, extra_body={"temperature": 0}, stop_sequences=["zebra"])
    assert unmatched.content[0].text == text and unmatched.stop_reason == free.stop_reason and unmatched.stop_sequence is None


def test_ollama_logprobs_on_chat_and_generate_whole_and_streamed(bodhi):
    import ollama
    client = ollama.Client(host=bodhi.base_url, headers=bodhi.auth, timeout=120)
    chat = client.chat(model=DEFAULT_MODEL, messages=[{"role": "user", "content": "Say hi."}], logprobs=True, top_logprobs=2,
                       options={"num_predict": 4, "temperature": 0})
    assert chat.logprobs and len(chat.logprobs) == chat.eval_count
    assert "".join(entry.token for entry in chat.logprobs) == chat.message.content
    assert all(entry.logprob <= 0 and len(entry.top_logprobs) == 2 for entry in chat.logprobs)
    pieces = list(client.generate(model=DEFAULT_MODEL, prompt=PROMPT, logprobs=True, stream=True, options={"num_predict": 4, "temperature": 0}))
    streamed = [entry.token for piece in pieces for entry in (piece.logprobs or [])]
    assert "".join(streamed) == "".join(piece.response for piece in pieces) and len(streamed) == 4


def test_reasoning_controls_reach_the_template_and_bad_ones_are_refused(client: openai.OpenAI, bodhi):
    # SmolLM2 does not reason: what is checked is that every API's control is taken, and refused by name when wrong.
    for effort in ("none", "low", "high"):
        answer = client.chat.completions.create(model=DEFAULT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                                reasoning_effort=effort)
        assert answer.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=DEFAULT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                       extra_body={"reasoning_effort": "extreme"})
    assert refused.value.body["param"] == "reasoning_effort"
    import anthropic
    claude = anthropic.Anthropic(base_url=bodhi.base_url, api_key=bodhi.token, max_retries=0, timeout=120)
    message = claude.messages.create(model=DEFAULT_MODEL, max_tokens=1100, messages=[{"role": "user", "content": "hi"}],
                                     thinking={"type": "enabled", "budget_tokens": 1024}, extra_body={"temperature": 0})
    assert message.content and message.stop_reason in ("end_turn", "max_tokens")


def test_ollama_raw_generate_keeps_its_logprobs(bodhi):
    import ollama
    client = ollama.Client(host=bodhi.base_url, headers=bodhi.auth, timeout=120)
    raw = client.generate(model=DEFAULT_MODEL, prompt=PROMPT, raw=True, logprobs=True, top_logprobs=2,
                          options={"num_predict": 3, "temperature": 0})
    assert raw.logprobs and "".join(entry.token for entry in raw.logprobs) == raw.response
