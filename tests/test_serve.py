"""alphagate serve: the final-section filter, both endpoints on the shipped SmolLM2 GGUF over 127.0.0.1,
streaming, the audit log, bad requests, and that no reasoning text escapes."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time

import pytest

from tasks.final_section import FinalSectionFilter, final_section
from tasks.serve.server import ServeSettings, check_settings

CASES = [
    ("<think>secret plan 42</think>\n<final>The answer is 7.</final>", "The answer is 7.", "secret plan 42"),
    ("<think>a</think>just text", "just text", "a"),
    ("no tags at all", "no tags at all", ""),
    ("<think>never closed, all private", "", "never closed, all private"),
    ("lead <final>x < y</final> trailing", "x < y", ""),
    ("<think>has <final>fake</final> inside</think><final>real</final>", "real", "has <final>fake</final> inside"),
    ("<final>unclosed final", "unclosed final", ""),
    ("a <thin b</think>", "", "a <thin b"),  # a stray </think>: what came before it was reasoning
    ("<final>42 <think>secret</think></final>", "42", "secret"),
    ("<think>try 41 <final>41</final> no wait</think><final>42</final>", "42", "try 41 <final>41</final> no wait"),
]


@pytest.mark.parametrize("text, shown, reasoning", CASES)
def test_filter_any_chunking_matches_the_whole(text, shown, reasoning):
    whole, f = final_section(text)
    assert whole == shown
    assert f.reasoning_chars == len(reasoning)
    assert f.reasoning_sha256 == (hashlib.sha256(reasoning.encode()).hexdigest() if reasoning else None)
    rng = random.Random(0)
    for _ in range(200):  # every way of cutting the stream gives the same answer, never a reasoning piece
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 8))))
        f, pieces = FinalSectionFilter(), []
        for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
            pieces.append(f.feed(text[a:b]))
        pieces.append(f.finish())
        assert "".join(pieces).strip() == shown
        if reasoning.strip():
            assert all(reasoning not in p for p in pieces)


def test_off_loopback_needs_an_api_key(smollm2_gguf, tmp_path):
    check_settings(ServeSettings(gguf=smollm2_gguf, host="127.0.0.1"))
    check_settings(ServeSettings(gguf=smollm2_gguf, host="::1"))
    with pytest.raises(ValueError, match="API key is required"):
        check_settings(ServeSettings(gguf=smollm2_gguf, host="0.0.0.0"))
    check_settings(ServeSettings(gguf=smollm2_gguf, host="0.0.0.0", api_key="k"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_settings(ServeSettings(gguf=tmp_path / "missing.gguf"))
    from flows.cli import main

    assert main(["serve", "--gguf", str(smollm2_gguf), "--host", "0.0.0.0"]) == 2  # refused before binding


class Server:
    def __init__(self, settings: ServeSettings):
        import uvicorn

        from tasks.serve.server import create_app

        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120  # the model loads at start-up; generous for a busy CI machine
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def thinking(smollm2_gguf, tmp_path_factory):
    """Every answer starts inside the reasoning section (the model then writes private text)."""
    audit = tmp_path_factory.mktemp("serve") / "audit.jsonl"
    server = Server(ServeSettings(gguf=smollm2_gguf, audit_log=audit, prefill_think=True, n_ctx=1024,
                                  max_tokens_limit=300, max_body_bytes=8192, threads=2))
    yield server, audit
    server.stop()


@pytest.fixture(scope="module")
def plain(smollm2_gguf, tmp_path_factory):
    audit = tmp_path_factory.mktemp("serve-plain") / "audit.jsonl"
    server = Server(ServeSettings(gguf=smollm2_gguf, audit_log=audit, n_ctx=1024, threads=2, api_key="s3cret"))
    yield server, audit
    server.stop()


def _reference(server: Server, messages, max_tokens):
    """What the model really generates for this request (same instance, greedy): (the raw text, whether the
    prompt opened the reasoning section)."""
    gen = server.app.state.generator
    prompt, stops = gen.prompt(messages)
    with gen.lock:
        gen.llm.reset()
        out = gen.llm.create_completion(gen.llm.tokenize(prompt.encode(), add_bos=False, special=True),
                                        max_tokens=max_tokens, temperature=0.0, stop=stops)
    return out["choices"][0]["text"], prompt.endswith("<think>")


def _windows(text: str, size: int = 16) -> set[str]:
    text = text.strip()
    return {text[i:i + size] for i in range(0, max(len(text) - size, 0) + 1, 4)} if len(text) >= size else set()


def test_streaming_a_long_answer_leaks_no_reasoning(thinking):
    import httpx

    server, audit = thinking
    messages = [{"role": "user", "content": "Explain step by step how a rainbow forms, in detail."}]
    raw, opened = _reference(server, messages, 200)
    assert opened  # --prefill-think: the prompt opened the reasoning section
    expected, f = final_section(raw, opened=True)
    reasoning_sha = f.reasoning_sha256
    assert f.reasoning_chars > 200  # a long private section was generated
    with httpx.Client(timeout=120) as client:
        with client.stream("POST", f"{server.url}/v1/chat/completions",
                           json={"messages": messages, "max_tokens": 200, "temperature": 0, "stream": True}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            body = "".join(r.iter_text())
    events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content.strip() == expected
    reasoning = raw.split("</think>")[0]
    assert not [w for w in _windows(reasoning) if w in body]  # not one 16-character piece of it on the wire
    entry = json.loads(audit.read_text().splitlines()[-1])
    assert entry["reasoning_sha256"] == reasoning_sha == hashlib.sha256(reasoning.encode()).hexdigest()
    assert entry["reasoning_chars"] == len(reasoning) and entry["final_chars"] == len(expected)
    assert entry["model_sha256"] == hashlib.sha256(server.app.state.generator.settings.gguf.read_bytes()).hexdigest()
    assert not [w for w in _windows(reasoning) if w in audit.read_text()]  # the audit log has only the hash
    assert "prompt" not in entry and "rainbow" not in audit.read_text()


def test_think_and_non_streaming_return_only_the_final_section(thinking):
    import httpx

    server, audit = thinking
    messages = [{"role": "user", "content": "What is 12 plus 30?"}]
    raw, opened = _reference(server, messages, 64)
    expected, f = final_section(raw, opened=opened)
    with httpx.Client(timeout=120) as client:
        chat = client.post(f"{server.url}/v1/chat/completions",
                           json={"messages": messages, "max_tokens": 64, "temperature": 0})
        think = client.post(f"{server.url}/think", json={"prompt": "What is 12 plus 30?", "max_tokens": 64,
                                                           "temperature": 0})
    assert chat.status_code == 200 and think.status_code == 200
    assert chat.json()["choices"][0]["message"]["content"] == expected
    assert chat.json()["usage"]["completion_tokens"] > 0
    body = think.json()
    assert body["answer"] == expected and body["reasoning_sha256"] == f.reasoning_sha256
    reasoning = raw.split("</think>")[0]
    assert not [w for w in _windows(reasoning) if w in chat.text + think.text]
    lines = [json.loads(x) for x in audit.read_text().splitlines()]
    assert [e["endpoint"] for e in lines[-2:]] == ["/v1/chat/completions", "/think"]
    assert len({e["request_id"] for e in lines}) == len(lines)


def test_a_plain_model_answer_comes_through_and_the_key_is_enforced(plain):
    import httpx

    server, audit = plain
    request = {"messages": [{"role": "user", "content": "What is 12 plus 30?"}], "max_tokens": 24,
               "temperature": 0}
    with httpx.Client(timeout=120) as client:
        assert client.post(f"{server.url}/v1/chat/completions", json=request).status_code == 401
        wrong = client.post(f"{server.url}/v1/chat/completions", json=request,
                            headers={"Authorization": "Bearer nope"})
        ok = client.post(f"{server.url}/v1/chat/completions", json=request,
                         headers={"Authorization": "Bearer s3cret"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]["message"]
    answer = ok.json()["choices"][0]["message"]["content"]
    raw, opened = _reference(server, request["messages"], 24)
    assert not opened
    assert "<think>" not in raw and "12" in raw  # SmolLM2 writes no tags ("12 + 30 = 32.": a 135M model)
    assert ok.status_code == 200 and answer == raw.strip()  # no tags: everything is the answer
    assert json.loads(audit.read_text().splitlines()[-1])["reasoning_sha256"] is None


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"messages": []}).encode(), 400, "non-empty list"),
    (json.dumps({"messages": [{"role": "robot", "content": "hi"}]}).encode(), 400, "role"),
    (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), 400, "content must be"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}).encode(), 400, "limit of 300"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}).encode(), 400, "within"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}).encode(), 400, "number"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "n": 3}).encode(), 400, "n = 1"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}).encode(), 400, "stream"),
    (json.dumps({"messages": [{"role": "user", "content": "x" * 9000}]}).encode(), 413, "larger than 8192"),
    (json.dumps({"messages": [{"role": "user", "content": "word " * 1500}]}).encode(), 400, "exceeds the context"),
])
def test_bad_requests_get_a_clear_4xx(thinking, body, status, words):
    import httpx

    server, _ = thinking
    with httpx.Client(timeout=60) as client:
        r = client.post(f"{server.url}/v1/chat/completions", content=body,
                        headers={"Content-Type": "application/json"})
    assert r.status_code == status and words in r.json()["error"]["message"], r.text


def test_think_endpoint_errors(thinking):
    import httpx

    server, _ = thinking
    with httpx.Client(timeout=60) as client:
        assert client.post(f"{server.url}/think", json={"prompt": "hi", "stream": True}).status_code == 400
        assert client.post(f"{server.url}/think", json={"prompt": ""}).status_code == 400
        assert client.get(f"{server.url}/think").status_code == 405
        assert client.get(f"{server.url}/health").json()["status"] == "ok"
        assert client.get(f"{server.url}/v1/models").json()["data"][0]["object"] == "model"


# -- a scripted model behind the real Generator (prompt rendering, decoding loop, lock) and the real HTTP stack --

THINKING_TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                     "{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}")  # opens the reasoning


class ScriptedLlama:
    """Stands in for llama_cpp.Llama: the completion of a prompt is the script whose key the prompt contains,
    one piece per token, ``delay`` seconds each."""

    def __init__(self, scripts: dict[str, list[str]], delay: float = 0.0):
        self.scripts, self.delay, self.prompt, self.decoded = scripts, delay, "", []

    def reset(self):
        pass

    def tokenize(self, text: bytes, add_bos=False, special=True):
        self.prompt = text.decode()
        return list(range(len(text) // 4 + 1))

    def create_completion(self, tokens, max_tokens, stream=True, **kwargs):
        pieces = next(v for k, v in self.scripts.items() if k in self.prompt)
        n = 0
        self.decoded.append(n)
        for n, piece in enumerate(pieces[:max_tokens], 1):
            time.sleep(self.delay)
            self.decoded[-1] = n
            yield {"choices": [{"text": piece, "finish_reason": None}]}
        yield {"choices": [{"text": "", "finish_reason": "length" if n == max_tokens else "stop"}]}


class ScriptedGenerator:
    def __new__(cls, settings: ServeSettings, template: str, scripts, delay: float = 0.0):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from tasks.serve.server import Generator

        gen = Generator.__new__(Generator)  # everything but loading a model
        gen.settings, gen.llm = settings, ScriptedLlama(scripts, delay)
        gen.model_sha256, gen.model_name = "0" * 64, "scripted"
        gen.formatter = Jinja2ChatFormatter(template, "</s>", "<s>")
        gen.lock = threading.Lock()
        return gen


def _scripted_server(smollm2_gguf, tmp_path, template, scripts, delay=0.0, **settings):
    from tasks.serve.server import create_app

    s = ServeSettings(gguf=smollm2_gguf, audit_log=tmp_path / "audit.jsonl", threads=1, **settings)
    server = Server.__new__(Server)
    import uvicorn

    server.app = create_app(s, ScriptedGenerator(s, template, scripts, delay))
    server.server = uvicorn.Server(uvicorn.Config(server.app, host="127.0.0.1", port=0, log_level="warning"))
    server.thread = threading.Thread(target=server.server.run, daemon=True)
    server.thread.start()
    deadline = time.monotonic() + 30
    while not server.server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.url = f"http://127.0.0.1:{server.server.servers[0].sockets[0].getsockname()[1]}"
    return server


def _stream_content(client, url, body) -> tuple[str, str]:
    with client.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as r:
        text = "".join(r.iter_text())
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip(), text


def test_a_template_that_opens_the_reasoning_section(smollm2_gguf, tmp_path):
    """The chat template ends the prompt with <think>; the model writes 'secret</think> 42' (no <final>), or never
    closes its reasoning: only '42', or nothing, is returned, streamed or not, and the reasoning is hashed."""
    import httpx

    scripts = {"closes": ["sec", "ret 4", "1</thi", "nk>", " 42"], "never": ["still ", "secret ", "41"],
               "nested": ["a <final>41</fi", "nal> b</think>", "<final>4", "2 <think>secret", "</think></final>", "x"]}
    server = _scripted_server(smollm2_gguf, tmp_path, THINKING_TEMPLATE, scripts)
    try:
        gen = server.app.state.generator
        assert gen.opens_reasoning([{"role": "user", "content": "hi"}])
        with httpx.Client(timeout=30) as client:
            for key, expected, reasoning in (("closes", "42", "secret 41"), ("never", "", "still secret 41"),
                                             ("nested", "42", "a <final>41</final> bsecret")):
                body = {"messages": [{"role": "user", "content": key}], "max_tokens": 50}
                chat = client.post(f"{server.url}/v1/chat/completions", json=body).json()
                think = client.post(f"{server.url}/think", json={"prompt": key, "max_tokens": 50}).json()
                streamed, wire = _stream_content(client, server.url, body)
                assert chat["choices"][0]["message"]["content"] == think["answer"] == streamed == expected, key
                assert think["reasoning_sha256"] == hashlib.sha256(reasoning.encode()).hexdigest()
                assert "secret" not in chat["choices"][0]["message"]["content"] + wire + json.dumps(think)
        assert "secret" not in (tmp_path / "audit.jsonl").read_text()
        assert gen.llm.decoded[-3:] == [5, 5, 5]  # decoding stopped when the final section closed: "x" not drawn
    finally:
        server.stop()


def test_a_client_that_disconnects_mid_stream_cancels_its_generation(smollm2_gguf, tmp_path):
    """A client reads a couple of chunks and goes away: decoding stops at once (not after max_tokens), the model is
    free for the next request, and the audit log has the request with finish reason 'client_disconnected'."""
    import httpx

    long_answer = ["<final>"] + [f"w{i} " for i in range(1000)]  # 1000 tokens at 10 ms: 10 s if not cancelled
    scripts = {"long": long_answer, "short": ["<final>", "done", "</final>"]}
    server = _scripted_server(smollm2_gguf, tmp_path, "{% for m in messages %}{{ m.content }}{% endfor %}",
                              scripts, delay=0.01, max_tokens_limit=1000)
    audit = tmp_path / "audit.jsonl"
    try:
        with httpx.Client(timeout=30) as client:
            body = {"messages": [{"role": "user", "content": "long"}], "max_tokens": 1000, "stream": True}
            with client.stream("POST", f"{server.url}/v1/chat/completions", json=body) as r:
                got = []
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        got.append(json.loads(line[6:]))
                    if len(got) == 3:
                        break
            assert got[0]["choices"][0]["delta"]["role"] == "assistant"
            assert got[2]["choices"][0]["delta"]["content"].startswith("w")
            disconnected = time.monotonic()
            ok = client.post(f"{server.url}/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "short"}], "max_tokens": 10})
            waited = time.monotonic() - disconnected
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "done"
        assert waited < 3.0  # not the ~10 s the rest of the long answer would take
        deadline = time.monotonic() + 5
        while len(audit.read_text().splitlines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        entries = [json.loads(x) for x in audit.read_text().splitlines()]
        gone = [e for e in entries if e["status"] == "client_disconnected"]
        assert len(gone) == 1 and gone[0]["finish_reason"] == "client_disconnected"
        assert gone[0]["seconds"] < 3.0
        decoded = server.app.state.generator.llm.decoded
        assert decoded[0] < 300, decoded  # of 1000
        assert [e["finish_reason"] for e in entries if e["status"] == "ok"] == ["stop"]
    finally:
        server.stop()
