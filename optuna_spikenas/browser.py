"""Headless Chromium from the system, for PNG figures and for the dashboard's browser test.

Only a Chromium the user installed is used (Debian: ``apt-get install chromium``); nothing is
downloaded. Without one, :func:`find_chromium` returns ``None`` and callers skip the PNGs (the
HTML reports never need a browser).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

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


def _run(chromium: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    # A throw-away profile: no state shared with the user's browser or between runs.
    with tempfile.TemporaryDirectory(prefix="spikenas-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",  # root in containers; only local pages we wrote are opened
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ]
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
    chromium = chromium or find_chromium()
    if chromium is None:
        raise BrowserError("no Chromium found (install it, e.g. `apt-get install chromium`)")
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
    chromium = chromium or find_chromium()
    if chromium is None:
        raise BrowserError("no Chromium found (install it, e.g. `apt-get install chromium`)")
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
