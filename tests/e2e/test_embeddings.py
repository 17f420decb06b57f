"""Embeddings that work for real: inputs as long as the model takes, cut or refused beyond it,
`dimensions` and base64 as OpenAI's, and never waiting behind a generation on the same model."""

from __future__ import annotations

import base64
import math
import struct
import httpx
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer, every_slot_generating

# About 600 tokens: a normal retrieval chunk, longer than llama-server's default batch (512).
CHUNK = " ".join(f"sentence {n} of a long document about gardens and rivers." for n in range(60))


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(value * value for value in vector))


def test_a_retrieval_sized_chunk_embeds_on_both_apis(client: openai.OpenAI, http: httpx.Client):
    counted = http.post("/tokenize", json={"model": DEFAULT_MODEL, "content": CHUNK}).json()["count"]
    assert counted > 512
    vector = client.embeddings.create(model=DEFAULT_MODEL, input=CHUNK).data[0].embedding
    assert len(vector) > 100
    ollama = http.post("/api/embed", json={"model": DEFAULT_MODEL, "input": [CHUNK, "short"]})
    assert ollama.status_code == 200, ollama.text
    assert len(ollama.json()["embeddings"]) == 2


def test_the_embeddings_engine_is_its_own(bodhi: BodhiServer, client: openai.OpenAI):
    client.embeddings.create(model=DEFAULT_MODEL, input="hello")
    engines = {engine["model"]: engine for engine in bodhi.engines()}
    companion = engines[f"{DEFAULT_MODEL}#embeddings"]
    assert companion["slots"] == 1 and "--ubatch-size" in companion["args"]


def test_dimensions_are_cut_and_renormalised_and_base64_carries_the_same_floats(client: openai.OpenAI, http: httpx.Client):
    short = client.embeddings.create(model=DEFAULT_MODEL, input="a garden by a river", dimensions=64).data[0].embedding
    assert len(short) == 64 and abs(norm(short) - 1) < 1e-3
    full = client.embeddings.create(model=DEFAULT_MODEL, input="a garden by a river").data[0].embedding
    assert abs(sum(a * b for a, b in zip(short, full[:64])) - norm(full[:64])) < 1e-3  # same direction
    # The client asks for base64 by default and decodes it; the raw answer is little-endian float32.
    raw = http.post("/v1/embeddings", json={"model": DEFAULT_MODEL, "input": "a garden by a river", "encoding_format": "base64"})
    packed = base64.b64decode(raw.json()["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(packed) // 4}f", packed)
    assert len(decoded) == len(full) and max(abs(a - b) for a, b in zip(decoded, full)) < 1e-6
    ollama = http.post("/api/embed", json={"model": DEFAULT_MODEL, "input": "a garden", "dimensions": 32})
    assert len(ollama.json()["embeddings"][0]) == 32
    too_many = http.post("/v1/embeddings", json={"model": DEFAULT_MODEL, "input": "x", "dimensions": 100000})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "dimensions"
    assert http.post("/v1/embeddings", json={"model": DEFAULT_MODEL, "input": "x", "encoding_format": "hex"}).status_code == 400


@pytest.fixture(scope="module")
def short_context(http: httpx.Client):
    """An alias whose engines take 256 tokens, so that going past its context is cheap."""
    made = http.post("/bodhi/v1/aliases", json={"name": "smol-embed-256", "model": DEFAULT_MODEL, "engine": {"context_size": 256}})
    assert made.status_code == 201, made.text
    yield "smol-embed-256"
    http.delete("/bodhi/v1/aliases/smol-embed-256")


def test_past_the_context_openai_refuses_and_ollama_cuts_unless_told_not_to(http: httpx.Client, short_context: str):
    refused = http.post("/v1/embeddings", json={"model": short_context, "input": ["short", CHUNK]})
    assert refused.status_code == 400, refused.text
    assert "Input 1 has" in refused.json()["error"]["message"] and "256" in refused.json()["error"]["message"]
    cut = http.post("/api/embed", json={"model": short_context, "input": CHUNK})
    assert cut.status_code == 200 and len(cut.json()["embeddings"][0]) > 100
    kept = http.post("/api/embed", json={"model": short_context, "input": CHUNK, "truncate": False})
    assert kept.status_code == 400 and "256" in kept.json()["error"]


def test_an_embedding_does_not_wait_behind_generations(bodhi: BodhiServer, client: openai.OpenAI):
    with every_slot_generating(bodhi) as finished:
        assert client.embeddings.create(model=DEFAULT_MODEL, input=CHUNK).data[0].embedding
        assert not finished, "a generation ended before the embedding answered"


def test_legacy_embeddings_of_an_unknown_model_are_a_404(http: httpx.Client):
    missing = http.post("/api/embeddings", json={"model": "nobody/nothing:Q4_0", "prompt": ""})
    assert missing.status_code == 404, missing.text
