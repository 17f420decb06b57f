"""A client that hangs up on a request that does not stream: the engine stops working on it, on
every route and whichever way Bodhi serves it, while another slot of the same engine generates
(which is when llama-server itself used to miss the hang-up), and Bodhi's count of busy slots
agrees with the engine's."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from bodhi_process import DEFAULT_MODEL, HELLO, BodhiServer, poll_until

# The abandoned request may generate this many tokens; it must stop long before.
ABANDONED_MAX_TOKENS = 3000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # --ignore-eos: every reply runs to its token limit; -c: 4096 tokens per slot, room for both requests.
    bodhi = BodhiServer(tmp_path_factory.mktemp("hangups"), env={
        "BODHI_PARALLEL": "2", "BODHI_LLAMA_ARGS": "--ignore-eos -c 8192", "BODHI_RATE_LIMITS": "off"})
    bodhi.start()
    yield bodhi
    bodhi.stop()


def engine_gauges(server: BodhiServer) -> dict[str, float]:
    """The engine's own figures and Bodhi's, for the default model, from Bodhi's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    scraped = httpx.get(f"{server.base_url}/metrics", headers=server.auth, timeout=30)
    scraped.raise_for_status()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            if sample.labels.get("model") == DEFAULT_MODEL and sample.name in (
                "llamacpp_requests_processing", "llamacpp_tokens_predicted_total", "bodhi_engine_in_flight_requests"):
                values[sample.name] = sample.value
    return values


def session_headers(server: BodhiServer) -> dict[str, str]:
    login = httpx.post(f"{server.base_url}/bodhi/v1/auth/login", timeout=30,
                       json={"username": server.ADMIN, "password": server.ADMIN_PASSWORD})
    login.raise_for_status()
    return {"Cookie": f"bodhi_session={login.cookies['bodhi_session']}", "X-CSRF-Token": login.json()["csrf_token"]}


OPENAI_CHAT = {"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": ABANDONED_MAX_TOKENS}
# The non-streamed requests to abandon: (path, body, sent with a browser session rather than a token).
# A token's chat takes Bodhi's fast path, a session's the router.
CASES = {
    "chat, token": ("/v1/chat/completions", OPENAI_CHAT, False),
    "chat, session": ("/v1/chat/completions", OPENAI_CHAT, True),
    "completions": ("/v1/completions", {"model": DEFAULT_MODEL, "prompt": "Once upon a time", "max_tokens": ABANDONED_MAX_TOKENS}, False),
    "ollama chat": ("/api/chat", {"model": DEFAULT_MODEL, "messages": HELLO, "stream": False,
                                  "options": {"num_predict": ABANDONED_MAX_TOKENS}}, False),
    "anthropic messages": ("/v1/messages", {"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": ABANDONED_MAX_TOKENS}, False),
}


@pytest.mark.parametrize("case", CASES)
def test_a_client_that_hangs_up_stops_the_engine(server: BodhiServer, case: str):
    path, body, by_session = CASES[case]
    headers = session_headers(server) if by_session else server.auth
    with httpx.Client(base_url=server.base_url, headers=server.auth, timeout=120) as http, http.stream(
        "POST", "/v1/chat/completions",
        json={"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 3500, "stream": True},
    ) as stream:
        # Another slot generates all along: each of its tokens used to keep the engine from noticing.
        events = stream.iter_lines()
        next(line for line in events if line.startswith("data:"))
        poll_until(lambda: engine_gauges(server).get("llamacpp_requests_processing") == 1, 60, "the stream to be generating")
        before = engine_gauges(server)["llamacpp_tokens_predicted_total"]

        payload = json.dumps(body).encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        client = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        client.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{head}"
                       f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        poll_until(lambda: engine_gauges(server).get("llamacpp_requests_processing") == 2, 60, "the engine to work on the request")
        client.close()

        # The engine lets go of the abandoned request, and so does Bodhi: one request each, the stream.
        poll_until(lambda: engine_gauges(server).get("llamacpp_requests_processing") == 1, 60, "the engine to stop the abandoned request")
        after = engine_gauges(server)
        assert after["bodhi_engine_in_flight_requests"] == 1
        # The stream is still running, so what the engine counted since is what the abandoned one generated.
        generated = after["llamacpp_tokens_predicted_total"] - before
        assert generated < ABANDONED_MAX_TOKENS / 2, f"the engine generated {generated:.0f} tokens for a client that had gone"
