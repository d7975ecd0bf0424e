"""`alphagate plan`: before any training, how small a composite difference a design can detect, and how many items
per suite and training seeds per arm would detect ``decision.target_effect`` (tasks/decide/replicates.py:plan).

Suite sizes come from the items the run would read (bundled samples, ../shared, a file), or for the Hub from the
size of the split each suite's YAML names (the Hub is not contacted: these are the published split sizes).
Variances come from the latest decision found (``--history``: a decision.json, a run folder holding
``decision/decision.json``, or a nightly study folder), else from the priors in tasks/decide/replicates.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.store import read_json_object

# items in the split each suite's YAML evaluates (configs/suites/*.yaml dataset.split), as published
SPLIT_SIZES = {"mmlu": 14042,  # cais/mmlu all/test
               "arc_challenge": 1172,  # allenai/ai2_arc ARC-Challenge/test
               "hellaswag": 10042,  # Rowan/hellaswag validation
               "gsm8k": 1319,  # openai/gsm8k main/test
               "elyza_tasks_100": 100,  # elyza/ELYZA-tasks-100 test
               "scienceqa": 4241}  # derek-thomas/ScienceQA test


def suite_sizes(suites: list[str], data: str | None) -> dict[str, int]:
    """Items each suite would be evaluated on: counted from the local source, or the Hub split's size."""
    from tasks.bench.suites import load_docs, load_suite

    sizes = {}
    for suite in suites:
        spec = load_suite(suite)  # a clear error for an unknown suite
        if data == "hub":
            if suite not in SPLIT_SIZES:
                raise ValueError(f"No published split size is known for {suite}; plan it on local items "
                                 "(--data shared or a file).")
            sizes[suite] = SPLIT_SIZES[suite]
        else:
            sizes[suite] = len(load_docs(spec, data))
    return sizes


def earlier_variances(history: Path | None) -> tuple[dict[str, Any] | None, float | None, str | None]:
    """({"total": per-item variance of the paired difference per suite, "interaction": its arm x item part},
    between-seed variance of a composite, where from)
    from the latest decision under ``history``; (None, None, None) when there is none."""
    if history is None:
        return None, None, None
    history = Path(history)
    candidates = [history] if history.is_file() else [history / "decision" / "decision.json",
                                                       history / "decision.json"]
    study = history / "study" / "study.json"
    if history.is_dir() and study.is_file():
        nights = read_json_object(study, "nightly study record", ("nights",)).get("nights") or []
        if nights:
            candidates.insert(0, Path(nights[-1]["decision"]["record"]))
    for path in candidates:
        if path.is_file():
            record = read_json_object(path, "decision.json of `alphagate decide`", ("reason",),
                                      "Pass a decision.json, a run folder or a nightly study folder as --history.")
            var = record.get("variance") or {}
            if not var.get("per_item_diff_var") or not var.get("n_items"):
                return None, None, str(path)  # an older record: no variance components
            from tasks.decide.seeds import shrunk_variances

            # measured on few items or seeds, a variance is noisy (often ~0): shrunk toward the priors, as the
            # decision's own power figures are
            shrunk = shrunk_variances({"n_items": var["n_items"], "per_item_diff_var": var["per_item_diff_var"],
                                       "per_item_interaction_var": var.get("per_item_interaction_var"),
                                       "seed_var": var.get("between_seed_var"), "df": var.get("between_seed_df", 0)})
            return ({"total": shrunk["total"], "interaction": shrunk["interaction"]
                     if shrunk["seed_var"] is not None else None}, shrunk["seed_var"], str(path))
    if not history.exists():
        raise FileNotFoundError(f"--history {history} does not exist; pass a decision.json, a run folder (--out of "
                                "`alphagate run`) or a nightly study folder, or leave --history out for priors.")
    return None, None, None


def plan_for(config: PipelineConfig, suites: list[str], data: str | None, limit: int | None,
             history: Path | None) -> dict[str, Any]:
    from tasks.decide.replicates import plan

    item_var, seed_var, source = earlier_variances(history)
    item_var = item_var or {}
    result = plan(suite_sizes(suites, data), config.decision, item_diff_var=item_var.get("total"), seed_var=seed_var,
                  limit=limit, interaction_var=item_var.get("interaction"))
    return {**result, "data": data or "sample", "variance_from": source}


def plan_text(result: dict[str, Any]) -> str:
    """The plan for people: the inputs, then one row per number of seeds per arm."""
    used = result["items_used"]
    lines = [f"Items per suite ({result['data']}): " + ", ".join(f"{s} {used[s]}"
                                                                  + (f" of {n}" if used[s] != n else "")
                                                                  for s, n in result["suites"].items()),
             "Per-item variance of the paired difference: " + ", ".join(
                 f"{s} {v:.3g} ({result['item_diff_var_source'][s]})" for s, v in result["item_diff_var"].items()),
             f"Between-seed variance of a composite: {result['seed_var']:.3g} ({result['seed_var_source']})"
             + (f"; measured values (shrunk toward the priors by their degrees of freedom) from "
                f"{result['variance_from']}" if result["variance_from"] else ""),
             f"alpha {result['alpha']}, power {result['power']:.0%}, target effect {result['target_effect']}", "",
             "seeds/arm | MDE (items used) | MDE (all items) | items per suite for the target",
             "----------|------------------|-----------------|-------------------------------"]
    for r in result["rows"]:
        need = r["items_per_suite_for_target"]
        big = r["largest_variance_at_all_items"]
        need_text = (f"{need}" if need is not None else "not reachable with every item; largest variance: "
                     + ("the seeds" if big == "seeds" else f"{big} ({result['suites'][big]} items)"))
        note = " (seed variance unmeasured: speaks for two trained models)" if r["seeds_per_arm"] == 1 else ""
        lines.append(f"{r['seeds_per_arm']:>9} | {r['mde_at_items_used']:>16.4f} | {r['mde_at_all_items']:>15.4f} | "
                     f"{need_text}{note}")
    fewest = result["fewest_seeds_for_target"]
    lines += ["", f"Fewest seeds per arm that detect {result['target_effect']} (all items): "
              + (str(fewest) if fewest else "more than listed (raise the items or accept a larger target effect)")]
    return "\n".join(lines)
