"""Remote servers behind Bodhi: a plain llama-server and a second Bodhi on loopback, added with one
command each, whose models answer through every API Bodhi speaks, with the official clients."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest
from bodhi_process import (
    DEFAULT_MODEL, HELLO, REPO_ROOT, BodhiServer, default_model_file, free_port, poll_until, stop_process, tail,
)
from test_gateway import metric

TIMEOUT_S = 120.0


def engine_binary() -> str:
    return subprocess.run([str(REPO_ROOT / "scripts" / "bootstrap"), "--print-engine"], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


@pytest.fixture(scope="module")
def remote_engine(tmp_path_factory: pytest.TempPathFactory):
    """A llama-server of its own (not Bodhi's child), serving the default model as `smol`."""
    port = free_port()
    log = tmp_path_factory.mktemp("remote-engine") / "llama-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [engine_binary(), "-m", str(default_model_file()), "--host", "127.0.0.1", "--port", str(port), "--alias", "smol",
             "-c", "4096", "--parallel", "2"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        return False

    try:
        poll_until(ready, 60, f"llama-server on {url}\n{tail(log)}")
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory):
    """A second Bodhi, reached with one of its API tokens."""
    server = BodhiServer(tmp_path_factory.mktemp("peer"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    """The Bodhi under test, logging everything (keys must never show)."""
    server = BodhiServer(tmp_path_factory.mktemp("gateway"), env={"BODHI_LOG_LEVEL": "trace", "BODHI_RATE_LIMITS": "off"})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lab(gateway: BodhiServer, remote_engine: str) -> str:
    """The plain llama-server, added as `lab`: its model is `lab/smol`."""
    added = gateway.cli("backends", "add", "lab", remote_engine)
    assert added.returncode == 0, added.stderr
    assert "lab/smol" in added.stdout
    return "lab/smol"


def test_a_llama_server_added_with_one_command_answers_the_openai_client(gateway: BodhiServer, lab: str):
    with openai.OpenAI(base_url=gateway.api_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0) as client:
        assert lab in {m.id for m in client.models.list()}
        assert client.models.retrieve(lab).id == lab

        reply = client.chat.completions.create(model=lab, messages=HELLO, max_tokens=12)
        assert reply.model == lab
        assert reply.choices[0].message.content
        assert reply.usage.completion_tokens > 0

        stream = client.chat.completions.create(model=lab, messages=HELLO, max_tokens=12, stream=True)
        chunks = list(stream)
        assert all(chunk.model == lab for chunk in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")

        completion = client.completions.create(model=lab, prompt="Once upon a time", max_tokens=8)
        assert completion.choices[0].text

    served = metric(gateway, "bodhi_inference_requests_total", model=lab, backend="lab", operation="chat", status="200")
    assert served and served >= 2
    assert metric(gateway, "bodhi_completion_tokens_total", model=lab, backend="lab") > 0


def test_the_remote_model_answers_ollama_and_anthropic_clients(gateway: BodhiServer, lab: str):
    tags = httpx.get(f"{gateway.base_url}/api/tags", headers=gateway.auth, timeout=TIMEOUT_S).json()
    assert lab in {m["name"] for m in tags["models"]}

    client = ollama.Client(host=gateway.base_url, headers=gateway.auth, timeout=TIMEOUT_S)
    shown = client.show(lab)  # clients ask this of every model they list
    assert "completion" in shown.capabilities and shown.details.family == "lab"
    whole = client.chat(model=lab, messages=HELLO, options={"num_predict": 8}, stream=False)
    assert whole.message.content and whole.eval_count > 0
    parts = list(client.chat(model=lab, messages=HELLO, options={"num_predict": 8}, stream=True))
    assert parts[-1].done and "".join(p.message.content for p in parts)

    messages = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0)
    reply = messages.messages.create(model=lab, max_tokens=8, messages=HELLO)
    assert reply.content[0].text and reply.usage.output_tokens > 0
    with messages.messages.stream(model=lab, max_tokens=8, messages=HELLO) as stream:
        assert "".join(stream.text_stream)


def test_an_alias_gives_request_defaults_to_a_remote_model_and_allow_lists_hold(gateway: BodhiServer, lab: str):
    made = gateway.cli("alias", "set", "remote-short", lab, "--max-tokens", "3")
    assert made.returncode == 0, made.stderr
    with openai.OpenAI(base_url=gateway.api_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0) as client:
        reply = client.chat.completions.create(model="remote-short", messages=HELLO)
        assert reply.usage.completion_tokens <= 3
        assert reply.choices[0].finish_reason == "length"

    # A token that may use only the local model is refused the remote one, which it is not told exists.
    login = httpx.post(f"{gateway.base_url}/bodhi/v1/auth/login", timeout=30,
                       json={"username": gateway.ADMIN, "password": gateway.ADMIN_PASSWORD})
    limited = httpx.post(f"{gateway.base_url}/bodhi/v1/tokens", timeout=30,
                         json={"name": "local-only", "scope": "user", "models": [DEFAULT_MODEL]},
                         headers={"X-CSRF-Token": login.json()["csrf_token"]}, cookies=login.cookies)
    limited.raise_for_status()
    with openai.OpenAI(base_url=gateway.api_url, api_key=limited.json()["token"], timeout=TIMEOUT_S, max_retries=0) as client:
        assert lab not in {m.id for m in client.models.list()}
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model=lab, messages=HELLO, max_tokens=4)


def test_another_bodhi_with_a_key_the_key_never_shows(gateway: BodhiServer, peer: BodhiServer):
    added = gateway.cli("backends", "add", "peer", peer.api_url, "--api-key-stdin", stdin=peer.token + "\n")
    assert added.returncode == 0, added.stderr
    remote = f"peer/{DEFAULT_MODEL}"
    assert remote in added.stdout

    with openai.OpenAI(base_url=gateway.api_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0) as client:
        reply = client.chat.completions.create(model=remote, messages=HELLO, max_tokens=8)
        assert reply.model == remote and reply.choices[0].message.content
        chunks = list(client.chat.completions.create(model=remote, messages=HELLO, max_tokens=8, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert {c.model for c in chunks} == {remote}
    # The peer served it: its own count went up.
    assert metric(peer, "bodhi_inference_requests_total", model=DEFAULT_MODEL, operation="chat", status="200") >= 2

    listed = httpx.get(f"{gateway.base_url}/bodhi/v1/backends", headers=gateway.auth, timeout=30)
    assert listed.status_code == 200
    peer_status = next(b for b in listed.json()["data"] if b["name"] == "peer")
    assert peer_status["has_api_key"] is True and remote in peer_status["models"]
    shown = gateway.cli("backends", "ls")
    assert shown.returncode == 0 and "peer" in shown.stdout
    # Nowhere: not in any answer, not in the trace-level log, not in the database's bytes.
    for text in (listed.text, shown.stdout, shown.stderr, added.stdout, gateway.log_tail(), Path(gateway.log_path).read_text()):
        assert peer.token not in text
    database = gateway.home / "bodhi.sqlite"
    assert peer.token.encode() not in database.read_bytes()
    with sqlite3.connect(database) as db:
        (sealed,) = db.execute("SELECT sealed_key FROM backends WHERE name = 'peer'").fetchone()
    assert sealed and peer.token not in sealed


def test_a_wrong_key_or_address_is_said_clearly_and_adds_nothing(gateway: BodhiServer, peer: BodhiServer):
    wrong = gateway.cli("backends", "add", "badkey", peer.api_url, "--api-key-stdin", stdin="bodhi_wrong\n")
    assert wrong.returncode != 0
    assert "API key was refused" in wrong.stderr, wrong.stderr
    nowhere = gateway.cli("backends", "add", "nowhere", f"http://127.0.0.1:{free_port()}/v1")
    assert nowhere.returncode != 0 and "could not be reached" in nowhere.stderr, nowhere.stderr
    names = {b["name"] for b in httpx.get(f"{gateway.base_url}/bodhi/v1/backends", headers=gateway.auth, timeout=30).json()["data"]}
    assert not names & {"badkey", "nowhere"}


def test_changing_backends_takes_an_admin_and_a_removed_backend_is_gone(gateway: BodhiServer, remote_engine: str):
    refused = httpx.post(f"{gateway.base_url}/bodhi/v1/backends", headers=gateway.auth, timeout=30,
                         json={"name": "other", "url": remote_engine})
    assert refused.status_code == 403  # a power_user token reads, never changes

    added = gateway.cli("backends", "add", "brief", remote_engine, "--prefix", "tmp")
    assert added.returncode == 0, added.stderr
    with openai.OpenAI(base_url=gateway.api_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0) as client:
        assert client.chat.completions.create(model="tmp/smol", messages=HELLO, max_tokens=4).choices
        removed = gateway.cli("backends", "rm", "brief")
        assert removed.returncode == 0, removed.stderr
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="tmp/smol", messages=HELLO, max_tokens=4)


def test_a_backend_that_went_down_fails_its_requests_with_502_and_its_test(gateway: BodhiServer, tmp_path: Path):
    port = free_port()
    log = tmp_path / "llama-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [engine_binary(), "-m", str(default_model_file()), "--host", "127.0.0.1", "--port", str(port), "--alias", "smol",
             "-c", "1024"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        poll_until(lambda: _healthy(f"http://127.0.0.1:{port}"), 60, f"llama-server\n{tail(log)}")
        assert gateway.cli("backends", "add", "flaky", f"http://127.0.0.1:{port}").returncode == 0
    finally:
        stop_process(proc)
    with openai.OpenAI(base_url=gateway.api_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as failure:
            client.chat.completions.create(model="flaky/smol", messages=HELLO, max_tokens=4)
    assert failure.value.status_code == 502
    assert "flaky" in failure.value.message
    tested = gateway.cli("backends", "test", "flaky")
    assert tested.returncode != 0 and "could not be reached" in tested.stderr


def _healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    return False
