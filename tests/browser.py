"""Headless Chromium driven over the DevTools protocol on a pipe: open a page at a set width, measure it, screenshot it.

Used by the page tests (does it fit 1400 px?) and scripts/page_shots.py (the screenshots in docs/). Debian's
chromium at /usr/bin/chromium; no network beyond the pages given.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

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


def chromium_path() -> str | None:
    """The chromium executable, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The same pipe ends moved to fds >= 10, so mapping them onto 3 and 4 in the child cannot clobber one another."""
    out = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return out  # type: ignore[return-value]


class Chromium:
    """One headless browser with one page; `open(url)` then `evaluate`, `fits`, `screenshot`."""

    def __init__(self, width: int = 1400, height: int = 900, user_data_dir: Path | None = None):
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self._tmp = None if user_data_dir else tempfile.TemporaryDirectory(prefix="lpbf-chromium-")
        udd = user_data_dir or Path(self._tmp.name)
        to_child_r, self._w = _high(os.pipe())
        self._r, from_child_w = _high(os.pipe())
        # the DevTools pipe is fd 3 (commands in) and fd 4 (replies out) in chromium; bash maps them (dash takes no
        # fd numbers above 9; preexec_fn is unsafe in a process with threads)
        args = [exe, *FLAGS, f"--user-data-dir={udd}", f"--window-size={width},{height}", "about:blank"]
        wrap = [shutil.which("bash") or "/bin/bash", "-c", f'exec "$@" 3<&{to_child_r} 4>&{from_child_w}', "chromium"]
        self.proc = subprocess.Popen([*wrap, *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self._id, self._buf, self.width, self.height = 0, b"", width, height
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self._metrics(height)

    def _call(self, method: str, params: dict | None = None, session: bool = False, timeout: float = 60.0) -> dict:
        """Send one command and return its result (events in between are dropped)."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self._session
        try:
            os.write(self._w, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError as exc:
            raise RuntimeError(f"chromium is not running (exit code {self.proc.poll()})") from exc
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while b"\0" not in self._buf:
                if not select.select([self._r], [], [], max(0.0, end - time.monotonic()))[0]:
                    raise TimeoutError(f"{method}: no reply in {timeout} s")
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(f"{method}: no reply in {timeout} s")

    def _metrics(self, height: int) -> None:
        """Fix the viewport to width x height CSS px at scale 1."""
        self._call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=True,
        )

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page."""
        res = self._call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session=True
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def open(self, url: str, timeout: float = 60.0) -> None:
        """Navigate and wait until the document and all its images have loaded."""
        self.evaluate("window.__lpbf_previous_page = true")  # gone once the new document is there
        self._call("Page.navigate", {"url": url}, session=True)
        end = time.monotonic() + timeout
        done = (
            "window.__lpbf_previous_page === undefined && document.readyState === 'complete' && "
            "Array.from(document.images).every(i => i.complete)"
        )
        while time.monotonic() < end:
            time.sleep(0.2)
            try:
                if self.evaluate(done):
                    return
            except RuntimeError:
                continue  # the old document went away mid-call
        raise TimeoutError(f"{url} did not finish loading in {timeout} s")

    def overflow_px(self) -> int:
        """How many CSS px the page is wider than the window (0: no horizontal scrollbar)."""
        return int(
            self.evaluate(
                "Math.max(document.documentElement.scrollWidth, document.body ? document.body.scrollWidth : 0)"
                " - document.documentElement.clientWidth"
            )
        )

    def screenshot(self, path: Path, full_page: bool = True, max_height: int = 6000) -> Path:
        """PNG of the page at the window width (the whole page height with full_page, capped at max_height)."""
        if full_page:
            h = int(self.evaluate("document.documentElement.scrollHeight"))
            self._metrics(min(max(h, 100), max_height))
        data = self._call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        if full_page:
            self._metrics(self.height)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Quit the browser."""
        try:
            self._call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
