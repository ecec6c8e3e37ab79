"""`lpbf-edge report`: one self-contained HTML page per build (LR/SR thumbnails, flag timeline, 3D preview, roughness)."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.analyze import roughness as rg
from edge.analyze import volume as vo
from edge.analyze.build_io import expected_masks, open_build
from edge.analyze.config import AnalyzeConfig
from edge.analyze.draw import draw_flags
from edge.analyze.layer import LayerAnalyzer
from edge.analyze.segment import Segmenter
from edge.analyze.upscale import bicubic, make_upscaler

SEV_COLOR = {"critical": "#d62728", "minor": "#ff9f1c"}


def _png_uri(img: np.ndarray, max_side: int = 320) -> str:
    """Image (grey or BGR) -> PNG data URI, downsized to max_side."""
    h, w = img.shape[:2]
    f = min(1.0, max_side / max(h, w))
    if f < 1.0:
        img = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", img)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _fig_uri(fig) -> str:
    """Matplotlib figure -> PNG data URI (and close it)."""
    import matplotlib.pyplot as plt

    bio = io.BytesIO()
    fig.savefig(bio, format="png", bbox_inches="tight", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(bio.getvalue()).decode("ascii")


def _timeline(results: list[dict]):
    """Scatter of flag types over layers, coloured by severity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = sorted({f["type"] for r in results for f in r["flags"]}) or ["(no flags)"]
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.35 * len(types)))
    for r in results:
        for f in r["flags"]:
            ax.scatter(r["layer"], types.index(f["type"]), c=SEV_COLOR[f["severity"]], s=30)
    ax.set_yticks(range(len(types)), types)
    ax.set_xlabel("layer")
    ax.set_xlim(0.5, max(r["layer"] for r in results) + 0.5)
    ax.grid(alpha=0.3)
    ax.set_title("anomaly flags (orange minor, red critical)")
    return fig


def write_report(build_dir: str | Path, target: str | Path, cfg: AnalyzeConfig, job: str = "job", max_layers: int = 0,
                 echo: Callable[[str], None] = print, bundle: str | Path | None = None) -> Path:
    """Analyse every layer of a build (SR or bicubic) and write the self-contained HTML report."""
    b = open_build(build_dir, max_layers)
    up = make_upscaler(b.scale, bundle)
    echo(up.note)
    exp, exp_note = expected_masks(b)
    analyzer = LayerAnalyzer(cfg, exp, registered=True)  # build layers are plate frames, as the box sees them
    results, thumbs, masks = [], [], []
    show = set(b.layers[:: max(1, len(b.layers) // 6)][:6])
    for L in b.layers:
        lr = b.image("lr", L)
        sr, std = up.fn(lr)
        res = analyzer.analyze(sr, L, std)
        doc = res.anomaly_json(job, L)
        results.append(doc)
        masks.append(res.mask)
        if L in show or res.layer_state not in ("ok",) and len(thumbs) < 10:
            thumbs.append((L, _png_uri(lr), _png_uri(draw_flags(sr, res.mask, res.flags, res.layer_state), 480), res.layer_state))
        echo(f"layer {L}: {res.layer_state} ({len(res.flags)} flags)")
    sections = [_header(b, up.note, exp_note, results), _thumbs(thumbs), _timeline_section(results),
                _preview_section(masks, b), _roughness_section(b, masks, up), _json_section(results)]
    page = _PAGE.format(title=html.escape(f"lpbf-edge report: {b.path.name}"), body="\n".join(sections))
    t = Path(target)
    t.parent.mkdir(parents=True, exist_ok=True)
    tmp = t.with_name(t.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(t)
    return t


def _header(b, sr_note: str, exp_note: str, results: list[dict]) -> str:
    """Build summary and per-state counts."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r["layer_state"]] = counts.get(r["layer_state"], 0) + 1
    warn = "" if not sr_note.startswith("NO SR MODEL") else f'<p class="warn" id="sr-fallback">{html.escape(sr_note)}</p>'
    states = " ".join(f'<span class="st {html.escape(k)}">{html.escape(k)}: {v}</span>' for k, v in sorted(counts.items()))
    return (f'<section id="summary"><h1>Build {html.escape(b.path.name)}</h1>{warn}'
            f"<p>{len(b.layers)} layers, scale {b.scale}, HR pitch {b.hr_pitch_um} µm, layer {b.layer_um} µm.</p>"
            f"<p>SR source: {html.escape(sr_note)}<br>Expected geometry: {html.escape(exp_note)}</p><p>{states}</p></section>")


def _thumbs(thumbs: list) -> str:
    """LR / SR-with-flags pairs."""
    cells = "".join(
        f'<figure class="pair"><img alt="LR layer {L}" src="{lr}"><img alt="SR layer {L} with flags" src="{sr}">'
        f"<figcaption>layer {L}: {html.escape(state)}</figcaption></figure>"
        for L, lr, sr, state in thumbs
    )
    return f'<section id="thumbnails"><h2>Layers (LR | SR with flags)</h2><div class="grid">{cells}</div></section>'


def _timeline_section(results: list[dict]) -> str:
    """Flag timeline plot and a table of flagged layers."""
    rows = "".join(
        f"<tr><td>{r['layer']}</td><td class='{html.escape(r['layer_state'])}'>{html.escape(r['layer_state'])}</td><td>"
        + ", ".join(f"{html.escape(f['type'])} ({f['severity']}, x{f['layers_persisted']})" for f in r["flags"])
        + "</td></tr>"
        for r in results
        if r["flags"]
    )
    table = f"<table><tr><th>layer</th><th>state</th><th>flags</th></tr>{rows}</table>" if rows else "<p>No flags on any layer.</p>"
    return f'<section id="timeline"><h2>Flags timeline</h2><img alt="flag timeline" src="{_fig_uri(_timeline(results))}">{table}</section>'


def _preview_section(masks: list[np.ndarray], b) -> str:
    """3D preview of the stacked part masks."""
    vol = np.stack(masks)
    if vol.sum() == 0 or vol.shape[0] < 2:
        return '<section id="preview3d"><h2>3D preview</h2><p>Not enough segmented layers for a 3D preview.</p></section>'
    pitch = b.hr_pitch_um * (b.image("lr", b.layers[0]).shape[1] * b.scale) / masks[0].shape[1]
    mesh = vo.mesh_from_volume(vol, pitch, b.layer_um)
    tmp = io.BytesIO()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = vo.render_preview([mesh], Path(d) / "p.png", "segmented parts (all layers)")
        tmp.write(p.read_bytes())
    uri = "data:image/png;base64," + base64.b64encode(tmp.getvalue()).decode("ascii")
    return (f'<section id="preview3d"><h2>3D preview</h2><img alt="3D preview" src="{uri}">'
            f"<p>{len(mesh.faces)} faces, volume {mesh.volume:.2f} mm³ (z axis drawn at its own scale).</p></section>")


def _roughness_section(b, masks: list[np.ndarray], up) -> str:
    """Roughness vs window of the largest segmented part for SR (and HR / bicubic where available)."""
    import matplotlib

    matplotlib.use("Agg")
    from scipy import ndimage

    lab0 = ndimage.label(masks[len(masks) // 2])[0]
    if lab0.max() == 0:
        return '<section id="roughness"><h2>Roughness</h2><p>No part segmented.</p></section>'
    k = int(np.argmax(np.bincount(lab0.ravel())[1:])) + 1
    seed = lab0 == k
    pitch = b.hr_pitch_um * (b.image("lr", b.layers[0]).shape[1] * b.scale) / masks[0].shape[1]

    def track(ms: list[np.ndarray]) -> list[np.ndarray]:
        """The component overlapping the chosen part in every layer."""
        out = []
        for m in ms:
            lab = ndimage.label(m)[0]
            ids = np.unique(lab[seed & (lab > 0)])
            out.append(np.isin(lab, ids[ids > 0]))
        return out

    windows = [3, 6, 12, 24, 48]
    curves = {up.name: rg.roughness_vs_window(track(masks), windows, pitch)}
    seg = Segmenter(AnalyzeConfig(), registered=True)  # build layers are plate frames
    if up.is_model:
        curves["bicubic"] = rg.roughness_vs_window(track([seg.segment(bicubic(b.image("lr", L), b.scale)).mask for L in b.layers]), windows, pitch)
    if b.has("hr"):
        curves["HR"] = rg.roughness_vs_window(track([seg.segment(b.image("hr", L)).mask for L in b.layers]), windows, pitch)
    import matplotlib.pyplot as plt

    tmp = io.BytesIO()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        rg.plot_roughness_vs_window(curves, Path(d) / "r.png", "largest part: Ra / Rq / Rz vs low-pass window")
        tmp.write((Path(d) / "r.png").read_bytes())
    plt.close("all")
    uri = "data:image/png;base64," + base64.b64encode(tmp.getvalue()).decode("ascii")
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{w}</td><td>{r.ra_um:.1f}</td><td>{r.rq_um:.1f}</td><td>{r.rz_um:.1f}</td></tr>"
                   for n, c in curves.items() for w, r in c.items())
    return (f'<section id="roughness"><h2>Roughness (µm, ISO 4287; Rz = mean of 5 sampling-length peak-to-valley)</h2>'
            f'<img alt="roughness vs window" src="{uri}"><table><tr><th>source</th><th>window (deg)</th><th>Ra</th><th>Rq</th><th>Rz</th></tr>{rows}</table></section>')


def _json_section(results: list[dict]) -> str:
    """The per-layer anomaly JSON, collapsed."""
    return ('<section id="anomaly-json"><h2>Anomaly JSON</h2><details><summary>per layer</summary><pre>'
            + html.escape(json.dumps(results, indent=1)) + "</pre></details></section>")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}}
section{{margin-bottom:2em}} .grid{{display:flex;flex-wrap:wrap;gap:1em}}
figure.pair{{margin:0;border:1px solid #ccc;padding:.4em}} figure.pair img{{height:240px;margin-right:.3em;image-rendering:pixelated}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.2em .5em;font-size:.9em}}
.warn{{background:#fff3cd;border:1px solid #e0b000;padding:.5em;font-weight:bold}}
.st{{padding:.2em .6em;margin-right:.4em;border-radius:.3em;background:#eee}} .critical{{color:#d62728}} .minor{{color:#c77700}}
</style></head><body>
{body}
</body></html>
"""
