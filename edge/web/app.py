"""The web view as a Bottle WSGI app: GET-only routes over a store root, optional HTTP basic auth.

Routes: `/` (HTML), `/api/layers` (JSON list, newest first), `/api/health`, `/layers/<job>/<n>/<name>.png` (lr, sr as
archived; overview, zoom_lr, zoom_sr rendered) and `/layers/<job>/<n>/<name>.json` (meta, anomaly, anomaly_lr).
"""

from __future__ import annotations

import functools
import hmac
import json
from pathlib import Path

import bottle

from edge.analyze.layer_view import load_layer_view, png_bytes, render
from edge.web.page import page_html
from edge.web.store_view import health, jobs, layer_folder, list_layers

RENDERED = {"overview": 400, "zoom_lr": 256, "zoom_sr": 256}
ARCHIVED_PNG = ("lr", "sr")
ARCHIVED_JSON = ("meta", "anomaly", "anomaly_lr")
TIMELINE_MAX = 500


def _auth_plugin(username: str, password: str):
    """A Bottle plugin asking every request for HTTP basic auth with these credentials."""

    def plugin(callback):
        """Wrap a route callback."""
        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            """Answer 401 unless the request carries the credentials."""
            got = bottle.request.auth
            if got is None or not (
                hmac.compare_digest(got[0].encode(), username.encode())
                and hmac.compare_digest(got[1].encode(), password.encode())
            ):
                err = bottle.HTTPError(401, "the lpbf-edge web view needs a user name and password")
                err.add_header("WWW-Authenticate", 'Basic realm="lpbf-edge", charset="UTF-8"')
                return err
            return callback(*args, **kwargs)

        return wrapper

    return plugin


@functools.lru_cache(maxsize=96)
def _rendered_png(folder: str, job: str, layer: int, name: str, stamp: tuple) -> bytes | None:
    """A rendered view as PNG bytes, cached per layer files' modification times (`stamp`)."""
    view = load_layer_view(Path(folder), job, layer)
    img = None if view is None else render(view, name, RENDERED[name])
    return None if img is None else png_bytes(img)


def _stamp(folder: Path) -> tuple:
    """Modification times of the files a rendered view depends on."""
    return tuple(
        p.stat().st_mtime_ns if p.exists() else 0
        for p in (folder / n for n in ("meta.json", "anomaly.json", "anomaly_lr.json", "sr.png", "lr.png", "mask.png"))
    )


def make_app(
    root: str | Path,
    *,
    title: str = "lpbf-edge",
    refresh_s: float = 10.0,
    username: str = "lpbf",
    password: str | None = None,
    health_max_age_s: float = 30.0,
) -> bottle.Bottle:
    """The WSGI app over store root `root` (read-only)."""
    root = Path(root)
    app = bottle.Bottle()
    if password:
        app.install(_auth_plugin(username, password))

    @app.hook("after_request")
    def _headers() -> None:
        """Headers on every response: no MIME sniffing, a strict content security policy."""
        bottle.response.set_header("X-Content-Type-Options", "nosniff")
        bottle.response.set_header(
            "Content-Security-Policy",
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
            "connect-src 'self'; frame-ancestors 'none'",
        )

    @app.get("/")
    def index():
        """The HTML page: health, the job's timeline, one layer (the latest unless ?job=&layer=)."""
        q = bottle.request.query
        layer_q = q.get("layer", "")
        all_jobs = [j for j, _ in jobs(root)]
        job = q.get("job") or (all_jobs[0] if all_jobs else None)
        if job is not None and job not in all_jobs:
            return bottle.HTTPError(404, f"no job {job!r} in the archive at {root}")
        entries = list_layers(root, job=job, limit=TIMELINE_MAX) if job else []
        n = int(layer_q) if layer_q.isdigit() else (entries[0].layer if entries else None)
        view = None
        if job is not None and n is not None:
            folder = layer_folder(root, job, n)
            view = load_layer_view(folder, job, n) if folder is not None and folder.is_dir() else None
        follow = not layer_q and not q.get("job")
        return page_html(title, health(root, health_max_age_s), all_jobs, job, entries, view, follow, refresh_s)

    @app.get("/api/layers")
    def api_layers():
        """Archived layers, newest first, as JSON (?job=, ?limit=)."""
        q = bottle.request.query
        limit = int(q.get("limit")) if q.get("limit", "").isdigit() else 200
        bottle.response.content_type = "application/json"
        base = bottle.request.script_name.rstrip("/")
        return json.dumps(
            [e.to_json(base) for e in list_layers(root, job=q.get("job") or None, limit=max(1, min(limit, 5000)))]
        )

    @app.get("/api/health")
    def api_health():
        """The service's health file with a verdict, as JSON."""
        bottle.response.content_type = "application/json"
        return json.dumps(health(root, health_max_age_s))

    @app.get("/layers/<job>/<layer:int>/<name>.png")
    def layer_png(job: str, layer: int, name: str):
        """An archived image or a rendered view of a layer."""
        folder = layer_folder(root, job, layer)
        if folder is None or not folder.is_dir():
            return bottle.HTTPError(404, f"no layer {layer} of job {job!r} in the archive")
        if name in ARCHIVED_PNG:
            return bottle.static_file(f"{name}.png", root=str(folder), mimetype="image/png")
        if name not in RENDERED:
            return bottle.HTTPError(404, f"no image {name!r}; there are {', '.join(ARCHIVED_PNG + tuple(RENDERED))}")
        data = _rendered_png(str(folder), job, layer, name, _stamp(folder))
        if data is None:
            return bottle.HTTPError(404, f"layer {layer} has no {name} yet")
        bottle.response.content_type = "image/png"
        bottle.response.set_header("Cache-Control", "no-cache")
        return data

    @app.get("/layers/<job>/<layer:int>/<name>.json")
    def layer_json(job: str, layer: int, name: str):
        """An archived JSON document of a layer."""
        folder = layer_folder(root, job, layer)
        if folder is None or name not in ARCHIVED_JSON or not (folder / f"{name}.json").is_file():
            return bottle.HTTPError(404, f"no {name}.json for layer {layer} of job {job!r}")
        return bottle.static_file(f"{name}.json", root=str(folder), mimetype="application/json")

    return app
