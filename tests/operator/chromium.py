"""Headless Chromium (Debian's `chromium`), driven over the DevTools protocol on a pipe, without network.

`Browser` starts Chromium with ``--remote-debugging-pipe`` (commands on fd 3, answers on fd 4, each a
JSON message ended by a NUL byte), inside a network namespace of its own when ``unshare -n`` is allowed
(only a loopback that is down: no network at all), with the flags headless Chromium needs on these
machines. `open(url)` loads a page in a new tab and returns a `Page` whose `evaluate` runs JavaScript in
it and `screenshot` captures a region; every request the page made is kept in `Page.requests`.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


def chromium_path() -> str:
    """Debian's Chromium; the test fails (not skips) when it is missing, saying how to install it."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.fail("headless Chromium is needed: `apt-get install -y chromium` (scripts/setup.sh installs it)")


def network_isolated() -> bool:
    """Whether `unshare -n` may give a process a network namespace of its own here."""
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"]).returncode == 0


class Browser:
    def __init__(self, *, width: int = 1300, height: int = 3000):
        self.profile = tempfile.TemporaryDirectory(prefix="qdask-chromium-")
        self.isolated = network_isolated()
        commands_r, self._commands = os.pipe()
        self._answers, answers_w = os.pipe()
        chromium = [
            chromium_path(),
            *FLAGS,
            f"--user-data-dir={self.profile.name}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        wrapper = ["bash", "-c", f'exec "$@" 3<&{commands_r} 4>&{answers_w}', "chromium"]
        self.process = subprocess.Popen(
            [*wrapper, *(["unshare", "-n"] if self.isolated else []), *chromium],
            pass_fds=(commands_r, answers_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_r)
        os.close(answers_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60
    ) -> dict:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(self._read(deadline))

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe (did it start?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self.send("Network.enable", session=session)
        self.send("Page.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        os.close(self._commands)
        os.close(self._answers)
        self.profile.cleanup()


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    @property
    def requests(self) -> list[str]:
        """The URLs of every request the page made so far."""
        return [
            e["params"]["request"]["url"]
            for e in self.browser.events
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session
        ]

    def evaluate(self, expression: str) -> Any:
        result = self.browser.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def until(self, expression: str, timeout: float = 60) -> Any:
        """Evaluate `expression` until it is truthy (a page rendering asynchronously), and return it."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def screenshot(self, path: Path, box: dict[str, float]) -> Path:
        clip = {**box, "scale": 1}
        data = self.browser.send(
            "Page.captureScreenshot", {"format": "png", "clip": clip}, session=self.session
        )
        path.write_bytes(base64.b64decode(data["data"]))
        return path
