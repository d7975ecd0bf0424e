"""Training-step overhead of the SO(8) gates (target: <= 10 %).

    make bench-gates            # or: .venv/bin/python benchmarks/gate_overhead.py [--quick] [--json OUT]

For each model shape and training mode, two identical models (same seed) are trained side by side,
one plain and one with gates on every layer at blend_alpha = 0.5 (so the gates really compute).
Steps alternate between them so machine load drifts hit both alike; the median of the timed steps
is reported, with the median of the per-pair ratios as the overhead.
A step is forward + backward + AdamW on a fixed random batch.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alpha_gate.so8 import attach_so8_gates, set_blend_alpha  # noqa: E402

SHAPES = {
    # SmolLM2-135M-Instruct's architecture (the embedded default), random weights
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64, tie_word_embeddings=True),
    "tiny-llama": dict(vocab_size=8192, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=32),
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(shape: str, mode: str, gated: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPES[shape], max_position_embeddings=1024)).float().train()
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS))
    if gated:  # after peft, as the pipeline does, so the gates stay trainable
        attach_so8_gates(model)
        set_blend_alpha(model, 0.5)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=1e-4)


def step(model, optimizer, batch) -> float:
    start = time.perf_counter()
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure(shape: str, mode: str, batch_size: int, seq: int, warmup: int, steps: int) -> dict:
    plain, gated = build(shape, mode, False), build(shape, mode, True)
    vocab = SHAPES[shape]["vocab_size"]
    batch = torch.randint(0, vocab, (batch_size, seq), generator=torch.Generator().manual_seed(1))
    times = {"plain": [], "gated": []}
    for i in range(warmup + steps):
        order = (("plain", plain), ("gated", gated))
        for name, (model, opt) in order if i % 2 else order[::-1]:
            t = step(model, opt, batch)
            if i >= warmup:
                times[name].append(t)
    base, gate = statistics.median(times["plain"]), statistics.median(times["gated"])
    # Each gated step against the plain step run right beside it: robust to slow drifts in load.
    ratios = sorted(g / p for g, p in zip(times["gated"], times["plain"], strict=True))
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    return {"shape": shape, "mode": mode, "batch": batch_size, "seq": seq, "steps": steps,
            "plain_s": round(base, 4), "gated_s": round(gate, 4),
            "overhead_pct": round(100 * (statistics.median(ratios) - 1), 2),
            "overhead_iqr_pct": [round(100 * (q1 - 1), 2), round(100 * (q3 - 1), 2)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model only, few steps")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    runs = [("tiny-llama", "lora"), ("tiny-llama", "full")]
    if not args.quick:
        runs += [("smollm2-135m", "lora"), ("smollm2-135m", "full")]
    steps = 4 if args.quick else args.steps
    results = [measure(shape, mode, args.batch, args.seq, warmup=2, steps=steps) for shape, mode in runs]
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine()}
    print(f"# SO(8) gate overhead per training step ({env})")
    print("overhead = median over step pairs of gated/plain - 1, with its interquartile range")
    print(f"{'shape':14s} {'mode':5s} {'batch x seq':>11s} {'plain s':>8s} {'gated s':>8s} {'overhead':>9s}  IQR")
    for r in results:
        lo, hi = r["overhead_iqr_pct"]
        print(f"{r['shape']:14s} {r['mode']:5s} {r['batch']:>5d} x {r['seq']:<4d} {r['plain_s']:8.4f} "
              f"{r['gated_s']:8.4f} {r['overhead_pct']:8.2f}%  [{lo:.1f}%, {hi:.1f}%]")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": env, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
