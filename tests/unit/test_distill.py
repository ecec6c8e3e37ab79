"""Decoder and few-step student distillation on tiny teachers: losses fall, students approach their teachers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.train.distill import (  # noqa: E402
    distill_decoder,
    distill_student,
    light_decoder,
    make_student_data,
    run_student,
    student_timesteps,
)

T = 200
ACP = np.cumprod(1 - np.linspace(1e-4, 0.02, T))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_light_decoder_shape_and_size():
    dec = light_decoder(4, 1, 4, width=16)
    assert dec(torch.zeros(2, 4, 8, 8)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="power of two"):
        light_decoder(scale=3)


def test_light_decoder_with_lowpass_skip_starts_at_the_bicubic_of_channel_0():
    z = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 4, 8, 8)).astype(np.float32))
    dec = light_decoder(4, 1, 4, width=8, skip_scale=2.0)
    want = torch.nn.functional.interpolate(z[:, :1] / 2.0, scale_factor=4, mode="bicubic", align_corners=False)
    torch.testing.assert_close(dec(z), want)
    assert any(p.requires_grad for p in dec.parameters())  # the residual net is trainable


def test_decoder_distillation_reduces_error():
    torch.manual_seed(0)
    teacher_net = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="nearest"),
                                      torch.nn.Conv2d(4, 1, 3, padding=1))
    teacher = lambda z: teacher_net(torch.from_numpy(z)).detach().numpy()  # noqa: E731
    z = np.random.default_rng(0).standard_normal((32, 4, 4, 4)).astype(np.float32)
    student = light_decoder(4, 1, 2, width=8)
    before = float(np.mean((student(torch.from_numpy(z)).detach().numpy() - teacher(z)) ** 2))
    student, log = distill_decoder(teacher, z, student, steps=40, batch=8, lr=3e-3)
    after = float(np.mean((student(torch.from_numpy(z)).detach().numpy() - teacher(z)) ** 2))
    assert after < 0.5 * before
    assert np.mean(log.losses[-10:]) < np.mean(log.losses[:10])


def test_student_timesteps():
    assert student_timesteps(T, 1).tolist() == [199]
    assert student_timesteps(T, 4).tolist() == [199, 149, 99, 49]
    with pytest.raises(ValueError):
        student_timesteps(T, 5)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x, t, cond):
        return self.conv(torch.cat([x, cond], 1)) * (1 + t[:, None, None, None] / T)


def test_student_distillation_approaches_teacher_ode():
    torch.manual_seed(0)
    teacher_net = _Net().eval()
    teacher = lambda x, t, c: teacher_net(*map(torch.from_numpy, (x, t, c))).detach().numpy()  # noqa: E731
    conds = np.random.default_rng(1).standard_normal((32, 4, 4, 4)).astype(np.float32)
    data = make_student_data(teacher, ACP, conds, "v_prediction", student_steps=2, teacher_steps=20)
    assert data["states"].shape == (2, 32, 4, 4, 4) and data["timesteps"].tolist() == [199, 99]
    student = _Net()
    student.load_state_dict(teacher_net.state_dict())  # SinSR initialises the student from the teacher
    sfn = lambda x, t, c: student(*map(torch.from_numpy, (x, t, c))).detach().numpy()  # noqa: E731
    err = lambda: float(np.mean((run_student(sfn, ACP, data["timesteps"], "v_prediction", data["noise"], conds)  # noqa: E731
                                 - data["x0"]) ** 2))
    before = err()
    student, log = distill_student(student, data, ACP, "v_prediction", steps=150, batch=16, lr=3e-3)
    assert err() < 0.7 * before


def test_decoder_distillation_from_ae_checkpoint(tmp_path):
    """The CLI path: AE checkpoint teacher -> light decoder ONNX + report with quality and time figures."""
    import json

    from edge.models import ImageAutoencoder
    from edge.train.distill import distill_decoder_cmd

    arch = {"kind": "kl", "in_channels": 1, "latent_channels": 4, "block_out_channels": [8, 8, 8],
            "layers_per_block": 1, "norm_num_groups": 4, "lowpass_skip": True}
    torch.manual_seed(0)
    ae = ImageAutoencoder(arch)
    ck = tmp_path / "ae.pt"
    torch.save({"arch": {"hr_ae": arch}, "hr": ae.state_dict(), "scales": {"latent_scale_factor": 0.7}, "step": 1}, ck)
    rep = distill_decoder_cmd(None, tmp_path / "out", minutes=0.02, width=8, tiles=12, seed=0, ae=ck,
                              spectrum_weight=0.1)
    assert rep["lowpass_skip"] is True and rep["spectrum_weight"] == 0.1
    assert (tmp_path / "out" / "hr_decoder_light.onnx").exists()
    assert json.loads((tmp_path / "out" / "decoder_report.json").read_text()) == json.loads(json.dumps(rep))
    assert rep["train_steps"] >= 1 and rep["flops"] > 0 and rep["ms_per_tile_light_ort"] > 0
    assert np.isfinite(rep["psnr_light_vs_full_db"]) and rep["tile_hr"] == 64


def test_register_distill_cli(tmp_path):
    """`train distill` registers on a typer group; a missing bundle is one clear error."""
    import typer
    from typer.testing import CliRunner

    from edge.train.distill import register_distill

    app, train = typer.Typer(), typer.Typer()
    register_distill(train)
    app.add_typer(train, name="train")
    out = CliRunner().invoke(app, ["train", "distill", "--help"]).output
    assert "decoder" in out and "student" in out
    res = CliRunner().invoke(app, ["train", "distill", "student", "--model", str(tmp_path / "none")])
    assert res.exit_code == 2 and "none" in res.output


def test_own_rollout_state_matches_the_teacher_when_the_student_is_the_teacher():
    """With teacher steps == student steps, the student's DDIM rollout from the same noise IS the teacher's state."""
    from edge.sr.fused import plan_steps
    from edge.train.distill import _own_state

    torch.manual_seed(0)
    net = _Net().eval()
    fn = lambda x, t, c: net(*map(torch.from_numpy, (x, t, c))).detach().numpy()  # noqa: E731
    conds = np.random.default_rng(2).standard_normal((8, 4, 4, 4)).astype(np.float32)
    data = make_student_data(fn, ACP, conds, "v_prediction", student_steps=2, teacher_steps=2)
    coefs = plan_steps(ACP, data["timesteps"], "ddim", "v_prediction").coefs
    noise, cond = torch.from_numpy(data["noise"]), torch.from_numpy(conds)
    np.testing.assert_allclose(_own_state(net, noise, cond, data["timesteps"], coefs, 1).numpy(), data["states"][1],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(_own_state(net, noise, cond, data["timesteps"], coefs, 0).numpy(), data["noise"])
    other = _Net().eval()  # a different student reaches a different state: the rollout really uses the student
    assert not np.allclose(_own_state(other, noise, cond, data["timesteps"], coefs, 1).numpy(), data["states"][1],
                           atol=1e-3)
    student, log = distill_student(_Net(), data, ACP, "v_prediction", steps=20, batch=4, lr=1e-3, rollout=1.0)
    assert len(log.losses) == 20 and np.isfinite(log.losses).all()


def test_distill_add_copies_parts_into_the_manifest_and_names_the_fast_path(tmp_path):
    import json
    import shutil

    import typer
    from typer.testing import CliRunner

    from edge.sr.bundle import load_bundle
    from edge.sr.profile import fast_path_settings
    from edge.train.distill import register_distill
    from tests.sr_fixtures import tiny_bundle

    b = tmp_path / "bundle"
    shutil.copytree(tiny_bundle(), b)
    d = tmp_path / "distill"
    d.mkdir()
    app, train = typer.Typer(), typer.Typer()
    register_distill(train)
    app.add_typer(train, name="train")
    run = lambda: CliRunner().invoke(app, ["train", "distill", "add", "--model", str(b), "--from", str(d),  # noqa: E731
                                           "--command", "made by the test"])
    res = run()
    assert res.exit_code == 2 and "no student" in res.output  # nothing distilled yet
    shutil.copyfile(b / "denoiser.onnx", d / "denoiser_student2.onnx")
    shutil.copyfile(b / "hr_decoder.onnx", d / "hr_decoder_light.onnx")
    (d / "student2_report.json").write_text(json.dumps({"file": "denoiser_student2.onnx", "steps": 2,
                                                        "timesteps": [49, 24],
                                                        "sampler": "ddim"}))
    (d / "decoder_report.json").write_text(json.dumps({"file": "hr_decoder_light.onnx", "width": 16}))
    res = run()
    assert res.exit_code == 0, res.output
    bundle = load_bundle(b)  # verifies the sha256 of the copied parts
    assert bundle.manifest.distilled["student2"].info["command"] == "made by the test"
    assert {"denoiser_student2.onnx", "hr_decoder_light.onnx"} <= set(bundle.manifest.files)
    assert fast_path_settings(bundle)["sampler"] == "student2"


def test_light_encoder_distils_adds_to_the_bundle_and_runs_in_the_fast_path(tmp_path):
    """distill encoder -> lr_encoder_light.onnx + report; `distill add` ships it and the fast path names it; the
    box's default profile and the bench's FLOP count use it in place of the full condition encoder."""
    import json
    import shutil

    from edge.bench_measure import flops_per_sample
    from edge.sr.bundle import BundleError, load_bundle
    from edge.sr.config import SRConfig
    from edge.sr.profile import fast_path_settings
    from edge.sr.resolver import SuperResolver
    from edge.train.bundle import add_distilled
    from edge.train.distill import distill_encoder_cmd, light_encoder
    from tests.sr_fixtures import tiny_bundle

    enc = light_encoder(4, width=8, blocks=1)
    assert enc(torch.zeros(2, 1, 16, 12)).shape == (2, 4, 16, 12)  # same grid as the LR
    b = tmp_path / "bundle"
    shutil.copytree(tiny_bundle(), b)
    with pytest.raises(BundleError, match="no distilled light encoder"):
        SuperResolver.from_bundle(b, encoder="light")
    d = tmp_path / "distill"
    rep = distill_encoder_cmd(b, d, minutes=0.02, width=8, blocks=1, tiles=40, seed=0)
    assert json.loads((d / "encoder_report.json").read_text()) == json.loads(json.dumps(rep))
    assert rep["flops"] > 0 and rep["train_steps"] >= 1 and np.isfinite(rep["cond_rmse_vs_teacher"])
    shutil.copyfile(b / "denoiser.onnx", d / "denoiser_student2.onnx")
    shutil.copyfile(b / "hr_decoder.onnx", d / "hr_decoder_light.onnx")
    (d / "student2_report.json").write_text(json.dumps({"file": "denoiser_student2.onnx", "steps": 2,
                                                        "timesteps": [49, 24],
                                                        "sampler": "ddim"}))
    (d / "decoder_report.json").write_text(json.dumps({"file": "hr_decoder_light.onnx", "width": 16}))
    assert set(add_distilled(b, d)) == {"student2", "light_decoder", "light_encoder"}
    bundle = load_bundle(b)
    assert fast_path_settings(bundle)["encoder"] == "light"
    assert all(n.endswith("+ light encoder") for n in bundle.manifest.raw["fast_path"]["bench_names"])
    assert bundle.light_encoder().graph_file("lr_encoder") == "lr_encoder_light.onnx"
    lr = np.random.default_rng(0).integers(0, 255, (20, 28), dtype=np.uint8)
    full = SuperResolver.from_bundle(b, seed=3).upscale(lr).sr
    light = SuperResolver.from_bundle(b, seed=3, encoder="light").upscale(lr).sr
    assert light.shape == full.shape and not np.array_equal(light, full)  # a different condition graph really ran
    box = SuperResolver.from_config(SRConfig(model=str(b)))  # the default profile takes the fast path
    assert box.bundle.graph_file("lr_encoder") == "lr_encoder_light.onnx" and "student2" in box.model_id
    from tests.sr_fixtures import tiny_modules

    assert flops_per_sample(box, tiny_modules())["encoder"] == rep["flops"]


def test_warm_start_loads_an_onnx_export_back_including_folded_groupnorms(tmp_path):
    """load_onnx_weights: named tensors by name, the exporter's anonymous GroupNorm constants by call order (here
    registered in another order than called, as in diffusers' UNet2DModel); a different architecture is refused."""
    from edge.train.distill_io import export_onnx, load_onnx_weights

    class Net(torch.nn.Module):
        def __init__(self, width: int = 8) -> None:
            super().__init__()
            self.late = torch.nn.GroupNorm(4, width)  # registered first, called last
            self.conv = torch.nn.Conv2d(1, width, 3, padding=1)
            self.early = torch.nn.GroupNorm(4, width)
            self.out = torch.nn.Conv2d(width, 1, 1)

        def forward(self, x):
            return self.out(self.late(torch.nn.functional.silu(self.early(self.conv(x)))))

    torch.manual_seed(0)
    src = Net()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))  # affine weights away from their (1, 0) defaults
    x = torch.randn(2, 1, 8, 8)
    export_onnx(src, (x,), ["x"], ["y"], tmp_path / "net.onnx")
    dst = Net()
    assert load_onnx_weights(dst, tmp_path / "net.onnx", (x,)) == len(src.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="not the same architecture|does not fit"):
        load_onnx_weights(Net(width=12), tmp_path / "net.onnx", (x,))


def test_texture_term_moves_the_decoded_student_toward_the_truths_texture():
    """With the grain-texture term the student's decoded x0 ends closer in texture to heavy-tailed ground truth
    than the same distillation without it, while both stay near the teacher."""
    from edge.train.distill_student import TextureTerm

    torch.manual_seed(0)
    teacher_net = _Net().eval()
    teacher = lambda x, t, c: teacher_net(*map(torch.from_numpy, (x, t, c))).detach().numpy()  # noqa: E731
    conds = np.random.default_rng(1).standard_normal((32, 4, 8, 8)).astype(np.float32)
    data = make_student_data(teacher, ACP, conds, "v_prediction", student_steps=2, teacher_steps=20)
    decoder = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(4, 1, 3, padding=1)).eval()
    decoder.requires_grad_(False)
    rng = np.random.default_rng(2)
    hr = rng.normal(0, 0.05, (32, 1, 16, 16)) + 0.8 * (rng.random((32, 1, 16, 16)) < 0.02)  # sparse bright specks
    term = TextureTerm(decoder, torch.from_numpy(hr.astype(np.float32)), 0.5)
    idx = torch.arange(32)

    def texture_after(weight: float) -> tuple[float, float]:
        student = _Net()
        student.load_state_dict(teacher_net.state_dict())
        term.weight = weight
        student, _ = distill_student(student, data, ACP, "v_prediction", steps=150, batch=16, lr=3e-3, texture=term)
        sfn = lambda x, t, c: student(*map(torch.from_numpy, (x, t, c))).detach().numpy()  # noqa: E731
        x0 = run_student(sfn, ACP, data["timesteps"], "v_prediction", data["noise"], conds)
        with torch.no_grad():
            return float(term.loss(torch.from_numpy(x0), idx)), float(np.sqrt(np.mean((x0 - data["x0"]) ** 2)))

    plain, rmse_plain = texture_after(0.0)
    textured, rmse_textured = texture_after(0.5)
    assert textured < 0.8 * plain
    assert rmse_plain < 0.5 and rmse_textured < 1.0  # latents of std ~1: neither run leaves the teacher map
