#!/usr/bin/env python3
"""How much an engine's pace alone moves its latency: two identical llama-servers, no proxy.

Run from the repository root with the test virtualenv (scripts/bootstrap --test):

    $(scripts/bootstrap --print-venv)/bin/python bench/cadence.py [PATTERN] [ROUNDS]

Engines A and B get the default model with the engine arguments Bodhi uses. Each round sends one
non-stream request (max_tokens=1) per letter of PATTERN, in order, reversed every other round; the
result is the median over rounds of B's mean latency minus A's in that round. With PATTERN "ABA",
A takes two requests of every three, as one engine serving both the direct and the nginx targets
did in bench.py before each target had an engine of its own. "AB" is the control.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import bench
from bench import DEFAULT_MODEL, REPO_ROOT, chat, free_port, open_client, start_direct, stop_process, wait_until_serving

ENGINE_ARGS = ["--parallel", "4", "--jinja", "--embeddings", "--pooling", "mean", "--metrics", "--no-webui"]


def main() -> int:
    pattern = sys.argv[1] if len(sys.argv) > 1 else "ABA"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    engine = subprocess.run(
        [REPO_ROOT / "scripts" / "bootstrap", "--print-engine"], check=True, capture_output=True, text=True
    ).stdout.strip()
    hub = Path.home() / ".cache" / "huggingface" / "hub"
    model = next(hub.glob("models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/*/SmolLM2-135M-Instruct.Q4_1.gguf"))
    with tempfile.TemporaryDirectory(prefix="bodhi-cadence-") as tmp:
        engines, clients = {}, {}
        try:
            for name in "AB":
                port = free_port()
                args = ["--model", str(model), "--alias", DEFAULT_MODEL, *ENGINE_ARGS, "--host", "127.0.0.1", "--port", str(port)]
                engines[name] = start_direct(Path(engine), args, Path(tmp) / f"{name}.log")
                wait_until_serving(engines[name], f"http://127.0.0.1:{port}/health", bench.ENGINE_LOAD_TIMEOUT_S)
                clients[name] = open_client(f"http://127.0.0.1:{port}/v1", 1, "none")
                for _ in range(3):
                    chat(clients[name], max_tokens=1)
            differences = []
            for round_ in range(rounds):
                order = pattern if round_ % 2 == 0 else pattern[::-1]
                latencies = [(name, chat(clients[name], max_tokens=1)) for name in order]
                mean = {name: statistics.mean(ms for n, ms in latencies if n == name) for name in "AB"}
                differences.append(mean["B"] - mean["A"])
            print(f"{pattern}: B − A, median over {rounds} rounds: {statistics.median(differences):+.2f} ms")
        finally:
            for process in engines.values():
                stop_process(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
