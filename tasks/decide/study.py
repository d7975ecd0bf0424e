"""The nightly study: one record (``<out>/study/study.json``) of the nights so far, each adding one seed replicate per
arm, and whether the study is decided.

Night n trains seed ``nightly.seed_base + n`` for both arms (the counter is the number of nights recorded, kept with
the study, so a failed night is rerun with the same seed and resumes from its finished stages) and decides on every
replicate so far at look n of ``nightly.max_looks`` with an alpha-spending boundary (tasks/decide/replicates.py).
When a look crosses the boundary the study is decided; after max_looks looks without crossing it has ended with no
significant difference. Either way later nights report that and train nothing.

The nights are exchangeable replicates of the sigmoid arm only if every seed's schedule was chosen the same way:
``nightly.tuning: frozen`` tunes once (night 1, tuner.n_trials trials; later seeds reuse those trials of the same
experiment fingerprint, so the choice is the same), ``per_seed`` gives each seed its own tuner (tuner.per_seed) with
the same budget. The tuner's budget never grows between nights; each night records which way it was tuned, and a
study whose nights were tuned another way (an older study with a growing budget) is not pooled.

A study belongs to one design: the config with the per-night settings (seeds, the tuner's budget) left out. A config
that changed anything else (data, training, suites, the decision rule, the number of looks ...) is refused for that
study: pooling replicates of two designs would answer neither question.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.store import Ref, atomic_write_json, atomic_write_text, read_json_object, verified

STUDY_VERSION = 2  # 2: nights are exchangeable (frozen or per-seed tuning, fixed budget)


def study_path(out: str | Path) -> Path:
    return Path(out) / "study" / "study.json"


def design(config: PipelineConfig) -> dict[str, Any]:
    """What a study's replicates must share: the config without the per-night settings and the places work runs."""
    dumped = config.model_dump(mode="json", exclude={"orchestration": True, "upload": True})
    dumped["train"].pop("seed", None)
    dumped["train"].pop("seeds", None)
    dumped["tuner"].pop("n_trials", None)
    dumped["tuner"].pop("history_path", None)
    return dumped


def design_sha(config: PipelineConfig) -> str:
    blob = json.dumps(design(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def tuning(config: PipelineConfig) -> str:
    """How the study's sigmoid replicates are tuned, for the record; refuses a tuner that does not match."""
    mode, per_seed = config.nightly.tuning, config.tuner.per_seed
    if (mode == "per_seed") != per_seed:
        raise ValueError(f"nightly.tuning is {mode!r} but tuner.per_seed is {per_seed}: a frozen schedule needs one "
                         "tuner shared by every seed (tuner.per_seed: false), per-seed tuning needs "
                         "tuner.per_seed: true. Set them to agree.")
    return (f"frozen: tuned once with {config.tuner.n_trials} trials, every seed reuses that choice" if mode == "frozen"
            else f"per_seed: each seed tuned on its own with {config.tuner.n_trials} trials")


def open_study(out: str | Path, config: PipelineConfig, config_path: str | Path) -> dict[str, Any]:
    """The study under ``out`` (a new one when there is none); refuses a study of another design, and one whose
    nights were not tuned the same way (they are not exchangeable replicates)."""
    path = study_path(out)
    how = tuning(config)
    if not path.exists():
        return {"version": STUDY_VERSION, "design_sha256": design_sha(config), "design": design(config),
                "config": str(Path(config_path).resolve()), "alpha": config.decision.alpha,
                "max_looks": config.nightly.max_looks, "spending": config.nightly.spending, "tuning": how,
                "nights": [], "decided": None, "ended": None}
    study = read_json_object(path, "nightly study record", ("design_sha256", "nights"),
                             "It is written by the alphagate-nightly flow; restore it or start a new study in "
                             "another --out folder.")
    other = sorted({str(n.get("tuning")) for n in study["nights"] if n.get("tuning") != how})
    if study.get("version", 1) < 2 or other:
        raise ValueError(f"{path} holds nights tuned another way ({', '.join(other) or 'a growing tuner budget'}) "
                         f"than tonight ({how}): they are not exchangeable replicates of the sigmoid arm, so they "
                         "cannot be pooled. Start a new study (another --out folder).")
    if study["design_sha256"] != design_sha(config):
        old, new = study.get("design", {}), design(config)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(f"{path} is a study of another design: the config's {', '.join(changed) or 'settings'} "
                         f"changed since night 1. Pooling replicates of two designs would answer neither question: "
                         "start a new study (another --out folder), or restore the config.")
    return study


def next_night(study: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    """What tonight runs: its number, seed and tuner budget (the same every night: replicates are exchangeable)."""
    n = len(study["nights"]) + 1
    return {"night": n, "seed": config.nightly.seed_base + n, "tuner_trials": config.tuner.n_trials,
            "tuning": tuning(config)}


def closed(study: dict[str, Any]) -> str | None:
    """Why the study takes no more nights (decided, or every look spent), or None."""
    if study.get("decided"):
        d = study["decided"]
        return (f"The study was decided on night {d['night']} ({d['date']}): {d['reason']} Nothing is trained; "
                "start a new study (another --out folder) to ask again.")
    if study.get("ended"):
        e = study["ended"]
        return (f"The study ended after {e['night']} looks (nightly.max_looks) without crossing the boundary: "
                f"{e['reason']} Nothing is trained; start a new study to ask again.")
    return None


def earlier_replicates(study: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """arm -> every earlier night's replicate {label, results, export, run} (refs as dicts), each checked intact."""
    out: dict[str, list[dict[str, Any]]] = {}
    for night in study["nights"]:
        for arm, reps in night["replicates"].items():
            for rep in reps:
                for what in ("results", "export", "run"):
                    ref = Ref.model_validate(rep[what])
                    if verified(ref.path, ref.key) is None:
                        raise FileNotFoundError(
                            f"Night {night['night']}'s {what} of {rep['label']} ({ref.path}) is gone or changed: "
                            "the study cannot pool it. Restore the store folder, or start a new study in another "
                            "--out folder.")
                _check_suites_unchanged(night["night"], rep["label"], Path(Ref.model_validate(rep["results"]).path))
                out.setdefault(arm, []).append(rep)
    return out


def _check_suites_unchanged(night: int, label: str, results: Path) -> None:
    """An earlier night's results pool with tonight's only when each suite is still declared as it was evaluated
    (version, prompt, the suite YAML's bytes): checked before tonight trains anything, not at the decision."""
    from tasks.bench.suites import load_suite, suite_path
    from tasks.store import read_json, sha256_file

    for summary_path in sorted(results.glob("*.summary.json")):
        summary = read_json(summary_path)
        suite = load_suite(summary["suite"])
        now = {"suite_version": suite.version, "prompt_sha256": suite.prompt_hash(),
               "suite_yaml_sha256": sha256_file(suite_path(suite.name))}
        then = {"suite_version": summary.get("suite_version"), "prompt_sha256": summary.get("prompt_sha256"),
                "suite_yaml_sha256": summary.get("inputs", {}).get("suite_yaml_sha256")}
        changed = [k for k in now if now[k] != then[k]]
        if changed:
            raise ValueError(f"Night {night}'s {label} was evaluated on {suite.name} as declared then, and the "
                             f"suite has changed since ({', '.join(changed)}): tonight's results could not be pooled "
                             "with it. "
                             "Start a new study in another --out folder, or restore the suite's YAML "
                             f"({suite_path(suite.name)}) as it was.")


def record_night(out: str | Path, study: dict[str, Any], tonight: dict[str, Any], date: str,
                 replicates: dict[str, list[dict[str, Any]]], decision: dict[str, Any], decision_dir: Path
                 ) -> dict[str, Any]:
    """Add tonight to the study (atomically), close it when the boundary was crossed or the looks are spent, and
    write tonight's dated folder (``<out>/nights/<date>-night<NN>/``: the decision and the study so far)."""
    dumped = {arm: [{k: v.model_dump(mode="json") if isinstance(v, Ref) else v for k, v in rep.items()}
                    for rep in reps] for arm, reps in replicates.items()}
    look = decision.get("sequential") or {}
    entry = {"night": tonight["night"], "date": date, "seed": tonight["seed"], "tuner_trials": tonight["tuner_trials"],
             "tuning": tonight["tuning"], "replicates": dumped, "seeds_per_arm": decision.get("seeds"),
             "decision": {"winner": decision.get("winner"), "models": decision.get("models"),
                          "diff": decision.get("diff"), "diff_ci": decision.get("decision_ci"),
                          "diff_ci95": decision.get("diff_ci95"), "p_value": decision.get("composite_p_value"),
                          "alpha_this_look": look.get("alpha_this_look"), "significant": decision.get("significant"),
                          "outcome": decision.get("outcome"), "reason": decision.get("reason"),
                          "mde": (decision.get("power") or {}).get("mde"),
                          "record": str(Path(decision_dir) / "decision.json")}}
    study = {**study, "nights": [*study["nights"], entry]}
    if decision.get("significant"):
        study["decided"] = {"night": tonight["night"], "date": date, "winner": decision.get("winner"),
                            "reason": decision.get("reason")}
    elif tonight["night"] >= study["max_looks"]:
        study["ended"] = {"night": tonight["night"], "date": date, "reason": decision.get("reason")}
    atomic_write_json(study_path(out), study)
    dated = Path(out) / "nights" / f"{date}-night{tonight['night']:02d}"
    atomic_write_json(dated / "study.json", study)
    for name in ("decision.json", "decision.md"):
        source = Path(decision_dir) / name
        if source.is_file():
            atomic_write_text(dated / name, source.read_text(encoding="utf-8"))
    return study


def trend_rows(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Night by night: the composite difference (first model minus second), its CI at that look's alpha, the 95% CI,
    and the outcome."""
    rows = []
    for night in study["nights"]:
        d = night["decision"]
        if d.get("diff") is None:
            continue
        rows.append({"night": night["night"], "date": night["date"], "diff": d["diff"],
                     "ci": d.get("diff_ci") or d.get("diff_ci95"), "ci95": d.get("diff_ci95"),
                     "alpha": d.get("alpha_this_look"), "outcome": d.get("outcome"), "models": d.get("models"),
                     "seeds": (night.get("seeds_per_arm") or {}).get("a")})
    return rows
