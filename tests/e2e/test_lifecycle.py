"""How Bodhi starts, manages engines and stops, seen from outside: each test runs its own server."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, HELLO, BodhiServer, ProcessRef, add_model, default_model_file, poll_until, run_bodhi


def client_for(server: BodhiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key=server.token, timeout=120, max_retries=0)


def load_default_model(server: BodhiServer) -> ProcessRef:
    with client_for(server) as client:
        client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=2)
    engine = server.engine()
    assert engine is not None and engine["state"] == "ready"
    ref = ProcessRef.of(engine["pid"])
    assert ref is not None
    return ref


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_no_engine_outlives_bodhi(tmp_path: Path, sig: signal.Signals):
    server = BodhiServer(tmp_path)
    server.start()
    try:
        engine = load_default_model(server)
        server.proc.send_signal(sig)
        server.proc.wait(15)
        poll_until(lambda: not engine.alive(), 10.0, f"the engine to exit after bodhi got {sig.name}")
    finally:
        server.stop()


def test_stopping_during_streams_ends_them_with_an_error_in_their_format_and_takes_the_engine_down(tmp_path: Path):
    # --ignore-eos: every reply runs to its token limit, so both streams still run when the grace ends.
    server = BodhiServer(tmp_path, env={"BODHI_SHUTDOWN_GRACE": "1s", "BODHI_LLAMA_ARGS": "--ignore-eos"})
    server.start()
    try:
        engine = load_default_model(server)
        with client_for(server) as client, httpx.Client(base_url=server.base_url, headers=server.auth, timeout=60) as http:
            stream = client.chat.completions.create(
                model=DEFAULT_MODEL, messages=HELLO, max_tokens=4000, stream=True, extra_body={"ignore_eos": True}
            )
            next(iter(stream))
            ollama = http.stream("POST", "/api/chat", json={"model": DEFAULT_MODEL, "messages": HELLO, "options": {"num_predict": 4000}})
            ollama_lines = ollama.__enter__().iter_lines()
            assert "message" in json.loads(next(ollama_lines))
            server.proc.send_signal(signal.SIGTERM)
            # The drain is bounded: Bodhi does not wait for a 4000-token reply to finish, and says why it ends.
            server.proc.wait(30)
            with pytest.raises(openai.APIError) as raised:
                for _ in stream:
                    pass
            assert "BODHI_SHUTDOWN_GRACE" in str(raised.value)
            last = json.loads([line for line in ollama_lines if line.strip()][-1])
            assert "BODHI_SHUTDOWN_GRACE" in last["error"]
            ollama.__exit__(None, None, None)
        poll_until(lambda: not engine.alive(), 10.0, "the engine to exit")
    finally:
        server.stop()


def test_invalid_setting_is_refused_with_its_name_and_source(tmp_path: Path):
    result = run_bodhi("serve", home=tmp_path, env={"BODHI_MAX_LOADED_MODELS": "lots"}, timeout=30)
    assert result.returncode != 0
    assert "BODHI_MAX_LOADED_MODELS" in result.stderr
    assert "environment" in result.stderr

    (tmp_path / "settings.yaml").write_text("BODHI_PORT: 99999\n")
    result = run_bodhi("serve", home=tmp_path, timeout=30)
    assert result.returncode != 0
    assert "BODHI_PORT" in result.stderr and "settings.yaml" in result.stderr


def test_keep_alive_zero_unloads_after_the_request(tmp_path: Path):
    with BodhiServer(tmp_path, env={"BODHI_KEEP_ALIVE": "0"}) as server:
        with client_for(server) as client:
            client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=2)
        poll_until(lambda: server.engines() == [], 10.0, "the model to unload")


def test_new_models_appear_and_least_recently_used_makes_room(tmp_path: Path):
    hf_home = tmp_path / "hf"
    add_model(hf_home, "test/first-GGUF", "first.Q4_1.gguf", source=default_model_file())
    with BodhiServer(tmp_path, env={"HF_HOME": str(hf_home), "BODHI_MAX_LOADED_MODELS": "1"}) as server:
        with client_for(server) as client:
            assert [m.id for m in client.models.list()] == ["test/first-GGUF:Q4_1"]
            client.chat.completions.create(model="test/first-GGUF:Q4_1", messages=HELLO, max_tokens=2)

            # A file that lands in the cache while Bodhi runs is served without a restart.
            add_model(hf_home, "test/second-GGUF", "second.Q4_1.gguf", source=default_model_file())
            assert "test/second-GGUF:Q4_1" in [m.id for m in client.models.list()]
            client.chat.completions.create(model="test/second-GGUF:Q4_1", messages=HELLO, max_tokens=2)

        # Only one model fits: the idle one was unloaded to make room.
        assert [e["model"] for e in server.engines()] == ["test/second-GGUF:Q4_1"]


def test_a_memory_budget_for_one_model_makes_the_next_wait_and_never_evicts_a_busy_one(tmp_path: Path):
    hf_home = tmp_path / "hf"
    add_model(hf_home, "test/first-GGUF", "first.Q4_1.gguf", source=default_model_file())
    add_model(hf_home, "test/second-GGUF", "second.Q4_1.gguf", source=default_model_file())
    # --ignore-eos: the stream below runs to its token limit.
    with BodhiServer(tmp_path, env={"HF_HOME": str(hf_home), "BODHI_PARALLEL": "2", "BODHI_LLAMA_ARGS": "--ignore-eos"}) as server, \
            httpx.Client(base_url=server.base_url, headers=server.auth, timeout=120) as http, \
            httpx.Client(base_url=server.base_url, timeout=60) as admin:
        login = admin.post("/bodhi/v1/auth/login", json={"username": server.ADMIN, "password": server.ADMIN_PASSWORD})
        admin.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        ask = {"messages": HELLO, "max_tokens": 2}
        with http.stream("POST", "/v1/chat/completions", json={"model": "test/first-GGUF:Q4_1", "messages": HELLO,
                                                                 "max_tokens": 400, "stream": True}) as stream:
            events = stream.iter_lines()
            assert next(line for line in events if line.startswith("data:"))
            first = server.engines()[0]
            # What the budget counts: at least the weights, and a prompt cache Bodhi chose.
            estimate = first["estimate_bytes"]
            assert estimate > default_model_file().stat().st_size
            assert "--cache-ram" in first["args"]
            # Room for one such model, not two, set while Bodhi runs.
            changed = admin.put("/bodhi/v1/settings/BODHI_MEMORY_BUDGET", json={"value": str(int(estimate * 1.5))})
            assert changed.status_code == 200, changed.text
            assert http.get("/bodhi/v1/engines").json()["memory_budget_bytes"] == int(estimate * 1.5)

            with ThreadPoolExecutor(1) as pool:
                second = pool.submit(lambda: http.post("/v1/chat/completions", json={"model": "test/second-GGUF:Q4_1", **ask}))
                # The second waits while the first streams: it is neither refused nor let in.
                poll_until(lambda: "to make room" in server.log_path.read_text(), 30, "the second model to wait for room")
                assert [e["model"] for e in server.engines()] == ["test/first-GGUF:Q4_1"] and not second.done()
                # The stream is never cut to make room: it runs to its end.
                data = [line for line in events if line.startswith("data:")]
                assert data[-1] == "data: [DONE]"
                assert json.loads(data[-2].removeprefix("data:"))["choices"][0]["finish_reason"] == "length"
                assert second.result(timeout=120).status_code == 200
        assert [e["model"] for e in server.engines()] == ["test/second-GGUF:Q4_1"]

        # A model that would not fit even alone is refused at once, with its estimate and the budget.
        assert admin.put("/bodhi/v1/settings/BODHI_MEMORY_BUDGET", json={"value": str(estimate // 2)}).status_code == 200
        refused = http.post("/v1/chat/completions", json={"model": "test/first-GGUF:Q4_1", **ask})
        assert refused.status_code == 503
        message = refused.json()["error"]["message"]
        assert "BODHI_MEMORY_BUDGET" in message and "needs about" in message and "KV cache" in message


def test_rm_unloads_and_deletes_a_model(tmp_path: Path):
    hf_home = tmp_path / "hf"
    add_model(hf_home, "test/doomed-GGUF", "doomed.Q4_1.gguf", source=default_model_file())
    with BodhiServer(tmp_path, env={"HF_HOME": str(hf_home)}) as server, client_for(server) as client:
        client.chat.completions.create(model="test/doomed-GGUF:Q4_1", messages=HELLO, max_tokens=2)
        engine = ProcessRef.of(server.engine("test/doomed-GGUF:Q4_1")["pid"])

        result = server.cli("rm", "test/doomed-GGUF:Q4_1", timeout=60)
        assert result.returncode == 0, result.stderr

        assert [m.id for m in client.models.list()] == []
        poll_until(lambda: not engine.alive(), 10.0, "the deleted model's engine to stop")
        assert not (hf_home / "hub" / "models--test--doomed-GGUF").exists()
        assert default_model_file().exists()  # the blob was a link; its target is untouched
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="test/doomed-GGUF:Q4_1", messages=HELLO, max_tokens=2)


def test_rm_without_a_server_deletes_from_the_cache(tmp_path: Path):
    hf_home = tmp_path / "hf"
    add_model(hf_home, "test/offline-GGUF", "offline.Q4_1.gguf", content=b"GGUF")
    env = {"HF_HOME": str(hf_home)}
    result = run_bodhi("rm", "test/offline-GGUF:Q4_1", "--port", "1", home=tmp_path, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert not (hf_home / "hub" / "models--test--offline-GGUF").exists()

    missing = run_bodhi("rm", "test/offline-GGUF:Q4_1", "--port", "1", home=tmp_path, env=env, timeout=30)
    assert missing.returncode != 0
    assert "test/offline-GGUF:Q4_1" in missing.stderr


def test_a_model_the_engine_cannot_load_gets_the_engines_reason(tmp_path: Path):
    hf_home = tmp_path / "hf"
    add_model(hf_home, "test/broken-GGUF", "broken.Q4_0.gguf", content=b"GGUF" + os.urandom(256))
    with BodhiServer(tmp_path, env={"HF_HOME": str(hf_home)}) as server, client_for(server) as client:
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="test/broken-GGUF:Q4_0", messages=HELLO, max_tokens=2)
        message = raised.value.response.json()["error"]["message"]
        assert "test/broken-GGUF:Q4_0" in message
        assert "error" in message.lower() or "failed" in message.lower()
        assert server.engines() == []


def test_an_engine_that_never_gets_ready_fails_all_its_callers_once_and_leaves_no_process(tmp_path: Path):
    # An "engine" that never answers, ignores SIGTERM, and starts a process of its own that does too.
    starts, forked = tmp_path / "starts", tmp_path / "forked"
    fake = tmp_path / "llama-server"
    fake.write_text(f"""#!/bin/sh
trap '' TERM
echo $$ >> {starts}
sleep 600 &
echo $! >> {forked}
exec sleep 600
""")
    fake.chmod(0o755)
    env = {"BODHI_LLAMA_SERVER": str(fake), "BODHI_LOAD_TIMEOUT": "3s", "BODHI_PARALLEL": "2"}
    with BodhiServer(tmp_path, env=env) as server:
        def ask(_: int) -> httpx.Response:
            return httpx.post(f"{server.api_url}/chat/completions", headers=server.auth, timeout=120,
                              json={"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 2})

        # Two take the model's slots and wait for its load; four more queue behind them.
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(ask, range(6)))
        for answer in answers:
            assert answer.status_code == 500
            assert "BODHI_LOAD_TIMEOUT (3s)" in answer.json()["error"]["message"]
        # One load for all six: the queued ones heard of its failure instead of trying it again.
        assert len(starts.read_text().split()) == 1
        leftovers = [ProcessRef.of(int(pid)) for pid in forked.read_text().split()]
        poll_until(lambda: not any(ref and ref.alive() for ref in leftovers), 10.0, "the engine's own child to be stopped")
        assert server.engines() == []


def test_oversized_body_is_413(tmp_path: Path):
    with BodhiServer(tmp_path) as server:
        body = b'{"model": "' + DEFAULT_MODEL.encode() + b'", "prompt": "' + b"x" * (33 * 1024 * 1024) + b'"}'
        response = httpx.post(f"{server.api_url}/completions", content=body, headers=server.auth, timeout=60)
        assert response.status_code == 413
        assert "limit" in response.json()["error"]["message"]


def test_json_logs_are_one_object_per_line(tmp_path: Path):
    with BodhiServer(tmp_path, env={"BODHI_LOG_FORMAT": "json", "BODHI_LOG_LEVEL": "debug"}) as server:
        assert httpx.get(f"{server.api_url}/models", headers=server.auth, timeout=30).status_code == 200
    records = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    assert records and all({"ts", "level", "logger", "message"} <= r.keys() for r in records)
    assert any("listening" in r["message"] for r in records)
    bad = run_bodhi("serve", "--port", "1", home=tmp_path, env={"BODHI_LOG_FORMAT": "xml"}, timeout=30)
    assert bad.returncode != 0 and "BODHI_LOG_FORMAT" in bad.stderr
