"""Structured-texture augmentation, source groups and per-source splits, the orientation texture term, VQ training."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.data.datasets import Source, SplitSpec, photo_group, unit_split
from edge.data.texture_aug import (
    TextureAug,
    add_directional_sparkle,
    add_recoater_streaks,
    add_scan_tracks,
    augment_texture,
    scale_detail_bands,
    smear_grain,
)
from edge.sr.grain import grain_descriptor

ORIENT_COS = 5  # grain_descriptor's fine-scale orientation (coherence x cos 2 theta)
KURT = 9


def _powder(seed: int = 0, n: int = 128) -> np.ndarray:
    """Isotropic uint8 grain around gray 110."""
    x = cv2.GaussianBlur(np.random.default_rng(seed).standard_normal((n, n)).astype(np.float32), (0, 0), 0.8)
    return np.clip(110 + 12 * x / x.std(), 0, 255).astype(np.uint8)


def _detail_energy(img: np.ndarray) -> float:
    x = img.astype(np.float32)
    return float(np.mean((x - cv2.GaussianBlur(x, (0, 0), 1.5)) ** 2))


def _hp_kurtosis(img: np.ndarray) -> float:
    x = img.astype(np.float64)
    hp = x - cv2.GaussianBlur(x, (0, 0), 1.5)
    return float(np.mean(hp ** 4) / np.mean(hp ** 2) ** 2)


def _orient(img: np.ndarray) -> float:
    """Coherence x cos 2 theta of the gradients: < 0 when the texture runs along x."""
    gy, gx = np.gradient(img.astype(np.float64))
    return float((np.mean(gx ** 2) - np.mean(gy ** 2)) / (np.mean(gx ** 2) + np.mean(gy ** 2)))


def test_each_augmentation_adds_its_texture():
    hr = _powder()
    rng = np.random.default_rng
    assert _detail_energy(scale_detail_bands(hr, (2.0, 2.0))) > 3 * _detail_energy(hr)
    assert _detail_energy(scale_detail_bands(hr, (0.5, 0.5))) < 0.5 * _detail_energy(hr)
    assert _orient(smear_grain(hr, rng(1))) < _orient(hr) - 0.2  # grain elongated along x
    quiet = ((hr.astype(np.int16) - 110) // 4 + 110).astype(np.uint8)  # low-contrast powder: the specks stand out
    sparkle = add_directional_sparkle(quiet, rng(2))
    assert _hp_kurtosis(sparkle) > _hp_kurtosis(quiet) + 1.0 and sparkle.max() > quiet.max()
    streaks = add_recoater_streaks(np.full((128, 128), 110, np.uint8), rng(3))
    rows, cols = streaks.astype(float).mean(1), streaks.astype(float).mean(0)
    assert rows.std() > 3 * cols.std()  # lines along x: the profile varies across rows
    tracks = add_scan_tracks(np.full((128, 128), 110, np.uint8), rng(4))
    assert tracks.std() > 0.5
    for out in (sparkle, streaks, tracks):
        assert out.dtype == np.uint8 and out.shape == (128, 128)
    a, b = augment_texture(hr, rng(5), TextureAug.structured()), augment_texture(hr, rng(5), TextureAug.structured())
    np.testing.assert_array_equal(a, b)  # all randomness from the caller's generator
    assert TextureAug().active is False and TextureAug.structured().active
    with pytest.raises(ValueError, match="sparkle_prob"):
        TextureAug(sparkle_prob=2.0)
    with pytest.raises(ValueError, match="band_gain"):
        TextureAug(band_gain=(0.0, 1.0))


def test_the_descriptor_reads_the_augmented_lr():
    """The footprint of a grain change survives the paper-recipe LR (what the grain condition relies on)."""
    from edge.data.degrade import paper_degrade

    hr = _powder(6, 256)
    d_lo = grain_descriptor(paper_degrade(scale_detail_bands(hr, (0.4, 0.4))))
    d_hi = grain_descriptor(paper_degrade(scale_detail_bands(hr, (2.5, 2.5))))
    assert d_hi[2] > d_lo[2] + 1.0  # the top LR band's log energy
    streaky = np.ascontiguousarray(np.rot90(smear_grain(hr, np.random.default_rng(7))))
    assert grain_descriptor(paper_degrade(streaky))[ORIENT_COS] > grain_descriptor(paper_degrade(hr))[ORIENT_COS]


def test_source_groups_and_per_source_splits(tmp_path: Path):
    root = tmp_path / "realdata"
    paths = [root / "risheng_slm" / "S01.jpg", root / "risheng_slm" / "10002.png", root / "pblm" / "P.jpg",
             root / "pblm_classes" / "No_Defect" / "c1.jpg"]
    assert [photo_group(p, root) for p in paths] == ["risheng_melt", "risheng_recoat", "pblm", "pblm_classes"]
    spec = SplitSpec(holdout_photos=("S01.jpg",), val_photos=(), holdout_groups=("pblm_classes",), holdout_share=0.5,
                     exclude_groups=("pblm",))
    srcs = [Source(f"c{i}.jpg", "photo", Path(f"c{i}.jpg"), (0,), 2, "pblm_classes") for i in range(40)]
    held = [unit_split(s, 0, spec) for s in srcs]
    assert 10 < held.count("holdout") < 30 and set(held) == {"holdout", "train"}  # a hashed share, stable
    assert held == [unit_split(s, 0, spec) for s in srcs]
    assert unit_split(Source("P.jpg", "photo", paths[2], (0,), 2, "pblm"), 0, spec) == "excluded"
    assert unit_split(Source("S01.jpg", "photo", paths[0], (0,), 1, "risheng_melt"), 0, spec) == "holdout"


def test_sim_share_balances_the_photo_groups():
    from edge.train.common import unit_weights

    class _DS:
        units = [Source("b", "sim", Path("b"), (1, 2), 1, "sim")] * 4 + \
            [Source(f"c{i}", "photo", Path("c"), (0,), 1, "pblm_classes") for i in range(12)] + \
            [Source("S01.jpg", "photo", Path("s"), (0,), 1, "risheng_melt")]

        def __len__(self):
            return len(self.units)

        def unit_of(self, i):
            return self.units[i], 0

    p = unit_weights(_DS(), sim_share=0.3)  # type: ignore[arg-type]
    assert p[:4].sum() == pytest.approx(0.3)
    assert p[4:16].sum() == pytest.approx(0.35) and p[16] == pytest.approx(0.35)  # each group the same share
    old = unit_weights(_DS(), photo_weight=2.0)  # type: ignore[arg-type]
    assert old[4] == pytest.approx(2 * old[0])


def test_orientation_loss_sees_direction_and_tails():
    torch = pytest.importorskip("torch")
    from edge.train.losses import orientation_loss, wavelet_stats_loss

    streak = torch.from_numpy(smear_grain(_powder(8, 64), np.random.default_rng(9)).astype(np.float32) / 127.5 - 1)
    x, turned = streak[None, None], streak.T[None, None].contiguous()
    assert orientation_loss(x, x).item() == 0
    assert orientation_loss(turned, x) > 0.1  # the same texture turned by 90 degrees
    assert orientation_loss(turned, x) > 2 * wavelet_stats_loss(turned, x)  # the Haar statistics see it much less
    x.requires_grad_(True)
    orientation_loss(x, turned).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_vq_autoencoder_trains_with_its_codebook_loss():
    torch = pytest.importorskip("torch")
    from edge.train.autoencoder import AETrainer
    from edge.train.config import TrainConfig
    from tests.unit.test_train import TINY_AE, _batch

    torch.manual_seed(0)
    arch = {k: (dict(v, kind="vq", lowpass_skip=False, num_vq_embeddings=16) if k != "unet" else v)
            for k, v in TINY_AE.items()}
    tr = AETrainer(TrainConfig(arch=arch, lr=2e-3, gan_start=100, fft_weight=0.0, wavelet_weight=0.0))
    assert tr.hr.kind == "vq"
    lr, hr = _batch(0, 4)
    codebook = tr.hr.net.quantize.embedding.weight.detach().clone()
    first = tr.train_step(lr, hr)
    for _ in range(20):
        last = tr.train_step(lr, hr)
    assert last["loss"] < first["loss"]
    assert not torch.equal(codebook, tr.hr.net.quantize.embedding.weight)  # the codebook loss moves the codes
    with pytest.raises(ValueError, match="ae_kind"):
        AETrainer(TrainConfig(arch=TINY_AE, ae_kind="gan"))
    default = AETrainer(TrainConfig(ae_kind="vq"))
    assert default.arch["hr_ae"]["kind"] == "vq" and default.arch["hr_ae"]["lowpass_skip"] is False
