"""`lpbf-edge report`: one self-contained HTML page per build.

The page holds LR/SR thumbnails, the flag timeline, a 3D preview and roughness.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.analyze import roughness as rg
from edge.analyze import volume as vo
from edge.analyze.build_io import expected_masks, open_build
from edge.analyze.config import AnalyzeConfig
from edge.analyze.display import FLAG_MEANING, STATE_MEANING, merge_flags, state_color
from edge.analyze.layer import LayerAnalyzer
from edge.analyze.layer_view import CARD_CSS, LayerView, card_html, png_bytes, render
from edge.analyze.segment import Segmenter
from edge.analyze.upscale import bicubic, make_upscaler
from edge.sr.config import SRConfig

SEV_COLOR = {"critical": "#d62728", "minor": "#ff9f1c"}
MAX_CARDS = 10


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
                 echo: Callable[[str], None] = print, bundle: str | Path | None = None,
                 sr_cfg: SRConfig | None = None) -> Path:
    """Analyse every layer of a build with the box's SR (or announced bicubic); write the self-contained HTML report."""
    b = open_build(build_dir, max_layers)
    up = make_upscaler(b.scale, bundle, sr_cfg)
    echo(up.note)
    exp, exp_note = expected_masks(b)
    analyzer = LayerAnalyzer(cfg, exp, registered=True)  # build layers are plate frames, as the box sees them
    results, cards, masks = [], [], []
    show = set(b.layers[:: max(1, len(b.layers) // 4)][:4])  # a few layers always, every flagged one up to MAX_CARDS
    for L in b.layers:
        lr = b.image("lr", L)
        v = up.analysis_input(lr)  # the box's hand-off: sample, spread, geometry estimate, LR
        sr = v["image"]
        res = analyzer.analyze(sr, L, v["std"], estimate=v["estimate"], lr=v["lr"])
        doc = res.anomaly_json(job, L)
        results.append(doc)
        masks.append(res.mask)
        if (L in show or res.layer_state != "ok") and len(cards) < MAX_CARDS:
            cards.append(_card(job, L, lr, sr, res.mask, doc))
        echo(f"layer {L}: {res.layer_state} ({len(res.flags)} flags)")
    sections = [_header(b, up.note, exp_note, results), _cards(cards, len(b.layers)), _timeline_section(results),
                _preview_section(masks, b), _roughness_section(b, masks, up), _glossary(results),
                _json_section(results)]
    page = _PAGE.format(title=html.escape(f"lpbf-edge report: {b.path.name}"), css=CARD_CSS, body="\n".join(sections))
    t = Path(target)
    t.parent.mkdir(parents=True, exist_ok=True)
    tmp = t.with_name(t.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(t)
    return t


def _uri(img: np.ndarray | None) -> str:
    """8-bit image -> PNG data URI ('' for None)."""
    return "" if img is None else "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


def _card(job: str, layer: int, lr: np.ndarray, sr: np.ndarray, mask: np.ndarray | None, doc: dict) -> str:
    """The layer card the demo summary and web view use, with its images embedded."""
    m = None if mask is None or not np.asarray(mask).any() else (np.asarray(mask) > 0).astype(np.uint8) * 255
    view = LayerView(job, layer, Path("."), {"flags_image": "sr"}, doc, None,
                     {"lr": lr, "sr": np.asarray(sr).astype(np.uint8), "mask": m})
    return card_html(view, lambda which: _uri(render(view, which, 400 if which == "overview" else 256)))


def _header(b, sr_note: str, exp_note: str, results: list[dict]) -> str:
    """Build facts, the SR source, and the verdict (layers per state)."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r["layer_state"]] = counts.get(r["layer_state"], 0) + 1
    warn = ("" if not sr_note.startswith("NO SR MODEL")
            else f'<p class="warn" id="sr-fallback">{html.escape(sr_note)}</p>')
    order = ["critical", "capture_failed", "segmentation_failed", "laser_in_image", "minor", "ok"]
    states = ", ".join(f"<b style='color:{state_color(k)}'>{v} {html.escape(k.replace('_', ' '))}</b>"
                       for k, v in sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 0))
    lr_px = b.hr_pitch_um * b.scale
    return (f'<section id="summary"><h1>Build report: {html.escape(b.path.name)}</h1>{warn}'
            f"<p class='verdict'>{len(b.layers)} layers: {states}.</p>"
            f"<p>Webcam image (LR) pixel {lr_px:.0f} µm on the plate; super-resolved (SR) pixel {b.hr_pitch_um:.0f} µm "
            f"({b.scale}× finer); layers {b.layer_um:.0f} µm thick.</p>"
            f"<p>{html.escape(sr_note[:1].upper() + sr_note[1:])}.<br>"
            f"Parts compared against: {html.escape(exp_note)}.</p>"
            "</section>")


def _cards(cards: list[str], n_layers: int) -> str:
    """The layer cards (some clean layers for reference, then flagged ones)."""
    note = (f"<p class='legend'>{len(cards)} of {n_layers} layers shown: a few for reference and the flagged ones "
            f"(at most {MAX_CARDS}); every layer is in the timeline and the JSON below.</p>")
    return f'<section id="thumbnails"><h2>Layers</h2>{note}{"".join(cards)}</section>'


def _timeline_section(results: list[dict]) -> str:
    """Flag timeline plot and a table of flagged layers (overlapping flags of a type merged)."""
    rows = "".join(
        f"<tr><td>{r['layer']}</td><td style='color:{state_color(r['layer_state'])}'>"
        f"{html.escape(r['layer_state'])}</td><td>"
        + "; ".join(html.escape(f.label()) for f in merge_flags(r["flags"])) + "</td></tr>"
        for r in results
        if r["flags"]
    )
    table = (f"<table><tr><th>layer</th><th>state</th><th>flags</th></tr>{rows}</table>" if rows
             else "<p>No flags on any layer.</p>")
    plot = _fig_uri(_timeline(results))
    head = '<section id="timeline"><h2>Flags over the build</h2>'
    return f'{head}<img alt="flag timeline" src="{plot}">{table}</section>'


def _glossary(results: list[dict]) -> str:
    """The states and flag types that appear, and the words the report uses."""
    states = sorted({r["layer_state"] for r in results})
    types = sorted({f["type"] for r in results for f in r["flags"]})
    terms = [("LR", "the webcam image registered onto the build plate"),
             ("SR", "the super-resolved image the diffusion model makes from the LR"),
             ("\u00d7 threshold", "how far a flag's measurement is over the level at which it is reported; "
                                  "from 2\u00d7 (analyze.critical_score) it is critical, and a minor flag on 3 layers "
                                  "in a row becomes critical"),
             ("Ra / Rq / Rz", "mean, root-mean-square and mean peak-to-valley deviation of a part's outline from its "
                              "smoothed outline (ISO 4287 on the polar contour profile), in \u00b5m; the window is the "
                              "angular width of the smoothing")]
    terms += [(s.replace("_", " "), STATE_MEANING.get(s, "")) for s in states]
    terms += [(t.replace("_", " "), FLAG_MEANING.get(t, "")) for t in types]
    items = "".join(f"<dt>{html.escape(a)}</dt><dd>{html.escape(b)}</dd>" for a, b in terms)
    return f'<section id="glossary"><h2>Words used here</h2><dl class="glossary">{items}</dl></section>'


def _preview_section(masks: list[np.ndarray], b) -> str:
    """3D preview of the stacked part masks."""
    vol = np.stack(masks)
    if vol.sum() == 0 or vol.shape[0] < 2:
        return ('<section id="preview3d"><h2>3D preview</h2>'
                '<p>Not enough segmented layers for a 3D preview.</p></section>')
    pitch = b.hr_pitch_um * (b.image("lr", b.layers[0]).shape[1] * b.scale) / masks[0].shape[1]
    mesh = vo.mesh_from_volume(vol, pitch, b.layer_um)
    tmp = io.BytesIO()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = vo.render_preview([mesh], Path(d) / "p.png", "segmented parts (all layers)")
        tmp.write(p.read_bytes())
    uri = "data:image/png;base64," + base64.b64encode(tmp.getvalue()).decode("ascii")
    return (f'<section id="preview3d"><h2>3D preview</h2><img alt="3D preview" src="{uri}">'
            f"<p>The part masks of all layers stacked: {mesh.volume:.0f} mm\u00b3 of parts (the height is drawn "
            "stretched so a few layers show).</p></section>")


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
        curves["bicubic"] = rg.roughness_vs_window(track([seg.segment(bicubic(b.image("lr", L), b.scale)).mask
                                                          for L in b.layers]), windows, pitch)
    if b.has("hr"):
        curves["HR"] = rg.roughness_vs_window(track([seg.segment(b.image("hr", L)).mask for L in b.layers]), windows,
                                              pitch)
    import matplotlib.pyplot as plt

    tmp = io.BytesIO()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        rg.plot_roughness_vs_window(curves, Path(d) / "r.png", "largest part: Ra / Rq / Rz vs low-pass window")
        tmp.write((Path(d) / "r.png").read_bytes())
    plt.close("all")
    uri = "data:image/png;base64," + base64.b64encode(tmp.getvalue()).decode("ascii")
    windows_all = sorted({w for c in curves.values() for w in c})
    head = "".join(f"<th>{w}\u00b0 window</th>" for w in windows_all)
    rows = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(
        f"<td>Ra {c[w].ra_um:.0f} \u00b7 Rq {c[w].rq_um:.0f} \u00b7 Rz {c[w].rz_um:.0f}</td>" if w in c
        else "<td>-</td>"
        for w in windows_all) + "</tr>" for n, c in curves.items())
    return (f'<section id="roughness"><h2>Roughness of the largest part (\u00b5m)</h2>'
            '<p class="legend">How rough the part\'s outline is, per smoothing window, from the SR image and, '
            "where the build has them, from bicubic upscaling and the true high-resolution image (see Ra / Rq / Rz "
            "below).</p>"
            f'<img alt="roughness vs window" src="{uri}"><table><tr><th>source</th>{head}</tr>{rows}</table></section>')


def _json_section(results: list[dict]) -> str:
    """The per-layer anomaly JSON, collapsed."""
    return ('<section id="anomaly-json"><h2>Anomaly JSON</h2><details><summary>per layer</summary><pre>'
            + html.escape(json.dumps(results, indent=1)) + "</pre></details></section>")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><meta name="viewport" content="width=device-width">
<style>
{css}
section{{margin-bottom:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em;font-size:.9em}}
section > img{{max-width:100%}} .verdict{{font-size:1.15em}} .legend{{font-size:.85em;color:#555}}
.warn{{background:#fff3cd;border:1px solid #e0b000;padding:.5em;font-weight:bold}}
.glossary dt{{font-weight:bold;margin-top:6px}} .glossary dd{{margin-left:1.2em}} pre{{white-space:pre-wrap}}
</style></head><body>
{body}
</body></html>
"""
