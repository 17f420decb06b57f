#!/usr/bin/env python3
"""The gateway under load, each measurement with its baseline in the same run:

  1. wrk, 1000 connections: an authenticated GET /v1/models (token check, rate limiter, model list)
     against GET /ping (no auth, no limiter) on the same server -> p50/p95/p99, errors, ratio;
  2. fairness, one slot: a light user's request latency while a heavy user keeps 8 streams queued,
     against the same request with nobody else -> ratio, and how many heavy requests it waited for;
  3. compression: /openapi.json and a 128-token SSE stream uncompressed, gzip, br and zstd -> bytes ratio and
     added latency (p50);
  4. unknown model names: /ping and a small chat while 200 requests a second (from wrk) name models
     that do not exist (each a lookup that finds nothing), against the same with nobody asking and
     with as many GET /ping a second (what that much traffic costs the machine anyway) ->
     p50/p99 of each and their ratios.

Run from the repository root with the test virtualenv and wrk installed (`make bench` does both):

    $(scripts/bootstrap --print-venv)/bin/python bench/gateway_bench.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from bodhi_process import DEFAULT_MODEL, BodhiServer  # noqa: E402

from bench import cpu_seconds  # noqa: E402  (bench.py beside this file)

HERE = Path(__file__).resolve().parent
# Limits high enough never to refuse the benchmark, so that the limiter runs but does not shape the result.
GENEROUS = "inference=100000000/m management=100000000/m tokens=1000000000/m"
HELLO = [{"role": "user", "content": "Write a short poem about the sea."}]


def main() -> int:
    args = parse_args()
    report: dict = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bodhi-gateway-bench-") as tmp:
        env = {"BODHI_RATE_LIMIT_POWER_USER": GENEROUS, "BODHI_RATE_LIMIT_USER": GENEROUS,
               "BODHI_RATE_LIMIT_IP": "all=100000000/m auth=60/m", "BODHI_PARALLEL": "1", "BODHI_LOG_LEVEL": "warning"}
        with BodhiServer(Path(tmp), binary=Path(args.bodhi) if args.bodhi else None, env=env) as server:
            if args.only in (None, "wrk"):
                report["wrk"] = wrk_phase(server, args, args.connections)
                report["wrk_100"] = wrk_phase(server, args, 100)
            if args.only in (None, "compression"):
                report["compression"] = compression_phase(server, args)
            if args.only in (None, "fairness"):
                report["fairness"] = fairness_phase(server, args)
            if args.only in (None, "unknown_names"):
                report["unknown_names"] = unknown_names_phase(server, args)
    print(markdown(report) if args.only is None else json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases, for a smoke run")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--bodhi", help="the bodhi binary (default: BODHI_BIN or .build/debug/bodhi)")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--only", choices=["wrk", "compression", "fairness", "unknown_names"], help="run this phase alone")
    return parser.parse_args()


# 1. wrk ------------------------------------------------------------------------------------------

def wrk(url: str, connections: int, seconds: int, headers: dict[str, str]) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(HERE / "wrk_report.lua")]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    report = json.loads(output[output.index("WRK_JSON ") + 9:].splitlines()[0])
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    report["socket_errors"] = sum(map(int, socket_errors.groups())) if socket_errors else 0
    return report


def wrk_phase(server: BodhiServer, args: argparse.Namespace, connections: int) -> dict:
    seconds = 3 if args.quick else 10
    results: dict[str, list[dict]] = {"models": [], "ping": []}
    for _ in range(1 if args.quick else 3):  # interleaved rounds
        results["ping"].append(wrk(f"{server.base_url}/ping", connections, seconds, {}))
        results["models"].append(wrk(f"{server.api_url}/models", connections, seconds, server.auth))

    def summary(runs: list[dict]) -> dict:
        return {
            "requests_per_s": statistics.median(r["requests"] / r["duration_s"] for r in runs),
            "p50_ms": statistics.median(r["p50_us"] for r in runs) / 1000,
            "p95_ms": statistics.median(r["p95_us"] for r in runs) / 1000,
            "p99_ms": statistics.median(r["p99_us"] for r in runs) / 1000,
            "errors": sum(r["non_2xx"] + r["socket_errors"] for r in runs),
            "requests": sum(r["requests"] for r in runs),
        }

    models, ping = summary(results["models"]), summary(results["ping"])
    return {"connections": connections, "seconds": seconds, "models": models, "ping": ping,
            "p95_ratio": models["p95_ms"] / ping["p95_ms"] if ping["p95_ms"] else None}


# 2. compression ------------------------------------------------------------------------------------

def compression_phase(server: BodhiServer, args: argparse.Namespace) -> dict:
    rounds = 20 if args.quick else 100
    results = {}
    with httpx.Client(base_url=server.base_url, headers=server.auth, timeout=120) as http:
        for name in ("identity",) + ENCODINGS:
            encoding = name
            times, sizes = [], []
            for _ in range(rounds):
                started = time.perf_counter()
                with http.stream("GET", "/openapi.json", headers={"Accept-Encoding": encoding}) as response:
                    size = sum(len(chunk) for chunk in response.iter_raw())
                times.append(time.perf_counter() - started)
                sizes.append(size)
            results[f"openapi_{name}"] = {"p50_ms": statistics.median(times) * 1000, "bytes": sizes[0]}
        stream_rounds = 3 if args.quick else 10
        body = {"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 128, "stream": True, "ignore_eos": True}
        http.post("/v1/chat/completions", json=body | {"stream": False, "max_tokens": 1})  # load the model
        for name in (("identity",) + ENCODINGS) * stream_rounds:
            encoding = name
            cpu_before = cpu_seconds(server.proc.pid)
            with http.stream("POST", "/v1/chat/completions", json=body, headers={"Accept-Encoding": encoding}) as response:
                size = sum(len(chunk) for chunk in response.iter_raw())
            entry = results.setdefault(f"stream_{name}", {"bytes": [], "cpu_ms_per_event": []})
            entry["bytes"].append(size)
            entry["cpu_ms_per_event"].append(cpu_seconds(server.proc.pid) - cpu_before)
    for name in ("identity",) + ENCODINGS:
        # CPU time comes in clock ticks: summed over every stream, per event (128 tokens, a role and a finish event).
        entry = results[f"stream_{name}"]
        entry["cpu_ms_per_event"] = sum(entry["cpu_ms_per_event"]) * 1000 / (130 * stream_rounds)
        entry["bytes"] = statistics.median(entry["bytes"])
    for name in ENCODINGS:
        results[f"openapi_{name}"]["ratio"] = results[f"openapi_{name}"]["bytes"] / results["openapi_identity"]["bytes"]
        results[f"stream_{name}"]["ratio"] = results[f"stream_{name}"]["bytes"] / results["stream_identity"]["bytes"]
    return results


# What Bodhi compresses with, each asked for alone.
ENCODINGS = ("gzip", "br", "zstd")


# 3. fairness ---------------------------------------------------------------------------------------

def light_request(server: BodhiServer, token: str) -> float:
    started = time.perf_counter()
    response = httpx.post(f"{server.api_url}/chat/completions", headers={"Authorization": f"Bearer {token}"},
                          json={"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 16, "ignore_eos": True}, timeout=300)
    response.raise_for_status()
    return time.perf_counter() - started


def fairness_phase(server: BodhiServer, args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
    from test_gateway import make_user_token

    light_token = make_user_token(server, "light")
    rounds = 3 if args.quick else 8
    alone = [light_request(server, light_token) for _ in range(rounds)]
    stop = threading.Event()
    heavy_done = []

    def heavy_worker() -> None:
        with httpx.Client(headers=server.auth, timeout=600) as http:
            while not stop.is_set():
                http.post(f"{server.api_url}/chat/completions",
                          json={"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 48, "ignore_eos": True})
                heavy_done.append(time.perf_counter())

    workers = [threading.Thread(target=heavy_worker, daemon=True) for _ in range(8)]
    for worker in workers:
        worker.start()
    time.sleep(2)
    loaded, waited_for = [], []
    for _ in range(rounds):
        before = len(heavy_done)
        loaded.append(light_request(server, light_token))
        waited_for.append(len(heavy_done) - before)
        time.sleep(0.5)
    stop.set()
    for worker in workers:
        worker.join(600)
    # With one slot, heavy requests finish one at a time: the gap between finishes is one's service time.
    gaps = [later - earlier for earlier, later in zip(heavy_done, heavy_done[1:])]
    heavy_time = statistics.median(gaps) if gaps else float("nan")
    return {
        "rounds": rounds,
        "alone_p50_s": statistics.median(alone),
        "loaded_p50_s": statistics.median(loaded),
        "loaded_max_s": max(loaded),
        "ratio_p50": statistics.median(loaded) / statistics.median(alone),
        "heavy_requests_finished_meanwhile_median": statistics.median(waited_for),
        "heavy_service_s": heavy_time,
        "fifo_estimate_s": heavy_time * 8,
    }


# 4. unknown model names --------------------------------------------------------------------------

def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def probe_latencies(server: BodhiServer, seconds: float) -> dict:
    """/ping every 20 ms and a 16-token chat back to back, for `seconds`: their latencies in ms."""
    pings: list[float] = []
    chats: list[float] = []
    deadline = time.perf_counter() + seconds

    def chat_loop() -> None:
        with httpx.Client(headers=server.auth, timeout=120) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                http.post(f"{server.api_url}/chat/completions",
                          json={"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 16, "ignore_eos": True}).raise_for_status()
                chats.append((time.perf_counter() - started) * 1000)

    chatter = threading.Thread(target=chat_loop)
    chatter.start()
    with httpx.Client(timeout=30) as http:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            http.get(f"{server.base_url}/ping").raise_for_status()
            pings.append((time.perf_counter() - started) * 1000)
            time.sleep(max(0.0, 0.02 - (time.perf_counter() - started)))
    chatter.join(300)
    return {"ping_p50_ms": statistics.median(pings), "ping_p99_ms": percentile(pings, 0.99), "pings": len(pings),
            "chat_p50_ms": statistics.median(chats), "chat_p99_ms": percentile(chats, 0.99), "chats": len(chats)}


def paced_load(server: BodhiServer, seconds: int, unknown_names: bool) -> tuple[dict, dict, float]:
    """The probes while wrk, in a process of its own, keeps up about 200 requests a second: chats
    naming models that do not exist, or GET /ping (the baseline: what that many requests cost the
    machine whatever they ask). A load generator in this process would take the GIL from the
    probes, and Python's HTTP client the CPU the engine needs, both counted against Bodhi.
    Returns the probes' latencies, wrk's summary, and Bodhi's CPU seconds meanwhile."""
    rate, connections = 200, 4
    url = f"{server.base_url}/v1/chat/completions" if unknown_names else f"{server.base_url}/ping"
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(HERE / "wrk_paced.lua"), url]
    env = {**os.environ, "BODHI_TOKEN": server.token, "BODHI_UNKNOWN_NAMES": "1" if unknown_names else "0",
           "BODHI_DELAY_MS": str(max(1, round(1000 * connections / rate) - 1))}
    before = cpu_seconds(server.proc.pid)
    load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    probes = probe_latencies(server, seconds)
    output, _ = load.communicate(timeout=seconds + 60)
    cpu = cpu_seconds(server.proc.pid) - before
    return probes, json.loads(output[output.index("WRK_JSON ") + 9:].splitlines()[0]), cpu


def unknown_names_phase(server: BodhiServer, args: argparse.Namespace) -> dict:
    seconds = 5 if args.quick else 15
    # One such request answered as a user would see it: a 404 that names the model.
    sample = httpx.post(f"{server.api_url}/chat/completions", headers=server.auth, timeout=30,
                        json={"model": "nobody/missing:Q4_0", "messages": HELLO})
    before = cpu_seconds(server.proc.pid)
    quiet = probe_latencies(server, seconds)
    quiet_cpu = cpu_seconds(server.proc.pid) - before
    pinged, ping_load, _ = paced_load(server, seconds, unknown_names=False)
    loaded, unknown_load, loaded_cpu = paced_load(server, seconds, unknown_names=True)
    return {
        "seconds": seconds, "unknown_requests": unknown_load["requests"],
        "unknown_per_s": unknown_load["requests"] / unknown_load["duration_s"],
        "ping_load_per_s": ping_load["requests"] / ping_load["duration_s"],
        # wrk counts answers that are not 2xx/3xx; every one should be (the sample says which).
        "unknown_statuses": sorted({sample.status_code, *([200] if unknown_load["non_2xx"] < unknown_load["requests"] else [])}),
        "unknown_p50_ms": unknown_load["p50_us"] / 1000, "unknown_p99_ms": unknown_load["p99_us"] / 1000,
        "quiet": quiet, "ping_loaded": pinged, "loaded": loaded,
        # Bodhi's own CPU: what the unknown names cost it, beyond the probes both phases send.
        "bodhi_cpu_quiet_s": quiet_cpu, "bodhi_cpu_loaded_s": loaded_cpu,
        "bodhi_cpu_us_per_unknown_request": (loaded_cpu - quiet_cpu) / max(1, unknown_load["requests"]) * 1e6,
        "ping_p99_ratio": loaded["ping_p99_ms"] / quiet["ping_p99_ms"],
        "chat_p50_ratio": loaded["chat_p50_ms"] / quiet["chat_p50_ms"],
        "chat_p50_ratio_ping_load": pinged["chat_p50_ms"] / quiet["chat_p50_ms"],
    }


# report --------------------------------------------------------------------------------------------

def markdown(report: dict) -> str:
    c, f, u = report["compression"], report["fairness"], report["unknown_names"]
    lines = [
        "### wrk (2 threads, --timeout 10s so that slow answers count), seconds per run: " + str(report["wrk"]["seconds"]),
        "| connections | route | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for w in (report["wrk"], report["wrk_100"]):
        for name, label in [("models", "GET /v1/models (token, limiter)"), ("ping", "GET /ping (baseline)")]:
            r = w[name]
            lines.append(f"| {w['connections']} | {label} | {r['requests_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                         f"{r['p99_ms']:.2f} | {r['errors']} |")
    lines += [
        "p95 ratio models/ping: " + ", ".join(f"{w['p95_ratio']:.2f} at {w['connections']}" for w in (report["wrk"], report["wrk_100"])),
        "",
        "### fairness (one slot, 8 heavy streams of 48 tokens, light requests of 16)",
        f"light alone p50 {f['alone_p50_s']:.2f} s; under load p50 {f['loaded_p50_s']:.2f} s (max {f['loaded_max_s']:.2f} s), "
        f"ratio {f['ratio_p50']:.2f}; heavy requests finished while a light one waited: {f['heavy_requests_finished_meanwhile_median']} "
        f"(one heavy request takes {f['heavy_service_s']:.2f} s; FIFO behind 8 queued would be ~{f['fifo_estimate_s']:.1f} s)",
        "",
        "### compression (the same run's uncompressed answers as the baseline)",
        "| encoding | /openapi.json bytes | ratio | p50 ms | 128-token SSE bytes | ratio | Bodhi CPU ms per event |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(f"| {name} | {c['openapi_' + name]['bytes']} | {c['openapi_' + name].get('ratio', 1):.3f} | {c['openapi_' + name]['p50_ms']:.2f} | "
          f"{c['stream_' + name]['bytes']:.0f} | {c['stream_' + name].get('ratio', 1):.3f} | {c['stream_' + name]['cpu_ms_per_event']:.3f} |"
          for name in ("identity",) + ENCODINGS),
        "",
        f"### unknown model names ({u['unknown_per_s']:.0f} requests/s for {u['seconds']} s, answered {u['unknown_statuses']})",
        "| | /ping p50 ms | /ping p99 ms | chat p50 ms | chat p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (("quiet", "quiet"), ("ping_loaded", f"{u['ping_load_per_s']:.0f} /ping a second"), ("loaded", "unknown names")):
        r = u[name]
        lines.append(f"| {label} | {r['ping_p50_ms']:.2f} | {r['ping_p99_ms']:.2f} | {r['chat_p50_ms']:.1f} | {r['chat_p99_ms']:.1f} |")
    lines.append(f"ratios loaded/quiet: /ping p99 {u['ping_p99_ratio']:.2f}, chat p50 {u['chat_p50_ratio']:.2f} "
                 f"(under as many /ping requests: {u['chat_p50_ratio_ping_load']:.2f}); "
                 f"Bodhi CPU per unknown-name request {u['bodhi_cpu_us_per_unknown_request']:.0f} µs")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
