"""Headless Chromium from the system, for PNG figures and for the dashboard's browser test.

Only a Chromium the user installed is used (Debian: ``apt-get install chromium``); nothing is
downloaded. Without one, :func:`find_chromium` returns ``None`` and callers skip the PNGs (the
HTML reports never need a browser). :func:`evaluate` runs JavaScript on a page through the
DevTools protocol over a pipe (the browser test measures the dashboard's layout with it).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """Chromium ran but did not produce what was asked."""


def find_chromium() -> str | None:
    """The path of a system Chromium (``$CHROMIUM`` first), or ``None``."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(given: str | None) -> str:
    """``given``, else the system Chromium, or a one-line error saying how to install one."""
    chromium = given or find_chromium()
    if chromium is None:
        raise BrowserError("no Chromium found (install it, e.g. `apt-get install chromium`)")
    return chromium


def _command(chromium: str, profile: str, args: list[str]) -> list[str]:
    # A throw-away profile: no state shared with the user's browser or between runs.
    return [
        chromium,
        "--headless",
        "--no-sandbox",  # root in containers; only local pages we wrote are opened
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]


def _run(chromium: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="spikenas-chromium-") as profile:
        command = _command(chromium, profile, args)
        try:
            return subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise BrowserError(f"Chromium did not finish within {timeout:.0f} s") from None


def page_url(target: str | Path) -> str:
    """``target`` as a URL: http(s) and file URLs as they are, a path as a file URL."""
    text = str(target)
    if text.startswith(("http://", "https://", "file://")):
        return text
    return Path(text).resolve().as_uri()


def dump_dom(
    target: str | Path, wait_ms: int = 5000, chromium: str | None = None, timeout: float = 60
) -> str:
    """The page's DOM after its scripts ran for ``wait_ms`` of (virtual) time."""
    chromium = _chromium(chromium)
    done = _run(
        chromium, [f"--virtual-time-budget={wait_ms}", "--dump-dom", page_url(target)], timeout
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise BrowserError(f"Chromium --dump-dom failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def screenshot(
    target: str | Path,
    png: str | Path,
    width: int = 1280,
    height: int = 800,
    wait_ms: int = 5000,
    chromium: str | None = None,
    timeout: float = 60,
) -> Path:
    """A ``width`` x ``height`` PNG of the page after its scripts ran for ``wait_ms``."""
    chromium = _chromium(chromium)
    png = Path(png).resolve()
    png.unlink(missing_ok=True)
    done = _run(
        chromium,
        [
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={png}",
            page_url(target),
        ],
        timeout,
    )
    if not png.is_file() or png.stat().st_size == 0:
        raise BrowserError(f"Chromium wrote no screenshot: {done.stderr.strip()[-300:]}")
    return png


class _DevToolsPipe:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe``: JSON messages, each ended
    by a NUL byte, written to the browser's fd 3 and read from its fd 4 (no extra package)."""

    def __init__(self, chromium: str, profile: str, args: list[str]) -> None:
        to_browser, self.commands = os.pipe()
        self.replies, from_browser = os.pipe()

        def give_fds() -> None:  # in the child: its fd 3 reads our commands, fd 4 replies
            os.dup2(os.dup(to_browser), 3)
            os.dup2(os.dup(from_browser), 4)

        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            _command(chromium, profile, ["--remote-debugging-pipe", *args, "about:blank"]),
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            close_fds=False,  # our pipe ends are not inheritable; fds 3 and 4 are
            preexec_fn=give_fds,  # dup2 only: safe between fork and exec
        )
        os.close(to_browser)
        os.close(from_browser)
        self.buffer = b""
        self.next_id = 0

    def call(
        self, method: str, params: dict | None = None, session: str | None = None, timeout=30.0
    ) -> dict:
        """Send one command and wait for its reply; its ``result``."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise BrowserError(f"Chromium {method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.replies], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer {method} within {timeout:.0f} s")
            chunk = os.read(self.replies, 1 << 16)
            if not chunk:
                self.log.seek(0)
                stderr = self.log.read().decode(errors="replace").strip()[-300:]
                raise BrowserError(f"Chromium closed during {method}: {stderr}")
            self.buffer += chunk

    def close(self) -> None:
        try:
            os.write(
                self.commands, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0"
            )
        except OSError:  # it has gone already
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.commands)
        os.close(self.replies)
        self.log.close()


def _wait_for_load(browser: _DevToolsPipe, session: str, deadline: float) -> None:
    """Wait until the page (not the blank page a new tab starts with) has loaded."""
    check = {"expression": "location.href + ' ' + document.readyState", "returnByValue": True}
    while time.monotonic() < deadline:
        try:
            state = browser.call("Runtime.evaluate", check, session)["result"].get("value", "")
        except BrowserError:  # the blank page's context was replaced while it was asked
            state = ""
        if state.endswith(" complete") and not state.startswith("about:blank"):
            return
        time.sleep(0.05)
    raise BrowserError("Chromium did not load the page in time")


def evaluate(
    target: str | Path,
    expression: str,
    width: int = 1280,
    height: int = 800,
    wait_ms: int = 5000,
    chromium: str | None = None,
    timeout: float = 60,
) -> Any:
    """The value (JSON) of the JavaScript ``expression`` on the page in a ``width`` x ``height``
    window, ``wait_ms`` after it loaded; a promise is awaited (up to ``timeout`` s)."""
    chromium = _chromium(chromium)
    with tempfile.TemporaryDirectory(prefix="spikenas-chromium-") as profile:
        browser = _DevToolsPipe(chromium, profile, [f"--window-size={width},{height}"])
        try:
            target_id = browser.call("Target.createTarget", {"url": page_url(target)})["targetId"]
            attached = browser.call(
                "Target.attachToTarget", {"targetId": target_id, "flatten": True}
            )
            session = attached["sessionId"]
            _wait_for_load(browser, session, time.monotonic() + timeout)
            time.sleep(wait_ms / 1000)
            params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
            result = browser.call("Runtime.evaluate", params, session, timeout)
        finally:
            browser.close()
    if "exceptionDetails" in result:
        details = result["exceptionDetails"]
        error = details.get("exception", {}).get("description") or details.get("text")
        raise BrowserError(f"the expression failed: {error}")
    return result["result"].get("value")
