"""Screenshots at 1400 px of what people look at: the demo summary, the web view, the build report (for docs/).

    .venv/bin/python scripts/page_shots.py --demo demo-out --report runs/report.html --out docs/img

Opens each page in headless Chromium (tests/browser.py) at a 1400 x 1400 window, prints how far it overflows
horizontally (0 = no horizontal scrollbar) and writes JPEG screenshots. Exits 1 when a page overflows.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser import Chromium  # noqa: E402


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shot(c: Chromium, url: str, out: Path, name: str, scroll_to: str | None = None) -> int:
    """Open, measure overflow, save a 1400 px wide JPEG of the window (scrolled to a CSS selector if given)."""
    c.open(url)
    over = c.overflow_px()
    if scroll_to:
        c.evaluate(f"(document.querySelector({json.dumps(scroll_to)}) || document.body).scrollIntoView()")
    png = c.screenshot(out / f".{name}.png", full_page=False)
    img = cv2.imread(str(png))
    cv2.imwrite(str(out / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 75])
    png.unlink()
    print(f"{name:28s} {img.shape[1]}x{img.shape[0]}  horizontal overflow {over} px  {url}")
    return over


def _changed_layer(store: Path) -> tuple[str, int] | None:
    """A layer whose early (webcam) state differs from its final one, to show the state history."""
    for a in sorted((store / "archive").glob("*/*/anomaly_lr.json")):
        final = a.with_name("anomaly.json")
        if final.exists() and json.loads(a.read_text())["layer_state"] != json.loads(final.read_text())["layer_state"]:
            return a.parent.parent.name, int(a.parent.name)
    return None


def main() -> int:
    """Take every screenshot; 1 when a page overflows 1400 px."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=Path("demo-out"), help="demo output folder (summary.html, box/)")
    ap.add_argument("--report", type=Path, default=None, help="an HTML report from `lpbf-edge report`")
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from edge.web.config import WebConfig
    from edge.web.server import WebServer

    changed = _changed_layer(args.demo / "box")
    summary = (args.demo / "summary.html").resolve().as_uri()
    shots = [(summary, "demo_summary", None),
             (summary, "demo_summary_flagged", f"#layer-{changed[1]}" if changed else ".card:nth-of-type(3)")]
    if args.report is not None:
        report = args.report.resolve().as_uri()
        shots += [(report, "report", None), (report, "report_layers", "#thumbnails")]
    worst = 0
    web = WebServer(args.demo / "box", WebConfig(enabled=True, port=_free_port()), "lpbf-edge demo-box").start()
    try:
        shots.append((web.url, "web_latest", None))
        if changed:
            shots.append((f"{web.url}?job={changed[0]}&layer={changed[1]}", "web_state_history", None))
        with Chromium(1400, 1400) as c:
            for url, name, scroll in shots:
                worst = max(worst, _shot(c, url, args.out, name, scroll_to=scroll))
    finally:
        web.stop()
    return 1 if worst > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
