"""Model cards for the uploaded repos: YAML metadata (base_model and its relation, license, tags, model-index with
the measured results only) and a body with the schedule used, the comparison table and how to run it.

The metadata follows the Hub's documented model-card fields (https://huggingface.co/docs/hub/model-cards and the
spec https://github.com/huggingface/hub-docs/blob/main/modelcard.md): ``base_model`` is a Hub repo id
(owner/name), ``base_model_relation`` one of adapter, merge, quantized, finetune. ``card_problems`` checks a card
against them before anything is staged or uploaded.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import yaml
from huggingface_hub import EvalResult, ModelCardData

from tasks.bench.metrics import METRICS
from tasks.config import hub_repo_id_problem
from tasks.export.formats import FORMAT_NAMES
from tasks.numbers import human

# the relations the Hub documents for base_model (https://huggingface.co/docs/hub/model-cards#specifying-a-base-model)
RELATIONS = ("adapter", "merge", "quantized", "finetune")
# the top-level metadata fields the Hub documents for model cards (the ones this project may write, and the rest)
DOCUMENTED_FIELDS = {"language", "license", "license_name", "license_link", "library_name", "tags", "datasets",
                     "metrics", "base_model", "base_model_relation", "model-index", "pipeline_tag", "thumbnail",
                     "new_version", "inference", "widget", "co2_eq_emissions", "model_name"}
FORMAT_NAME = FORMAT_NAMES


class Measured(NamedTuple):
    """One score a card claims: the suite's metric and value, measured on this very format, and where its items came
    from (the evaluation summary's ``inputs.data``: a Hub dataset at a resolved commit, or a local file)."""
    metric: str
    value: float
    data: dict[str, Any] | None = None


def eval_results(scores: dict[str, Measured | tuple], source_url: str | None = None,
                 split_urls: dict[str, str] | None = None) -> list[EvalResult]:
    """huggingface_hub EvalResults, one per suite with a declared role: the suite's Hub dataset (id, config, split)
    and, when the items were read from the Hub, the commit they were read at (``dataset_revision``); items from a
    local file (bundled sample, shared dev set) name that file and its sha256 instead of claiming a Hub split.
    ``source_url``: the per-item details dataset; ``split_urls``: suite -> that suite's split in it."""
    from tasks.bench.suites import suite_names
    from tasks.decide.scores import suite_role

    out = []
    for suite, one in sorted(scores.items()):
        if suite not in suite_names():
            continue
        metric, value, data = Measured(*one)
        role, data = suite_role(suite), data or {}
        hub = data.get("kind") == "hub"
        local = {"data_file": data.get("name"), "data_sha256": data.get("sha256")} if data.get("kind") == "file" \
            else None
        name = role.title if hub or not local else f"{role.title} ({local['data_file']}, a local subset)"
        url = (split_urls or {}).get(suite) or source_url
        out.append(EvalResult(
            task_type="text-generation", task_name="Text Generation", dataset_type=role.dataset.hub_id,
            dataset_name=name, dataset_config=role.dataset.hub_config, dataset_split=role.dataset.split if hub
            else None, dataset_revision=data.get("commit") if hub else None, dataset_args=local,
            metric_type=metric, metric_value=round(value, 4),
            metric_name=METRICS[metric].label(metric) if metric in METRICS else metric,
            source_name="alpha-gate per-item details" if url else None, source_url=url))
    return out


def card_data(*, repo: str, fmt: str, base_model: str, relation: str, license: str,
              results: list[EvalResult]) -> ModelCardData:
    """The card's metadata through huggingface_hub's own type (model-index written by it from ``results``)."""
    return ModelCardData(base_model=base_model, base_model_relation=relation, license=license,
                         language=["en", "ja"], library_name="transformers" if fmt == "bf16" else "gguf",
                         pipeline_tag="text-generation",
                         tags=["alpha-gate", "so8-rotation", "gguf", "llama-cpp", FORMAT_NAME[fmt].lower(), "thinking"],
                         model_name=repo if results else None, eval_results=results or None)


def lineage(fmt: str, upstream: str, bf16_repo: str | None) -> tuple[str, str]:
    """(base_model, base_model_relation) of one repo. The BF16 repo (merged weights of a LoRA fine-tune) is a
    finetune of the upstream model; a Q8_0/Q4_K_M repo is a quantization of the BF16 repo published beside it, or,
    when that one is not published in the same upload, still a finetune of the upstream model (a quantization of a
    model that is not on the Hub cannot point at it)."""
    if fmt != "bf16" and bf16_repo:
        return bf16_repo, "quantized"
    return upstream, "finetune"


def card(*, repo: str, fmt: str, base_model: str, relation: str, upstream: str, license: str,
         schedule: dict[str, Any], decision: dict[str, Any], scores: dict[str, Measured | tuple], files: list[str],
         think_tags: tuple[str, str], final_tags: tuple[str, str], project_git_url: str | None = None,
         details: str | None = None, details_urls: dict[str, str] | None = None) -> str:
    """``base_model``/``relation``: this repo's place in the Hub's model tree (``lineage``); ``upstream``: the
    original model that was fine-tuned (its Hub id); ``scores``: suite -> Measured on this format; ``details``: the
    URL of the per-item details dataset (``details_urls``: suite -> this format's split in it)."""
    meta = card_data(repo=repo, fmt=fmt, base_model=base_model, relation=relation, license=license,
                     results=eval_results(scores, details, details_urls))
    gguf = next((f for f in files if f.endswith(".gguf")), "model.gguf")
    schedule_text = (f"linear, blend_alpha from {schedule.get('start', 0.0)} to 1" if schedule.get("kind") == "linear"
                     else f"sigmoid (Bayesian-tuned): k = {schedule['k']:.4g}, midpoint = {schedule['midpoint']:.4g}, "
                          f"base = {schedule['base']:.5f}")
    what = (f"{FORMAT_NAME[fmt]} quantization of [{base_model}](https://huggingface.co/{base_model}), " if
            relation == "quantized" else f"{FORMAT_NAME[fmt]} build of ")
    lines = [f"# {repo}", "",
             f"{what}a LoRA fine-tune of [{upstream}](https://huggingface.co/{upstream}) with an SO(8) alpha gate "
             "on every attention output, folded into the stock weights after training (no custom code needed).", "",
             f"- Annealing schedule: {schedule_text}.",
             f"- Why this model: {decision['reason']}", "", "## Comparison", "",
             f"What this comparison speaks for: {_scope(decision)}.", ""]
    if details:
        lines += [f"Every score here is computed from per-item records published in the [details dataset]({details})"
                  " (one split per model, format and suite), beside the decision record and the suite definitions.",
                  ""]
    if decision.get("suites"):
        a, b = decision["models"]
        lines += [f"| suite | metric | {a} | {b} | p (Holm) |", "|---|---|---|---|---|"]
        lines += [f"| {r['suite']} | {r.get('metric_label', r['metric'])} | {human(r['a'])} | {human(r['b'])} | "
                  f"{human(r.get('p_holm'))} |" for r in decision["suites"]]
    lines += ["", "## Files", ""] + [f"- `{f}`" for f in files]
    lines += _usage(repo, fmt, gguf, think_tags, final_tags, project_git_url)
    return f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines)


def _scope(decision: dict[str, Any]) -> str:
    """Models or schedules (ARCHITECTURE rule 12), from the decision record (an older one: from its seeds)."""
    if decision.get("scope_note"):
        return decision["scope_note"]
    from tasks.decide.claims import SCOPES, scope

    return SCOPES[scope(decision)]


def _usage(repo: str, fmt: str, gguf: str, think_tags: tuple[str, str], final_tags: tuple[str, str],
           project_git_url: str | None) -> list[str]:
    """How to run it, with commands that work from a clean machine: packages from PyPI, files from this repo."""
    lines = ["", "## Run it with llama-cpp-python", "", "```bash", "pip install llama-cpp-python huggingface-hub",
             "```", "", "```python", "import re", "from llama_cpp import Llama", "",
             f'llm = Llama.from_pretrained(repo_id="{repo}", filename="{gguf}", n_ctx=4096)',
             'out = llm.create_chat_completion([{"role": "user", "content": "What is 12 plus 30?"}], max_tokens=512)',
             'text = out["choices"][0]["message"]["content"]',
             f"# The model thinks in {think_tags[0]}…{think_tags[1]} and answers in {final_tags[0]}…{final_tags[1]}:",
             f'final = re.search(r"{re.escape(final_tags[0])}(.*?)({re.escape(final_tags[1])}|$)", text, re.S)',
             "print(final.group(1).strip() if final else text)", "```", "",
             f"With the file downloaded (`hf download {repo} {gguf} --local-dir .`), "
             f'`Llama(model_path="{gguf}", n_ctx=4096)` loads it the same way.', "",
             "## Serve it with llama.cpp", "", "```bash",
             f"llama-server --hf-repo {repo} --hf-file {gguf} --port 8080   # OpenAI-compatible, on 127.0.0.1",
             "```", "",
             f"llama-server returns the whole completion, reasoning ({think_tags[0]}…{think_tags[1]}) included: keep "
             f"the text inside {final_tags[0]}…{final_tags[1]} as above."]
    if fmt == "bf16":
        lines += ["", "## Load the merged weights with transformers", "", "```python",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
                  f'model = AutoModelForCausalLM.from_pretrained("{repo}")', "```"]
    if project_git_url:
        lines += ["", "## Serve it with the reasoning kept private (alpha-gate)", "", "```bash",
                  f"pip install git+{project_git_url}", f"hf download {repo} {gguf} --local-dir .",
                  f"alphagate serve --gguf {gguf} --port 8080   # binds 127.0.0.1; an API key is required "
                  "elsewhere (ALPHAGATE_API_KEY)",
                  "curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\",
                  "  -d '{\"messages\": [{\"role\": \"user\", \"content\": \"What is 12 plus 30?\"}]}'",
                  "curl -s http://127.0.0.1:8080/think -H 'Content-Type: application/json' \\",
                  "  -d '{\"prompt\": \"What is 12 plus 30?\"}'", "```", "",
                  f"Both endpoints (and streaming, `\"stream\": true`) return only the final section: the text inside "
                  f"{final_tags[0]}…{final_tags[1]}, or everything outside {think_tags[0]}…{think_tags[1]} when the "
                  "model used no final tags. The reasoning never leaves the server; its SHA-256 and length go to an "
                  "append-only audit log (`--audit-log`, default runs/serve/audit.jsonl)."]
    return [*lines, ""]


def card_problems(text: str) -> list[str]:
    """What the Hub would refuse or misread in a card's metadata (empty when none): the YAML front matter parsed by
    huggingface_hub (ModelCard / ModelCardData, which also parses model-index), fields outside the documented set,
    base_model not a Hub repo id (owner/name), base_model_relation not a documented relation."""
    from huggingface_hub import ModelCard

    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not match:
        return ["the card has no YAML front matter (--- ... --- at the top)"]
    try:
        meta = yaml.safe_load(match.group(1))
        data = ModelCard(text, ignore_metadata_errors=False).data
    except Exception as exc:  # noqa: BLE001 - any parse failure is the problem to report
        return [f"the metadata does not parse: {exc}"]
    if not isinstance(meta, dict):
        return ["the metadata is not a mapping"]
    problems = [f"{key!r} is not a documented model-card field" for key in sorted(set(meta) - DOCUMENTED_FIELDS)]
    base = data.base_model
    for one in base if isinstance(base, list) else [base]:
        why = "it is missing" if one is None else hub_repo_id_problem(one)
        if why:
            problems.append(f"base_model {one!r} is not a Hub model id: {why}")
    relation = meta.get("base_model_relation")
    if relation is not None and relation not in RELATIONS:
        problems.append(f"base_model_relation {relation!r} is not one of {', '.join(RELATIONS)}")
    if not meta.get("license"):
        problems.append("license is missing")
    if "model-index" in meta and not data.eval_results:
        problems.append("model-index holds no result the Hub can read")
    return problems
