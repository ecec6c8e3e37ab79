"""Training: losses, one step lowers the loss, exact checkpoint resume, DDP (gloo, world 1), schedule parity."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.train.autoencoder import AETrainer  # noqa: E402
from edge.train.common import load_checkpoint, save_checkpoint  # noqa: E402
from edge.train.config import TrainConfig  # noqa: E402
from edge.train.diffusion import LatentTrainer, diffusion_target, make_scheduler  # noqa: E402
from edge.train.losses import fft_amplitude_loss, hinge_d_loss, wavelet_stats_loss  # noqa: E402

TINY_AE = {"hr_ae": {"kind": "kl", "in_channels": 1, "latent_channels": 4, "block_out_channels": [8, 8, 8],
                     "layers_per_block": 1, "norm_num_groups": 4, "lowpass_skip": True},
           "lr_ae": {"kind": "kl", "in_channels": 1, "latent_channels": 4, "block_out_channels": [8],
                     "layers_per_block": 1, "norm_num_groups": 4, "lowpass_skip": True},
           "unet": {"latent_channels": 4, "cond_channels": 4, "block_out_channels": [16, 16], "layers_per_block": 1,
                    "norm_num_groups": 4, "attention": False, "num_train_timesteps": 200}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _batch(seed=0, n=2, s=8):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(n, 1, 4 * s, 4 * s, generator=g) * 2 - 1
    return torch.nn.functional.avg_pool2d(hr, 4), hr


@pytest.fixture
def ae_pt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    tr = AETrainer(TrainConfig(arch=TINY_AE))
    tr.scales = {"latent_scale_factor": 2.0, "cond_scale_factor": 3.0}
    save_checkpoint(tmp_path / "ae.pt", tr.export_weights(*tr.ema_models()))
    return tmp_path / "ae.pt"


def test_texture_losses_see_missing_detail():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 32, 32, generator=g)
    blur = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert fft_amplitude_loss(x, x).item() == 0 and wavelet_stats_loss(x, x).item() == 0
    assert fft_amplitude_loss(blur, x) > 0.1 and wavelet_stats_loss(blur, x) > 0.1
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)).item() == 2


def test_autoencoder_steps_lower_the_loss():
    torch.manual_seed(0)
    tr = AETrainer(TrainConfig(arch=TINY_AE, lr=2e-3, gan_start=100, fft_weight=0.0, wavelet_weight=0.0))
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    hr = (0.6 * torch.sin(2.2 * xx) * torch.cos(1.9 * yy))[None, None]  # detail the low-pass misses
    lr = torch.nn.functional.avg_pool2d(hr, 4)

    def rec_l1():
        with torch.no_grad():
            return (tr.hr.decode(tr.hr.encode(hr)) - hr).abs().mean().item()

    before = rec_l1()
    for _ in range(20):
        tr.train_step(lr, hr)
    assert rec_l1() < 0.9 * before and tr.step_no == 20


def test_autoencoder_resume_is_exact(tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(arch=TINY_AE, gan_start=1)
    a = AETrainer(cfg)
    lr, hr = _batch()
    a.train_step(lr, hr)
    save_checkpoint(tmp_path / "last.pt", a.state())
    want = a.train_step(lr, hr)
    b = AETrainer(cfg)
    b.load(load_checkpoint(tmp_path / "last.pt"))
    assert b.step_no == 1
    got = b.train_step(lr, hr)
    assert got == want  # same weights, optimiser moments and RNG stream -> bit-identical losses
    for p, q in zip(a.hr.parameters(), b.hr.parameters(), strict=False):
        assert torch.equal(p, q)


class _Stream:
    """Stand-in for BatchStream: fixed random (LR, HR) batches."""

    def __init__(self) -> None:
        self.i = 0

    def next(self):
        self.i += 1
        return _batch(self.i, 4)


def test_finalize_equalises_latent_channels_and_sets_scales():
    torch.manual_seed(0)
    tr = AETrainer(TrainConfig(arch=TINY_AE))
    with torch.no_grad():  # a trained-looking state: the decoder uses every channel, channel 3 is loud
        torch.nn.init.normal_(tr.hr.net.decoder.conv_out.weight, std=0.05)
        tr.hr.net.quant_conv.weight[3] *= 20
    tr.ema_hr.shadow_params = [p.clone() for p in tr.hr.parameters()]
    hr_img = _batch(99, 4)[1]
    with torch.no_grad():
        start = tr.ema_models()[0]
        before = start.decode(start.encode(hr_img))
        z0 = start.encode(hr_img).transpose(0, 1).flatten(1)
        hr, lr_ae = tr.finalize(_Stream())
        z = hr.encode(hr_img).transpose(0, 1).flatten(1)
        after = hr.decode(hr.encode(hr_img))
    assert tr.gains["hr"][0] == 1.0 and tr.gains["hr"][3] < 0.2
    assert z0.std(dim=1).max() / z0.std(dim=1).min() > 5 > 2 > z.std(dim=1).max() / z.std(dim=1).min()
    assert torch.allclose(after, before, atol=1e-4)
    assert set(tr.scales) == {"latent_scale_factor", "cond_scale_factor"} and tr.scales["latent_scale_factor"] > 0
    exported = tr.export_weights(hr, lr_ae)
    assert exported["channel_gains"] == tr.gains and exported["scales"] == tr.scales


def test_decoder_only_keeps_the_encoder(ae_pt):
    tr = AETrainer(TrainConfig(init_from=str(ae_pt), decoder_only=True, gan_start=0, lr=1e-2))
    enc = [p.clone() for p in tr.hr.net.encoder.parameters()]
    dec = [p.clone() for p in tr.hr.net.decoder.parameters()]
    tr.train_step(*_batch())
    assert all(torch.equal(a, b) for a, b in zip(enc, tr.hr.net.encoder.parameters(), strict=False))
    assert any(not torch.equal(a, b) for a, b in zip(dec, tr.hr.net.decoder.parameters(), strict=False))
    assert tr.scales == {"latent_scale_factor": 2.0, "cond_scale_factor": 3.0}


def test_latent_noise_decoder_sees_perturbed_latents_and_needs_decoder_only(ae_pt):
    seen = []

    def run(noise: float) -> None:
        torch.manual_seed(0)
        tr = AETrainer(TrainConfig(init_from=str(ae_pt), decoder_only=True, gan_start=0, latent_noise=noise))
        dec = tr.hr.decode
        tr.hr.decode = lambda z: (seen.append(z.detach().clone()), dec(z))[1]  # type: ignore[method-assign]
        tr.train_step(*_batch())

    run(0.0)
    run(0.5)
    clean, noisy = seen
    assert clean.shape == noisy.shape and not torch.allclose(clean, noisy)
    assert (noisy - clean).std() < 0.5 / 2.0  # noise is in scaled-latent units (scale 2.0 in the fixture)
    with pytest.raises(ValueError, match="needs decoder_only"):
        AETrainer(TrainConfig(arch=TINY_AE, latent_noise=0.1))


@pytest.mark.parametrize("mode", ["diffusion", "regression"])
def test_latent_steps_lower_the_loss_and_resume_exactly(ae_pt, tmp_path, mode):
    torch.manual_seed(0)
    cfg = TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3)
    tr = LatentTrainer(cfg, mode)
    c, z = tr.encode(*_batch(1, 4))
    t, noise = torch.tensor([20, 60, 120, 180]), torch.randn(z.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = tr.loss(tr.net, c, z, t, noise).item()
    for _ in range(10):
        tr.train_step(c, z)
    with torch.no_grad():
        assert tr.loss(tr.net, c, z, t, noise).item() < before
    save_checkpoint(tmp_path / "l.pt", tr.state())
    want = tr.train_step(c, z)
    tr2 = LatentTrainer(cfg, mode)
    tr2.load(load_checkpoint(tmp_path / "l.pt"))
    assert tr2.train_step(c, z) == want


def test_latent_init_from_starts_at_an_export_and_refuses_a_mismatch(ae_pt, tmp_path):
    torch.manual_seed(0)
    src = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3), "diffusion")
    src.train_step(*src.encode(*_batch(1, 4)))
    save_checkpoint(tmp_path / "best.pt", src.export({}))
    tr = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, init_from=str(tmp_path / "best.pt")), "diffusion")
    for p, q in zip(tr.net.state_dict().values(), src.ema_weights().values(), strict=False):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="not a regression export"):
        LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, init_from=str(tmp_path / "best.pt")), "regression")
    other = {**TINY_AE, "unet": {**TINY_AE["unet"], "block_out_channels": [8, 8]}}
    with pytest.raises(ValueError, match="arch"):
        LatentTrainer(TrainConfig(ae=str(ae_pt), arch=other, init_from=str(tmp_path / "best.pt")), "diffusion")


def test_ddp_gloo_world_of_one(ae_pt):
    from torch.nn.parallel import DistributedDataParallel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        tr = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3), "diffusion")
        ddp = DistributedDataParallel(tr.net)
        c, z = tr.encode(*_batch(1, 4))
        losses = [tr.train_step(c, z, ddp) for _ in range(3)]
        assert all(np.isfinite(losses)) and tr.step_no == 3
    finally:
        torch.distributed.destroy_process_group()


def test_training_schedule_matches_the_runtime_schedule():
    from edge.sr.schedule import Schedule, to_v

    for kind in ("cosine", "linear"):
        sch = make_scheduler(kind, 200, "v_prediction")
        np.testing.assert_allclose(sch.alphas_cumprod.double().numpy(), Schedule.make(kind, 200).alphas_cumprod,
                                   rtol=1e-5, atol=1e-7)
    sch = make_scheduler("cosine", 200, "v_prediction")
    x0, eps, t = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2), torch.tensor([73])
    v = diffusion_target(sch, x0, eps, t, "v_prediction")
    np.testing.assert_allclose(v.numpy(), to_v(x0.numpy(), eps.numpy(), float(sch.alphas_cumprod[73])), atol=1e-5)


def _pixel_export(tmp_path: Path, steps: int = 3) -> Path:
    """A `train pixel` export of a few steps (tiny data)."""
    from edge.train.pixel import PixelTrainer

    torch.manual_seed(0)
    tr = PixelTrainer(TrainConfig(lr=1e-3))
    lr, hr = _batch(3, 4)
    for _ in range(steps):
        tr.train_step(lr, hr)
    save_checkpoint(tmp_path / "pixel.pt", tr.export({"val_psnr": 0.0}))
    return tmp_path / "pixel.pt"


def test_pixel_regressor_starts_at_bicubic_learns_resumes_and_exports(tmp_path):
    from edge.train.pixel import PixelTrainer, load_pixel_regressor

    torch.manual_seed(0)
    tr = PixelTrainer(TrainConfig(lr=1e-3))
    lr, hr = _batch(5, 4)
    with torch.no_grad():
        up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        assert torch.equal(tr.net(lr), up)  # zero residual head: starts as bicubic
        before = torch.nn.functional.l1_loss(tr.net(lr), hr).item()
    for _ in range(15):
        tr.train_step(lr, hr)
    with torch.no_grad():
        assert torch.nn.functional.l1_loss(tr.net(lr), hr).item() < before
    save_checkpoint(tmp_path / "last.pt", tr.state())
    want = tr.train_step(lr, hr)
    tr2 = PixelTrainer(TrainConfig(lr=1e-3))
    tr2.load(load_checkpoint(tmp_path / "last.pt"))
    assert tr2.train_step(lr, hr) == want
    save_checkpoint(tmp_path / "best.pt", tr2.export({}))
    net, s = load_pixel_regressor(tmp_path / "best.pt")
    for p, q in zip(net.parameters(), tr2.ema.parameters(), strict=False):
        assert torch.equal(p, q)
    save_checkpoint(tmp_path / "other.pt", {"kind": "diffusion-ema"})
    with pytest.raises(ValueError, match="not a pixel-regression export"):
        load_pixel_regressor(tmp_path / "other.pt")


def test_estimate_conditioning_starts_at_the_lr_only_denoiser_then_uses_the_estimate(ae_pt, tmp_path):
    from edge.models import CondDenoiser, MixedCondDenoiser

    torch.manual_seed(0)
    src = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3), "diffusion")
    src.train_step(*src.encode(*_batch(1, 4)))
    save_checkpoint(tmp_path / "best.pt", src.export({}))
    pix = _pixel_export(tmp_path)
    cfg = TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3, init_from=str(tmp_path / "best.pt"), estimate=str(pix))
    tr = LatentTrainer(cfg, "diffusion")
    assert isinstance(tr.net, MixedCondDenoiser)
    c, z = tr.encode(*_batch(2, 4))
    assert c.shape[1] == 8 and z.shape[1] == 4  # LR latent ++ the estimate's HR latent
    x, t = torch.randn(z.shape), torch.tensor([5.0, 50.0, 100.0, 150.0])
    inner = CondDenoiser(TINY_AE["unet"] | {"num_train_timesteps": 200})
    inner.load_state_dict(src.ema_weights())
    with torch.no_grad():
        assert torch.equal(tr.net(x, t, c), inner(x, t, c[:, :4]))  # mix starts at zero
    for _ in range(5):
        tr.train_step(c, z)
    assert tr.net.mix.weight.abs().max() > 0  # the estimate path gets gradient and is used
    exp = tr.export({})
    assert set(exp["cond_estimate"]) >= {"pixel", "mix", "arch", "path"}
    save_checkpoint(tmp_path / "est.pt", exp)
    again = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, init_from=str(tmp_path / "est.pt"),
                                      estimate=str(pix)),
                          "diffusion")
    assert torch.equal(again.net.mix.weight, exp["cond_estimate"]["mix"]["weight"])  # continuing keeps the mix
    assert set(exp["net"]) == set(inner.state_dict())  # the inner U-Net's weights, loadable as a plain denoiser
    with pytest.raises(ValueError, match="regression baseline"):
        LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, estimate=str(pix)), "regression")


def test_estimate_bundle_lr_encoder_is_the_composite_on_every_backend(ae_pt, tmp_path):
    """build_bundle folds pixel regressor + HR encoder + mix into lr_encoder: ONNX == torch, cond keeps 4 channels."""
    from edge.sr.bundle import load_bundle
    from edge.sr.runners import OrtRunner, TorchRunner
    from edge.train.bundle import build_bundle

    torch.manual_seed(0)
    pix = _pixel_export(tmp_path)
    tr = LatentTrainer(TrainConfig(ae=str(ae_pt), arch=TINY_AE, lr=3e-3, lr_size=8, estimate=str(pix)), "diffusion")
    for _ in range(3):
        tr.train_step(*tr.encode(*_batch(4, 4)))
    save_checkpoint(tmp_path / "d" / "best.pt", tr.export({}))
    b = build_bundle(tmp_path / "bundle", ae_pt, tmp_path / "d" / "best.pt", exporter="legacy")
    assert b.has_graph("pixel_regression") and "cond_estimate" in b.manifest.arch
    lr = (np.random.default_rng(0).random((2, 1, 8, 8)) * 2 - 1).astype(np.float32)
    ort_c, torch_c = OrtRunner(load_bundle(b.path)).encode_lr(lr), TorchRunner.from_bundle(b).encode_lr(lr)
    assert ort_c.shape == (2, 4, 8, 8)
    np.testing.assert_allclose(ort_c, torch_c, atol=1e-4)
    with torch.no_grad():
        plain = tr.lr_ae.encode(torch.from_numpy(lr)).numpy() * tr.scales["cond_scale_factor"]
    assert np.abs(ort_c - plain).max() > 1e-4  # the trained mix adds the estimate
    with pytest.raises(ValueError, match="regression"):
        build_bundle(tmp_path / "b2", ae_pt, tmp_path / "d" / "best.pt", regression_pt=tmp_path / "d" / "best.pt",
                     exporter="legacy")


def test_grain_and_photo_weight_options_reach_the_training_data(tmp_path):
    import typer

    from edge.train.autoencoder import datasets
    from edge.train.cli import _cfg
    from tests.unit.test_datasets import _fake_build

    cfg = _cfg(sims=[str(_fake_build(tmp_path / "b1", 6, 1))], grain_prob=0.5, grain_gain="0.7,1.8", photo_weight=4.0,
               lr_size=8)
    assert cfg.grain_gain == [0.7, 1.8] and cfg.photo_weight == 4.0
    train, val = datasets(cfg)
    assert train.mix.grain_prob == 0.5 and train.mix.grain_gain == (0.7, 1.8)
    assert val.mix.grain_prob == 0.0  # validation data stay as they are
    for bad in ("2", "a,b", "2,1", "0,1"):
        with pytest.raises(typer.BadParameter, match="--grain-gain"):
            _cfg(grain_gain=bad)


def test_pixel_diffusion_baseline_learns_resumes_exports_and_samples(tmp_path):
    from edge.train.pixel_diffusion import PixelDiffusionTrainer, load_pixel_diffusion, pixel_diffusion_upscale

    arch = {"unet": {"latent_channels": 1, "cond_channels": 1, "block_out_channels": [8, 8], "layers_per_block": 1,
                     "norm_num_groups": 4, "attention": False, "num_train_timesteps": 200}}
    torch.manual_seed(0)
    cfg = TrainConfig(arch=arch, lr=2e-3)
    tr = PixelDiffusionTrainer(cfg)
    lr, hr = _batch(3, 4)
    cond = tr.condition(lr)
    assert cond.shape == hr.shape  # the condition is the bicubic LR at HR size
    t, noise = torch.full((4,), 100), torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))
    before = tr.loss(cond, hr, t, noise).item()
    for _ in range(30):
        tr.train_step(lr, hr)
    assert tr.loss(cond, hr, t, noise).item() < before
    save_checkpoint(tmp_path / "last.pt", tr.state())
    torch.manual_seed(7)
    want = tr.train_step(lr, hr)
    tr2 = PixelDiffusionTrainer(cfg)
    tr2.load(load_checkpoint(tmp_path / "last.pt"))
    torch.manual_seed(7)
    assert tr2.train_step(lr, hr) == want
    save_checkpoint(tmp_path / "best.pt", tr2.export({}))
    net, s = load_pixel_diffusion(tmp_path / "best.pt")
    lr_u8 = np.random.default_rng(0).integers(0, 255, (8, 12), dtype=np.uint8)
    a = pixel_diffusion_upscale(net, s, lr_u8, {"name": "ddim", "steps": 3}, seed=1)
    assert a.shape == (32, 48) and a.dtype == np.uint8
    assert np.array_equal(a, pixel_diffusion_upscale(net, s, lr_u8, {"name": "ddim", "steps": 3}, seed=1))
    with pytest.raises(ValueError, match="not a pixel-diffusion export"):
        load_pixel_diffusion(tmp_path / "last.pt")


def test_shared_loop_validates_keeps_best_and_resumes_to_the_step_budget(tmp_path):
    """run_training: best/final/last.pt written, metrics every val_every, a rerun resumes instead of restarting."""
    import json

    from edge.train.pixel import train_pixel
    from tests.unit.test_datasets import _fake_build

    build = _fake_build(tmp_path / "b1", 8, 1)
    out = tmp_path / "run"
    base = dict(sims=[str(build)], out=str(out), batch=2, lr_size=8, pool_tile=8, lr=1e-3, val_every=2, save_every=2,
                threads=1)
    best = train_pixel(TrainConfig(**base, steps=4))
    assert best == out / "best.pt" and {p.name for p in out.glob("*.pt")} >= {"best.pt", "final.pt", "last.pt"}
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if not r.get("final")] == [2, 4]
    assert load_checkpoint(out / "best.pt")["val"]["val_psnr"] == max(r["val_psnr"] for r in rows)
    train_pixel(TrainConfig(**base, steps=6))  # resumes at step 4, not from scratch
    assert load_checkpoint(out / "last.pt")["step"] == 6
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if not r.get("final")] == [2, 4, 6]
