"""The OpenAI-compatible judge client against a stand-in server on 127.0.0.1 (loopback only)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tasks.bench.judge import Judge, JudgeSpec, load_judge_spec


def _server(replies: list[str], seen: list[dict]):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"body": body, "auth": self.headers.get("Authorization")})
            text = replies[min(len(seen) - 1, len(replies) - 1)]
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def endpoint():
    servers = []

    def start(replies):
        seen = []
        server = _server(replies, seen)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/v1", seen

    yield start
    for s in servers:
        s.shutdown()


def test_openai_judge_grades_and_sends_the_rubric(endpoint, monkeypatch):
    url, seen = endpoint(["正しく丁寧に答えている。\n点数: 5"])
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    judge = Judge(JudgeSpec(kind="openai", base_url=url, model="judge-model", api_key_env="JUDGE_KEY"))
    verdict = judge.grade("1+1は？", "2です。", "- 2でなければ1点", "2です。")
    assert (verdict.grade, verdict.error, verdict.attempts) == (5, None, 1)
    prompt = seen[0]["body"]["messages"][0]["content"]
    assert "1点: 誤っている" in prompt and "- 2でなければ1点" in prompt and "# 回答\n2です。" in prompt
    assert seen[0]["auth"] == "Bearer sk-test" and seen[0]["body"]["temperature"] == 0.0


def test_unparseable_output_is_retried_then_recorded_as_a_failure(endpoint):
    url, seen = endpoint(["とても良い", "やはり良い", "良い"])
    verdict = Judge(JudgeSpec(kind="openai", base_url=url, model="m", max_retries=2)).grade("q", "a", "", "b")
    assert verdict.grade is None and "unparseable" in verdict.error and len(seen) == 3
    assert "点数: N" in seen[1]["body"]["messages"][-1]["content"]  # the retry reminds the format


def test_a_retry_can_recover(endpoint):
    url, _ = endpoint(["？？？", "理由: 部分的に正しい。\n点数: 3"])
    assert Judge(JudgeSpec(kind="openai", base_url=url, model="m")).grade("q", "a", "", "b").grade == 3


def test_an_unreachable_endpoint_fails_loudly():
    judge = Judge(JudgeSpec(kind="openai", base_url="http://127.0.0.1:9/v1", model="m", max_retries=1,
                            timeout_s=2))
    with pytest.raises(RuntimeError, match="Judge endpoint failed 2 times"):
        judge.grade("q", "a", "", "b")


def test_judge_yaml(tmp_path):
    (tmp_path / "j.yaml").write_text("kind: gguf\npath: models/judge.gguf\n")
    assert load_judge_spec(tmp_path / "j.yaml").path == tmp_path / "models/judge.gguf"
    (tmp_path / "k.yaml").write_text("kind: openai\nmodel: m\n")
    with pytest.raises(ValueError, match="base_url"):
        load_judge_spec(tmp_path / "k.yaml")
