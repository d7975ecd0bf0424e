"""A minimal headless-Chromium driver over the Chrome DevTools Protocol (the `websockets` package the project
already installs): open a page, wait for text, read the page's text, click, take screenshots.

Debian's `chromium` (`.ci/run` installs it when missing) is started with its own profile in a temporary folder and
a debugging port chosen by Chromium (read back from its DevTools address line); it is stopped with the test.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    def __init__(self, profile: Path, width: int = 1400, height: int = 1000, timeout: float = 60.0):
        from websockets.sync.client import connect

        binary = chromium_binary()
        if binary is None:
            raise FileNotFoundError("No Chromium found (looked for chromium, chromium-browser, google-chrome): "
                                    "install Debian's with `apt-get install -y chromium` (.ci/run does).")
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"), start_new_session=True)  # noqa: SIM115
        deadline, port = time.monotonic() + timeout, None
        while port is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"Chromium did not start: {self.log.read_text(errors='replace')[-2000:]}")
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", self.log.read_text(errors="replace"))
            port = int(found.group(1)) if found else None
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=timeout)
        self._id = 0
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def send(self, method: str, timeout: float = 60.0, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for(self, predicate, what: str, timeout: float = 60.0, every: float = 0.5):
        """Poll ``predicate(page text)`` until it returns something truthy; a clear error with the page's text
        otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if value := predicate(text):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; the page shows:\n"
                                     f"{text[:3000]}")
            time.sleep(every)

    def click_text(self, tag: str, text: str) -> bool:
        """Click the first visible ``tag`` element whose text is ``text`` (trimmed); False when there is none."""
        return bool(self.evaluate(
            f"(() => {{ const el = [...document.querySelectorAll({json.dumps(tag)})].find(e => "
            f"e.innerText && e.innerText.trim() === {json.dumps(text)} && e.offsetParent !== null);"
            f" if (!el) return false; el.scrollIntoView(); el.click(); return true; }})()"))

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params |= {"captureBeyondViewport": True,
                       "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000),
                                "scale": 1}}
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
