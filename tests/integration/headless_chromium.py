"""A headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`): load a
page, then read what a user would see (visible text, whether each image decoded) and what went wrong
(console errors, uncaught exceptions, failed loads). No Python dependency: the protocol is JSON messages
ended by NUL on file descriptors 3 (to the browser) and 4 (from it); the Debian `chromium` package is
all it needs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: executables tried in order
NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--remote-debugging-pipe",
)
#: what the page reports once loaded
PAGE_STATE = """JSON.stringify({
  text: document.body ? document.body.innerText : "",
  banner: (document.querySelector(".banner") || {innerText: ""}).innerText,
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))
})"""


def find_chromium() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


@dataclass
class PageResult:
    text: str
    banner: str
    images: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads


class Chromium:
    """One browser; `load(path)` opens each page in a fresh tab. Use as a context manager."""

    def __init__(self, binary: str, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.TemporaryDirectory(prefix="fusion-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the child's ends above fd 9, so that moving them onto 3 and 4 cannot overwrite one another
        to_browser_r, from_browser_w = (_above_nine(fd) for fd in (to_browser_r, from_browser_w))
        command = [binary, *FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"]
        # bash (dash takes no fd above 9) moves the pipe ends onto fds 3 and 4 for --remote-debugging-pipe
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}', "bash", *command],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self._send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.profile.cleanup()

    # ------------------------------------------------------------- protocol
    def _send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send a command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self._events.append(reply)

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"chromium sent nothing for {self.timeout} s")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium exited (status {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def _wait_for(self, method: str, session: str) -> None:
        while True:
            for k, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    del self._events[k]
                    return
            self._events.append(self._receive())

    # ------------------------------------------------------------- pages
    def load(self, path: Path) -> PageResult:
        """Open `path` in a new tab, wait for its load event, and report what it shows and what failed."""
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self._send(f"{domain}.enable", session=session)
        self._events.clear()
        self._send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        self._wait_for("Page.loadEventFired", session)
        state = self._send(
            "Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True}, session=session
        )
        value = json.loads(state["result"]["value"])
        errors = [e for event in self._events if event.get("sessionId") == session for e in _errors(event)]
        self._send("Target.closeTarget", {"targetId": target})
        return PageResult(value["text"], value["banner"], value["images"], errors)


def _above_nine(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def _errors(event: dict[str, Any]) -> list[str]:
    """The errors an event reports (Selenium's SEVERE level): console.error, uncaught exceptions, log
    entries of level error (failed loads among them)."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
        return [
            f"console.{params['type']}: "
            + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", []))
        ]
    if method == "Runtime.exceptionThrown":
        return [f"exception: {params.get('exceptionDetails', {}).get('text')}"]
    if method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        entry = params["entry"]
        return [f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()]
    return []
