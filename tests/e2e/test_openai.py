"""Bodhi's OpenAI-compatible API as a client sees it.

The default model is a tiny 135M chat model: tests check structure, never content.
Tests run in file order; the engine-kill test is last because it restarts the engine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from urllib.parse import quote

import httpx
import jsonschema
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, HELLO, BodhiServer, poll_until

LONG_STORY = [{"role": "user", "content": "Write a very long story about a dragon who learns to bake bread."}]


def test_models_list_and_retrieve(client: openai.OpenAI, http: httpx.Client):
    assert DEFAULT_MODEL in [m.id for m in client.models.list()]

    assert client.models.retrieve(DEFAULT_MODEL).id == DEFAULT_MODEL  # the SDK percent-encodes the id
    for path in (f"/v1/models/{DEFAULT_MODEL}", f"/v1/models/{quote(DEFAULT_MODEL, safe='')}"):
        response = http.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["id"] == DEFAULT_MODEL


def test_chat(client: openai.OpenAI):
    response = client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=16, temperature=0)

    assert response.model == DEFAULT_MODEL
    choice = response.choices[0]
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert response.usage is not None and response.usage.completion_tokens > 0


def test_chat_stream_with_usage(client: openai.OpenAI):
    stream = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=HELLO,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert any(c.choices and c.choices[0].delta.content for c in chunks), "no content delta"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0, "last chunk carries no usage"


def test_completions(client: openai.OpenAI):
    response = client.completions.create(model=DEFAULT_MODEL, prompt="Once upon a time", max_tokens=8, temperature=0)

    assert isinstance(response.choices[0].text, str)
    assert response.usage is not None and response.usage.prompt_tokens > 0


def test_embeddings(client: openai.OpenAI):
    response = client.embeddings.create(
        model=DEFAULT_MODEL, input=["The cat sat on the mat.", "Quarterly revenue grew by 4%."], encoding_format="float"
    )

    assert [d.index for d in response.data] == [0, 1]
    first, second = (d.embedding for d in response.data)
    assert len(first) == len(second) > 0
    assert all(isinstance(x, float) for x in first + second)
    assert first != second


def test_json_schema_response_format(client: openai.OpenAI):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 32}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": "Invent a person. Answer in JSON with their name and age."}],
        # maxLength keeps the constrained output well below max_tokens, so it cannot be cut short.
        max_tokens=200,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    )

    jsonschema.validate(json.loads(response.choices[0].message.content), schema)


def test_llama_cpp_extras_pass_through(client: openai.OpenAI):
    response = client.chat.completions.create(
        model=DEFAULT_MODEL, messages=HELLO, max_tokens=8, temperature=0, extra_body={"top_k": 1, "min_p": 0.1}
    )
    assert response.choices

    # ignore_eos has a visible effect: a short answer is padded out to exactly max_tokens.
    response = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": "Say OK."}],
        max_tokens=32,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert response.usage.completion_tokens == 32
    assert response.choices[0].finish_reason == "length"


def test_tools_reach_the_engine(client: openai.OpenAI):
    # The tiny model's template has no tool support, so no call is expected; the request with
    # tools must still be accepted and answered, with the tools handed to the engine untouched.
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    response = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=tools,
        max_tokens=16,
        temperature=0,
    )
    assert response.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_engines_endpoint(bodhi: BodhiServer):
    engine = bodhi.engine()  # loaded by the tests above

    assert engine is not None
    assert engine["state"] == "ready"
    assert isinstance(engine["pid"], int) and isinstance(engine["port"], int)
    assert engine["slots"] == 4  # BODHI_PARALLEL
    args = engine["args"]
    assert args[args.index("--model") + 1].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert args[args.index("--port") + 1] == "<redacted>"

    # The engine is Bodhi's alone: it refuses requests without its key, and the key is not on
    # its command line, which every local user can read.
    refused = httpx.post(
        f"http://127.0.0.1:{engine['port']}/v1/chat/completions",
        json={"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 1},
        timeout=30,
    )
    assert refused.status_code == 401
    with open(f"/proc/{engine['pid']}/cmdline", "rb") as cmdline:
        assert b"--api-key" not in cmdline.read()


def test_model_details_and_memory_estimate(bodhi: BodhiServer, http: httpx.Client):
    response = http.get(f"/bodhi/v1/models/{quote(DEFAULT_MODEL, safe='')}")
    assert response.status_code == 200
    model = response.json()
    gguf = model["gguf"]
    assert gguf["architecture"] == "llama"
    assert gguf["file_type"] == "Q4_1" and gguf["context_length"] == 8192
    assert 130_000_000 < gguf["parameter_count"] < 140_000_000
    assert "<|im_start|>" in gguf["chat_template"]
    estimate = model["memory_estimate"]
    assert estimate["slots"] == 4 and estimate["weights_bytes"] == model["size_bytes"]

    # The estimate is what the loaded engine really takes, give or take its working buffers.
    resident = bodhi.engine()["memory_bytes"]
    assert 0.7 * estimate["total_bytes"] < resident < 1.5 * estimate["total_bytes"]

    listing = http.get("/bodhi/v1/models", params={"quant": "Q4_1"}).json()
    assert DEFAULT_MODEL in [m["id"] for m in listing["data"]]


def test_unknown_model_is_404(client: openai.OpenAI):
    missing = "nobody/no-such-model-GGUF:Q4_0"
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model=missing, messages=HELLO, max_tokens=4)

    assert missing in raised.value.response.json()["error"]["message"]


def test_malformed_json_is_400(http: httpx.Client):
    response = http.post("/v1/chat/completions", content=b'{"model":', headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)


def test_client_disconnect_mid_stream(bodhi: BodhiServer, client: openai.OpenAI, http: httpx.Client):
    body = {
        "model": DEFAULT_MODEL,
        "messages": LONG_STORY,
        "max_tokens": 512,
        "ignore_eos": True,  # keeps the engine busy long after we hang up
        "stream": True,
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        events = 0
        for line in response.iter_lines():
            events += line.startswith("data:")
            if events == 3:
                break
    # Leaving the block with the body unread closes the connection.

    poll_until(lambda: bodhi.engine()["in_flight"] == 0, 10.0, "in_flight to drop to 0 after the disconnect")
    # The engine itself stopped generating for the departed client (llama-server logs the cancel).
    engine_logs = list((bodhi.home / "logs").glob("*.log"))
    poll_until(
        lambda: any("cancel task" in log.read_text(errors="replace") for log in engine_logs),
        10.0,
        "the engine to cancel the abandoned generation",
    )
    response = client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=8)
    assert response.choices


def test_client_disconnect_before_a_non_stream_reply(bodhi: BodhiServer, client: openai.OpenAI):
    client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=1)  # the engine is loaded
    engine_logs = list((bodhi.home / "logs").glob("*.log"))

    def cancels() -> int:
        return sum(log.read_text(errors="replace").count("cancel task") for log in engine_logs)

    before = cancels()
    body = {"model": DEFAULT_MODEL, "messages": LONG_STORY, "max_tokens": 2048, "ignore_eos": True}
    # 2048 tokens take well over a second; the client gives up after one and hangs up.
    with httpx.Client(base_url=bodhi.base_url, headers=bodhi.auth, timeout=1.0) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("/v1/chat/completions", json=body)

    # Bodhi closed its connection to the engine, so the engine stopped generating at once.
    poll_until(lambda: cancels() > before, 10.0, "the engine to cancel the abandoned generation")
    poll_until(lambda: bodhi.engine()["in_flight"] == 0, 10.0, "in_flight to drop to 0 after the disconnect")


def test_requests_pipelined_behind_a_stream_are_answered_in_order(bodhi: BodhiServer, client: openai.OpenAI):
    """A client that sends its next requests (over 1 MiB of them) while a stream is still coming
    gets the stream whole, then the rest, on the same connection: Bodhi holds them back and reads
    on once the stream has ended, instead of buffering without bound or dropping them."""
    # The token is checked against the database (twice: the first check records its last use,
    # which the second sees as a change), so that the fast path takes the stream.
    for _ in range(2):
        client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=1)
    stream = json.dumps({"model": DEFAULT_MODEL, "messages": LONG_STORY, "max_tokens": 48, "ignore_eos": True, "stream": True})
    # Unknown fields reach the engine untouched; this one only makes the request large.
    large = json.dumps({"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 1, "padding": "x" * (3 << 20)})

    def post(body: str, request_id: str) -> bytes:
        return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bodhi.token}\r\n"
                f"X-Request-Id: {request_id}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()

    with socket.create_connection(("127.0.0.1", bodhi.port), timeout=60) as conn:
        # The large request cannot all be taken while the stream runs: send from a thread.
        sender = threading.Thread(target=conn.sendall, args=(post(stream, "first") + post(large, "second") + post(large, "third"),))
        sender.start()
        replies = read_http_replies(conn, 3)
        sender.join(timeout=60)
    assert [status for status, _, _ in replies] == [200, 200, 200]
    assert [headers.get("x-request-id") for _, headers, _ in replies] == ["first", "second", "third"]
    assert b"data: [DONE]" in replies[0][2]
    assert json.loads(replies[1][2])["choices"]


def test_a_stream_read_slowly_arrives_whole(bodhi: BodhiServer, client: openai.OpenAI, http: httpx.Client):
    """A client that reads a stream slowly, through a small socket buffer that fills while it
    waits, still gets every event and the end, and Bodhi answers others meanwhile: the events wait
    for the client (NIO's writes, and the engine's reads behind them) instead of being lost."""
    for _ in range(2):  # the token checked, so that the fast path (which pushes streams) takes it
        client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=1)
    body = json.dumps({"model": DEFAULT_MODEL, "messages": LONG_STORY, "max_tokens": 200, "ignore_eos": True, "stream": True})
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bodhi.token}\r\n"
               f"Accept-Encoding: identity\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        conn.settimeout(60)
        conn.connect(("127.0.0.1", bodhi.port))
        conn.sendall(request)
        time.sleep(3)  # the stream runs on, nobody reading it
        assert http.get(f"{bodhi.base_url}/ping").status_code == 200
        [(status, _, stream)] = read_http_replies(conn, 1)
    events = [line[len(b"data: "):] for line in stream.split(b"\n") if line.startswith(b"data: ")]
    assert status == 200
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    generated = [chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0]["delta"].get("content") is not None]
    assert len(generated) >= 190, f"{len(generated)} of 200 tokens arrived"


def read_http_replies(conn: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` HTTP/1.1 replies from `conn`, bodies with Content-Length or chunked."""
    buffer = b""
    replies = []

    def need(size: int) -> None:
        nonlocal buffer
        while len(buffer) < size:
            data = conn.recv(65536)
            assert data, f"the connection ended after {len(replies)} replies"
            buffer += data

    def line() -> bytes:
        nonlocal buffer
        while b"\r\n" not in buffer:
            need(len(buffer) + 1)
        text, buffer = buffer.split(b"\r\n", 1)
        return text

    while len(replies) < count:
        status = int(line().split()[1])
        headers = {}
        while header := line():
            name, value = header.decode().split(":", 1)
            headers[name.lower()] = value.strip()
        body = b""
        if headers.get("transfer-encoding") == "chunked":
            while size := int(line(), 16):
                need(size + 2)
                body, buffer = body + buffer[:size], buffer[size + 2:]
            line()  # the empty line after the last chunk
        else:
            length = int(headers.get("content-length", "0"))
            need(length)
            body, buffer = buffer[:length], buffer[length:]
        replies.append((status, headers, body))
    return replies


def test_engine_killed_mid_stream(bodhi: BodhiServer, client: openai.OpenAI):
    stream = client.chat.completions.create(
        model=DEFAULT_MODEL, messages=LONG_STORY, max_tokens=1024, stream=True, extra_body={"ignore_eos": True}
    )
    chunks = iter(stream)
    next(chunks)  # the engine is generating now
    pid = bodhi.engine()["pid"]
    os.kill(pid, signal.SIGKILL)

    # A stream error event (APIError) or a broken connection (APIConnectionError, a subclass).
    with pytest.raises(openai.APIError):
        for _ in chunks:
            pass

    response = client.with_options(timeout=60).chat.completions.create(
        model=DEFAULT_MODEL, messages=HELLO, max_tokens=8
    )
    assert response.choices
    assert bodhi.engine()["pid"] != pid


def test_readiness_reports_each_loaded_engine(client: openai.OpenAI, bodhi: BodhiServer):
    client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=1)
    ready = httpx.get(f"{bodhi.base_url}/health/ready", timeout=30)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    engine = ready.json()["components"][f"engine:{DEFAULT_MODEL}"]
    assert engine == {"status": "ok", "detail": "ok", "required": False}
    assert ready.headers["Bodhi-API-Version"] == "1.0" and ready.headers["X-Request-Id"]


def test_metrics_parse_and_count_what_happened(client: openai.OpenAI, bodhi: BodhiServer, http: httpx.Client):
    from prometheus_client.parser import text_string_to_metric_families

    client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=2)
    assert httpx.get(f"{bodhi.base_url}/metrics", timeout=30).status_code == 401
    scraped = http.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(scraped.text)}

    served = [s for s in families["bodhi_http_requests"].samples
              if s.name == "bodhi_http_requests_total" and s.labels["route"] == "/v1/chat/completions"
              and s.labels["status"] == "200"]
    assert served and served[0].value >= 1
    assert "bodhi_http_request_duration_seconds" in families
    assert families["bodhi_loaded_models"].samples[0].value >= 1
    assert families["process_resident_memory_bytes"].samples[0].value > 10_000_000
    assert families["process_open_fds"].samples[0].value > 0
    # The engine's own llama.cpp metrics, labelled with its model.
    engine = [s for family in families.values() for s in family.samples if s.name.startswith("llamacpp_")]
    assert any(s.labels.get("model") == DEFAULT_MODEL for s in engine) and all("model" in s.labels for s in engine)

