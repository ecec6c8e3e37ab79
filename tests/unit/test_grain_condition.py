"""Grain condition: the descriptor, its manifest entry, the trained offset, the bundle and the resolver applying it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.sr.grain import GrainCondition, descriptor_size, grain_descriptor

torch = pytest.importorskip("torch")

from edge.train.common import save_checkpoint  # noqa: E402
from edge.train.config import TrainConfig  # noqa: E402
from tests.unit.test_train import TINY_AE, _batch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grain(seed: int, n: int = 64, amp: float = 20.0, stretch: float = 0.0) -> np.ndarray:
    """uint8 noise texture around gray 120; `stretch` > 0 smears it along x."""
    import cv2

    x = np.random.default_rng(seed).standard_normal((n, n)).astype(np.float32)
    if stretch:
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=stretch, sigmaY=0.3)
        x /= x.std()
    return np.clip(120 + amp * x, 0, 255).astype(np.uint8)


def test_descriptor_sees_grain_level_orientation_and_sparkle():
    keys = ["e0", "e1", "e2", "std", "mean", "cf", "sf", "cc", "sc", "kurt"]
    names = dict(zip(keys, range(descriptor_size()), strict=False))
    weak, strong = grain_descriptor(_grain(0, amp=5)), grain_descriptor(_grain(0, amp=20))
    assert strong[names["e2"]] > weak[names["e2"]] + 2.0  # 16x the energy: log + 2.8
    streaky = grain_descriptor(_grain(1, stretch=3.0))
    turned = grain_descriptor(np.ascontiguousarray(np.rot90(_grain(1, stretch=3.0))))
    assert streaky[names["cf"]] < -0.3 < 0.3 < turned[names["cf"]]  # x-streaks: gradients along y, and turned
    np.testing.assert_allclose(streaky[:5], turned[:5], atol=1e-4)  # energies, contrast, mean do not turn
    sparkle = _grain(2, amp=3)
    sparkle[np.random.default_rng(3).random(sparkle.shape) < 0.01] = 250
    assert grain_descriptor(sparkle)[names["kurt"]] > grain_descriptor(_grain(2, amp=3))[names["kurt"]] + 1.0
    frames = grain_descriptor([_grain(4), _grain(5)])
    assert frames.shape == (descriptor_size(),) and frames.dtype == np.float32
    with pytest.raises(ValueError, match="2-D gray"):
        grain_descriptor(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="no images"):
        grain_descriptor([])


def test_grain_condition_json_and_offset():
    d = descriptor_size()
    gc = GrainCondition(mean=tuple(range(d)), std=(2.0,) * d, weight=((1.0,) + (0.0,) * (d - 1),) * 4,
                        bias=(0.5, 0, 0, 0))
    again = GrainCondition.from_json(gc.to_json())
    assert again == gc
    off = again.offset(np.arange(d, dtype=np.float32) + 4.0)  # standardised first entry (4 - 0) / 2 = 2
    np.testing.assert_allclose(off, [2.5, 2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="descriptor"):
        GrainCondition.from_json({**gc.to_json(), "mean": [0.0] * (d - 1)})
    with pytest.raises(ValueError, match="malformed"):
        GrainCondition.from_json({"mean": [0.0] * d})


@pytest.fixture
def ae_pt(tmp_path: Path) -> Path:
    from edge.train.autoencoder import AETrainer

    torch.manual_seed(0)
    tr = AETrainer(TrainConfig(arch=TINY_AE))
    tr.scales = {"latent_scale_factor": 2.0, "cond_scale_factor": 3.0}
    save_checkpoint(tmp_path / "ae.pt", tr.export_weights(*tr.ema_models()))
    return tmp_path / "ae.pt"


def test_grain_offset_starts_at_zero_learns_and_is_exported(ae_pt, tmp_path):
    from edge.train.diffusion import LatentTrainer

    torch.manual_seed(0)
    src = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3), "diffusion")
    save_checkpoint(tmp_path / "plain.pt", src.export({}))
    tr = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3, init_from=str(tmp_path / "plain.pt"),
                                   grain_cond=True), "diffusion")
    c, z = tr.encode(*_batch(2, 4))
    d = torch.randn(4, descriptor_size())
    tr.set_grain_stats(d)
    x, t = torch.randn(z.shape), torch.tensor([5.0, 50.0, 100.0, 150.0])
    with torch.no_grad():
        assert torch.equal(tr.net(x, t, c, d), src.net(x, t, c))  # a zero offset: where the plain denoiser was
    with pytest.raises(ValueError, match="grain descriptor"):
        tr.net(x, t, c)
    for _ in range(5):
        tr.train_step(c, z, d=d)
    assert tr.grain.lin.weight.abs().max() > 0  # the descriptor path gets gradient
    exp = tr.export({})
    gc = GrainCondition.from_json(exp["grain_condition"])
    np.testing.assert_allclose(gc.mean, d.mean(0).numpy(), atol=1e-6)  # standardised by the first pool
    save_checkpoint(tmp_path / "grain.pt", exp)
    again = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, init_from=str(tmp_path / "grain.pt"),
                                      grain_cond=True), "diffusion")
    again.set_grain_stats(torch.zeros(4, descriptor_size()))  # continuing keeps the exported standardisation
    assert torch.equal(again.grain.mean, tr.grain.mean)
    assert torch.equal(again.grain.lin.weight, exp["grain_state"]["lin.weight"])


def test_grain_bundle_offsets_the_condition_in_the_resolver(ae_pt, tmp_path):
    """build_bundle writes manifest grain_condition; the resolver adds its offset per image (graphs unchanged)."""
    from edge.sr.resolver import SuperResolver
    from edge.train.bundle import build_bundle
    from edge.train.diffusion import LatentTrainer

    torch.manual_seed(0)
    tr = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3, lr_size=8, grain_cond=True, ema_decay=0.0),
                       "diffusion")
    tr.set_grain_stats(torch.randn(8, descriptor_size()))
    with torch.no_grad():
        tr.grain.lin.weight.normal_(0, 1.0)  # a condition that matters
    tr.train_step(*tr.encode(*_batch(4, 4)), d=torch.randn(4, descriptor_size()))  # EMA (decay 0) takes it over
    exp = tr.export({})
    assert np.abs(exp["grain_condition"]["weight"]).max() > 0.1
    save_checkpoint(tmp_path / "d" / "best.pt", exp)
    b = build_bundle(tmp_path / "bundle", ae_pt, tmp_path / "d" / "best.pt", exporter="legacy")
    assert b.manifest.grain_condition == GrainCondition.from_json(exp["grain_condition"])
    assert [i.name for i in __import__("onnx").load(str(b.graph("lr_encoder"))).graph.input] == ["lr"]
    sr = SuperResolver.from_bundle(b.path, backend="ort", seed=3)
    lr = _grain(6, n=16)
    own, ref = sr.upscale(lr).sr, sr.upscale(lr, grain=grain_descriptor(lr)).sr
    np.testing.assert_array_equal(own, ref)  # default: the image's own descriptor
    other = sr.upscale(lr, grain=grain_descriptor(_grain(7, n=16, amp=2))).sr
    assert np.abs(other.astype(int) - own).max() > 0  # another descriptor, another output
    sr.set_grain_reference([_grain(7, n=16, amp=2)])
    np.testing.assert_array_equal(sr.upscale(lr).sr, other)  # baseline frames replace the per-image descriptor
    sr.set_grain_reference(None)
    np.testing.assert_array_equal(sr.upscale(lr).sr, own)
    # tiles of two images share a batch, each conditioned on its own image's descriptor
    lr2 = _grain(8, n=16, amp=4, stretch=2.0)
    both = sr.upscale_many([lr, lr2])
    np.testing.assert_array_equal(both[0].sr, own)
    np.testing.assert_array_equal(both[1].sr, sr.upscale(lr2).sr)
    # without images (distillation teachers) each tile is conditioned on its own descriptor
    tiles = np.stack([lr, lr2]).astype(np.float32)[:, None] / 127.5 - 1.0
    plain = sr.runner.encode_lr(tiles)
    gc = sr.grain_condition
    want = plain + np.stack([gc.offset(grain_descriptor(lr)), gc.offset(grain_descriptor(lr2))])[:, :, None, None]
    np.testing.assert_allclose(sr.condition(tiles), want, atol=1e-5)
