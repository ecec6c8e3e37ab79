"""Detail condition: the grain cap's per-band detail level as the denoiser's condition (true HR in training, the
cap's prediction from the LR at inference), its manifest entry, the trainer and the resolver applying it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.data.degrade import paper_degrade
from edge.sr.grain import (
    DETAIL_SOURCE,
    GrainCap,
    GrainCondition,
    default_sigmas,
    detail_condition_hr,
    detail_condition_lr,
    detail_names,
    fit_grain_cap,
)
from edge.sr.manifest import Manifest, ManifestError
from tests.unit.test_grain_cap import _grainy

torch = pytest.importorskip("torch")

from edge.train.common import save_checkpoint  # noqa: E402
from edge.train.config import TrainConfig  # noqa: E402
from tests.unit.test_grain_condition import ae_pt  # noqa: E402,F401  (fixture)
from tests.unit.test_train import TINY_AE, _batch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cap() -> GrainCap:
    """A four-band cap fitted on 128 px HR windows whose grain amplitude spans 1..16 gray levels."""
    amps = np.exp(np.random.default_rng(0).uniform(np.log(1), np.log(16), 120))
    hrs = [_grainy(a, i) for i, a in enumerate(amps)]
    return fit_grain_cap([paper_degrade(h, 4, 3) for h in hrs], hrs, sigmas=default_sigmas(4))


def test_measured_and_predicted_detail_agree_and_follow_the_grain(cap):
    """The training value (true HR) and the inference value (cap on the LR) are one statistic on one scale."""
    levels = []
    for amp, seed in ((2.0, 900), (5.0, 901), (12.0, 902)):
        hr = _grainy(amp, seed)  # the distribution the cap was fitted on (128 px windows)
        true, pred = detail_condition_hr(cap, hr, 4), detail_condition_lr(cap, paper_degrade(hr, 4, 3))
        assert true.shape == pred.shape == (4,) and true.dtype == pred.dtype == np.float32
        assert np.abs(true - pred).max() < 0.5, (amp, true, pred)  # within a factor 1.6 of energy per band
        levels.append(true)
    assert (np.diff(np.stack(levels), axis=0) > 1.0).all()  # 2.5x the amplitude: +1.8 in log energy, every band
    frames = detail_condition_lr(cap, [paper_degrade(_grainy(5.0, s, 128), 4, 3) for s in (903, 904)])
    assert np.abs(frames - levels[1]).max() < 0.5  # the baseline frames of one camera: the same level
    with pytest.raises(ValueError, match="2-D gray"):
        detail_condition_lr(cap, np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="no images"):
        detail_condition_lr(cap, [])


def test_detail_condition_json_and_checks(cap):
    names = detail_names(cap.bands)
    gc = GrainCondition(mean=(0.0,) * 4, std=(1.0,) * 4, weight=((1.0, 0, 0, 0),) * 3, bias=(0.0,) * 3,
                        window=cap.window, names=names, source=DETAIL_SOURCE)
    again = GrainCondition.from_json(json.loads(json.dumps(gc.to_json())))
    assert again == gc and again.source == DETAIL_SOURCE
    np.testing.assert_allclose(again.offset(np.array([2.0, 0, 0, 0])), [2.0, 2.0, 2.0])
    old = gc.to_json()
    old.pop("source")  # bundles written before the detail source: the LR descriptor
    with pytest.raises(ValueError, match=r"\(lr\) does not match"):
        GrainCondition.from_json(old)
    with pytest.raises(ValueError, match="source must be"):
        GrainCondition.from_json({**gc.to_json(), "source": "hr"})
    with pytest.raises(ValueError, match="does not match"):
        GrainCondition.from_json({**gc.to_json(), "names": list(detail_names(3))})


def _cap_file(cap: GrainCap, path: Path) -> Path:
    path.write_text(json.dumps({"grain_cap": cap.to_json()}))
    return path


def test_trainer_conditions_on_the_true_detail_level(ae_pt, cap, tmp_path):  # noqa: F811
    from edge.train.diffusion import LatentTrainer, describer, load_grain_cap

    cap_json = _cap_file(cap, tmp_path / "cap.json")
    assert load_grain_cap(cap_json) == cap
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match="holds no grain cap"):
        load_grain_cap(tmp_path / "empty.json")
    with pytest.raises(ValueError, match="needs --grain-cap"):
        LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, grain_cond=True, grain_source=DETAIL_SOURCE),
                      "diffusion")
    cfg = TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3, grain_cond=True, grain_source=DETAIL_SOURCE,
                      grain_cap=str(cap_json), grain_noise=0.05)
    torch.manual_seed(0)
    tr = LatentTrainer(cfg, "diffusion")
    assert tr.grain.lin.in_features == cap.bands
    # describe reads the HR, not the LR: two HR of one LR get their own levels
    hr_weak, hr_strong = _grainy(2.0, 5, 160), _grainy(10.0, 5, 160)
    lr = paper_degrade(hr_weak, 4, 3)
    d = describer(cfg, tr.grain_cap, 0)
    weak, strong = d(lr, hr_weak), d(lr, hr_strong)
    assert (strong - weak > 2.0).all()  # 5x the amplitude: +3.2 in log energy
    assert np.abs(weak - detail_condition_hr(cap, hr_weak, 4)).max() < 0.3  # N(0, 0.05^2) noise on top
    c, z = tr.encode(*_batch(2, 4))
    desc = torch.from_numpy(np.stack([weak, strong, weak, strong]))
    tr.set_grain_stats(desc)
    for _ in range(3):
        tr.train_step(c, z, d=desc)
    assert tr.grain.lin.weight.abs().max() > 0
    exp = tr.export({})
    gc = GrainCondition.from_json(exp["grain_condition"])
    assert gc.source == DETAIL_SOURCE and gc.names == detail_names(4) and gc.window == cap.window


def test_detail_bundle_conditions_on_the_caps_prediction(ae_pt, cap, tmp_path):  # noqa: F811
    """The resolver conditions each image on the cap's predicted detail level; a bundle without its cap is refused."""
    from edge.sr.resolver import SuperResolver
    from edge.train.bundle import build_bundle, set_grain_cap
    from edge.train.diffusion import LatentTrainer

    cfg = TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3, lr_size=8, grain_cond=True, ema_decay=0.0,
                      grain_source=DETAIL_SOURCE, grain_cap=str(_cap_file(cap, tmp_path / "cap.json")))
    torch.manual_seed(0)
    tr = LatentTrainer(cfg, "diffusion")
    tr.set_grain_stats(torch.randn(8, cap.bands))
    with torch.no_grad():
        tr.grain.lin.weight.normal_(0, 1.0)
    tr.train_step(*tr.encode(*_batch(4, 4)), d=torch.randn(4, cap.bands))
    exp = tr.export({})
    assert GrainCap.from_json(exp["grain_cap"]) == cap  # the condition's predictor travels with the denoiser
    save_checkpoint(tmp_path / "d" / "best.pt", exp)
    b = build_bundle(tmp_path / "bundle", ae_pt, tmp_path / "d" / "best.pt", exporter="legacy")
    assert b.manifest.grain_cap == cap and b.manifest.grain_condition.source == DETAIL_SOURCE
    raw = json.loads((b.path / "manifest.json").read_text())
    with pytest.raises(ManifestError, match="needs a grain_cap with 4 bands; the manifest has none"):
        Manifest.from_dict({k: v for k, v in raw.items() if k != "grain_cap"})
    set_grain_cap(b.path, _cap_file(cap, tmp_path / "cap.json"))  # re-fitting the cap keeps the bundle valid
    sr = SuperResolver.from_bundle(b.path, backend="ort", seed=3)
    weak, strong = (paper_degrade(_grainy(a, 7, 64), 4, 3) for a in (2.0, 12.0))
    tiles = np.stack([weak, strong]).astype(np.float32)[:, None] / 127.5 - 1.0
    gc = sr.grain_condition
    want = sr.runner.encode_lr(tiles) + np.stack([gc.offset(detail_condition_lr(cap, weak)),
                                                  gc.offset(detail_condition_lr(cap, strong))])[:, :, None, None]
    np.testing.assert_allclose(sr.condition(tiles), want, atol=1e-5)
    own = sr.upscale(weak).sr
    sr.set_grain_reference([strong])  # baseline frames: the level predicted from them
    assert np.abs(sr.upscale(weak).sr.astype(int) - own).max() > 0
    # bench/grain_steer.py: its shifted and oracle conditions are the box's, moved in log energy / read off the truth
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import grain_steer

    hr = _grainy(5.0, 8, 64)
    lr = paper_degrade(hr, 4, 3)
    np.testing.assert_allclose(grain_steer.condition_of(sr, 0.75)(lr, hr), detail_condition_lr(cap, lr) + 0.75,
                               atol=1e-6)
    np.testing.assert_array_equal(grain_steer.condition_of(sr, oracle=True)(lr, hr), detail_condition_hr(cap, hr, 4))
