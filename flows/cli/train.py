"""`alphagate schedule`, `tune`, `train`, `dpo`: the blend schedules, the tuner by hand, one training, DPO."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.cli.argtypes import blend_base


def add_parsers(sub) -> None:
    _add_schedule(sub)
    _add_tune(sub)
    _add_train(sub)
    _add_dpo(sub)


# -- schedule ------------------------------------------------------------------------------------------------------

def _add_schedule(sub) -> None:
    sch = sub.add_parser("schedule", help="print blend_alpha over training progress for a schedule")
    sch.add_argument("kind", choices=["linear", "sigmoid"])
    sch.add_argument("--start", type=float, default=0.0, help="linear: blend_alpha at progress 0")
    sch.add_argument("--k", type=float, default=10.0, help="sigmoid: steepness (> 0)")
    sch.add_argument("--midpoint", type=float, default=0.5, help="sigmoid: centre in (0, 1)")
    sch.add_argument("--base", type=blend_base, default="phi", help="sigmoid: 'phi' (Phi(-2)), 'zero' or a number")
    sch.add_argument("--points", type=int, default=11, help="how many evenly spaced progress values (>= 2)")
    sch.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sch.set_defaults(func=schedule_command, check=_check_schedule)


def _check_schedule(args: argparse.Namespace) -> str | None:
    return f"--points must be >= 2; got {args.points}" if args.points < 2 else None


def schedule_command(args: argparse.Namespace) -> int:
    from alpha_gate.schedules import LinearSchedule, SigmoidSchedule, sampled

    if args.kind == "linear":
        schedule = LinearSchedule(args.start)
    else:
        schedule = SigmoidSchedule(args.k, args.midpoint, args.base)
    rows = sampled(schedule, args.points)
    if args.json:
        print(json.dumps({"schedule": schedule.to_dict(), "points": rows}, indent=2))
    else:
        print(f"# {schedule}")
        print("progress\tblend_alpha")
        for row in rows:
            print(f"{row['progress']:.4f}\t{row['blend_alpha']:.6f}")
    return 0


# -- tune ----------------------------------------------------------------------------------------------------------

def _add_tune(sub) -> None:
    tune = sub.add_parser("tune", help="ask/tell the Bayesian sigmoid tuner by hand, or show its history")
    tune.add_argument("action", choices=["ask", "tell", "show"])
    tune.add_argument("--history", required=True, help="tuner history JSON (created on first tell)")
    tune.add_argument("--k-bounds", type=float, nargs=2, default=[1.0, 30.0], metavar=("LOW", "HIGH"))
    tune.add_argument("--midpoint-bounds", type=float, nargs=2, default=[0.1, 0.9], metavar=("LOW", "HIGH"))
    tune.add_argument("--base", type=blend_base, default="phi")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--n-initial-points", type=int, default=5)
    tune.add_argument("--k", type=float, help="tell: the schedule's k")
    tune.add_argument("--midpoint", type=float, help="tell: the schedule's midpoint")
    tune.add_argument("--value", type=float, help="tell: the measured objective (lower is better)")
    tune.set_defaults(func=tune_command, check=_check_tune)


def _check_tune(args: argparse.Namespace) -> str | None:
    if args.action == "tell" and None in (args.k, args.midpoint, args.value):
        return "tune tell needs --k, --midpoint and --value"
    return None


def tune_command(args: argparse.Namespace) -> int:
    from alpha_gate.schedules import SigmoidSchedule
    from alpha_gate.tuning import SigmoidBayesTuner

    tuner = SigmoidBayesTuner(tuple(args.k_bounds), tuple(args.midpoint_bounds), args.history, args.seed,
                              base=args.base, n_initial_points=args.n_initial_points)
    if args.action == "ask":
        print(json.dumps(tuner.ask().to_dict()))
    elif args.action == "tell":
        trial = tuner.tell(SigmoidSchedule(args.k, args.midpoint, args.base), args.value)
        print(f"recorded trial {len(tuner.trials)} (k={trial.k:.6g}, midpoint={trial.midpoint:.6g}, "
              f"value={trial.value:.6g}) in {args.history}")
    else:
        for i, t in enumerate(tuner.trials, 1):
            print(f"{i:3d}  k={t.k:10.5g}  midpoint={t.midpoint:.5f}  base={t.base:.5f}  value={t.value:.6g}")
        if tuner.trials:
            print(f"best: {json.dumps(tuner.best().to_dict())}")
        else:
            print("no trials yet")
    return 0


# -- train, dpo ----------------------------------------------------------------------------------------------------

def _add_train(sub) -> None:
    from tasks.train.variant import VARIANTS

    train = sub.add_parser("train", help="train one variant (LoRA + SO(8) gates) from a pipeline config")
    train.add_argument("--config", required=True, type=Path)
    train.add_argument("--variant", required=True, choices=list(VARIANTS))
    train.add_argument("--out", required=True, type=Path, help="the variant's run folder (written atomically)")
    train.add_argument("--cache", type=Path, help="base-model cache (default: $ALPHAGATE_CACHE or ~/.cache/alphagate)")
    train.set_defaults(func=train_command)


def train_command(args: argparse.Namespace) -> int:
    from tasks.config import load_config
    from tasks.environment import cache_root
    from tasks.train.variant import train_variant

    config = load_config(args.config)
    record = train_variant(config, args.variant, args.out, cache_dir=args.cache or cache_root())
    print(f"{args.variant}: validation loss {record['final_eval_loss']:.4f} after {record['steps']} steps "
          f"({record['seconds_per_step']:.2f} s/step, {record['backend']}) -> {args.out}")
    return 0


def _add_dpo(sub) -> None:
    dpo = sub.add_parser("dpo", help="optional DPO stage on a finished SFT run, on pairs of its own answers")
    dpo.add_argument("--run", required=True, type=Path, help="the SFT run folder (alphagate train --out)")
    dpo.add_argument("--out", required=True, type=Path, help="the new run folder, e.g. runs/x/linear+dpo")
    dpo.add_argument("--config", help="take the dpo section from this config (default: the run's own config)")
    dpo.add_argument("--gguf", type=Path, help="sample with llama.cpp from the run's exported BF16 GGUF (much faster "
                                               "on CPU); default: transformers generate on the SFT model")
    dpo.add_argument("--exclude-benchmarks", nargs="*", type=Path, default=[], metavar="DIR",
                     help="folders of benchmark JSONL whose questions must never become training pairs "
                          "(the bundled samples always are)")
    dpo.set_defaults(func=dpo_command)


def dpo_command(args: argparse.Namespace) -> int:
    from tasks.train.dpo import train_dpo

    spec = None
    if args.config:
        from tasks.config import load_config

        spec = load_config(args.config).dpo
    record = train_dpo(args.run, args.out, spec=spec, gguf=args.gguf, extra_benchmark_dirs=args.exclude_benchmarks)
    d = record["dpo"]
    print(f"{record['variant']}: {d['pairs']['pairs']} pairs from {d['pairs']['questions']} training questions "
          f"({d['pairs']}), final DPO loss {d['final_loss']}, reward accuracy {d['final_reward_accuracy']} -> "
          f"{args.out}")
    return 0
