"""Segmentation: synthetic layers with known masks, the prompt loop, proposer interface, sim and real photographs."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edge.analyze.config import AnalyzeConfig
from edge.analyze.segment import Proposal, SegmentationError, Segmenter, iou, plain_sauvola_segment
from tests.unit.test_analyze_synth import layer


def test_segments_synthetic_layer_much_better_than_plain_sauvola():
    img, lab = layer(seed=1)
    cfg = AnalyzeConfig(ref_width_px=1024)
    seg = Segmenter(cfg).segment(img)
    ours, base = iou(seg.mask, lab > 0), iou(plain_sauvola_segment(img, cfg), lab > 0)
    assert ours >= 0.8, ours
    assert ours >= base + 0.3, (ours, base)
    # thin wall (4 px) is found along most of its length
    assert seg.mask[120:400, 250:254].mean() > 0.6
    assert seg.polarity == -1 and not seg.failed


def test_faint_part_and_vignetting():
    """A part fused at under half the contrast of the others: the classifier reads it as an earlier layer showing
    through unless the expected (CAD) area says otherwise; the prompt pipeline grows it from its own prompt."""
    img, lab = layer(seed=2, faint_square=True)
    faint = (slice(300, 390), slice(320, 410))
    alone = Segmenter(AnalyzeConfig()).segment(img)
    assert iou(alone.mask[faint], lab[faint] > 0) < 0.5
    seg = Segmenter(AnalyzeConfig()).segment(img, expected_area_px=float((lab > 0).sum()))
    assert iou(seg.mask[faint], lab[faint] > 0) > 0.7 and not seg.failed
    prompted = Segmenter(AnalyzeConfig(segment_method="prompts")).segment(img)
    assert iou(prompted.mask[faint], lab[faint] > 0) > 0.7
    for m in (seg.mask, prompted.mask):  # corners are dark from vignetting but are powder
        assert m[:60, :60].mean() < 0.05


def test_area_loop_fails_on_impossible_expected_area_and_succeeds_on_true_one():
    img, lab = layer(seed=3)
    cfg = AnalyzeConfig(max_prompt_iterations=4)
    seg = Segmenter(cfg).segment(img, expected_area_px=20 * float((lab > 0).sum()))
    assert seg.failed and 3 <= seg.iterations <= 4
    ok = Segmenter(cfg).segment(img, expected_area_px=float((lab > 0).sum()))
    assert not ok.failed and ok.iterations < 4


class _Fixed:
    """Test proposer: returns the same proposals for every prompt and counts calls."""

    def __init__(self, proposals):
        self.proposals, self.calls = proposals, 0

    def set_image(self, image, feature):
        self.shape = image.shape

    def propose(self, point_xy, box, sensitivity):
        self.calls += 1
        return self.proposals


def test_proposals_are_filtered_by_confidence_stability_and_deduplicated():
    img, _ = layer(seed=4)
    m = np.zeros(img.shape, bool)
    m[100:200, 100:200] = True
    low = _Fixed([Proposal(m, 0.1, 0.99)])
    assert not Segmenter(AnalyzeConfig(refine_boundary=False), low).segment(img).mask.any()
    unstable = _Fixed([Proposal(m, 0.9, 0.1)])
    assert not Segmenter(AnalyzeConfig(refine_boundary=False), unstable).segment(img).mask.any()
    good = _Fixed([Proposal(m, 0.9, 0.9), Proposal(m.copy(), 0.9, 0.9)])
    seg = Segmenter(AnalyzeConfig(refine_boundary=False, feature_min=0.1), good).segment(img)
    assert good.calls > 1 and seg.mask[100:200, 100:200].all() and seg.mask.sum() == m.sum()


def test_bad_input_is_a_clear_error():
    with pytest.raises(SegmentationError, match="2-D grey image"):
        Segmenter().segment(np.zeros(10))
    with pytest.raises(SegmentationError, match="16x16"):
        Segmenter().segment(np.zeros((8, 8), np.uint8))
    assert not Segmenter().segment(np.zeros((64, 64), np.uint8)).mask.any()  # black: no parts, no crash


@pytest.mark.skipif(importlib.util.find_spec("edge.sim.build") is None, reason="sim generator (edge.sim.build) not "
                    "importable yet")
def test_sim_layer_iou_against_ground_truth():
    from edge.sim.build import plan_build, render_layer
    from edge.sim.config import SimConfig

    plan = plan_build(6, 5, SimConfig(hr_size_px=512))
    li = render_layer(plan, 4)
    gt = li.mask > 0
    seg = Segmenter(AnalyzeConfig()).segment(li.hr)
    ours = iou(seg.mask, gt)
    assert ours >= 0.6, ours
    assert ours >= iou(plain_sauvola_segment(li.hr, AnalyzeConfig()), gt) + 0.3


def test_real_photograph_rings_against_reference_masks(realdata):
    """The tuning crops of S01/S03 (references: bench/ring_reference.py, docs/analysis.md) with this camera's
    settings: the self-fitted classifier finds the fused ring walls; plain Sauvola does not."""
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "bench"))
    from ring_reference import CROPS, HOLD_OUT

    cfg = AnalyzeConfig(pixel_scale=1.5, ignore_corner_frac=0.0)  # settings for this camera (docs/analysis.md)
    scores = []
    for name in ("real_s01_rings_ref", "real_s03_left_low_rings_ref", "real_s03_right_rings_ref"):
        assert name not in HOLD_OUT
        photo, (r0, r1), (c0, c1) = CROPS[name]
        im = cv2.imread(str(realdata / "risheng_slm" / f"{photo}.jpg"), cv2.IMREAD_GRAYSCALE)[r0:r1, c0:c1]
        crop = cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA)
        ref = cv2.imread(str(repo / "tests" / "data" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 0
        assert ref.shape == crop.shape
        ours, base = iou(Segmenter(cfg).segment(crop).mask, ref), iou(plain_sauvola_segment(crop, cfg), ref)
        assert ours >= 0.6 and ours >= base + 0.4, (name, ours, base)
        scores.append(ours)
    assert np.mean(scores) >= 0.68, scores


def test_segment_cli_writes_same_size_masks_and_reports_bad_files(tmp_path):
    from edge.analyze.cli import register

    app = typer.Typer()
    register(app)
    img, _ = layer(seed=5)
    cv2.imwrite(str(tmp_path / "00007.png"), img)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    res = CliRunner().invoke(app, ["segment", str(tmp_path / "broken.png"), str(tmp_path / "00007.png"), "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "broken.png" in res.output and "not an image" in res.output
    out = cv2.imread(str(tmp_path / "o" / "00007.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == img.shape and set(np.unique(out)) <= {0, 255} and (out == 255).mean() > 0.05


def test_sam_checkpoint_missing_is_a_clear_error(tmp_path):
    from edge.analyze.sam import SamUnavailableError

    with pytest.raises(SamUnavailableError, match="does not exist"):
        Segmenter(AnalyzeConfig(sam_checkpoint=str(tmp_path / "sam_vit_b.pth")))


def _disk_layer(seed: int, dark: float, rough: float, ghost: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Powder (grain) with two fused disks whose brightness is x dark and grain x rough; ghost: a third disk at that
    brightness and plain powder texture (an earlier layer showing through the fresh powder)."""
    rng = np.random.default_rng(seed)
    n = 384
    yy, xx = np.mgrid[0:n, 0:n]
    parts = ((xx - 110) ** 2 + (yy - 120) ** 2 <= 50**2) | ((xx - 270) ** 2 + (yy - 250) ** 2 <= 60**2)
    grain = cv2.GaussianBlur(rng.standard_normal((n, n)).astype(np.float32), (0, 0), 0.8) * 10
    img = 120 + grain * np.where(parts, rough, 1.0)
    img = np.where(parts, img * dark, img)
    if ghost is not None:
        g = (xx - 290) ** 2 + (yy - 90) ** 2 <= 45**2
        img = np.where(g, img * ghost, img)
    return np.clip(img, 0, 255).astype(np.uint8), parts


@pytest.mark.parametrize("dark,rough", [(0.8, 2.0), (1.2, 0.4), (0.85, 1.0)])
def test_classifier_reads_polarity_from_the_image_and_has_no_edge_bias(dark, rough):
    img, parts = _disk_layer(1, dark, rough)
    seg = Segmenter(AnalyzeConfig(ignore_corner_frac=0.0)).segment(img)
    assert iou(seg.mask, parts) > 0.9, iou(seg.mask, parts)
    assert 0.9 < seg.mask.sum() / parts.sum() <= 1.02  # never grown; at most a pixel or two inside the edge
    assert seg.polarity == (-1 if dark < 1 else 1)


def test_classifier_leaves_out_a_faint_earlier_layer():
    img, parts = _disk_layer(2, 0.75, 1.5, ghost=0.95)  # the ghost is a fifth as dark as the fresh parts
    seg = Segmenter(AnalyzeConfig(ignore_corner_frac=0.0)).segment(img)
    assert iou(seg.mask, parts) > 0.85 and seg.mask[60:120, 260:320].mean() < 0.05


def test_auto_method_prompts_on_registered_frames_classifier_on_photographs():
    cfg = AnalyzeConfig()
    assert cfg.segment_method == "auto"
    assert Segmenter(cfg, registered=True).prompted and not Segmenter(cfg).prompted
    assert not Segmenter(AnalyzeConfig(segment_method="classifier"), registered=True).prompted
    assert Segmenter(AnalyzeConfig(segment_method="prompts")).prompted
