"""Pulling from a Hugging Face Hub: a local Hub on 127.0.0.1 (fake_hub.py) speaks the endpoints,
Bodhi pulls into its HF cache, and the real huggingface_hub package checks the layout."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, HELLO, BodhiServer, default_model_file, poll_until, run_bodhi
from fake_hub import FakeHub
from huggingface_hub import hf_hub_download, scan_cache_dir, try_to_load_from_cache
from tiny_projector import red_png, write_projector

TOKEN = "hf_test_token_for_the_local_hub"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    fake = FakeHub(tmp_path_factory.mktemp("hub"))
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def reset_knobs(hub: FakeHub):
    hub.knobs.drop_after.clear()
    hub.knobs.corrupt.clear()
    hub.knobs.bytes_per_second = None
    yield


def start_puller(workdir: Path, hub: FakeHub, **env: str) -> BodhiServer:
    server = BodhiServer(workdir, env={
        "HF_HOME": str(workdir / "hf"), "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "BODHI_LOG_LEVEL": "debug",
    } | env)
    server.start()
    return server


@pytest.fixture(scope="module")
def puller(tmp_path_factory: pytest.TempPathFactory, hub: FakeHub):
    server = start_puller(tmp_path_factory.mktemp("puller"), hub)
    yield server
    result = server.stop()
    assert not result.forced, server.log_tail()


def hub_dir(server: BodhiServer) -> Path:
    return Path(server.extra_env["HF_HOME"]) / "hub"


def gguf(size: int, seed: int) -> bytes:
    """Stand-in model bytes: a GGUF magic, then a deterministic filler."""
    block = (f"bodhi-test-{seed}-".encode() * 64)[:4096]
    return (b"GGUF" + block * (size // len(block) + 1))[:size]


def start_pull(server: BodhiServer, model: str, **extra) -> httpx.Response:
    return httpx.post(f"{server.base_url}/bodhi/v1/models/pull", json={"model": model} | extra, headers=server.auth, timeout=60)


def pull_status(server: BodhiServer, pull_id: str) -> dict:
    response = httpx.get(f"{server.base_url}/bodhi/v1/models/pull/{pull_id}", headers=server.auth, timeout=10)
    response.raise_for_status()
    return response.json()


def wait_finished(server: BodhiServer, pull_id: str, timeout: float = 60) -> dict:
    return poll_until(
        lambda: (s := pull_status(server, pull_id))["state"] in ("completed", "failed", "cancelled") and s,
        timeout, f"pull {pull_id} to finish")


def model_ids(server: BodhiServer) -> list[str]:
    return [m["id"] for m in httpx.get(f"{server.api_url}/models", headers=server.auth, timeout=10).json()["data"]]


def test_pull_streams_progress_and_huggingface_hub_sees_the_download(puller: BodhiServer, hub: FakeHub):
    files = {"tiny.Q4_K_M.gguf": gguf(3 * MB, 1), "tiny.Q8_0.gguf": gguf(2 * MB, 2), "README.md": b"# tiny\n"}
    commit = hub.add_repo("test-org/tiny-GGUF", files, token=TOKEN)

    events = []
    with httpx.stream("POST", f"{puller.base_url}/bodhi/v1/models/pull",
                      json={"model": "test-org/tiny-GGUF", "stream": True}, headers=puller.auth, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["state"] == "completed", events[-1]
    assert events[-1]["model"] == "test-org/tiny-GGUF:Q4_K_M"  # no quant named: Q4_K_M, as Ollama picks
    assert events[-1]["completed_bytes"] == events[-1]["total_bytes"] == 3 * MB
    progress = [e["completed_bytes"] for e in events]
    assert progress == sorted(progress)
    assert "test-org/tiny-GGUF:Q4_K_M" in model_ids(puller)

    # The layout is huggingface_hub's own: it finds the file as cached, offline.
    cache = hub_dir(puller)
    repo_dir = cache / "models--test-org--tiny-GGUF"
    link = repo_dir / "snapshots" / commit / "tiny.Q4_K_M.gguf"
    assert os.readlink(link) == f"../../blobs/{events[-1]['files'][0]['sha256']}"
    assert (repo_dir / "refs" / "main").read_text() == commit
    assert not list((repo_dir / "blobs").glob("*.incomplete"))
    cached = hf_hub_download("test-org/tiny-GGUF", "tiny.Q4_K_M.gguf", cache_dir=cache, local_files_only=True)
    assert Path(cached).read_bytes() == files["tiny.Q4_K_M.gguf"]
    assert try_to_load_from_cache("test-org/tiny-GGUF", "tiny.Q4_K_M.gguf", cache_dir=cache) == cached
    info = scan_cache_dir(cache)
    assert not info.warnings
    repo = next(r for r in info.repos if r.repo_id == "test-org/tiny-GGUF")
    assert repo.size_on_disk == 3 * MB

    # The token went to the Hub, never to the file host it redirects to.
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests_to("hub"))
    assert hub.requests_to("files") and not any("authorization" in r.headers for r in hub.requests_to("files"))

    listed = httpx.get(f"{puller.base_url}/bodhi/v1/models/pull", headers=puller.auth, timeout=10).json()["data"]
    assert any(p["id"] == events[-1]["id"] and p["state"] == "completed" for p in listed)


def test_bodhi_serves_what_huggingface_hub_downloaded(puller: BodhiServer, hub: FakeHub):
    hub.add_repo("test-org/fetched-GGUF", {"fetched.Q5_K_M.gguf": gguf(MB, 3)}, token=TOKEN)
    hf_hub_download("test-org/fetched-GGUF", "fetched.Q5_K_M.gguf", cache_dir=hub_dir(puller),
                    endpoint=hub.endpoint, token=TOKEN)
    assert "test-org/fetched-GGUF:Q5_K_M" in model_ids(puller)


def test_names_that_do_not_resolve_get_clear_errors(puller: BodhiServer, hub: FakeHub):
    hub.add_repo("test-org/choices-GGUF", {
        "a/m.Q4_0.gguf": gguf(1000, 4), "b/m.Q4_0.gguf": gguf(1000, 5), "m.Q6_K.gguf": gguf(1000, 6),
    }, token=TOKEN)
    missing_repo = start_pull(puller, "test-org/no-such-repo")
    assert missing_repo.status_code == 404
    assert "test-org/no-such-repo" in missing_repo.json()["error"]["message"]

    missing_quant = start_pull(puller, "test-org/choices-GGUF:Q2_K")
    assert missing_quant.status_code == 404
    assert "Q6_K (m.Q6_K.gguf)" in missing_quant.json()["error"]["message"]

    ambiguous = start_pull(puller, "test-org/choices-GGUF:Q4_0")
    assert ambiguous.status_code == 400
    assert "a/m.Q4_0.gguf" in ambiguous.json()["error"]["message"]

    revision = start_pull(puller, "test-org/choices-GGUF:Q6_K", revision="v9")
    assert revision.status_code == 404
    assert "v9" in revision.json()["error"]["message"]

    hub.add_repo("test-org/gated-GGUF", {"g.Q4_0.gguf": gguf(1000, 7)}, token="someone-elses-token", gated=True)
    gated = start_pull(puller, "test-org/gated-GGUF")
    assert gated.status_code == 403
    assert "gated" in gated.json()["error"]["message"]

    bad = start_pull(puller, "not a model")
    assert bad.status_code == 400


def test_a_dropped_connection_is_resumed_with_range(puller: BodhiServer, hub: FakeHub):
    content = gguf(6 * MB, 8)
    hub.add_repo("test-org/flaky-GGUF", {"flaky.Q4_0.gguf": content}, token=TOKEN)
    sha = __import__("hashlib").sha256(content).hexdigest()
    hub.knobs.drop_after[sha] = 5 * MB
    pull = start_pull(puller, "test-org/flaky-GGUF:Q4_0").json()
    final = wait_finished(puller, pull["id"])
    assert final["state"] == "completed", final
    ranges = [r.headers.get("range") for r in hub.requests_to("files", "GET") if sha in r.path]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    assert int(ranges[-1][6:-1]) > 0
    assert Path(hf_hub_download("test-org/flaky-GGUF", "flaky.Q4_0.gguf", cache_dir=hub_dir(puller),
                                local_files_only=True)).read_bytes() == content


def test_a_checksum_mismatch_leaves_nothing_behind_and_retry_succeeds(puller: BodhiServer, hub: FakeHub):
    content = gguf(2 * MB, 9)
    hub.add_repo("test-org/corrupt-GGUF", {"c.Q4_0.gguf": content}, token=TOKEN)
    sha = __import__("hashlib").sha256(content).hexdigest()
    hub.knobs.corrupt.add(sha)
    pull = start_pull(puller, "test-org/corrupt-GGUF").json()
    final = wait_finished(puller, pull["id"])
    assert final["state"] == "failed"
    assert "failed verification" in final["error"]
    repo_dir = hub_dir(puller) / "models--test-org--corrupt-GGUF"
    assert not (repo_dir / "blobs" / sha).exists()
    assert not list(repo_dir.glob("blobs/*.incomplete"))
    assert not (repo_dir / "snapshots").exists()
    assert "test-org/corrupt-GGUF:Q4_0" not in model_ids(puller)

    hub.knobs.corrupt.clear()
    retried = httpx.post(f"{puller.base_url}/bodhi/v1/models/pull/{pull['id']}/retry", headers=puller.auth, timeout=10)
    assert retried.status_code == 202
    assert wait_finished(puller, pull["id"])["state"] == "completed"
    assert "test-org/corrupt-GGUF:Q4_0" in model_ids(puller)


def test_cancel_keeps_the_partial_file_and_retry_continues_it(puller: BodhiServer, hub: FakeHub):
    hub.add_repo("test-org/slow-GGUF", {"s.Q4_0.gguf": gguf(4 * MB, 10)}, token=TOKEN)
    hub.knobs.bytes_per_second = 1 * MB
    pull = start_pull(puller, "test-org/slow-GGUF").json()
    poll_until(lambda: pull_status(puller, pull["id"])["completed_bytes"] > 0, 30, "progress")
    cancelled = httpx.post(f"{puller.base_url}/bodhi/v1/models/pull/{pull['id']}/cancel", headers=puller.auth, timeout=10).json()
    assert cancelled["state"] == "cancelled"
    assert "test-org/slow-GGUF:Q4_0" not in model_ids(puller)
    partial = list((hub_dir(puller) / "models--test-org--slow-GGUF" / "blobs").glob("*.incomplete"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0

    hub.knobs.bytes_per_second = None
    httpx.post(f"{puller.base_url}/bodhi/v1/models/pull/{pull['id']}/retry", headers=puller.auth, timeout=10).raise_for_status()
    assert wait_finished(puller, pull["id"])["state"] == "completed"
    last_get = [r for r in hub.requests_to("files", "GET")][-1]
    assert last_get.headers.get("range", "").startswith("bytes=")


def test_the_same_model_pulled_twice_at_once_is_downloaded_once(puller: BodhiServer, hub: FakeHub):
    content = gguf(3 * MB, 11)
    hub.add_repo("test-org/popular-GGUF", {"p.Q4_0.gguf": content}, token=TOKEN)
    sha = __import__("hashlib").sha256(content).hexdigest()
    hub.knobs.bytes_per_second = 2 * MB
    first = start_pull(puller, "test-org/popular-GGUF").json()
    second = start_pull(puller, "hf.co/test-org/popular-GGUF:q4_0").json()
    third = start_pull(puller, "test-org/popular-GGUF/p.Q4_0.gguf").json()
    assert first["id"] == second["id"] == third["id"]
    assert wait_finished(puller, first["id"])["state"] == "completed"
    assert len([r for r in hub.requests_to("files", "GET") if sha in r.path]) == 1


def test_a_killed_bodhi_resumes_its_pull_on_restart(tmp_path: Path, hub: FakeHub):
    content = gguf(4 * MB, 12)
    hub.add_repo("test-org/resume-GGUF", {"r.Q4_0.gguf": content}, token=TOKEN)
    hub.knobs.bytes_per_second = 1 * MB
    server = start_puller(tmp_path, hub)
    try:
        pull = start_pull(server, "test-org/resume-GGUF").json()
        # Status is persisted every few seconds while bytes arrive.
        poll_until(lambda: pull_status(server, pull["id"])["completed_bytes"] >= MB, 30, "progress")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
    finally:
        server.stop()
    hub.knobs.bytes_per_second = None
    restarted = start_puller(tmp_path, hub)
    try:
        final = wait_finished(restarted, pull["id"])
        assert final["state"] == "completed", final
        resumed = [r.headers.get("range") for r in hub.requests_to("files", "GET") if "range" in r.headers]
        assert resumed and int(resumed[-1][6:-1]) > 0
        assert "test-org/resume-GGUF:Q4_0" in model_ids(restarted)
    finally:
        restarted.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_a_full_disk_is_a_clear_error_and_leaves_no_file(tmp_path: Path, hub: FakeHub):
    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(hf_home)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        hub.add_repo("test-org/huge-GGUF", {"h.Q4_0.gguf": gguf(3 * MB, 13)}, token=TOKEN)
        result = run_bodhi("pull", "test-org/huge-GGUF", "--port", "1", home=tmp_path / "home", env={
            "HF_HOME": str(hf_home), "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN})
        assert result.returncode != 0
        assert "disk space" in result.stderr
        assert not list(hf_home.rglob("*.gguf")) and not list(hf_home.rglob("*.incomplete"))
    finally:
        subprocess.run(["umount", str(hf_home)], check=False)


def test_cli_pull_through_the_server_and_without_one(puller: BodhiServer, hub: FakeHub, tmp_path: Path):
    hub.add_repo("test-org/cli-GGUF", {"cli.Q4_0.gguf": gguf(MB, 14), "cli.Q8_0.gguf": gguf(MB, 15)}, token=TOKEN)
    env = {"HF_HOME": puller.extra_env["HF_HOME"], "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN}
    lines = puller.cli("pull", "test-org/cli-GGUF:Q4_0", "--json", env=env)
    assert lines.returncode == 0, lines.stderr
    events = [json.loads(line) for line in lines.stdout.splitlines()]
    assert events[-1]["state"] == "completed" and events[-1]["model"] == "test-org/cli-GGUF:Q4_0"

    quiet = puller.cli("pull", "test-org/cli-GGUF:Q8_0", "--quiet", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "test-org/cli-GGUF:Q8_0"
    assert {"test-org/cli-GGUF:Q4_0", "test-org/cli-GGUF:Q8_0"} <= set(model_ids(puller))

    # No server: the CLI pulls by itself into the same layout.
    alone = run_bodhi("pull", "test-org/cli-GGUF:Q4_0", "--port", "1", home=tmp_path / "home",
                      env=env | {"HF_HOME": str(tmp_path / "hf")})
    assert alone.returncode == 0, alone.stderr
    assert "pulled test-org/cli-GGUF:Q4_0" in alone.stdout
    listing = run_bodhi("ls", "--port", "1", home=tmp_path / "home", env={"HF_HOME": str(tmp_path / "hf")})
    assert "test-org/cli-GGUF:Q4_0" in listing.stdout

    # A private repository without a token says what to do.
    denied = run_bodhi("pull", "test-org/cli-GGUF:Q4_0", "--port", "1", home=tmp_path / "home",
                       env=env | {"HF_HOME": str(tmp_path / "hf2"), "HF_TOKEN": ""})
    assert denied.returncode != 0
    assert "HF_TOKEN" in denied.stderr


def test_a_pulled_model_answers_a_chat(puller: BodhiServer, hub: FakeHub):
    hub.add_repo("test-org/SmolLM2-GGUF", {"SmolLM2-135M-Instruct.Q4_1.gguf": default_model_file()}, token=TOKEN)
    pull = start_pull(puller, "hf.co/test-org/SmolLM2-GGUF:Q4_1").json()
    assert wait_finished(puller, pull["id"], timeout=120)["state"] == "completed"
    with openai.OpenAI(base_url=puller.api_url, api_key=puller.token, timeout=120, max_retries=0) as client:
        reply = client.chat.completions.create(model="test-org/SmolLM2-GGUF:Q4_1", messages=HELLO, max_tokens=16)
    assert reply.choices[0].message.content


def test_a_vision_model_is_pulled_with_its_projector_and_reads_images(puller: BodhiServer, hub: FakeHub, tmp_path: Path):
    projector = tmp_path / "mmproj-vision-f16.gguf"
    write_projector(projector)
    hub.add_repo("test-org/vision-GGUF", {"vision.Q4_1.gguf": default_model_file(), "mmproj-vision-f16.gguf": projector,
                                          "mmproj-vision-Q8_0.gguf": gguf(1000, 50)}, token=TOKEN)
    pull = start_pull(puller, "test-org/vision-GGUF:Q4_1").json()
    # The full-precision projector comes with the model; the other one does not.
    assert [f["path"] for f in pull["files"]] == ["vision.Q4_1.gguf", "mmproj-vision-f16.gguf"]
    assert wait_finished(puller, pull["id"], timeout=120)["state"] == "completed"
    detail = httpx.get(f"{puller.base_url}/bodhi/v1/models/test-org/vision-GGUF:Q4_1", headers=puller.auth, timeout=10).json()
    assert "vision" in detail["capabilities"]
    image = "data:image/png;base64," + base64.b64encode(red_png()).decode()
    with openai.OpenAI(base_url=puller.api_url, api_key=puller.token, timeout=120, max_retries=0) as client:
        reply = client.chat.completions.create(model="test-org/vision-GGUF:Q4_1", max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": image}}]}])
    assert reply.usage.prompt_tokens > 0


def test_a_split_model_is_pulled_whole_and_served_as_one(puller: BodhiServer, hub: FakeHub):
    parts = {f"big/m.Q4_0-0000{i}-of-00003.gguf": gguf(MB + i, 20 + i) for i in (1, 2, 3)}
    commit = hub.add_repo("test-org/split-GGUF", parts | {"m.Q8_0.gguf": gguf(1000, 30)}, token=TOKEN)
    pull = start_pull(puller, "test-org/split-GGUF:Q4_0").json()
    assert [f["path"] for f in pull["files"]] == sorted(parts)
    assert pull["total_bytes"] == sum(len(p) for p in parts.values())
    assert wait_finished(puller, pull["id"])["state"] == "completed"
    detail = httpx.get(f"{puller.base_url}/bodhi/v1/models/test-org/split-GGUF:Q4_0", headers=puller.auth, timeout=10).json()
    assert len(detail["parts"]) == 3 and detail["size_bytes"] == pull["total_bytes"]
    snapshot = hub_dir(puller) / "models--test-org--split-GGUF" / "snapshots" / commit / "big"
    assert os.readlink(snapshot / "m.Q4_0-00002-of-00003.gguf").startswith("../../../blobs/")
    assert "test-org/split-GGUF:Q8_0" not in model_ids(puller)


def test_pulls_beyond_the_limit_wait_their_turn(tmp_path: Path, hub: FakeHub):
    hub.add_repo("test-org/first-GGUF", {"a.Q4_0.gguf": gguf(2 * MB, 40)}, token=TOKEN)
    hub.add_repo("test-org/second-GGUF", {"b.Q4_0.gguf": gguf(2 * MB, 41)}, token=TOKEN)
    hub.knobs.bytes_per_second = 1 * MB
    server = start_puller(tmp_path, hub, BODHI_MAX_PULLS="1")
    try:
        first = start_pull(server, "test-org/first-GGUF").json()
        second = start_pull(server, "test-org/second-GGUF").json()
        poll_until(lambda: pull_status(server, first["id"])["completed_bytes"] > 0, 30, "the first pull to start")
        assert pull_status(server, second["id"])["state"] == "queued"
        hub.knobs.bytes_per_second = None
        assert wait_finished(server, first["id"])["state"] == "completed"
        assert wait_finished(server, second["id"])["state"] == "completed"
    finally:
        server.stop()


def test_the_ollama_client_pulls_with_progress(puller: BodhiServer, hub: FakeHub):
    import ollama

    content = gguf(3 * MB, 50)
    hub.add_repo("test-org/ollama-GGUF", {"o.Q4_K_M.gguf": content}, token=TOKEN)
    client = ollama.Client(host=puller.base_url, headers=puller.auth)
    updates = list(client.pull("hf.co/test-org/ollama-GGUF:Q4_K_M", stream=True))
    statuses = [u.status for u in updates]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    progress = [u for u in updates if u.status.startswith("pulling ") and u.total]
    assert progress and progress[-1].completed == progress[-1].total == len(content)
    assert progress[-1].digest == "sha256:" + __import__("hashlib").sha256(content).hexdigest()
    assert "test-org/ollama-GGUF:Q4_K_M" in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as missing:
        client.pull("hf.co/test-org/no-such-GGUF", stream=False)
    assert missing.value.status_code == 404
