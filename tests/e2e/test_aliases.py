"""Aliases against the real engine: defaults fill what a request leaves unset, a system prompt
takes effect, engine settings get an engine of their own, and the CLI manages them."""

from __future__ import annotations

import httpx
import openai
from bodhi_process import DEFAULT_MODEL, BodhiServer, run_bodhi

MESSAGE = [{"role": "user", "content": "Tell me a long story about a cat."}]
# Longer than the default system prompt SmolLM2's template adds when a chat has none.
PIRATE = ("You are a pirate captain who has sailed the seven seas for forty years. Answer every question "
          "with nautical words, tales of the ocean and at least one hearty arr.")


def create_alias(http: httpx.Client, body: dict) -> dict:
    response = http.post("/bodhi/v1/aliases", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_alias_defaults_apply_only_where_the_request_is_silent(http: httpx.Client, client: openai.OpenAI):
    create_alias(http, {"name": "smol-short", "model": DEFAULT_MODEL,
                        "defaults": {"max_tokens": 3, "temperature": 0, "system": PIRATE}})
    try:
        assert "smol-short" in [m.id for m in client.models.list().data]
        short = client.chat.completions.create(model="smol-short", messages=MESSAGE)
        assert short.usage.completion_tokens <= 3
        assert short.choices[0].finish_reason == "length"

        # The request's own value wins over the default.
        longer = client.chat.completions.create(model="smol-short", messages=MESSAGE, max_tokens=12)
        assert longer.usage.completion_tokens > 3

        # The system prompt reached the model: the same message costs more prompt tokens
        # than with the template's default one, and a chat's own system message replaces it.
        plain = client.chat.completions.create(model=DEFAULT_MODEL, messages=MESSAGE, max_tokens=1)
        assert short.usage.prompt_tokens > plain.usage.prompt_tokens
        own_system = client.chat.completions.create(
            model="smol-short", messages=[{"role": "system", "content": "Be kind."}] + MESSAGE, max_tokens=1)
        assert own_system.usage.prompt_tokens < short.usage.prompt_tokens
    finally:
        http.delete("/bodhi/v1/aliases/smol-short")


def test_an_alias_with_engine_settings_runs_its_own_engine(bodhi: BodhiServer, http: httpx.Client, client: openai.OpenAI):
    create_alias(http, {"name": "smol-small-ctx", "model": DEFAULT_MODEL,
                        "engine": {"context_size": 1024, "parallel": 1, "extra_args": ["--load-mode", "none"]}})
    try:
        reply = client.chat.completions.create(model="smol-small-ctx", messages=MESSAGE, max_tokens=4)
        assert reply.choices[0].message.content
        engine = bodhi.engine("smol-small-ctx")
        assert engine is not None and engine["slots"] == 1
        assert "--ctx-size" in engine["args"] and "1024" in engine["args"] and "--load-mode" in engine["args"]
        detail = http.get("/bodhi/v1/models/smol-small-ctx").json()
        assert detail["memory_estimate"]["slots"] == 1
        assert detail["memory_estimate"]["context_per_slot"] == 1024
    finally:
        assert http.delete("/bodhi/v1/aliases/smol-small-ctx").status_code == 200
    # Deleting the alias stopped its engine.
    assert bodhi.engine("smol-small-ctx") is None


def test_cli_manages_aliases_and_rm_refuses_a_model_they_serve(bodhi: BodhiServer):
    def cli(*args: str):
        return bodhi.cli(*args)

    made = cli("alias", "set", "smol-cli", DEFAULT_MODEL, "--temperature", "0.5", "--stop", "END", "--ctx-size", "2048")
    assert made.returncode == 0, made.stderr
    listing = cli("alias", "ls")
    row = next(line for line in listing.stdout.splitlines() if line.startswith("smol-cli"))
    assert DEFAULT_MODEL in row and "temperature=0.5" in row and "context_size=2048" in row
    assert cli("alias", "cp", "smol-cli", "smol-cli2").returncode == 0
    assert '"temperature" : 0.5' in cli("alias", "show", "smol-cli2").stdout

    refused = cli("rm", DEFAULT_MODEL)
    assert refused.returncode != 0
    assert "smol-cli" in refused.stderr and "force" in refused.stderr
    bad = cli("alias", "set", "smol-bad", DEFAULT_MODEL, "--engine-arg=--host=0.0.0.0")
    assert bad.returncode != 0 and "--host" in bad.stderr

    assert cli("alias", "rm", "smol-cli").returncode == 0
    assert cli("alias", "rm", "smol-cli2").returncode == 0
    assert "smol-cli" not in cli("alias", "ls").stdout
