"""Wall time of the demo's two trainings (linear, sigmoid-bayes with its tuner) with 1 and with 2 training slots.

    .venv/bin/python benchmarks/train_slots.py [--config configs/demo.yaml] [--slots 1 2] [--json OUT]

Each setting trains both arms through the flow's own training task (each training in a process of its own, holding
one of this machine's slots; tasks/model_slots.py) into a fresh folder, so the tuner runs in full every time.
Reported per setting: the wall time of both trainings, and per training its own interval and peak RSS as the training
recorded them (<out>/logs/trainings.jsonl); then whether the trained weights are the same bytes in every setting.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("linear", "sigmoid-bayes")


def _weights(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("gates.safetensors", "adapter/adapter_model.safetensors"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def run(config: Path, slots: int, root: Path, cache: Path) -> dict:
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.stages import base_model_task, prepare_data_task, train_task
    from tasks.config import load_config
    from tasks.model_slots import threads_per_slot

    # the stages are handed the validated config: this one with this slot count
    spec = load_config(config)
    spec = spec.model_copy(update={"orchestration": spec.orchestration.model_copy(update={"train_slots": slots})})

    @flow(name=f"bench-train-slots-{slots}", task_runner=ThreadPoolTaskRunner(max_workers=slots + 2))
    def both() -> tuple[list, float]:
        data, base = prepare_data_task(spec.data, str(root)), base_model_task(spec.base_model, str(cache))
        start = time.perf_counter()
        futures = [train_task.submit(spec, v, data, base, str(root)) for v in VARIANTS]
        refs = [f.result() for f in futures]
        return refs, time.perf_counter() - start

    refs, wall = both()
    journal = [json.loads(x) for x in (root / "logs" / "trainings.jsonl").read_text().splitlines()]
    t0 = min(r["started"] for r in journal)
    runs = {r["variant"]: {"started_s": round(r["started"] - t0, 1), "ended_s": round(r["ended"] - t0, 1),
                           "wall_s": round(r["ended"] - r["started"], 1), "peak_rss_mib": r["peak_rss_mib"]}
            for r in journal}
    ordered = sorted(journal, key=lambda r: r["started"])
    return {"slots": slots, "torch_threads_each": threads_per_slot(slots), "both_trainings_s": round(wall, 1),
            "overlap": ordered[1]["started"] < ordered[0]["ended"], "trainings": runs,
            "weights": {Path(ref.path).name[:12]: _weights(Path(ref.path)) for ref in refs}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cache", type=Path, default=None, help="base-model cache (default: the project's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import os

    from tasks.environment import cache_root

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    cache = args.cache or cache_root()
    results = []
    with tempfile.TemporaryDirectory(prefix="alphagate-slots-") as tmp:
        for slots in args.slots:
            results.append(run(args.config.resolve(), slots, Path(tmp) / f"slots{slots}", cache))
    identical = len({json.dumps(r["weights"], sort_keys=True) for r in results}) == 1
    print(f"{'slots':>5} {'threads':>7} {'both (s)':>9}  per training: interval (s), peak RSS")
    for r in results:
        each = ", ".join(f"{v} {t['started_s']:.0f}-{t['ended_s']:.0f} ({t['wall_s']:.0f} s) "
                         f"{t['peak_rss_mib']:.0f} MiB" for v, t in r["trainings"].items())
        print(f"{r['slots']:>5} {r['torch_threads_each']!s:>7} {r['both_trainings_s']:>9.1f}  {each}"
              f"{'  (overlapping)' if r['overlap'] else ''}")
    print(f"trained weights identical across settings: {identical}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "identical_weights": identical}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
