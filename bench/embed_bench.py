#!/usr/bin/env python3
"""Embeddings while a model generates: Bodhi against the same llama-server run directly.

Run from the repository root with the test virtualenv (scripts/bootstrap --test):

    $(scripts/bootstrap --print-venv)/bin/python bench/embed_bench.py [--json results.json]

Steps:
  1. Start `bodhi serve` as the e2e tests do, warm its chat engine and its embeddings engine, and
     start a second llama-server ("direct") with Bodhi's chat engine arguments (`--embeddings`,
     the same slots): one engine serving chats and embeddings, as llama-server users run it.
  2. For each target in turn:
       - idle: N sequential embeddings of a short sentence -> p50, p95;
       - long: one embedding of a ~600-token chunk (longer than llama-server's default batch), idle;
       - busy: every chat slot generating a long stream (max_tokens 512, ignore_eos), and meanwhile
               N sequential embeddings -> mean, max (the first waits longest where embeddings queue
               for a slot), and how many streams had ended by the last one.
  3. Prints a Markdown table (busy / idle ratios per target); --json writes the raw samples too.
The baseline is the same run's direct engine; no figure is compared with a constant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from bodhi_process import DEFAULT_MODEL, BodhiServer, free_port, poll_until, stop_process, wait_until_serving  # noqa: E402

from bench import ENGINE_LOAD_TIMEOUT_S, direct_args, start_direct  # noqa: E402
from bench import percentile  # noqa: E402

SENTENCE = "A small garden by a quiet river."
CHUNK = " ".join(f"sentence {n} of a long document about gardens and rivers." for n in range(60))
STREAM_TOKENS = 512


def embed(client: httpx.Client, text: str) -> tuple[float, int]:
    started = time.perf_counter()
    answer = client.post("/embeddings", json={"model": DEFAULT_MODEL, "input": text})
    return (time.perf_counter() - started) * 1000, answer.status_code


def measure(client: httpx.Client, base_url: str, headers: dict, slots: int, samples: int) -> dict:
    idle = [embed(client, SENTENCE)[0] for _ in range(samples)]
    embed(client, CHUNK)  # the first long input sizes the engine's buffers
    long_ms, long_status = embed(client, CHUNK)
    stop = threading.Event()
    ended: list[float] = []
    started: list[bool] = []

    def generate():
        with httpx.Client(base_url=base_url, headers=headers, timeout=600) as own:
            with own.stream("POST", "/chat/completions", json={
                "model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Tell a long story."}],
                "max_tokens": STREAM_TOKENS, "ignore_eos": True, "stream": True}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:") and not started[-1:]:
                        started.append(True)
                    if stop.is_set():
                        return
            ended.append(time.perf_counter())

    threads = [threading.Thread(target=generate) for _ in range(slots)]
    for thread in threads:
        thread.start()
    poll_until(lambda: bool(started), timeout=120, what="the chats to generate")
    time.sleep(0.5)  # every slot has its prompt by now
    busy = [embed(client, SENTENCE)[0] for _ in range(samples)]
    ended_by_then = len(ended)
    stop.set()
    for thread in threads:
        thread.join(timeout=600)
    return {
        "idle_ms": {"p50": percentile(idle, 50), "p95": percentile(idle, 95), "samples": idle},
        "busy_ms": {"p50": percentile(busy, 50), "mean": statistics.mean(busy), "max": max(busy), "samples": busy},
        "streams_ended_during_busy": ended_by_then,
        "long_input": {"status": long_status, "ms": long_ms},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", "-n", type=int, default=10, help="embeddings per phase and target (10)")
    parser.add_argument("--json", type=Path, help="write results as JSON here")
    parser.add_argument("--llama-server", type=Path, help="llama-server binary (default: scripts/bootstrap --print-engine)")
    args = parser.parse_args()
    if args.llama_server is None:
        import subprocess
        root = Path(__file__).resolve().parent.parent
        args.llama_server = Path(subprocess.check_output([str(root / "scripts" / "bootstrap"), "--print-engine"], text=True).strip())
    with tempfile.TemporaryDirectory(prefix="bodhi-embed-bench-") as tmp:
        workdir = Path(tmp)
        generous = "inference=100000000/m management=100000000/m tokens=1000000000/m"
        bodhi = BodhiServer(workdir, env={"BODHI_RATE_LIMIT_POWER_USER": generous, "BODHI_RATE_LIMIT_IP": "all=100000000/m"})
        bodhi.start()
        direct = None
        try:
            headers = bodhi.auth
            with httpx.Client(base_url=bodhi.api_url, headers=headers, timeout=600) as client:
                client.post("/chat/completions", json={"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
                embed(client, SENTENCE)
                engine = poll_until(lambda: next((e for e in bodhi.engines() if e["model"] == DEFAULT_MODEL and e["state"] == "ready"), None),
                                    ENGINE_LOAD_TIMEOUT_S, "Bodhi's engine")
                port = free_port()
                direct = start_direct(args.llama_server, direct_args(engine["args"], port), workdir / "llama-server.log")
                wait_until_serving(direct, f"http://127.0.0.1:{port}/health", ENGINE_LOAD_TIMEOUT_S)
                results = {"bodhi": measure(client, bodhi.api_url, headers, engine["slots"], args.samples)}
            direct_url = f"http://127.0.0.1:{port}/v1"
            with httpx.Client(base_url=direct_url, timeout=600) as client:
                embed(client, SENTENCE)
                results["direct"] = measure(client, direct_url, {}, engine["slots"], args.samples)
        finally:
            if direct is not None:
                stop_process(direct)
            bodhi.stop()
    print("| target | idle p50, ms | busy mean, ms | busy max, ms | busy mean / idle p50 | streams ended meanwhile | ~600-token input |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, result in results.items():
        ratio = result["busy_ms"]["mean"] / result["idle_ms"]["p50"]
        long_input = f"{result['long_input']['status']} in {result['long_input']['ms']:.0f} ms"
        print(f"| {name} | {result['idle_ms']['p50']:.1f} | {result['busy_ms']['mean']:.1f} | {result['busy_ms']['max']:.1f} | "
              f"{ratio:.1f}x | {result['streams_ended_during_busy']} | {long_input} |")
    print(f"\nBusy mean, Bodhi / direct: {results['bodhi']['busy_ms']['mean'] / results['direct']['busy_ms']['mean']:.3f}.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
