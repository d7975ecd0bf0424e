"""alphagate serve refuses what it cannot serve and drops what nobody waits for (issue 25): a client that goes away
mid-generation (not streaming) frees the model within a second; an unknown model gets OpenAI's 404; every error has
one shape; the port and the audit log are checked before the model loads. No model is loaded here (a scripted one
stands in behind the real HTTP stack)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.test_serve import _scripted_server

PLAIN = "{% for m in messages %}{{ m.content }}{% endfor %}"


def test_a_non_streaming_client_that_disconnects_frees_the_model(smollm2_gguf, tmp_path):
    scripts = {"long": ["<final>"] + [f"w{i} " for i in range(1000)], "short": ["<final>", "done", "</final>"]}
    server = _scripted_server(smollm2_gguf, tmp_path, PLAIN, scripts, delay=0.01, max_tokens_limit=1000)
    audit = tmp_path / "audit.jsonl"
    try:
        body = {"messages": [{"role": "user", "content": "long"}], "max_tokens": 1000}  # 10 s if never cancelled
        with httpx.Client(timeout=httpx.Timeout(30, read=0.5)) as client, pytest.raises(httpx.ReadTimeout):
            client.post(f"{server.url}/v1/chat/completions", json=body)  # gives up after 0.5 s: the socket closes
        gone = time.monotonic()
        with httpx.Client(timeout=30) as client:
            ok = client.post(f"{server.url}/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "short"}], "max_tokens": 10})
        waited = time.monotonic() - gone
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "done"
        assert waited < 2.0, waited
        entries = [json.loads(x) for x in audit.read_text().splitlines()]
        dropped = [e for e in entries if e["status"] == "client_disconnected"]
        assert len(dropped) == 1 and dropped[0]["finish_reason"] == "client_disconnected"
        assert server.app.state.generator.llm.decoded[0] < 200  # of 1000: stopped within a second of the disconnect
    finally:
        server.stop()


def test_unknown_model_and_unknown_routes_get_one_error_shape(smollm2_gguf, tmp_path):
    server = _scripted_server(smollm2_gguf, tmp_path, PLAIN, {"hi": ["<final>", "ok", "</final>"]})
    try:
        with httpx.Client(timeout=30) as client:
            chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
            for path, body in (("/v1/chat/completions", {**chat, "model": "gpt-4o"}),
                               ("/v1/chat/completions", {**chat, "model": "gpt-4o", "stream": True}),
                               ("/think", {"prompt": "hi", "model": "gpt-4o"})):
                r = client.post(f"{server.url}{path}", json=body)
                assert r.status_code == 404, r.text
                assert r.json() == {"error": {"message": r.json()["error"]["message"], "type": "invalid_request_error",
                                              "param": "model", "code": "model_not_found"}}
                assert "'gpt-4o' does not exist" in r.json()["error"]["message"] and "'scripted'" in r.json()[
                    "error"]["message"]
            assert client.post(f"{server.url}/v1/chat/completions", json={**chat, "model": "scripted"}
                               ).status_code == 200
            for method, path, status in (("GET", "/v1/nothing", 404), ("GET", "/think", 405),
                                         ("DELETE", "/v1/chat/completions", 405)):
                r = client.request(method, f"{server.url}{path}")
                assert r.status_code == status
                assert set(r.json()) == {"error"} and set(r.json()["error"]) == {"message", "type", "param", "code"}
                assert path in r.json()["error"]["message"]
    finally:
        server.stop()


def _no_model(monkeypatch):
    import tasks.serve.server as server

    monkeypatch.setattr(server, "Generator", lambda settings: pytest.fail("the model was loaded"))


@pytest.mark.parametrize("port, words", [(0, "expected a port number 1-65535"), (70000, "1-65535"),
                                         (-1, "1-65535")])
def test_a_bad_port_is_refused_before_the_model_loads(smollm2_gguf, tmp_path, capsys, monkeypatch, port, words):
    from flows.cli import main

    _no_model(monkeypatch)
    argv = ["serve", "--gguf", str(smollm2_gguf), "--port", str(port), "--audit-log", str(tmp_path / "a.jsonl")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--port {port}" in err and words in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_taken_port_and_a_locked_or_foreign_audit_log_are_refused_first(smollm2_gguf, tmp_path, capsys,
                                                                           monkeypatch):
    from flows.cli import main
    from tasks.outdir import exclusive

    _no_model(monkeypatch)
    audit = tmp_path / "audit.jsonl"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--gguf", str(smollm2_gguf), "--port", str(port), "--audit-log", str(audit)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    argv = ["serve", "--gguf", str(smollm2_gguf), "--port", str(free), "--audit-log", str(audit)]
    with exclusive(audit, "serve", "--audit-log", file=True):  # another server writes this audit log
        assert main(argv) == 2
        assert "is being written by another alphagate process (pid" in capsys.readouterr().err
    audit.write_text("my own notes\n")
    assert main(argv) == 2
    assert "is not an audit log of `alphagate serve`" in capsys.readouterr().err
    assert audit.read_text() == "my own notes\n" and sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl"]
