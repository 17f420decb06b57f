#!/usr/bin/env python3
"""Pull throughput: `bodhi pull` against curl, fetching the same file from the same local Hub.

Run from the repository root with the test virtualenv (scripts/bootstrap --test):

    $(scripts/bootstrap --print-venv)/bin/python bench/pull_bench.py [--size-mib 1024] [--runs 5] [--json out.json]

A Hub on 127.0.0.1 (tests/e2e/fake_hub.py, bodies sent with sendfile) serves one file. Each run,
alternating which goes first:
  - curl:  `curl -L -H 'Authorization: Bearer …' -o FILE {endpoint}/{repo}/resolve/main/{file}`
           (follows the redirect to the file host and writes the file, nothing more);
  - bodhi: `bodhi pull {repo}:Q4_0` with no server running, into an empty HF_HOME: asks the Hub
           API, resolves, downloads, hashes (SHA-256), fsyncs, renames and links the blob.
Both write to the same file system; outputs are deleted after each run. Reports MB/s per tool
(median and spread) and the ratio bodhi / curl per run pair.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from bodhi_process import bodhi_binary  # noqa: E402
from fake_hub import FakeHub  # noqa: E402

TOKEN = "hf_bench"
REPO = "bench-org/big-GGUF"
FILE = "big.Q4_0.gguf"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        print("curl is required (apt-get install curl)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bodhi-pull-bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        source = work / "source.gguf"
        block = os.urandom(1 << 20)
        with open(source, "wb") as f:
            f.write(b"GGUF")
            for _ in range(args.size_mib):
                f.write(block)
        size = source.stat().st_size
        hub = FakeHub(work)
        hub.add_repo(REPO, {FILE: source}, token=TOKEN)
        source.unlink()
        url = f"{hub.endpoint}/{REPO}/resolve/main/{FILE}"

        def run_curl(i: int) -> float:
            out = work / f"curl-{i}.gguf"
            start = time.perf_counter()
            subprocess.run(["curl", "-sSfL", "-H", f"Authorization: Bearer {TOKEN}", "-o", str(out), url], check=True)
            elapsed = time.perf_counter() - start
            assert out.stat().st_size == size
            out.unlink()
            return elapsed

        def run_bodhi(i: int) -> float:
            home, hf = work / f"home-{i}", work / f"hf-{i}"
            env = os.environ | {"BODHI_HOME": str(home), "HF_HOME": str(hf), "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN}
            start = time.perf_counter()
            subprocess.run([str(bodhi_binary()), "pull", f"{REPO}:Q4_0", "--quiet", "--port", "1"],
                           env=env, check=True, stdout=subprocess.DEVNULL)
            elapsed = time.perf_counter() - start
            blobs = list((hf / "hub" / "models--bench-org--big-GGUF" / "blobs").iterdir())
            assert len(blobs) == 1 and blobs[0].stat().st_size == size
            shutil.rmtree(home)
            shutil.rmtree(hf)
            return elapsed

        run_curl(-1)  # warm the page cache and both code paths
        run_bodhi(-1)
        curl_s, bodhi_s = [], []
        for i in range(args.runs):
            order = [(run_curl, curl_s), (run_bodhi, bodhi_s)]
            for run, samples in (order if i % 2 == 0 else order[::-1]):
                samples.append(run(i))
        hub.close()

    mb = size / 1e6
    curl_rate = [mb / s for s in curl_s]
    bodhi_rate = [mb / s for s in bodhi_s]
    ratios = [b / c for b, c in zip(bodhi_rate, curl_rate)]
    result = {
        "size_bytes": size, "runs": args.runs,
        "curl_mb_s": {"median": statistics.median(curl_rate), "min": min(curl_rate), "max": max(curl_rate)},
        "bodhi_mb_s": {"median": statistics.median(bodhi_rate), "min": min(bodhi_rate), "max": max(bodhi_rate)},
        "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
        "samples_s": {"curl": curl_s, "bodhi": bodhi_s},
    }
    print(f"| pull of {size / 2**20:.0f} MiB, {args.runs} runs | median | min | max |")
    print("|---|---|---|---|")
    for name, key in (("curl MB/s", "curl_mb_s"), ("bodhi pull MB/s", "bodhi_mb_s"), ("bodhi / curl", "ratio")):
        r = result[key]
        print(f"| {name} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
