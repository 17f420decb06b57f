"""HTTP as browsers and tools expect it: CORS for pages on other origins, HEAD and 405 with Allow,
Expect: 100-continue answered at once, connections closed when asked, compressed request bodies."""

from __future__ import annotations

import gzip
import socket
import time
import zlib

import httpx
from bodhi_process import DEFAULT_MODEL, BodhiServer

PAGE = "http://localhost:3000"


def test_a_page_on_another_local_origin_calls_every_inference_api(bodhi: BodhiServer):
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("POST", "/api/chat"),
                         ("POST", "/v1/messages"), ("GET", "/v1beta/models")]:
        preflight = httpx.options(f"{bodhi.base_url}{path}", headers={
            "Origin": PAGE, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"}, timeout=30)
        assert preflight.status_code == 204, (path, preflight.text)
        assert preflight.headers["access-control-allow-origin"] == PAGE
        assert method in preflight.headers["access-control-allow-methods"]
        assert "x-stainless-os" in preflight.headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in preflight.headers
    answer = httpx.post(f"{bodhi.api_url}/chat/completions", headers={**bodhi.auth, "Origin": PAGE}, timeout=120,
                        json={"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == PAGE
    assert "X-Request-Id" in answer.headers["access-control-expose-headers"]
    # Errors are readable by the page too.
    refused = httpx.get(f"{bodhi.api_url}/models", headers={"Origin": PAGE, "Authorization": "Bearer wrong"}, timeout=30)
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == PAGE


def test_other_origins_and_bodhis_own_api_get_no_cors(bodhi: BodhiServer):
    stranger = httpx.options(f"{bodhi.api_url}/chat/completions", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, timeout=30)
    assert stranger.status_code == 403 and "BODHI_CORS_ORIGINS" in stranger.json()["error"]["message"]
    plain = httpx.get(f"{bodhi.api_url}/models", headers={**bodhi.auth, "Origin": "https://evil.example"}, timeout=30)
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
    own = httpx.get(f"{bodhi.base_url}/bodhi/v1/models", headers={**bodhi.auth, "Origin": PAGE}, timeout=30)
    assert own.status_code == 200 and "access-control-allow-origin" not in own.headers


def test_head_answers_like_get_without_a_body(http: httpx.Client):
    for path in ("/v1/models", "/api/tags", "/health", "/bodhi/v1/models", "/openapi.json"):
        got = http.get(path)
        head = http.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], path


def test_a_wrong_method_is_a_405_with_allow(http: httpx.Client):
    answer = http.get("/v1/chat/completions")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert answer.json()["error"]["type"] == "invalid_request_error"
    models = http.delete("/v1/models")
    assert models.status_code == 405 and models.headers["allow"] == "GET, HEAD"
    assert http.get("/v1/nothing-here").status_code == 404


def raw_exchange(bodhi: BodhiServer, request: bytes, read_for: float = 10.0) -> tuple[bytes, bool]:
    """Sends raw bytes; returns what came back and whether the server closed the connection."""
    with socket.create_connection(("127.0.0.1", bodhi.port), timeout=read_for) as sock:
        sock.sendall(request)
        received = b""
        deadline = time.monotonic() + read_for
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return received, False
            if not chunk:
                return received, True
            received += chunk
        return received, False


def test_expect_100_continue_is_answered_before_the_body(bodhi: BodhiServer):
    body = b'{"model": "%s", "content": "hello"}' % DEFAULT_MODEL.encode()
    head = (f"POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bodhi.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", bodhi.port), timeout=10) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        sock.sendall(body)
        final = b""
        while b"\r\n\r\n" not in final or b"tokens" not in final:
            chunk = sock.recv(65536)
            if not chunk:
                break
            final += chunk
    assert b"200 OK" in final and b"tokens" in final


def test_connection_close_and_http_1_0_end_the_connection(bodhi: BodhiServer):
    closing, closed = raw_exchange(bodhi, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert closing.startswith(b"HTTP/1.1 200") and closed
    old, closed = raw_exchange(bodhi, b"GET /ping HTTP/1.0\r\n\r\n")
    assert b" 200 " in old.split(b"\r\n")[0] and closed
    kept, closed = raw_exchange(bodhi, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", read_for=1.5)
    assert kept.startswith(b"HTTP/1.1 200") and not closed


def test_compressed_request_bodies_are_read_and_unknown_encodings_refused(http: httpx.Client):
    body = b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}' % DEFAULT_MODEL.encode()
    for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        answer = http.post("/v1/chat/completions", content=packed,
                           headers={"Content-Type": "application/json", "Content-Encoding": encoding})
        assert answer.status_code == 200, (encoding, answer.text)
    unknown = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json", "Content-Encoding": "snappy"})
    assert unknown.status_code == 415 and "snappy" in unknown.json()["error"]["message"]
