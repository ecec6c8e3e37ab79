"""SR model modules: shapes for both presets, size-agnostic nets, the low-pass skip, latent scale estimation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from edge.models import (  # noqa: E402
    CondDenoiser,
    ImageAutoencoder,
    PatchDiscriminator,
    RegressionNet,
    ScaledDecoder,
    ScaledEncoder,
    equalize_latent_channels,
    estimate_latent_scale,
    param_count,
    preset,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    p = preset("small")
    return ImageAutoencoder(p["hr_ae"]).eval(), ImageAutoencoder(p["lr_ae"]).eval(), CondDenoiser(p["unet"]).eval(), p


def test_small_preset_shapes_follow_the_contract(small):
    hr_ae, lr_ae, den, p = small
    with torch.no_grad():
        hr = torch.rand(2, 1, 64, 64) * 2 - 1
        lr = torch.rand(2, 1, 16, 16) * 2 - 1
        z, c = hr_ae.encode(hr), lr_ae.encode(lr)
        assert z.shape == c.shape == (2, 4, 16, 16)
        assert hr_ae.decode(z).shape == (2, 1, 64, 64)
        assert den(z, torch.tensor([0.0, 199.0]), c).shape == (2, 4, 16, 16)
        assert RegressionNet(p["unet"])(c).shape == (2, 4, 16, 16)


def test_nets_are_size_agnostic(small):
    hr_ae, lr_ae, den, _ = small
    with torch.no_grad():
        c = lr_ae.encode(torch.zeros(1, 1, 40, 24))
        assert c.shape == (1, 4, 40, 24)
        assert den(c, torch.tensor([5.0]), c).shape == (1, 4, 40, 24)
        assert hr_ae.decode(c).shape == (1, 1, 160, 96)


def test_lowpass_skip_starts_as_box_down_bicubic_up(small):
    torch.manual_seed(1)
    ae = ImageAutoencoder(preset("small")["hr_ae"]).eval()  # fresh: decoder output zero-initialised
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z = ae.encode(x)
        want = F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="bicubic", align_corners=False)
        assert torch.allclose(z[:, :1], F.avg_pool2d(x, 4), atol=1e-5)
        assert torch.allclose(ae.decode(z), want, atol=1e-5)
        # channels 1.. start random, not at zero: the encoder already passes image content through them
        other = ae.encode(torch.rand(1, 1, 32, 32) * 2 - 1)
        assert (z[:, 1:] - other[:, 1:]).abs().mean() > 1e-3


def test_scaled_wrappers_bake_in_the_latent_scale(small):
    hr_ae = small[0]
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z = ScaledEncoder(hr_ae, 2.5)(x)
        assert torch.allclose(z, hr_ae.encode(x) * 2.5)
        assert torch.allclose(ScaledDecoder(hr_ae, 2.5)(z), hr_ae.decode(z / 2.5).clamp(-1, 1), atol=1e-6)


def test_paper_preset_is_the_papers_size_without_running_it():
    den = CondDenoiser(preset("paper")["unet"])
    assert den.unet.config.block_out_channels == (128, 256, 512, 512)
    assert den.unet.config.layers_per_block == 2 and den.unet.config.in_channels == 8
    assert 100e6 < param_count(den) < 130e6


def test_vq_variant_and_discriminator_run():
    ae = ImageAutoencoder({**preset("small")["hr_ae"], "kind": "vq", "num_vq_embeddings": 64}).eval()
    with torch.no_grad():
        rec, h, _ = ae(torch.zeros(1, 1, 32, 32))
    assert rec.shape == (1, 1, 32, 32) and h.shape == (1, 4, 8, 8)
    assert PatchDiscriminator()(torch.zeros(2, 1, 64, 64)).shape == (2, 1, 8, 8)


def test_arch_dicts_reject_unknown_keys_and_presets():
    with pytest.raises(ValueError, match="unknown keys"):
        ImageAutoencoder({**preset("small")["hr_ae"], "classname": "Foo"})
    with pytest.raises(ValueError, match="unknown keys"):
        CondDenoiser({**preset("small")["unet"], "bogus": 1})
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")


def test_latent_scale_is_one_over_latent_std():
    class Times3(torch.nn.Module):
        def encode(self, x):
            return 3 * x

    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 1, 8, 8, generator=g) * 0.5 for _ in range(3)]
    s = estimate_latent_scale(Times3(), iter(batches))
    assert s == pytest.approx(1 / (3 * torch.cat([b.flatten() for b in batches]).std().item()), rel=1e-5)
    with pytest.raises(ValueError, match="constant"):
        estimate_latent_scale(Times3(), iter([torch.zeros(2, 1, 4, 4)]))


def test_equalize_latent_channels_keeps_the_reconstruction():
    torch.manual_seed(3)
    ae = ImageAutoencoder(preset("small")["hr_ae"]).eval()
    torch.nn.init.normal_(ae.net.decoder.conv_out.weight, std=0.05)  # a decoder that uses every channel
    with torch.no_grad():
        ae.net.quant_conv.weight[2] *= 0.02  # channel 2 much quieter than the others
    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(4, 1, 32, 32, generator=g) * 2 - 1 for _ in range(3)]
    with torch.no_grad():
        before = ae.decode(ae.encode(batches[0]))
        gains = equalize_latent_channels(ae, iter(batches))
        z = torch.cat([ae.encode(b) for b in batches]).transpose(0, 1).flatten(1)
        after = ae.decode(ae.encode(batches[0]))
    assert gains[0] == 1.0 and gains[2] > 10 * max(gains[1], gains[3])
    assert torch.allclose(z.std(dim=1), z[0].std().expand(4), rtol=1e-3)
    assert torch.allclose(after, before, atol=1e-4)
