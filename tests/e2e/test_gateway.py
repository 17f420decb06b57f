"""The gateway as clients meet it: rate limits, the fair admission queue, compression, request ids in
logs, /docs and metrics that promtool accepts. Each test runs its own server with its own limits."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import brotli
import httpx
import openai
import pytest
import zstandard
from bodhi_process import DEFAULT_MODEL, HELLO, BodhiServer, poll_until


def client_for(server: BodhiServer, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key=token or server.token, timeout=120, max_retries=0)


@contextlib.contextmanager
def session_for(server: BodhiServer, username: str, password: str) -> Iterator[httpx.Client]:
    """A signed-in browser-like session (cookie plus CSRF header)."""
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        login = http.post("/bodhi/v1/auth/login", json={"username": username, "password": password})
        login.raise_for_status()
        http.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        yield http


def make_user_token(server: BodhiServer, username: str) -> str:
    """A second user with the role user, and an API token of theirs."""
    password = f"{username}-password-1"
    with session_for(server, server.ADMIN, server.ADMIN_PASSWORD) as admin:
        registered = httpx.post(f"{server.base_url}/bodhi/v1/auth/register", json={"username": username, "password": password})
        assert registered.status_code == 201, registered.text
        with session_for(server, username, password) as user:
            assert user.post("/bodhi/v1/access-requests").status_code in (200, 201)
        pending = admin.get("/bodhi/v1/access-requests").json()["data"]
        request = next(r for r in pending if r["username"] == username and r["status"] == "pending")
        assert admin.post(f"/bodhi/v1/access-requests/{request['id']}/approve", json={"role": "user"}).status_code == 200
    with session_for(server, username, password) as user:
        created = user.post("/bodhi/v1/tokens", json={"name": "t", "scope": "user"})
        created.raise_for_status()
        return created.json()["token"]


def metric(server: BodhiServer, name: str, http: httpx.Client | None = None, **labels: str) -> float | None:
    """One sample of /metrics, scraped with the server's token (or through `http`)."""
    from prometheus_client.parser import text_string_to_metric_families

    scraped = http.get("/metrics") if http else httpx.get(f"{server.base_url}/metrics", headers=server.auth, timeout=30)
    scraped.raise_for_status()
    text = scraped.text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_a_runaway_script_is_limited_with_429_retry_after_and_ratelimit_headers(tmp_path: Path):
    env = {"BODHI_RATE_LIMIT_POWER_USER": "inference=600/m management=20/m tokens=1000000/m"}
    with BodhiServer(tmp_path, env=env) as server, client_for(server) as client:
        statuses = []
        with httpx.Client(base_url=server.base_url, headers=server.auth, timeout=30) as http:
            for _ in range(40):
                statuses.append(http.get("/v1/models").status_code)
            last = http.get("/v1/models")
            ollama = http.get("/api/tags")
        # A burst of 20, then refusals (a slow machine may earn one more back: 20 a minute refill).
        assert statuses[:20] == [200] * 20 and statuses.count(429) >= 18, statuses
        assert last.status_code == 429
        assert int(last.headers["Retry-After"]) >= 1
        assert last.headers["RateLimit-Policy"].startswith('"management";q=20;w=60')
        assert last.headers["RateLimit"].startswith('"management";r=0;t=')
        assert last.json()["error"]["type"] == "rate_limit_error"
        assert ollama.status_code == 429 and "Rate limit exceeded" in ollama.json()["error"]
        # The official client raises its own error type; refusals are counted in /metrics (scraped by the
        # admin's session: the token has used up its own management requests).
        with pytest.raises(openai.RateLimitError):
            client.models.list()
        with session_for(server, server.ADMIN, server.ADMIN_PASSWORD) as admin:
            assert metric(server, "bodhi_rate_limited_total", http=admin, **{"class": "management", "policy": "management"}) >= 22


def test_unlimited_callers_bypass_and_limits_change_live(tmp_path: Path):
    with BodhiServer(tmp_path, env={"BODHI_RATE_LIMIT_POWER_USER": "management=5/m"}) as server:
        with session_for(server, server.ADMIN, server.ADMIN_PASSWORD) as admin:
            token_id = next(t["id"] for t in admin.get("/bodhi/v1/tokens").json()["data"] if t["name"] == "e2e")
            codes = [httpx.get(f"{server.api_url}/models", headers=server.auth, timeout=30).status_code for _ in range(8)]
            assert codes[:5] == [200] * 5 and codes.count(429) >= 2, codes
            changed = admin.put("/bodhi/v1/settings/BODHI_RATE_LIMIT_UNLIMITED", json={"value": f"token:{token_id}"})
            assert changed.status_code == 200, changed.text
            codes = [httpx.get(f"{server.api_url}/models", headers=server.auth, timeout=30).status_code for _ in range(30)]
            assert set(codes) == {200}
            refused = admin.put("/bodhi/v1/settings/BODHI_RATE_LIMIT_IP", json={"value": "fast please"})
            assert refused.status_code == 400 and "BODHI_RATE_LIMIT_IP" in refused.json()["error"]["message"]


def test_sign_in_attempts_are_limited_per_address(tmp_path: Path):
    with BodhiServer(tmp_path, env={"BODHI_RATE_LIMIT_IP": "all=6000/m auth=5/m"}) as server:
        codes = [httpx.post(f"{server.base_url}/bodhi/v1/auth/login", json={"username": "nobody", "password": "wrong password"},
                            timeout=30).status_code for _ in range(8)]
        # Provisioning the server already signed in once.
        assert 429 in codes and codes[0] == 401
        refused = httpx.post(f"{server.base_url}/bodhi/v1/auth/login", json={"username": "x", "password": "y"}, timeout=30)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"


def test_tokens_per_minute_stop_a_caller_who_used_them(tmp_path: Path):
    with BodhiServer(tmp_path, env={"BODHI_RATE_LIMIT_POWER_USER": "inference=600/m management=600/m tokens=60/m"}) as server:
        with client_for(server) as client:
            client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=60, extra_body={"ignore_eos": True})
            with pytest.raises(openai.RateLimitError) as raised:
                client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=2)
        assert raised.value.response.headers["RateLimit-Policy"].startswith('"tokens";q=60;w=60')
        assert metric(server, "bodhi_completion_tokens_total", model=DEFAULT_MODEL) == 60


def test_a_heavy_user_cannot_starve_a_light_one(tmp_path: Path):
    """One slot; the heavy user queues six streams, then the light user asks once: the light user is
    served after at most one more of the heavy user's requests, not after all of them."""
    with BodhiServer(tmp_path, env={"BODHI_PARALLEL": "1"}) as server:
        light_token = make_user_token(server, "light")
        with client_for(server) as warm:
            warm.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=1)
        finished: list[str] = []
        lock = threading.Lock()

        def ask(name: str, token: str) -> None:
            with client_for(server, token) as client:
                client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=48, extra_body={"ignore_eos": True})
            with lock:
                finished.append(name)

        heavy = [threading.Thread(target=ask, args=(f"heavy{i}", server.token)) for i in range(6)]
        for thread in heavy:
            thread.start()
        poll_until(lambda: (metric(server, "bodhi_queue_depth", model=DEFAULT_MODEL) or 0) >= 5, 60, "the heavy user's queue")
        with lock:
            finished_before_light = len(finished)
        light = threading.Thread(target=ask, args=("light", light_token))
        light.start()
        for thread in [*heavy, light]:
            thread.join(300)
        assert len(finished) == 7
        # Ahead of it: the heavy request in the slot and one turn of the heavy user (one more if a heavy
        # request finished while the light one was on its way), not all five waiting ones.
        assert finished.index("light") - finished_before_light <= 3, finished
        assert (metric(server, "bodhi_queue_wait_seconds_count", model=DEFAULT_MODEL) or 0) >= 7


def test_a_full_queue_is_503_and_a_client_that_hangs_up_leaves_it(tmp_path: Path):
    with BodhiServer(tmp_path, env={"BODHI_PARALLEL": "1", "BODHI_MAX_QUEUE": "1"}) as server:
        long_request = {"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 400, "ignore_eos": True, "stream": True}
        with httpx.Client(base_url=server.base_url, headers=server.auth, timeout=120) as http:
            with http.stream("POST", "/v1/chat/completions", json=long_request) as running:
                lines = running.iter_lines()  # kept: a dropped iterator would close the stream
                next(lines)  # generating: the one slot is taken
                # A raw socket that sends a request, waits in the queue, then hangs up.
                body = json.dumps(long_request | {"stream": False, "max_tokens": 1}).encode()
                raw = socket.create_connection(("127.0.0.1", server.port))
                raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            + f"Authorization: Bearer {server.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                poll_until(lambda: metric(server, "bodhi_queue_depth", model=DEFAULT_MODEL) == 1, 30, "a waiting request")
                full = http.post("/v1/chat/completions", json=long_request | {"stream": False, "max_tokens": 1})
                assert full.status_code == 503 and int(full.headers["Retry-After"]) >= 1
                assert "BODHI_MAX_QUEUE" in full.json()["error"]["message"]
                raw.close()
                poll_until(lambda: metric(server, "bodhi_queue_depth", model=DEFAULT_MODEL) == 0, 10, "the queue to empty")
        assert metric(server, "bodhi_queue_rejections_total", model=DEFAULT_MODEL) == 1


def test_compressed_responses_and_streams_decode_to_the_same_content(bodhi: BodhiServer):
    with httpx.Client(base_url=bodhi.base_url, headers=bodhi.auth, timeout=120) as http:
        plain = http.get("/openapi.json", headers={"Accept-Encoding": "identity"})
        for encoding in ("gzip", "deflate", "br", "zstd"):
            raw = http.get("/openapi.json", headers={"Accept-Encoding": encoding})
            assert raw.headers["content-encoding"] == encoding
            assert raw.json() == plain.json()  # httpx decodes it (br and zstd with the brotli and zstandard packages)
        tiny = http.get("/ping", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in tiny.headers
        # The client's weights choose; of equals, gzip.
        for accepted, chosen in [("gzip, deflate, br, zstd", "gzip"), ("br;q=1, gzip;q=0.5", "br"), ("zstd, br;q=0.9", "zstd")]:
            assert http.get("/openapi.json", headers={"Accept-Encoding": accepted}).headers["content-encoding"] == chosen
        # An SSE stream, compressed with a flush per event: the events arrive one by one.
        decoders = {
            "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS).decompress,
            "br": lambda: brotli.Decompressor().process,
            "zstd": lambda: zstandard.ZstdDecompressor().decompressobj().decompress,
        }
        request = {"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 16, "stream": True, "ignore_eos": True}
        for encoding, decoder in decoders.items():
            with http.stream("POST", "/v1/chat/completions", json=request, headers={"Accept-Encoding": encoding}) as response:
                assert response.headers["content-encoding"] == encoding
                decompress = decoder()
                text, pieces = b"", 0
                for chunk in response.iter_raw():
                    piece = decompress(chunk)
                    if pieces == 0:
                        assert piece.startswith(b"data: {"), encoding  # the first event decodes on its own: flushed
                    pieces += 1
                    text += piece
            events = [line[6:] for line in text.decode().splitlines() if line.startswith("data: ")]
            # llama-server sometimes sends several tokens in one event, so the count varies; the shape does not.
            assert events[-1] == "[DONE]" and len(events) >= 4, text
            chunks = [json.loads(event) for event in events[:-1]]
            assert chunks[-1]["choices"][0]["finish_reason"] == "length"
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
            assert pieces > 1  # arrived piece by piece, not at the end
    # The official client asks for gzip itself and reads the stream as usual.
    with openai.OpenAI(base_url=bodhi.api_url, api_key=bodhi.token, max_retries=0) as client:
        pieces = [c.choices[0].delta.content for c in client.chat.completions.create(
            model=DEFAULT_MODEL, messages=HELLO, max_tokens=8, stream=True) if c.choices and c.choices[0].delta.content]
        assert pieces


def test_curl_compressed_gets_the_same_body(bodhi: BodhiServer):
    plain = httpx.get(f"{bodhi.base_url}/openapi.json", headers=bodhi.auth, timeout=30).json()
    # curl decodes each encoding itself (with zlib, libbrotli and libzstd): a second implementation.
    for accepted, chosen in [("gzip, deflate, br, zstd", "gzip"), ("br", "br"), ("zstd", "zstd")]:
        args = ["curl", "-sS", "--compressed", "-D", "/dev/stderr", "-H", f"Accept-Encoding: {accepted}",
                "-H", f"Authorization: Bearer {bodhi.token}", f"{bodhi.base_url}/openapi.json"]
        answer = subprocess.run(args, capture_output=True, text=True, check=True)
        assert f"content-encoding: {chosen}" in answer.stderr.lower()
        assert json.loads(answer.stdout) == plain, accepted


def test_a_request_id_reaches_the_services_log_lines(tmp_path: Path):
    with BodhiServer(tmp_path, env={"BODHI_LOG_FORMAT": "json"}) as server:
        response = httpx.post(f"{server.api_url}/chat/completions", headers=server.auth | {"X-Request-Id": "trace-e2e-7"},
                              json={"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 1}, timeout=120)
        assert response.status_code == 200 and response.headers["X-Request-Id"] == "trace-e2e-7"
    records = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    loading = [r for r in records if r["message"] in ("loading model", "model ready")]
    assert loading and all(r.get("request_id") == "trace-e2e-7" for r in loading), loading


def test_docs_are_served_offline_with_a_strict_content_security_policy(bodhi: BodhiServer):
    page = httpx.get(f"{bodhi.base_url}/docs", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "bodhi-docs.js", "LICENSE"):
        assert httpx.get(f"{bodhi.base_url}/docs/{asset}", timeout=30).status_code == 200, asset
    assert "Apache License" in httpx.get(f"{bodhi.base_url}/docs/LICENSE", timeout=30).text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus package) is not installed")
def test_metrics_pass_promtool_and_count_inference(client: openai.OpenAI, bodhi: BodhiServer, http: httpx.Client):
    stream = client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=8, stream=True)
    assert sum(1 for _ in stream) >= 2
    text = http.get("/metrics").text
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for name in ("bodhi_time_to_first_token_seconds_count", "bodhi_inter_token_latency_seconds_count",
                 "bodhi_completion_tokens_total", "bodhi_prompt_tokens_total", "bodhi_queue_wait_seconds_count",
                 "bodhi_engine_load_duration_seconds"):
        assert (metric(bodhi, name, model=DEFAULT_MODEL) or 0) > 0, name
