"""LLM judge for ELYZA-tasks-100 on ELYZA's 1-5 rubric: a local GGUF, or an OpenAI-compatible endpoint.

Output that cannot be parsed into a grade is retried (with a reminder of the format), then recorded
as a judge failure with the raw text's hash, never as a grade. Transport errors (endpoint down) raise
after the retries, so the benchmark task fails loudly and the orchestrator can retry it.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

RUBRIC = """基本的な採点基準
- 1点: 誤っている、 指示に従えていない
- 2点: 誤っているが、方向性は合っている
- 3点: 部分的に誤っている、 部分的に合っている
- 4点: 合っている
- 5点: 役に立つ

基本的な減点項目
- 不自然な日本語: -1点
- 部分的に事実と異なる内容を述べている: -1点
- 「倫理的に答えられません」のように過度に安全性を気にしてしまっている: 2点にする"""

PROMPT = """あなたは採点者です。問題、正解例、採点基準、回答が与えられます。
採点基準と正解例を参考にして、回答を1から5の整数で採点してください。
まず理由を一文で書き、最後の行に「点数: N」（Nは1から5）とだけ書いてください。

# 問題
{task}

# 正解例
{reference}

# 採点基準
{rubric}

問題固有の採点基準
{aspect}

# 回答
{answer}
"""
REMINDER = ("形式が読み取れませんでした。理由を一文で書き、"
            "最後の行に「点数: N」（Nは1から5の整数）とだけ書いてください。")
# Constrained decoding for small local judges: one line of reason, then the grade line, nothing else.
GRADE_GRAMMAR = r'''root ::= reason "\n点数: " [1-5]
reason ::= [^\n]+'''
GRADE = re.compile(r"(?:点数|評価|スコア|Score|score)\s*[:：]\s*([1-5])(?!\d)")


class JudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["gguf", "openai"]
    path: Path | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    max_retries: int = Field(2, ge=0)
    max_tokens: int = Field(256, ge=16)
    constrained: bool = True  # gguf judges: GBNF grammar forces "reason\n点数: N"
    timeout_s: float = Field(120.0, gt=0)


JUDGE_EXAMPLE = "e.g. 'kind: gguf' + 'path: judge.gguf', or 'kind: openai' + 'base_url: ...' + 'model: ...'"


def load_judge_spec(path: str | Path) -> JudgeSpec:
    """Read and validate a judge YAML; errors name the file and each offending field."""
    from pydantic import ValidationError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Judge YAML {path} does not exist ({JUDGE_EXAMPLE}).")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"Judge YAML {path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"Judge YAML {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"Judge YAML {path}: expected a mapping of fields at the top level; found "
                         f"{type(raw).__name__} ({JUDGE_EXAMPLE}).")
    try:
        spec = JudgeSpec.model_validate(raw)
    except ValidationError as exc:
        known = sorted(JudgeSpec.model_fields)
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']} (found {e.get('input')!r:.60})"
                 for e in exc.errors()]
        raise ValueError(f"Judge YAML {path} is not a valid judge spec:\n" + "\n".join(lines)
                         + f"\nKnown fields: {known}.") from None
    if spec.kind == "gguf":
        if spec.path is None:
            raise ValueError(f"Judge YAML {path}: a gguf judge needs 'path' (the judge model's GGUF file, relative to "
                             "the YAML's folder).")
        resolved = spec.path if spec.path.is_absolute() else (path.parent / spec.path).resolve()
        return spec.model_copy(update={"path": resolved})
    if not (spec.base_url and spec.model):
        raise ValueError(f"Judge YAML {path}: an openai judge needs 'base_url' and 'model' (e.g. base_url: "
                         "http://localhost:8000/v1, model: my-judge).")
    return spec


def parse_grade(text: str) -> int | None:
    matches = GRADE.findall(text)
    return int(matches[-1]) if matches else None


def judge_prompt(task: str, reference: str, aspect: str, answer: str) -> str:
    """What the judge is asked about one answer: the task, its reference, the rubric and the answer."""
    return PROMPT.format(task=task, reference=reference, rubric=RUBRIC, aspect=aspect or "（なし）",
                         answer=answer or "（無回答）")


def describe_spec(spec: JudgeSpec) -> dict[str, Any]:
    """How a summary names its judge."""
    return {"kind": spec.kind, "model": str(spec.path or spec.model)}


@dataclass
class Verdict:
    grade: int | None
    reason: str | None
    error: str | None
    attempts: int


class Judge:
    def __init__(self, spec: JudgeSpec):
        self.spec = spec
        self._engine = None
        if spec.kind == "gguf":
            from tasks.bench.engine import Engine

            self._engine = Engine(spec.path, n_ctx=4096)

    def describe(self) -> dict[str, Any]:
        return describe_spec(self.spec)

    def _complete(self, messages: list[dict[str, str]]) -> str:
        if self._engine is not None:
            grammar = GRADE_GRAMMAR if self.spec.constrained else None
            return self._engine.chat(messages, max_tokens=self.spec.max_tokens, grammar=grammar)
        body = json.dumps({"model": self.spec.model, "messages": messages, "temperature": 0.0,
                           "max_tokens": self.spec.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        from tasks.environment import api_key

        key = api_key(self.spec.api_key_env) if self.spec.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.spec.base_url.rstrip("/") + "/chat/completions", body, headers)
        with urllib.request.urlopen(request, timeout=self.spec.timeout_s) as response:  # noqa: S310 (configured URL)
            return json.loads(response.read())["choices"][0]["message"]["content"] or ""

    def grade(self, task: str, reference: str, aspect: str, answer: str) -> Verdict:
        return self.grade_prompt(judge_prompt(task, reference, aspect, answer))

    def grade_prompt(self, prompt: str) -> Verdict:
        """The verdict on one judge prompt (judge_prompt): retried with a reminder while it cannot be parsed."""
        messages = [{"role": "user", "content": prompt}]
        last_error: Exception | None = None
        for attempt in range(1, self.spec.max_retries + 2):
            try:
                text = self._complete(messages)
            except OSError as exc:  # network / HTTP: retry, then fail the task
                last_error = exc
                continue
            grade = parse_grade(text)
            if grade is not None:
                reason = text[: text.rfind("点数")].strip() if "点数" in text else text.strip()
                return Verdict(grade, reason[:500], None, attempt)
            messages = messages + [{"role": "assistant", "content": text}, {"role": "user", "content": REMINDER}]
        if last_error is not None and len(messages) == 1:
            raise RuntimeError(f"Judge endpoint failed {self.spec.max_retries + 1} times: {last_error}") from last_error
        return Verdict(None, None, f"unparseable judge output after {self.spec.max_retries + 1} attempts", attempt)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


VERDICTS = "verdicts.jsonl"


def judge_inputs(spec: JudgeSpec) -> dict[str, Any]:
    """What the judge's verdicts depend on besides the prompts: its spec and its model file's content."""
    out = spec.model_dump(mode="json", exclude={"path"})
    if spec.path is not None:
        if not Path(spec.path).is_file():
            raise FileNotFoundError(f"the judge's model file {spec.path} does not exist.")
        from tasks.store import sha256_file

        out["model_sha256"] = sha256_file(spec.path)
    return out


def verdicts(spec: JudgeSpec, prompts: list[str], store: Path | None) -> list[dict[str, Any]]:
    """The judge's verdict on each prompt (grade, reason, error, attempts). The judge's outputs are generations of
    their own, keyed by the judge (spec, model file, this code) and the prompts it is shown, and kept under
    ``<store>/judge/<key>/``: rescoring answers whose judge prompts did not change (another answer filter, metric or
    summary) asks the judge nothing; another judge, or other answers, is judged again. ``store`` None: not kept."""
    import hashlib

    from tasks.keys import stage_key
    from tasks.store import atomic_write_text, keyed_dir, read_jsonl, seal, staging_dir, verified

    inputs = {"judge": judge_inputs(spec), "items": len(prompts),
              "prompts_sha256": hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode()).hexdigest()}
    key = stage_key("judge", inputs)
    folder = keyed_dir(store, "judge", key) if store is not None else None
    if folder is not None and verified(folder, key) is not None:
        return read_jsonl(folder / VERDICTS)
    judge = Judge(spec)
    try:
        rows = [vars(judge.grade_prompt(p)) for p in prompts]
    finally:
        judge.close()
    if folder is not None:
        with staging_dir(folder) as tmp:
            atomic_write_text(tmp / VERDICTS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            seal(tmp, "judge", key, inputs)
    return rows
