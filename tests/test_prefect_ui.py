"""The Prefect UI path as a person meets it: the README's Prefect commands, as written, on a fresh PREFECT_HOME with
a real server on 127.0.0.1; the on-demand deployment's run form in headless Chromium (the suites offered as
choices); a smoke run submitted from the form and run by the worker; the run's page listing its results.

Screenshots are kept in ``runs/test-ui/`` (form.png, run-artifacts.png, report.png).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
import warnings
from pathlib import Path

import pytest

from tests.cdp import chromium_binary
from tests.prefect_server import Background, command_kind, free_port, fresh_env, readme_commands, run_commands, wait

pytestmark = [pytest.mark.ui, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "runs" / "test-ui"


@pytest.fixture
def prefect_stack(tmp_path):
    """Run the README's block: the server and worker in the background, the rest to completion. The only change:
    the port (4200 may be taken), set through PREFECT_SERVER_API_PORT and replaced in the API URL."""
    commands = readme_commands("## Prefect:")
    assert [command_kind(c) for c in commands] == ["server", "export", "work-pool", "deploy", "worker"], commands
    port = free_port()
    env = fresh_env(tmp_path / "prefect-home", port)
    background = Background()
    try:
        run_commands(commands, env, port, background, tmp_path)
        yield f"http://127.0.0.1:{port}", background
    finally:
        background.stop()


def _settle(browser, timeout: float = 15.0) -> None:
    """Let the page's loading placeholders (skeletons) fill in before a screenshot; a page still loading after
    ``timeout`` is photographed as it is."""
    deadline = time.monotonic() + timeout
    while browser.evaluate("document.querySelectorAll('.animate-pulse').length") and time.monotonic() < deadline:
        time.sleep(0.5)


def _submit(browser, api, deployment_id: str, logs, tries: int = 2) -> dict:
    """Press the form's Submit as a person does: when no run appears within a minute and the form is still on
    screen (Prefect's form stays put, with a toast, when its create call fails, e.g. a busy SQLite server in a
    loaded CI), press it once more. The page's text and a screenshot of each failed press are kept (a warning when
    the second press works; the failure's message when it does not). Exactly one run may come of it: a slow first
    create that lands beside the second press's run fails the test rather than racing it."""
    def runs() -> list:
        return api.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}).json()

    for attempt in range(1, tries + 1):
        browser.wait_for(lambda _: browser.click_text("button", "Submit"), "the Submit button", 30)
        try:
            wait(lambda: runs()[0], "the submitted run", 60)
        except AssertionError:
            page, where = browser.text(), browser.evaluate("location.pathname")
            browser.screenshot(SHOTS / f"submit-{attempt}.png")
            seen = f"after Submit press {attempt}, no run; the page ({where}) shows:\n{page[:3000]}"
            if attempt == tries or not where.endswith("/run") or runs():
                raise AssertionError(f"{seen}\nthe server and worker logged:\n{logs()}") from None
            warnings.warn(seen, stacklevel=2)
            continue
        time.sleep(5 if attempt > 1 else 0)  # a first press's late run would show by now
        made = runs()
        assert len(made) == 1, f"{len(made)} runs from the form's presses: {[r['name'] for r in made]}"
        return made[0]
    raise AssertionError("unreachable")


def _smoke_config(tmp_path: Path, base_dir: Path) -> Path:
    path = tmp_path / "smoke.yaml"
    path.write_text(f"name: smoke\nbase_model: {{name: tiny, local_dir: {base_dir}}}\n"
                    "train: {max_steps: 2, batch_size: 2, eval_every: 2, max_length: 96}\n"
                    "tuner: {n_trials: 1, proxy_steps: 1, n_initial_points: 1}\n"
                    "decision: {bootstrap: 200}\n")
    return path


@pytest.mark.skipif(chromium_binary() is None, reason="needs Chromium (`apt-get install -y chromium`; .ci/run does)")
def test_readme_prefect_path_run_form_and_results_in_the_ui(prefect_stack, tiny_base_dir, smoke_store, tmp_path):
    import httpx

    from tests.conftest import seed_store

    seed_store(smoke_store, tmp_path / "run")  # the session's smoke trainings: this test is about the UI

    from tasks.bench.suites import suite_names
    from tests.cdp import Browser

    url, background = prefect_stack
    api = httpx.Client(base_url=f"{url}/api", timeout=30)
    deployment = api.get("/deployments/name/alphagate-compare/on-demand").json()
    nightly = api.get("/deployments/name/alphagate-nightly/nightly-study").json()
    assert "Asia/Tokyo" in nightly["description"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    params = {"params": {"config": str(_smoke_config(tmp_path, tiny_base_dir)), "out": str(tmp_path / "run"),
                         "cache": str(tmp_path / "cache"), "suites": ["mmlu"], "formats": ["bf16"], "limit": 2,
                         "data": "sample", "upload": False}}  # every field the form requires
    ui = f"{url}/v2"  # the UI a person gets at the server's address (Prefect 3.9 sends "/" to its V2 UI)
    form = (f"{ui}/deployments/deployment/{deployment['id']}/run?"  # the run form, prefilled by its link
            + urllib.parse.urlencode({"parameters": json.dumps(params)}))
    with Browser(tmp_path / "chromium") as browser:
        browser.goto(form)
        browser.wait_for(lambda t: "Suites" in t and "Submit" in t, "the run form", 120)
        assert browser.evaluate("document.querySelector('[aria-label=\"Remove mmlu tag\"]') !== null")
        assert browser.evaluate("(() => { const b = document.querySelector('[aria-label=\"Select Suites\"]');"
                                " if (!b) return false; b.click(); return true; })()")
        options = browser.wait_for(lambda _: browser.evaluate(
            "[...document.querySelectorAll('[role=option]')].map(e => e.innerText.trim())"), "the suites' choices")
        assert options == suite_names(), options  # a list of choices, not free text
        browser.screenshot(SHOTS / "form.png")
        browser.send("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape",
                     windowsVirtualKeyCode=27)
        run = _submit(browser, api, deployment["id"], background.logs)
        sent = run["parameters"]["params"]
        assert {k: sent.get(k) for k in params["params"]} == params["params"], sent  # what the form sent
        run = wait(lambda: (r := api.get(f"/flow_runs/{run['id']}").json())["state"]["type"] in (
            "COMPLETED", "FAILED", "CRASHED", "CANCELLED") and r, "the smoke run to finish", 1200, every=3)
        assert run["state"]["name"] == "Completed", f"{run['state']}\n{background.logs()}"
        assert (tmp_path / "run" / "decision" / "decision.json").is_file()

        browser.goto(f"{ui}/runs/flow-run/{run['id']}?tab=Artifacts")  # the run the person started
        text = browser.wait_for(lambda t: "alphagate-decision" in t and "alphagate-report" in t and t,
                                "the decision and report artifacts on the run's page", 60)
        assert "alphagate-decision-suites" in text and "alphagate-progress" in text
        _settle(browser)
        browser.screenshot(SHOTS / "run-artifacts.png")

        report = api.post("/artifacts/filter", json={"artifacts": {"key": {"any_": ["alphagate-report"]},
                                                                   "flow_run_id": {"any_": [run["id"]]}}}).json()[0]
        assert "data:image/png;base64," in report["data"]
        browser.goto(f"{ui}/artifacts/artifact/{report['id']}")
        loaded = browser.wait_for(lambda _: browser.evaluate(
            "(() => { const imgs = [...document.querySelectorAll('img[src^=\"data:image/png\"]')];"
            " return imgs.length && imgs.every(i => i.complete && i.naturalWidth > 0) ? imgs.length : 0; })()"),
            "the report's figures to show", 60)
        assert loaded == report["data"].count("data:image/png;base64,")  # every figure shows, none broken
        browser.screenshot(SHOTS / "report.png")

        browser.goto(f"{ui}/deployments/deployment/{nightly['id']}?tab=Description")
        browser.wait_for(lambda t: "Asia/Tokyo" in t, "the nightly schedule's timezone on its page", 60)
        browser.screenshot(SHOTS / "nightly.png", full_page=False)


def _table_edges(browser, settle: float = 15.0) -> list:
    """[the table's right edge, its panel's right edge] once the page's fonts have loaded and the layout stands
    (the same for two reads half a second apart; at most ``settle`` seconds): a table measured while a web font
    is still swapping in has widths no person sees."""
    browser.evaluate("document.fonts.ready.then(() => true)")
    measure = ("(() => { const t = document.querySelector('table'); return [t.getBoundingClientRect().right,"
               " t.parentElement.clientWidth + t.parentElement.getBoundingClientRect().left]; })()")
    deadline, edges = time.monotonic() + settle, browser.evaluate(measure)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = browser.evaluate(measure)
        if now == edges:
            break
        edges = now
    return edges


def _publish_decision(tmp_path: Path) -> tuple[Path, Path]:
    """A decision and report made from per-item records of two models on the bundled MMLU sample."""
    from tasks.bench.suites import SAMPLES_DIR
    from tasks.config import DecisionSpec
    from tasks.decide.decision import decide
    from tasks.publish.report import write_report
    from tasks.store import sha256_file

    data = SAMPLES_DIR / "mmlu.sample.jsonl"
    folders = {}
    for arm, picks in (("linear", [1, 2, 0, 3, 1, 0]), ("sigmoid-bayes", [0, 3, 0, 3, 1, 2])):
        folder = tmp_path / "results" / arm
        folder.mkdir(parents=True)
        records = [{"index": i, "loglikelihoods": [-1.0 if j == p else -4.0 for j in range(4)], "pred": p,
                    "pred_norm": p, "gold": g, "acc": p == g, "acc_norm": p == g}
                   for i, (p, g) in enumerate(zip(picks, [1, 2, 0, 3, 1, 2], strict=True))]
        (folder / "mmlu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (folder / "mmlu.summary.json").write_text(json.dumps({"timings": {}, "data": str(data),
                                                             "data_sha256": sha256_file(data)}))
        folders[arm] = folder
    decide(folders, DecisionSpec(bootstrap=200), tmp_path / "decision")
    report = write_report({f"{k}/bf16": v for k, v in folders.items()}, tmp_path / "report",
                          decision=tmp_path / "decision" / "decision.json")
    return tmp_path / "decision" / "decision.json", report


@pytest.mark.skipif(chromium_binary() is None, reason="needs Chromium (`apt-get install -y chromium`; .ci/run does)")
def test_run_form_labels_and_decision_table_as_a_person_sees_them(tmp_path):
    """The run form: only fields that may stay empty say "(Optional)", no `Property is type "None"`, Data offers its
    choices; a form without bf16 is refused by the server's validation; the decision's table fits its panel at
    1,400 px and the report lists the items where the models disagree."""
    import httpx
    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.compare import compare
    from flows.run_results import publish_results
    from tests.cdp import Browser

    @flow(name="ui-check")
    def show(decision: str, report: str) -> str:
        from prefect.runtime import flow_run

        publish_results(decision, report)
        return str(flow_run.id)

    port = free_port()
    env = fresh_env(tmp_path / "home", port)
    background = Background()
    try:
        background.start(f"{Path(sys.executable).parent / 'prefect'} server start", env, tmp_path / "server.log")
        wait(lambda: httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200, "the Prefect server", 300)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api", timeout=30)
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
            deployment = str(compare.to_deployment(name="form-check").apply())
            decision, report = _publish_decision(tmp_path)
            run_id = show(str(decision), str(report))
            # this process's log and event workers send to this server: empty them while it is up. Left holding
            # items for a stopped server, they made the next prefect_test_harness hang in its drain, for good.
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=60)
            EventsWorker.drain_all(timeout=60)
        schema = api.get(f"/deployments/{deployment}").json()["parameter_openapi_schema"]
        bad = api.post("/ui/schemas/validate", json={"schema": schema, "values": {"params": {
            "config": "c.yaml", "out": "o", "cache": "c", "suites": ["mmlu"], "formats": ["q8_0"], "data": "sample",
            "upload": False}}}).json()
        assert bad["valid"] is False  # what the form shows before any run exists
        SHOTS.mkdir(parents=True, exist_ok=True)
        ui = f"http://127.0.0.1:{port}/v2"
        with Browser(tmp_path / "chromium") as browser:
            browser.goto(f"{ui}/deployments/deployment/{deployment}/run")
            text = browser.wait_for(lambda t: "Upload" in t and "Submit" in t and t, "the run form", 120)
            assert "Limit (Optional)" in text and "Judge (Optional)" in text and "Date" not in text
            for required in ("Config", "Out", "Cache", "Suites", "Formats", "Data", "Upload"):
                assert f"\n{required}\n" in text and f"{required} (Optional)" not in text, required
            assert 'Property is type "None"' not in text and "A file (path)" in text and "``" not in text
            browser.screenshot(SHOTS / "form-fields.png")
            artifacts = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}).json()
            ids = {a["key"]: a["id"] for a in artifacts if a["key"]}
            browser.goto(f"{ui}/artifacts/artifact/{ids['alphagate-decision']}")
            browser.wait_for(lambda t: "p (Holm)" in t, "the decision's table", 60)
            edges = _table_edges(browser)
            assert edges[0] <= edges[1] + 1, edges  # the last column stays inside the Markdown panel
            browser.screenshot(SHOTS / "decision.png")
            browser.goto(f"{ui}/artifacts/artifact/{ids['alphagate-report']}")
            browser.wait_for(lambda t: "Where the two models disagree" in t and "What is 7 x 8?" in t,
                             "the disagreement list in the report", 60)
    finally:
        background.stop()
