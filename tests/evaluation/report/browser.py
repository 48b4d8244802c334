"""A headless Chromium driven through the DevTools protocol over a pipe (no extra packages).

Chromium's `--remote-debugging-pipe` reads NUL-terminated JSON commands on fd 3 and writes
responses and events on fd 4, which is all a test needs: open a file, collect console errors,
exceptions and network requests, evaluate JavaScript, ask which fonts rendered a node, and take
a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """`with Browser() as b: page = b.open(url)`; everything times out instead of hanging."""

    def __init__(self, executable: str, timeout: float = 30.0) -> None:
        self.executable = executable
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._buf = b""

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="ea-chromium-")
        cmd_r, self._cmd_w = os.pipe()  # we write commands, chromium reads fd 3
        self._ev_r, ev_w = os.pipe()  # chromium writes fd 4, we read
        # move the child's ends above 3 and 4 first: dup2(3, 3) would be a no-op that keeps
        # close-on-exec, and the pipe would be closed when chromium starts
        for name in ("cmd_r", "ev_w"):
            fd = cmd_r if name == "cmd_r" else ev_w
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            if name == "cmd_r":
                cmd_r = high
            else:
                ev_w = high

        def wire() -> None:  # runs in the child before exec
            os.dup2(cmd_r, 3)  # dup2 onto a different fd clears close-on-exec
            os.dup2(ev_w, 4)

        args = [
            self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
            f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe",
            "--enable-logging=stderr", "--v=0", "about:blank",
        ]
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, preexec_fn=wire, close_fds=False)
        os.close(cmd_r)
        os.close(ev_w)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(CDPError, OSError, TimeoutError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # only the process this object started
            self.proc.wait(timeout=10)
        for fd in (self._cmd_w, self._ev_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stderr.close()
        self._profile.cleanup()

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    # --- protocol -------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._ev_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._ev_r, 1 << 20)
            if not chunk:
                raise CDPError("chromium closed the pipe:\n" + self.stderr_text()[-3000:])
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._next_id:
                if "error" in m:
                    raise CDPError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, session: str, timeout: float | None = None
                   ) -> dict[str, Any]:
        for e in self.events:
            if e.get("method") == method and e.get("sessionId") == session:
                return e
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_message(deadline)
            self.events.append(m)
            if m.get("method") == method and m.get("sessionId") == session:
                return m

    def open(self, url: str, width: int = 1280, height: int = 4000) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network", "DOM", "CSS"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session)
        return Page(self, session)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.b = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.b.send(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        if "exceptionDetails" in res:
            raise CDPError(f"evaluate failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def _events(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.b.events
                if e.get("method") == method and e.get("sessionId") == self.session]

    def console_errors(self) -> list[str]:
        errors = []
        for p in self._events("Runtime.consoleAPICalled"):
            if p["type"] in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                     for a in p.get("args", [])))
        for p in self._events("Runtime.exceptionThrown"):
            errors.append("exception: " + json.dumps(p["exceptionDetails"])[:500])
        for p in self._events("Log.entryAdded"):
            if p["entry"]["level"] == "error":
                errors.append(f"log ({p['entry']['source']}): {p['entry']['text']}")
        return errors

    def requested_urls(self) -> list[str]:
        return [p["request"]["url"] for p in self._events("Network.requestWillBeSent")]

    def fonts_for(self, selector: str) -> list[dict[str, Any]]:
        root = self.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise CDPError(f"no node matches {selector!r}")
        return list(self.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"])

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000),
                "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
