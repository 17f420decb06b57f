"""Local stand-ins for cloud LLM APIs, speaking OpenAI's, Anthropic's and Gemini's wire protocols
on 127.0.0.1, so that Bodhi's real client code is what the tests run.

Each answers deterministically: the reply is "echo: " and the last user text; with tools offered
(and not refused) a user turn gets a call of the first tool with {"city": "Paris"}, and a tool's
result gets "tool said: " and the result. A user text containing "rate-limit-me" gets 429 with
Retry-After. Every request is kept in `requests` (path, headers, JSON body) for the tests to read.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RATE_LIMIT_WORD = "rate-limit-me"


class StandIn:
    """One provider's API on a free loopback port. `kind` is openai, anthropic or gemini."""

    def __init__(self, kind: str, key: str, models: list[str]):
        self.kind, self.key, self.models = kind, key, models
        self.requests: list[dict[str, Any]] = []
        # Knobs for the tests: answer every request with this status (and Retry-After), or drop
        # the connection after reading the request, as a server that died mid-request does.
        self.fail_status: int | None = None
        self.retry_after: int | None = None
        self.drop = False
        # With `fail_status`: answer this text as HTML instead, as a proxy in front of a server does.
        self.fail_html: str | None = None
        handler = type("Handler", (_Handler,), {"standin": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posts(self) -> int:
        return sum(1 for r in self.requests if r["body"] is not None)

    def last(self, path_part: str) -> dict[str, Any]:
        return next(r for r in reversed(self.requests) if path_part in r["path"])


def _words(text: str) -> list[str]:
    return text.split()


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing --

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _events(self, events: list[tuple[str | None, Any]], done: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for name, data in events:
            chunk = (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
            self.wfile.write(chunk.encode())
            self.wfile.flush()
            time.sleep(0.005)
        if done:
            self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    def _authorized(self) -> bool:
        kind, key = self.standin.kind, self.standin.key
        given = {"openai": (self.headers.get("Authorization") or "").removeprefix("Bearer "),
                 "anthropic": self.headers.get("x-api-key"),
                 "gemini": self.headers.get("x-goog-api-key")}[kind]
        if given == key:
            return True
        message = {"openai": "Incorrect API key provided", "anthropic": "invalid x-api-key",
                   "gemini": "API key not valid. Please pass a valid API key."}[kind]
        self._error(401 if kind != "gemini" else 400, message)
        return False

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = self.standin.kind
        if kind == "openai":
            body = {"error": {"message": message, "type": "invalid_request_error", "code": None, "param": None}}
        elif kind == "anthropic":
            kinds = {401: "authentication_error", 429: "rate_limit_error"}
            body = {"type": "error", "error": {"type": kinds.get(status, "invalid_request_error"), "message": message}}
        else:
            body = {"error": {"code": status, "message": message, "status": "INVALID_ARGUMENT" if status == 400 else "RESOURCE_EXHAUSTED"}}
        self._json(status, body, headers)

    def do_GET(self) -> None:
        self.standin.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
        if not self._authorized():
            return
        kind, models = self.standin.kind, self.standin.models
        if kind == "openai" and self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "standin"} for m in models]})
        elif kind == "anthropic" and self.path.startswith("/v1/models"):
            self._json(200, {"data": [{"id": m, "type": "model", "display_name": m, "created_at": "2025-05-14T00:00:00Z"} for m in models],
                             "has_more": False})
        elif kind == "gemini" and self.path.startswith("/v1beta/models"):
            self._json(200, {"models": [{"name": f"models/{m}", "supportedGenerationMethods": ["generateContent"]} for m in models]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.standin.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if not self._authorized():
            return
        if self.standin.drop:
            time.sleep(0.2)
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if self.standin.fail_status and self.standin.fail_html is not None:
            page = self.standin.fail_html.encode()
            self.send_response(self.standin.fail_status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if self.standin.fail_status:
            retry = {"Retry-After": str(self.standin.retry_after)} if self.standin.retry_after else None
            self._error(self.standin.fail_status, "the stand-in is failing on purpose", retry)
            return
        kind = self.standin.kind
        if kind == "openai" and self.path == "/v1/chat/completions":
            self._openai(body)
        elif kind == "anthropic" and self.path == "/v1/messages":
            if not self.headers.get("anthropic-version"):
                self._error(400, "anthropic-version header is required")
                return
            self._anthropic(body)
        elif kind == "gemini" and ":generateContent" in self.path:
            self._gemini(body, stream=False)
        elif kind == "gemini" and ":streamGenerateContent" in self.path:
            self._gemini(body, stream=True)
        elif kind == "gemini" and ":batchEmbedContents" in self.path:
            self._json(200, {"embeddings": [{"values": [0.5, float(len(r["content"]["parts"][0]["text"]))]} for r in body["requests"]]})
        else:
            self._error(404, f"no route {self.path}")

    # -- the conversation, in each provider's words --

    @staticmethod
    def _decide(last_user: str, tool_result: str | None, tools: list[str], tools_allowed: bool) -> tuple[str, str | None]:
        """(reply text, name of the tool to call or None)."""
        if tool_result is not None:
            return f"tool said: {tool_result}", None
        if tools and tools_allowed:
            return "", tools[0]
        return f"echo: {last_user}", None

    def _openai(self, body: dict) -> None:
        messages = body["messages"]
        last = messages[-1]
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if isinstance(last_user, list):
            last_user = " ".join(p.get("text", "") for p in last_user)
        if RATE_LIMIT_WORD in last_user:
            self._error(429, "Rate limit reached", {"Retry-After": "7"})
            return
        tools = [t["function"]["name"] for t in body.get("tools", [])]
        text, tool = self._decide(last_user, last["content"] if last["role"] == "tool" else None, tools, body.get("tool_choice") != "none")
        prompt = sum(len(_words(str(m.get("content") or ""))) for m in messages)
        usage = {"prompt_tokens": prompt, "completion_tokens": len(_words(text)) or 1, "total_tokens": prompt + (len(_words(text)) or 1)}
        call = [{"id": "call_standin", "type": "function", "function": {"name": tool, "arguments": json.dumps({"city": "Paris"})}}] if tool else None
        base = {"id": "chatcmpl-standin", "created": 1700000000, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": text or None}
            if call:
                message["tool_calls"] = call
            self._json(200, base | {"object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if tool else "stop"}]})
            return
        chunk = base | {"object": "chat.completion.chunk"}
        events = [(None, chunk | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
        events += [(None, chunk | {"choices": [{"index": 0, "delta": {"content": w + " "}, "finish_reason": None}]}) for w in _words(text)]
        if call:
            events.append((None, chunk | {"choices": [{"index": 0, "delta": {"tool_calls": [call[0] | {"index": 0}]}, "finish_reason": None}]}))
        events.append((None, chunk | {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if tool else "stop"}]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append((None, chunk | {"choices": [], "usage": usage}))
        self._events(events, done=True)

    def _anthropic(self, body: dict) -> None:
        messages = body["messages"]
        last_blocks = messages[-1]["content"]
        last_blocks = [{"type": "text", "text": last_blocks}] if isinstance(last_blocks, str) else last_blocks
        result = next((b["content"] for b in last_blocks if b.get("type") == "tool_result"), None)
        last_user = next((" ".join(b.get("text", "") for b in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
                                   if b.get("type", "text") == "text")
                          for m in reversed(messages) if m["role"] == "user"), "")
        if RATE_LIMIT_WORD in last_user:
            self._error(429, "Number of requests has exceeded your rate limit", {"Retry-After": "7"})
            return
        tools = [t["name"] for t in body.get("tools", [])]
        allowed = (body.get("tool_choice") or {}).get("type") != "none"
        text, tool = self._decide(last_user, result if isinstance(result, str) else json.dumps(result) if result else None, tools, allowed)
        usage = {"input_tokens": sum(len(_words(json.dumps(m["content"]))) for m in messages), "output_tokens": len(_words(text)) or 1}
        blocks = [{"type": "text", "text": text}] if text else []
        if tool:
            blocks.append({"type": "tool_use", "id": "toolu_standin", "name": tool, "input": {"city": "Paris"}})
        stop = "tool_use" if tool else "end_turn"
        message = {"id": "msg_standin", "type": "message", "role": "assistant", "model": body["model"]}
        if not body.get("stream"):
            self._json(200, message | {"content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage})
            return
        events: list[tuple[str | None, Any]] = [
            ("message_start", {"type": "message_start", "message": message | {"content": [], "stop_reason": None,
                                                                              "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}}),
            ("ping", {"type": "ping"}),
        ]
        index = 0
        if text:
            events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
            events += [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w + " "}})
                       for w in _words(text)]
            events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
            index = 1
        if tool:
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "tool_use", "id": "toolu_standin", "name": tool, "input": {}}}))
            for part in ('{"city": ', '"Paris"}'):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "input_json_delta", "partial_json": part}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                         "usage": {"output_tokens": usage["output_tokens"]}}))
        events.append(("message_stop", {"type": "message_stop"}))
        self._events(events)

    def _gemini(self, body: dict, stream: bool) -> None:
        contents = body["contents"]
        last_parts = contents[-1]["parts"]
        result = next((p["functionResponse"]["response"] for p in last_parts if "functionResponse" in p), None)
        last_user = next((" ".join(p.get("text", "") for p in c["parts"] if "text" in p) for c in reversed(contents)
                          if c["role"] == "user" and any("text" in p for p in c["parts"])), "")
        if RATE_LIMIT_WORD in last_user:
            self._error(429, "Resource has been exhausted (e.g. check quota).", {"Retry-After": "7"})
            return
        tools = [d["name"] for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
        tool_result = None if result is None else (result.get("content") if isinstance(result, dict) and "content" in result else json.dumps(result))
        text, tool = self._decide(last_user, tool_result, tools, mode != "NONE")
        usage = {"promptTokenCount": sum(len(_words(json.dumps(c["parts"]))) for c in contents),
                 "candidatesTokenCount": len(_words(text)) or 1}
        usage["totalTokenCount"] = usage["promptTokenCount"] + usage["candidatesTokenCount"]
        parts = [{"text": text}] if text else [{"functionCall": {"name": tool, "args": {"city": "Paris"}}}]
        if not stream:
            self._json(200, {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                             "usageMetadata": usage, "modelVersion": "standin"})
            return
        pieces = [[{"text": w + " "}] for w in _words(text)] if text else [parts]
        events = []
        for i, piece in enumerate(pieces):
            answer: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": piece}, "index": 0}]}
            if i == len(pieces) - 1:
                answer["candidates"][0]["finishReason"] = "STOP"
                answer["usageMetadata"] = usage
            events.append((None, answer))
        self._events(events)
