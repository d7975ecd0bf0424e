"""Model cards for the uploaded repos: YAML metadata (base_model, license, tags, model-index with the
measured results only) and a body with the schedule used, the comparison table and how to run it."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tasks.bench.metrics import METRICS


def _dataset(suite: str) -> tuple[str, str] | None:
    """(display name, Hub dataset id) as the suite declares them (configs/suites/<suite>.yaml)."""
    from tasks.bench.suites import suite_names
    from tasks.decide.scores import suite_role

    if suite not in suite_names():
        return None
    role = suite_role(suite)
    return role.title, role.dataset.hub_id
FORMAT_NAME = {"bf16": "BF16", "q8_0": "Q8_0", "q4_k_m": "Q4_K_M"}


def model_index(repo: str, scores: dict[str, tuple[str, float]]) -> list[dict[str, Any]]:
    """scores: suite -> (metric, value), measured on this very format; nothing else is claimed."""
    results = [{"task": {"type": "text-generation", "name": "Text Generation"},
                "dataset": {"name": dataset[0], "type": dataset[1]},
                "metrics": [{"type": metric, "value": round(value, 4), "name": METRICS[metric].label(metric)
                             if metric in METRICS else metric}]}
               for s, (metric, value) in sorted(scores.items()) if (dataset := _dataset(s))]
    return [{"name": repo, "results": results}] if results else []


def card(*, repo: str, fmt: str, base_model: str, license: str, schedule: dict[str, Any], decision: dict[str, Any],
         scores: dict[str, tuple[str, float]], files: list[str], think_tags: tuple[str, str],
         final_tags: tuple[str, str]) -> str:
    meta = {"base_model": base_model, "license": license, "language": ["en", "ja"],
            "library_name": "transformers" if fmt == "bf16" else "gguf",
            "tags": ["alpha-gate", "so8-rotation", "gguf", "llama-cpp", FORMAT_NAME[fmt].lower(), "thinking"],
            "model-index": model_index(repo, scores)}
    gguf = next((f for f in files if f.endswith(".gguf")), "model.gguf")
    schedule_text = (f"linear, blend_alpha from {schedule.get('start', 0.0)} to 1" if schedule.get("kind") == "linear"
                     else f"sigmoid (Bayesian-tuned): k = {schedule['k']:.4g}, midpoint = {schedule['midpoint']:.4g}, "
                          f"base = {schedule['base']:.5f}")
    lines = [f"# {repo}", "",
             f"{FORMAT_NAME[fmt]} build of a LoRA fine-tune of `{base_model}` with an SO(8) alpha gate on every "
             "attention output, folded into the stock weights after training (no custom code needed).", "",
             f"- Annealing schedule: {schedule_text}.",
             f"- Why this model: {decision['reason']}", "", "## Comparison", ""]
    if decision.get("suites"):
        a, b = decision["models"]
        lines += [f"| suite | metric | {a} | {b} | p (Holm) |", "|---|---|---|---|---|"]
        lines += [f"| {r['suite']} | {r['metric']} | {r['a']:.4f} | {r['b']:.4f} | {r['p_holm']:.3g} |"
                  for r in decision["suites"]]
    lines += ["", "## Files", ""] + [f"- `{f}`" for f in files]
    lines += ["", "## Run it with llama-cpp-python", "", "```python", "import re", "from llama_cpp import Llama",
              "", f'llm = Llama(model_path="{gguf}", n_ctx=4096)',
              'out = llm.create_chat_completion([{"role": "user", "content": "What is 12 plus 30?"}], max_tokens=512)',
              'text = out["choices"][0]["message"]["content"]',
              f"# The model thinks in {think_tags[0]}…{think_tags[1]} and answers in {final_tags[0]}…{final_tags[1]}:",
              f'final = re.search(r"{re.escape(final_tags[0])}(.*?)({re.escape(final_tags[1])}|$)", text, re.S)',
              "print(final.group(1).strip() if final else text)", "```", "",
              "## Serve it: OpenAI-compatible, the reasoning stays private", "",
              "With this project installed (`pip install alpha-gate`, or `make demo` in its repository):", "",
              "```bash", f"alphagate serve --gguf {gguf} --port 8080   # binds 127.0.0.1; an API key is required "
              "elsewhere (ALPHAGATE_API_KEY)",
              "curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\",
              "  -d '{\"messages\": [{\"role\": \"user\", \"content\": \"What is 12 plus 30?\"}]}'",
              "curl -s http://127.0.0.1:8080/think -H 'Content-Type: application/json' \\",
              "  -d '{\"prompt\": \"What is 12 plus 30?\"}'", "```", "",
              f"Both endpoints (and streaming, `\"stream\": true`) return only the final section: the text inside "
              f"{final_tags[0]}…{final_tags[1]}, or everything outside {think_tags[0]}…{think_tags[1]} when the model "
              "used no final tags. The reasoning never leaves the server; its SHA-256 and length go to an append-only "
              "audit log (`--audit-log`, default runs/serve/audit.jsonl).", ""]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(lines)
