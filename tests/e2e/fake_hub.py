"""A Hugging Face Hub on 127.0.0.1 for tests and benchmarks: the endpoints Bodhi and
huggingface_hub use, served from files the test makes.

- Hub:       GET /api/models/{repo}[/revision/{rev}]   model info with siblings and LFS sha256
             HEAD|GET /{repo}/resolve/{rev}/{path}      302 to the file host, X-Repo-Commit,
                                                         X-Linked-Etag, X-Linked-Size
- File host (a second origin, as a CDN is): HEAD|GET /files/{sha256} with Range support.

Knobs for failure tests: gated or private repos (token required), a connection dropped after
N bytes, a slow body, corrupt content. Every request is recorded for assertions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    files: dict[str, str]  # path -> sha256
    commit: str
    refs: dict[str, str]  # revision -> commit
    token: str | None = None  # required for access when set
    gated: bool = False  # without access: 403 GatedRepo instead of 401


@dataclass
class Request:
    host: str  # "hub" or "files"
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Knobs:
    drop_after: dict[str, int] = field(default_factory=dict)  # sha -> close after this many body bytes (once)
    bytes_per_second: int | None = None  # slow every file body down to this rate
    corrupt: set[str] = field(default_factory=set)  # sha -> serve flipped bytes


class FakeHub:
    def __init__(self, workdir: Path):
        self.blobs = workdir / "hub-blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self.knobs = Knobs()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._hub = self._serve("hub")
        self._files = self._serve("files")
        self.endpoint = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.files_origin = f"http://127.0.0.1:{self._files.server_address[1]}"

    # -- content ---------------------------------------------------------------------------

    def add_repo(
        self, repo: str, files: dict[str, bytes | Path], *, token: str | None = None, gated: bool = False
    ) -> str:
        """Publishes `files` as a new commit of `repo` on `main`; returns the commit."""
        shas = {}
        for path, content in files.items():
            if isinstance(content, Path):
                sha = _sha256_file(content)
                target = self.blobs / sha
                if not target.exists():
                    shutil.copyfile(content, target)
            else:
                sha = hashlib.sha256(content).hexdigest()
                (self.blobs / sha).write_bytes(content)
            shas[path] = sha
        commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        self.repos[repo] = Repo(files=shas, commit=commit, refs={"main": commit}, token=token, gated=gated)
        return commit

    def requests_to(self, host: str, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.host == host and (method is None or r.method == method)]

    def close(self) -> None:
        for server in (self._hub, self._files):
            server.shutdown()
            server.server_close()

    # -- serving ---------------------------------------------------------------------------

    def _serve(self, host: str) -> ThreadingHTTPServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub._record(host, self)
                (hub._hub_request if host == "hub" else hub._file_request)(self, body=True)

            def do_HEAD(self):
                hub._record(host, self)
                (hub._hub_request if host == "hub" else hub._file_request)(self, body=False)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def _record(self, host: str, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(Request(host, handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}))

    def _hub_request(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path):
            repo, commit = self._authorize(h, m.group(1), m.group(2) or "main")
            if repo is None:
                return
            siblings = [
                {"rfilename": p, "size": (self.blobs / sha).stat().st_size,
                 "lfs": {"sha256": sha, "size": (self.blobs / sha).stat().st_size, "pointerSize": 134}}
                for p, sha in sorted(repo.files.items())
            ]
            _send_json(h, 200, {"id": m.group(1), "modelId": m.group(1), "sha": commit, "siblings": siblings}, body)
        elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo, commit = self._authorize(h, m.group(1), m.group(2))
            if repo is None:
                return
            sha = repo.files.get(m.group(3))
            if sha is None:
                _send_error(h, 404, "EntryNotFound", f"{m.group(3)} does not exist", body)
                return
            size = (self.blobs / sha).stat().st_size
            _send(h, 302, b"", body, {
                "Location": f"{self.files_origin}/files/{sha}",
                "X-Repo-Commit": commit, "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(size),
                "ETag": '"git-oid-not-the-content"',
            })
        else:
            _send_error(h, 404, None, "no such route", body)

    def _authorize(self, h: BaseHTTPRequestHandler, name: str, revision: str) -> tuple[Repo | None, str]:
        repo = self.repos.get(name)
        if repo is None:
            _send_error(h, 401, "RepoNotFound", f"Repository Not Found for url: {h.path}", h.command == "GET")
            return None, ""
        if repo.token is not None and h.headers.get("Authorization") != f"Bearer {repo.token}":
            if repo.gated and h.headers.get("Authorization"):
                _send_error(h, 403, "GatedRepo", f"Access to model {name} is restricted.", h.command == "GET")
            else:
                _send_error(h, 401, None, "Invalid credentials in Authorization header", h.command == "GET")
            return None, ""
        commit = repo.refs.get(revision) or (revision if revision == repo.commit else None)
        if commit is None:
            _send_error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}", h.command == "GET")
            return None, ""
        return repo, commit

    def _file_request(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        m = re.fullmatch(r"/files/([0-9a-f]{64})", urlsplit(h.path).path)
        blob = self.blobs / m.group(1) if m else None
        if blob is None or not blob.exists():
            _send_error(h, 404, None, "no such file", body)
            return
        sha, size = m.group(1), blob.stat().st_size
        start = 0
        status = 200
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if (rng := h.headers.get("Range")) and (rm := re.fullmatch(r"bytes=(\d+)-", rng.strip())):
            start = int(rm.group(1))
            if start >= size:
                _send(h, 416, b"", body, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        headers["Content-Length"] = str(size - start)
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if not body:
            return
        with self._lock:
            drop_at = self.knobs.drop_after.pop(sha, None)
        limit = size - start if drop_at is None else max(0, drop_at - start)
        rate = self.knobs.bytes_per_second
        corrupt = sha in self.knobs.corrupt
        with open(blob, "rb") as f:
            f.seek(start)
            if rate is None and not corrupt and drop_at is None:
                h.wfile.flush()
                _sendfile(h.connection, f, start, size - start)
                return
            sent = 0
            chunk = 64 * 1024 if rate is None else max(1024, rate // 20)
            while sent < limit:
                data = f.read(min(chunk, limit - sent))
                if not data:
                    break
                if corrupt:
                    data = bytes(b ^ 0xFF for b in data[:1]) + data[1:]
                    corrupt = False
                try:
                    h.wfile.write(data)
                    h.wfile.flush()
                except OSError:
                    return
                sent += len(data)
                if rate is not None:
                    time.sleep(len(data) / rate)
        if drop_at is not None:
            h.close_connection = True
            with _suppress():
                h.connection.shutdown(socket.SHUT_RDWR)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


def _sendfile(sock: socket.socket, f, offset: int, count: int) -> None:
    while count > 0:
        sent = os.sendfile(sock.fileno(), f.fileno(), offset, count)
        if sent == 0:
            return
        offset += sent
        count -= sent


def _send(h: BaseHTTPRequestHandler, status: int, payload: bytes, body: bool, headers: dict[str, str] | None = None):
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(payload)))
    h.end_headers()
    if body:
        h.wfile.write(payload)


def _send_json(h, status, obj, body):
    _send(h, status, json.dumps(obj).encode(), body, {"Content-Type": "application/json"})


def _send_error(h, status, code, message, body):
    headers = {"X-Error-Message": message, "Content-Type": "application/json"}
    if code:
        headers["X-Error-Code"] = code
    _send(h, status, json.dumps({"error": message}).encode(), body, headers)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
