#!/usr/bin/env python3
"""Bodhi's overhead: its /v1 API against the very same llama-server run directly.

Run from the repository root with the test virtualenv (scripts/bootstrap --test):

    $(scripts/bootstrap --print-venv)/bin/python bench/bench.py [--quick] [--json results.json]

Steps:
  1. Start `bodhi serve` exactly as the e2e tests do and warm the default model with one request.
  2. Read that engine's llama-server arguments from GET /bodhi/v1/engines and start a second
     llama-server ("direct") with them, on its own port and without --api-key; wait for /health.
  3. Measure the targets interleaved, one request each in turn, always in the same order, so that
     drift such as thermal throttling or background load hits them alike, and each engine is used
     at the same pace (see "Each target its own engine" below):
       - latency: N sequential non-stream chat requests, max_tokens=1, one per target in turn -> p50/p95,
                  and the added latency as the median of the paired differences (each Bodhi request
                  against the direct request sent next to it), which drift on the machine cancels out of;
       - stream:  M sequential streaming requests, max_tokens=128, ignore_eos (constant length) ->
                  per-request decode rate (content chunks - 1) / (last - first content chunk time),
                  median, and Bodhi / direct;
       - aggregate: R rounds of C concurrent such streams -> content chunks / wall time, median, ratio.
  4. Where nginx is installed (`scripts/bootstrap --bench` installs Debian's nginx-light), a third target:
     nginx as a plain reverse proxy (kept-alive upstream connections, no buffering) in front of a
     third llama-server started like the direct one, measured in the same interleaved way: what a
     lean C proxy costs on this machine, the floor for any proxy's overhead here.

Each target its own engine: how fast llama-server answers depends on how recently it last worked
(its threads spin for a while after a batch, then sleep). An engine that takes two requests of every
three answered 0.6-0.9 ms sooner than an identical one taking the third (bench/cadence.py), so when
nginx shared the direct engine, the direct and nginx targets had a warmer engine than Bodhi's. Now
every target has an engine of its own, each used once per turn. Two engines started alike still
differ by up to 0.3 ms either way from one start to the next, which only repeated runs average out.
All targets get raw httpx with one keep-alive client each, so client overhead is small and identical.
Prints a Markdown table; --json also writes the results and raw samples. Every server started is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from bodhi_process import (  # noqa: E402
    DEFAULT_MODEL,
    REPO_ROOT,
    BodhiServer,
    free_port,
    poll_until,
    stop_process,
    tail,
    wait_until_serving,
)

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]
REQUEST_TIMEOUT_S = 120.0
ENGINE_LOAD_TIMEOUT_S = 120.0
# One request per target in turn: on a shared machine the load changes from one 100 ms to the next,
# so only requests sent side by side see the same machine.
LATENCY_BATCH = 1
STREAM_TOKENS = 128


class Target(NamedTuple):
    name: str
    client: httpx.Client  # base_url ends in /v1


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on SIGTERM too
    with tempfile.TemporaryDirectory(prefix="bodhi-bench-") as tmp:
        workdir = Path(tmp)
        # Limits far above the workload: the rate limiter runs on every request but never refuses one.
        generous = "inference=100000000/m management=100000000/m tokens=1000000000/m"
        bodhi = BodhiServer(workdir, env={"BODHI_RATE_LIMIT_POWER_USER": generous, "BODHI_RATE_LIMIT_IP": "all=100000000/m"})
        bodhi.start()  # stops itself and reports its log if it fails
        direct: subprocess.Popen | None = None
        nginx: subprocess.Popen | None = None
        nginx_engine: subprocess.Popen | None = None
        direct_log = workdir / "llama-server.log"
        nginx_engine_log = workdir / "llama-server-nginx.log"
        try:
            bodhi_client = open_client(bodhi.api_url, args.concurrency, bodhi.token)
            chat(bodhi_client, max_tokens=1)  # loads the model
            engine = poll_until(
                lambda: next(
                    (e for e in bodhi.engines() if e["model"] == DEFAULT_MODEL and e["state"] == "ready"), None
                ),
                ENGINE_LOAD_TIMEOUT_S,
                "Bodhi's engine to be ready",
            )
            port = free_port()
            direct = start_direct(args.llama_server, direct_args(engine["args"], port), direct_log)
            wait_until_serving(direct, f"http://127.0.0.1:{port}/health", ENGINE_LOAD_TIMEOUT_S)
            same_length_token = "x" * len(bodhi.token)
            targets = [
                Target("bodhi", bodhi_client),
                Target("direct", open_client(f"http://127.0.0.1:{port}/v1", args.concurrency, same_length_token)),
            ]
            pids = {"bodhi": bodhi.proc.pid}
            nginx_binary = None if args.no_nginx else find_nginx()
            if nginx_binary:
                upstream_port = free_port()
                nginx_engine = start_direct(args.llama_server, direct_args(engine["args"], upstream_port), nginx_engine_log)
                wait_until_serving(nginx_engine, f"http://127.0.0.1:{upstream_port}/health", ENGINE_LOAD_TIMEOUT_S)
                nginx, nginx_port = start_nginx(nginx_binary, upstream_port, workdir)
                wait_until_serving(nginx, f"http://127.0.0.1:{nginx_port}/health", 30)
                targets.append(Target("nginx", open_client(f"http://127.0.0.1:{nginx_port}/v1", args.concurrency, same_length_token)))
                pids["nginx"] = nginx.pid
            results = run_benchmarks(targets, args, pids)
        except BaseException:
            print(f"--- bodhi log ---\n{bodhi.log_tail()}", file=sys.stderr)
            if direct is not None:
                print(f"--- llama-server log ---\n{tail(direct_log)}", file=sys.stderr)
            raise
        finally:
            for process in (nginx, nginx_engine, direct):
                if process is not None:
                    stop_process(process)
            bodhi.stop()

    report = {
        "config": {
            "model": DEFAULT_MODEL,
            "latency_requests": args.latency_requests,
            "stream_requests": args.stream_requests,
            "concurrency": args.concurrency,
            "aggregate_rounds": args.rounds,
            "stream_tokens": STREAM_TOKENS,
            "llama_server": str(args.llama_server),
            "engine_args": engine["args"],
            "cpus": os.cpu_count(),
        },
        **results,
    }
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency-requests", "-n", type=int, default=200, help="non-stream requests per target (200)")
    p.add_argument("--stream-requests", "-m", type=int, default=20, help="sequential streams per target (20)")
    p.add_argument("--concurrency", "-c", type=int, default=8, help="concurrent streams in the aggregate test (8)")
    p.add_argument("--rounds", "-r", type=int, default=5, help="aggregate rounds per target (5)")
    p.add_argument("--quick", action="store_true", help="smoke run: N=20, M=3, one aggregate round")
    p.add_argument("--phase-timeout", type=float, default=600, help="seconds per phase before it stops early (600)")
    p.add_argument("--json", type=Path, help="write results as JSON here")
    p.add_argument("--llama-server", type=Path, help="llama-server binary (default: scripts/bootstrap --print-engine)")
    p.add_argument("--no-nginx", action="store_true", help="leave out the nginx reference proxy")
    args = p.parse_args()
    if args.quick:
        args.latency_requests, args.stream_requests, args.rounds = 20, 3, 1
    if args.llama_server is None:
        printed = subprocess.run(
            [REPO_ROOT / "scripts" / "bootstrap", "--print-engine"], check=True, capture_output=True, text=True
        )
        args.llama_server = Path(printed.stdout.strip())
    if not args.llama_server.is_file():
        p.error(f"llama-server not found at {args.llama_server} (run scripts/bootstrap)")
    return args


def direct_args(engine_args: list[str], port: int) -> list[str]:
    """Bodhi's engine arguments, minus --api-key, listening on 127.0.0.1:`port`."""
    args, i = [], 0
    while i < len(engine_args):
        if engine_args[i] in ("--api-key", "--port", "--host"):
            i += 2  # the flag and its value
            continue
        args.append(engine_args[i])
        i += 1
    if "<redacted>" in args:
        raise ValueError(f"unexpected redacted value in engine args: {engine_args}")
    return args + ["--host", "127.0.0.1", "--port", str(port)]


def start_direct(binary: Path, args: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen([str(binary), *args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def find_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def start_nginx(binary: str, upstream_port: int, workdir: Path) -> tuple[subprocess.Popen, int]:
    """nginx as a plain reverse proxy to the llama-server on `upstream_port`: one process, kept-alive upstream
    connections, no buffering (so streamed tokens pass at once), every file in `workdir`."""
    port = free_port()
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"};
events {{ worker_connections 1024; }}
http {{
  access_log off;
  {temp}
  upstream engine {{ server 127.0.0.1:{upstream_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64m;
    location / {{
      proxy_pass http://engine;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 300s;
    }}
  }}
}}
""")
    with open(prefix / "stdout.log", "wb") as log:
        process = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    return process, port


def open_client(base_url: str, concurrency: int, token: str) -> httpx.Client:
    # A bearer token of the same length for both (the direct server ignores it), so request sizes match.
    # No compression: llama-server does not compress, and its cost is measured apart (gateway_bench.py).
    return httpx.Client(
        base_url=base_url,
        timeout=REQUEST_TIMEOUT_S,
        headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"},
        limits=httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2),
    )


def chat_body(max_tokens: int, stream: bool) -> dict:
    body = {"model": DEFAULT_MODEL, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0}
    if stream:
        body |= {"stream": True, "ignore_eos": True}
    return body


def chat(client: httpx.Client, max_tokens: int) -> float:
    """One non-stream request; returns its latency in ms."""
    start = time.perf_counter()
    response = client.post("/chat/completions", json=chat_body(max_tokens, stream=False))
    response.raise_for_status()
    response.json()
    return (time.perf_counter() - start) * 1000


def stream(client: httpx.Client) -> list[float]:
    """One streaming request; returns the arrival time of each chunk that carries content."""
    times = []
    with client.stream("POST", "/chat/completions", json=chat_body(STREAM_TOKENS, stream=True)) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(f"stream error: {event['error']}")
            if any((c.get("delta") or {}).get("content") for c in event.get("choices") or []):
                times.append(time.perf_counter())
    return times


def decode_rate(times: list[float]) -> float:
    # n chunks span n - 1 inter-token intervals; the first chunk's wait is prompt processing.
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("nan")


def aggregate_rate(client: httpx.Client, concurrency: int) -> float:
    with ThreadPoolExecutor(concurrency) as pool:
        start = time.perf_counter()
        chunks = sum(len(times) for times in pool.map(lambda _: stream(client), range(concurrency)))
        return chunks / (time.perf_counter() - start)


def interleaved(
    targets: list[Target], count: int, batch: int, measure: Callable[[httpx.Client], float], timeout: float
):
    """`count` measurements per target in batches, the targets always in the same order (so that each
    engine is used at the same pace); stops early after `timeout` s."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    deadline = time.monotonic() + timeout
    for round_ in range(math.ceil(count / batch)):
        for target in targets:
            for _ in range(min(batch, count - round_ * batch)):
                if time.monotonic() > deadline:
                    return samples, True
                samples[target.name].append(measure(target.client))
    return samples, False


def cpu_seconds(pid: int) -> float:
    """CPU time of a process so far: the scheduler's run time of each of its threads, to the
    nanosecond (/proc/<pid>/task/*/schedstat; /proc/<pid>/stat counts in 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def run_benchmarks(targets: list[Target], args: argparse.Namespace, pids: dict[str, int]) -> dict:
    for target in targets:  # warm connections and prompt caches alike
        for _ in range(3):
            chat(target.client, max_tokens=1)
        stream(target.client)

    # Each proxy's own CPU time per request and per streamed event: on a machine where the engine
    # keeps every core busy, this is what the proxy takes from it. (A proxy idles while the other
    # targets are measured, so the phase totals are its work for its own requests.)
    def cpu_now() -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    cpu_before = cpu_now()
    latency, latency_cut = interleaved(
        targets, args.latency_requests, LATENCY_BATCH, lambda c: chat(c, max_tokens=1), args.phase_timeout
    )
    cpu_after = cpu_now()
    cpu_per_request = {name: (cpu_after[name] - cpu_before[name]) / max(1, len(latency[name])) for name in pids}

    clients = {id(target.client): target.name for target in targets}
    events = {name: 0 for name in pids}
    stream_cpu = {name: 0.0 for name in pids}

    # A stream's CPU is its proxy's over that stream alone (a stream takes a second or two, a CPU
    # reading a millisecond): what a proxy does in the background while the other targets stream
    # (Bodhi's timers, about a millisecond a second) is no cost of an event.
    def counted_stream_rate(client: httpx.Client) -> float:
        name = clients[id(client)]
        before = cpu_seconds(pids[name]) if name in pids else 0.0
        times = stream(client)
        if name in pids:
            stream_cpu[name] += cpu_seconds(pids[name]) - before
            events[name] += len(times)
        return decode_rate(times)

    streams, stream_cut = interleaved(targets, args.stream_requests, 1, counted_stream_rate, args.phase_timeout)
    cpu_per_event = {name: stream_cpu[name] / max(1, events[name]) for name in pids}
    aggregate, aggregate_cut = interleaved(
        targets, args.rounds, 1, lambda c: aggregate_rate(c, args.concurrency), args.phase_timeout
    )
    pairs = min(len(s) for s in latency.values())
    return {
        "latency_ms": {
            name: {"p50": percentile(s, 50), "p95": percentile(s, 95), "samples": s} for name, s in latency.items()
        },
        "added_latency_ms": {
            name: median([latency[name][i] - latency["direct"][i] for i in range(pairs)]) for name in pids
        },
        # Bodhi against the reference proxy measured in the same turns: what Bodhi costs beyond the
        # hops any proxy adds on this machine.
        "bodhi_beyond_nginx_ms": (
            median([latency["bodhi"][i] - latency["nginx"][i] for i in range(pairs)]) if "nginx" in latency else None
        ),
        "stream_tokens_per_s": {name: {"median": median(s), "samples": s} for name, s in streams.items()},
        "aggregate_tokens_per_s": {name: {"median": median(s), "samples": s} for name, s in aggregate.items()},
        "proxy_cpu_us": {
            name: {"per_request": cpu_per_request[name] * 1e6, "per_stream_event": cpu_per_event[name] * 1e6}
            for name in pids
        },
        "stopped_early": [
            phase
            for phase, cut in (("latency", latency_cut), ("stream", stream_cut), ("aggregate", aggregate_cut))
            if cut
        ],
    }


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks; NaN when there is no data."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def markdown(report: dict) -> str:
    cfg = report["config"]
    lat, st, agg = report["latency_ms"], report["stream_tokens_per_s"], report["aggregate_tokens_per_s"]
    proxies = [name for name in ("bodhi", "nginx") if name in lat]
    n_latency, n_stream = len(lat["bodhi"]["samples"]), len(st["bodhi"]["samples"])
    rows = [
        (f"non-stream latency p50, ms (n={n_latency})", {name: lat[name]["p50"] for name in lat}),
        (f"non-stream latency p95, ms (n={n_latency})", {name: lat[name]["p95"] for name in lat}),
        (f"stream decode tokens/s, median (n={n_stream})", {name: st[name]["median"] for name in st}),
        (f"aggregate tokens/s, {cfg['concurrency']} streams, median", {name: agg[name]["median"] for name in agg}),
    ]
    label = {"bodhi": "Bodhi", "nginx": "nginx"}
    header = "| metric | direct | " + " | ".join(
        f"{label[p]} | {label[p]} − direct | {label[p]} / direct" for p in proxies) + " |"
    lines = [
        f"Model {cfg['model']}, {cfg['cpus']} CPUs, {cfg['stream_tokens']} tokens per stream.",
        "",
        header,
        "|---|---:|" + "---:|---:|---:|" * len(proxies),
    ]
    for name, values in rows:
        direct = values["direct"]
        cells = [f"{direct:.2f}"]
        for proxy in proxies:
            value = values[proxy]
            cells += [f"{value:.2f}", f"{value - direct:+.2f}", f"{value / direct if direct else math.nan:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    # The drift-free estimate goes in the difference column; the others have no counterpart.
    cells = [""] + [cell for proxy in proxies for cell in ("", f"{report['added_latency_ms'][proxy]:+.2f}", "")]
    lines.append("| added latency, median of paired differences, ms | " + " | ".join(cells) + " |")
    lines.append("")
    if report.get("bodhi_beyond_nginx_ms") is not None:
        lines += [f"Bodhi − nginx, median of paired differences: {report['bodhi_beyond_nginx_ms']:+.2f} ms.", ""]
    for proxy in proxies:
        cpu = report["proxy_cpu_us"][proxy]
        lines.append(
            f"{label[proxy]}'s own CPU time: {cpu['per_request']:.0f} µs per non-stream request, "
            f"{cpu['per_stream_event']:.0f} µs per streamed event."
        )
    if "nginx" not in lat:
        lines += ["", "(nginx not found: no reference proxy in this run; `scripts/bootstrap --bench` installs it.)"]
    if report["stopped_early"]:
        lines += ["", f"Stopped early (phase timeout): {', '.join(report['stopped_early'])}."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
