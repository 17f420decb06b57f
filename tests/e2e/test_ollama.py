"""The official `ollama` Python client against Bodhi, as a program written for Ollama runs it:
only the host (and a token header) change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import ollama
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer, default_model_file, free_port, poll_until, run_bodhi

QUESTION = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def client(bodhi: BodhiServer) -> ollama.Client:
    return ollama.Client(host=bodhi.base_url, headers=bodhi.auth, timeout=120)


def test_root_and_version_answer_like_ollama(bodhi: BodhiServer):
    assert httpx.get(bodhi.base_url + "/", timeout=10).text == "Ollama is running"
    assert httpx.head(bodhi.base_url + "/", timeout=10).status_code == 200
    assert httpx.get(bodhi.base_url + "/api/version", timeout=10).json()["version"]


def test_list_and_show_agree_with_the_openai_listing(client: ollama.Client, bodhi: BodhiServer, http: httpx.Client):
    names = [m.model for m in client.list().models]
    assert DEFAULT_MODEL in names
    assert set(names) >= {m["id"] for m in http.get("/v1/models").json()["data"] if "/" in m["id"]}
    listed = next(m for m in client.list().models if m.model == DEFAULT_MODEL)
    assert listed.size > 50_000_000 and len(listed.digest) == 64
    assert listed.details.format == "gguf" and listed.details.family == "llama" and listed.details.quantization_level

    shown = client.show(DEFAULT_MODEL)
    assert "completion" in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.template and "FROM " in shown.modelfile
    # hf.co/ names, as Ollama writes Hugging Face models, name the same model.
    assert client.show("hf.co/" + DEFAULT_MODEL).modelinfo == shown.modelinfo


def test_chat_streams_and_answers_whole(client: ollama.Client):
    whole = client.chat(model=DEFAULT_MODEL, messages=QUESTION, stream=False, options={"num_predict": 8, "temperature": 0})
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.done and whole.done_reason in ("stop", "length")
    assert whole.eval_count and whole.eval_count <= 8 and whole.prompt_eval_count > 0
    assert whole.total_duration > 0 and whole.eval_duration > 0

    parts = list(client.chat(model=DEFAULT_MODEL, messages=QUESTION, stream=True, options={"num_predict": 8, "temperature": 0}))
    assert not parts[0].done and parts[-1].done
    assert "".join(p.message.content for p in parts) == whole.message.content


def test_generate_with_system_raw_and_json_format(client: ollama.Client):
    answer = client.generate(model=DEFAULT_MODEL, prompt="Why is the sky blue?", system="Answer in one word.",
                             options={"num_predict": 6}, stream=False)
    assert answer.response and answer.done
    streamed = "".join(p.response for p in client.generate(model=DEFAULT_MODEL, prompt="1, 2, 3,", raw=True, stream=True,
                                                           options={"num_predict": 6, "temperature": 0}))
    assert streamed
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}}, "required": ["name"]}
    formatted = client.generate(model=DEFAULT_MODEL, prompt="Give a JSON object with a key name.", format=schema,
                                options={"num_predict": 100, "temperature": 0}, stream=False)
    assert isinstance(json.loads(formatted.response)["name"], str)
    loose = client.generate(model=DEFAULT_MODEL, prompt="Reply with a JSON object.", format="json",
                            options={"num_predict": 4}, stream=False)
    assert loose.response.lstrip().startswith("{")


def test_fill_in_the_middle_needs_a_model_with_fim_tokens(client: ollama.Client):
    # SmolLM2's GGUF has no fill-in-the-middle tokens: the engine refuses, Ollama's words.
    assert "insert" not in client.show(DEFAULT_MODEL).capabilities
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model=DEFAULT_MODEL, prompt="def add(a, b):\n    ", suffix="\n    return c\n")
    assert refused.value.status_code == 400 and "does not support insert" in refused.value.error


def test_embed_and_the_older_embeddings(client: ollama.Client):
    embedded = client.embed(model=DEFAULT_MODEL, input=["first text", "second text"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 576
    older = client.embeddings(model=DEFAULT_MODEL, prompt="first text")
    assert len(older.embedding) == 576


def test_copy_makes_an_alias_and_delete_removes_it(client: ollama.Client, http: httpx.Client):
    client.copy(DEFAULT_MODEL, "smol-copy")
    assert "smol-copy:latest" in [m.model for m in client.list().models]
    assert "smol-copy" in [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert client.chat(model="smol-copy", messages=QUESTION, options={"num_predict": 2}).message is not None
    client.delete("smol-copy:latest")
    assert "smol-copy:latest" not in [m.model for m in client.list().models]


def test_keep_alive_zero_unloads_and_ps_shows_it(client: ollama.Client):
    client.generate(model=DEFAULT_MODEL, prompt="Hi", options={"num_predict": 2})
    assert DEFAULT_MODEL in [m.model for m in client.ps().models]
    loaded = next(m for m in client.ps().models if m.model == DEFAULT_MODEL)
    assert loaded.size > 0 and loaded.expires_at is not None
    unloaded = client.generate(model=DEFAULT_MODEL, prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    poll_until(lambda: DEFAULT_MODEL not in [m.model for m in client.ps().models], 10, "the model to unload")


def test_errors_raise_response_error_with_ollama_status(client: ollama.Client, bodhi: BodhiServer):
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="nobody/nothing:Q4_0", messages=QUESTION)
    assert missing.value.status_code == 404 and "not found, try pulling it first" in missing.value.error
    with pytest.raises(ollama.ResponseError) as unauthenticated:
        ollama.Client(host=bodhi.base_url).list()
    assert unauthenticated.value.status_code == 401


PIRATE = ("You are a pirate captain who has sailed the seven seas for forty years. Answer every question "
          "with nautical words, tales of the ocean and at least one hearty arr.")


def test_create_from_a_model_with_a_system_prompt_that_takes_effect(client: ollama.Client):
    updates = list(client.create(model="pirate", from_=DEFAULT_MODEL, system=PIRATE,
                                 parameters={"temperature": 0, "num_predict": 3}, stream=True))
    assert updates[-1].status == "success"
    try:
        shown = client.show("pirate")
        assert "temperature 0" in shown.parameters and PIRATE in shown.modelfile
        plain = client.chat(model=DEFAULT_MODEL, messages=QUESTION, options={"num_predict": 1})
        pirate = client.chat(model="pirate", messages=QUESTION)
        # The system prompt reached the model (longer than the template's default one), and
        # num_predict became the default.
        assert pirate.prompt_eval_count > plain.prompt_eval_count
        assert pirate.eval_count <= 3
    finally:
        client.delete("pirate")


def test_create_from_an_uploaded_gguf_blob(client: ollama.Client, bodhi: BodhiServer):
    digest = client.create_blob(default_model_file())
    assert httpx.head(f"{bodhi.base_url}/api/blobs/{digest}", headers=bodhi.auth, timeout=30).status_code == 200
    assert httpx.head(f"{bodhi.base_url}/api/blobs/sha256:{'0' * 64}", headers=bodhi.auth, timeout=30).status_code == 404
    bad = httpx.post(f"{bodhi.base_url}/api/blobs/sha256:{'1' * 64}", content=b"not it", headers=bodhi.auth, timeout=30)
    assert bad.status_code == 400 and "digest mismatch" in bad.json()["error"]

    client.create(model="uploaded", files={"smol.Q4_1.gguf": digest})
    try:
        assert "uploaded:latest" in [m.model for m in client.list().models]
        reply = client.chat(model="uploaded", messages=QUESTION, options={"num_predict": 4})
        assert reply.message.content
    finally:
        client.delete("uploaded")
    # The model made from the upload went with its only alias, files and engine.
    assert not [m.model for m in client.list().models if m.model.startswith("local/uploaded")]
    assert not [m.model for m in client.ps().models if m.model.startswith("local/uploaded")]


def test_a_second_listener_on_ollamas_port_serves_the_same_api(tmp_path):
    port = free_port()
    with BodhiServer(tmp_path, env={"BODHI_OLLAMA_PORT": str(port)}) as server:
        assert f"Ollama-compatible listener on http://127.0.0.1:{port}" in server.log_tail()
        on_ollamas_port = ollama.Client(host=f"http://127.0.0.1:{port}", headers=server.auth)
        assert DEFAULT_MODEL in [m.model for m in on_ollamas_port.list().models]
        with pytest.raises(ollama.ResponseError) as refused:
            ollama.Client(host=f"http://127.0.0.1:{port}").list()
        assert refused.value.status_code == 401


def test_an_invalid_ollama_port_stops_bodhi(tmp_path):
    result = run_bodhi("serve", home=tmp_path, env={"BODHI_OLLAMA_PORT": "eleven"}, timeout=30)
    assert result.returncode != 0 and "BODHI_OLLAMA_PORT" in result.stderr


def create_relabelled(client: ollama.Client, tmp_path, model: str, *metadata: str) -> None:
    """Creates `model` from the default model's file with changed metadata, by gguf's own
    `gguf-new-metadata`, uploaded as a blob."""
    variant = tmp_path / f"{model}.Q4_1.gguf"
    tool = Path(sys.executable).parent / "gguf-new-metadata"
    subprocess.run([str(tool), *metadata, "--force", str(default_model_file()), str(variant)], check=True, capture_output=True)
    client.create(model=model, files={variant.name: client.create_blob(variant)})


def test_fill_in_the_middle_on_a_model_that_declares_fim_tokens(client: ollama.Client, tmp_path):
    """The default model with FIM token ids added to its metadata (by gguf's own tool), so the
    engine accepts /infill; the text is nonsense, the path is real."""
    create_relabelled(client, tmp_path, "smol-fim", "--special-token-by-id", "fim_pre", "3",
                      "--special-token-by-id", "fim_suf", "4", "--special-token-by-id", "fim_mid", "5")
    try:
        assert "insert" in client.show("smol-fim").capabilities
        prompt, suffix = "def add(a, b):\n    ", "\n    return c\n"
        whole = client.generate(model="smol-fim", prompt=prompt, suffix=suffix, options={"num_predict": 6}, stream=False)
        assert whole.done and 0 < whole.eval_count <= 6 and whole.prompt_eval_count > 0
        parts = list(client.generate(model="smol-fim", prompt=prompt, suffix=suffix, options={"num_predict": 6}, stream=True))
        assert parts[-1].done and not parts[0].done
    finally:
        client.delete("smol-fim")


THINKING_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if enable_thinking is defined and enable_thinking %}<|im_start|>system\nThink step by step, carefully and in "
    "detail, before you answer.<|im_end|>\n{% endif %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_think_reaches_the_chat_template_of_a_model_that_thinks(client: ollama.Client, tmp_path):
    """`think` is the template's enable_thinking: a model whose template uses it (the default
    model with such a template, by gguf's own tool) gets a longer prompt with it on. A model
    without thinking refuses `think`, as Ollama's do."""
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=DEFAULT_MODEL, messages=QUESTION, think=True)
    assert refused.value.status_code == 400 and "does not support thinking" in refused.value.error

    create_relabelled(client, tmp_path, "smol-think", "--chat-template", THINKING_TEMPLATE)
    try:
        assert "thinking" in client.show("smol-think").capabilities
        on = client.chat(model="smol-think", messages=QUESTION, think=True, options={"num_predict": 1})
        off = client.chat(model="smol-think", messages=QUESTION, think=False, options={"num_predict": 1})
        assert on.prompt_eval_count > off.prompt_eval_count
    finally:
        client.delete("smol-think")
