"""Reranking (`/v1/rerank`, Jina's and Cohere's shape as llama-server serves it) on a model whose
GGUF declares rank pooling, on an engine of its own.

No PyPI package ships a reranker GGUF, so the model is the default one with
`llama.pooling_type = 4` (llama.cpp's RANK) added to its metadata by gguf's own library: the
engine then scores each document from the model's last hidden state. The scores mean nothing,
but every step a real reranker takes is real, and a score depends on its query and document only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import ollama
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer, default_model_file

RERANKER = "smol-rerank"
QUERY = "What do pandas eat?"
DOCUMENTS = ["Pandas eat bamboo almost all day.", {"text": "Paris is the capital of France."}, "The stock market fell."]


def with_rank_pooling(source: Path, target: Path) -> None:
    """`source` with `<arch>.pooling_type = 4` added, as gguf-new-metadata copies a model."""
    sys.path.insert(0, str(Path(sys.executable).parent))
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(source, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(target, arch=arch, endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, {f"{arch}.pooling_type": MetadataDetails(gguf.GGUFValueType.UINT32, 4)}, [])


@pytest.fixture(scope="module")
def reranker(bodhi: BodhiServer, tmp_path_factory: pytest.TempPathFactory):
    variant = tmp_path_factory.mktemp("rerank") / "smol-rerank.Q4_1.gguf"
    with_rank_pooling(default_model_file(), variant)
    client = ollama.Client(host=bodhi.base_url, headers=bodhi.auth)
    client.create(model=RERANKER, files={variant.name: client.create_blob(variant)})
    yield RERANKER
    client.delete(RERANKER)


def scores(answer: httpx.Response) -> dict[int, float]:
    assert answer.status_code == 200, answer.text
    return {result["index"]: result["relevance_score"] for result in answer.json()["results"]}


def test_documents_come_back_ranked_cut_to_top_n_with_their_text(http: httpx.Client, reranker: str):
    answer = http.post("/v1/rerank", json={
        "model": reranker, "query": QUERY, "documents": DOCUMENTS, "top_n": 2, "return_documents": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    results = body["results"]
    assert len(results) == 2 and body["model"] == reranker and body["usage"]["prompt_tokens"] > 0
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    texts = [d if isinstance(d, str) else d["text"] for d in DOCUMENTS]
    for result in results:
        assert result["document"] == {"text": texts[result["index"]]}
    # Without top_n every document is ranked; without return_documents none is echoed.
    whole = http.post("/v1/rerank", json={"model": reranker, "query": QUERY, "documents": DOCUMENTS}).json()["results"]
    assert sorted(r["index"] for r in whole) == [0, 1, 2] and all("document" not in r for r in whole)
    assert [r["index"] for r in whole[:2]] == [r["index"] for r in results]


def test_a_documents_score_depends_on_the_query_and_the_document_only(http: httpx.Client, reranker: str):
    together = scores(http.post("/v1/rerank", json={"model": reranker, "query": QUERY, "documents": DOCUMENTS}))
    alone = scores(http.post("/rerank", json={"model": reranker, "query": QUERY, "documents": [DOCUMENTS[2]]}))
    assert abs(alone[0] - together[2]) < 1e-3
    other = scores(http.post("/v1/rerank", json={"model": reranker, "query": "Where is Paris?", "documents": [DOCUMENTS[2]]}))
    assert abs(other[0] - alone[0]) > 1e-6


def test_reranking_has_an_engine_of_its_own(bodhi: BodhiServer, http: httpx.Client, reranker: str):
    assert http.post("/v1/rerank", json={"model": reranker, "query": QUERY, "documents": ["x"]}).status_code == 200
    [engine] = [e for e in bodhi.engines() if e["model"].endswith("#rerank")]
    assert RERANKER in engine["model"] and engine["slots"] == 1 and "--reranking" in engine["args"]


def test_a_model_that_is_no_reranker_is_refused_before_any_engine_starts(bodhi: BodhiServer, http: httpx.Client):
    answer = http.post("/v1/rerank", json={"model": DEFAULT_MODEL, "query": QUERY, "documents": ["x"]})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "model"
    assert "not a reranker" in answer.json()["error"]["message"]
    assert not [e for e in bodhi.engines() if DEFAULT_MODEL in e["model"] and e["model"].endswith("#rerank")]


@pytest.mark.parametrize("body, param", [
    ({"documents": ["x"]}, "query"),
    ({"query": QUERY, "documents": []}, "documents"),
    ({"query": QUERY, "documents": [5]}, "documents"),
    ({"query": QUERY, "documents": "x"}, "documents"),
    ({"query": QUERY, "documents": ["x"], "top_n": 0}, "top_n"),
    ({"query": QUERY, "documents": ["x"], "return_documents": "yes"}, "return_documents"),
])
def test_malformed_requests_get_a_400_naming_the_field(http: httpx.Client, reranker: str, body: dict, param: str):
    answer = http.post("/v1/rerank", json={"model": reranker} | body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_a_document_beyond_the_context_is_a_clear_400(http: httpx.Client, reranker: str):
    model_id = http.get(f"/bodhi/v1/aliases/{reranker}").json()["model"]  # `ollama create` made an alias
    made = http.post("/bodhi/v1/aliases", json={"name": "smol-rerank-256", "model": model_id, "engine": {"context_size": 256}})
    assert made.status_code == 201, made.text
    try:
        long_document = " ".join(f"word{n}" for n in range(400))
        answer = http.post("/v1/rerank", json={"model": "smol-rerank-256", "query": QUERY, "documents": [long_document, "short"]})
        assert answer.status_code == 400 and "context" in answer.json()["error"]["message"]
        assert scores(http.post("/v1/rerank", json={"model": "smol-rerank-256", "query": QUERY, "documents": ["short"]}))
    finally:
        http.delete("/bodhi/v1/aliases/smol-rerank-256")
