"""Seconds per step and peak RSS of the demo's two trainings (target: both under 5 min, RSS under 6 GB).

    .venv/bin/python benchmarks/train_demo.py [--config configs/demo.yaml] [--json OUT]

Runs linear and sigmoid-bayes (tuner proxies included) in one process into a fresh temporary folder,
after the base model has been prepared (its one-time dequantization is timed separately).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.config import load_config  # noqa: E402
from tasks.data.base_model import prepare_base_model  # noqa: E402
from tasks.environment import cache_root
from tasks.train.variant import train_variant  # noqa: E402


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = load_config(args.config)
    start = time.perf_counter()
    prepare_base_model(config.base_model, cache_root())
    results = {"config": str(args.config), "base_model_prepare_s": round(time.perf_counter() - start, 1)}
    with tempfile.TemporaryDirectory(prefix="alphagate-bench-") as tmp:
        total = time.perf_counter()
        for variant in ("linear", "sigmoid-bayes"):
            t0 = time.perf_counter()
            run = train_variant(config, variant, Path(tmp) / variant, cache_dir=cache_root())
            results[variant] = {"wall_s": round(time.perf_counter() - t0, 1), "steps": run["steps"],
                                "seconds_per_step": run["seconds_per_step"],
                                "final_eval_loss": round(run["final_eval_loss"], 4),
                                "proxy_runs": run.get("tuner", {}).get("trials_this_run", 0)}
        results["both_trainings_s"] = round(time.perf_counter() - total, 1)
    results["peak_rss_gib"] = round(peak_rss_gib(), 2)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
