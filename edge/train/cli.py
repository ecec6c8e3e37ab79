"""`lpbf-edge train autoencoder|diffusion|regression|bundle`: model training (needs torch)."""

from __future__ import annotations

from pathlib import Path

import typer

SIMS_HELP = "Sim build folder (repeatable), e.g. runs/data/sim_s1."


def _cfg(**kw):
    """A TrainConfig from CLI options (None values keep the defaults); grain_gain 'LO,HI' is parsed and checked."""
    from edge.train.config import TrainConfig

    if isinstance(kw.get("grain_gain"), str):
        try:
            lo, hi = (float(v) for v in kw["grain_gain"].split(","))
        except ValueError:
            raise typer.BadParameter(f"--grain-gain wants LO,HI (two numbers), got {kw['grain_gain']!r}") from None
        if not 0 < lo <= hi:
            raise typer.BadParameter(f"--grain-gain wants 0 < LO <= HI, got {kw['grain_gain']!r}")
        kw["grain_gain"] = [lo, hi]
    return TrainConfig(**{k: v for k, v in kw.items() if v is not None})


COMMON = dict(  # options several commands share, declared once
    sim=typer.Option([], "--sim", help=SIMS_HELP),
    realdata=typer.Option(None, "--realdata", help="Folder of real photographs (LR made by degradation)."),
    holdout_build=typer.Option([], "--holdout-build", help="Sim build folder NAME held out entirely (repeatable)."),
    steps=typer.Option(None, "--steps", help="Total optimisation steps."),
    minutes=typer.Option(None, "--minutes", help="Stop (and save) after this much training wall time."),
    batch=typer.Option(None, "--batch", help="Batch size per process."),
    lr=typer.Option(None, "--lr", help="Learning rate."),
    seed=typer.Option(0, "--seed", help="Seed."),
    preset=typer.Option("small", "--preset", help="Architecture preset: small | paper."),
    threads=typer.Option(2, "--threads", help="torch CPU threads."),
    log=typer.Option(None, "--log", help="Write the progress bar and metrics to this file."),
    fresh=typer.Option(False, "--fresh", help="Ignore an existing checkpoint in OUT instead of resuming."),
    val_every=typer.Option(None, "--val-every", help="Validate every N steps."),
    lr_size=typer.Option(None, "--lr-size", help="LR training crop side (HR crop = scale x this)."),
    init_net=typer.Option(None, "--init-from", help="Start from the EMA weights of this best.pt (same U-Net)."),
    photo_weight=typer.Option(None, "--photo-weight",
                              help="Draw a photograph's patches this many times as often as a sim layer's (default "
                              "2)."),
    grain_prob=typer.Option(None, "--grain-prob", help="Fraction of synthetic-LR patches whose HR fine detail "
                            "(above the LR Nyquist) is rescaled before degrading (default 0)."),
    grain_gain=typer.Option(None, "--grain-gain", help="LO,HI: log-uniform range of that amplitude gain (default "
                            "0.5,2)."),
    sim_share=typer.Option(None, "--sim-share", help="Share of patches drawn from sim layers; the rest is split "
                           "equally among the photo groups (replaces --photo-weight)."),
    texture_aug=typer.Option(None, "--texture-aug", help="Structured-texture augmentation of synthetic-LR patches: "
                             "none | structured (grain bands, smear, streaks, scan tracks, sparkle)."),
    holdout_photo=typer.Option([], "--holdout-photo", help="Photograph file name held out (repeatable; default "
                               "S05.jpg)."),
    val_photo=typer.Option([], "--val-photo", help="Validation photograph (repeatable; default 10448.png; 'none' "
                           "for sim validation only)."),
    holdout_group=typer.Option([], "--holdout-group", help="Photo group a hashed share of which is held out "
                               "(repeatable; see --holdout-share)."),
    holdout_share=typer.Option(None, "--holdout-share", help="Share of a --holdout-group held out (default 0.25)."),
    exclude_group=typer.Option([], "--exclude-group", help="Source group left out entirely (leave-one-source-out; "
                               "groups: sim, risheng_melt, risheng_recoat, pblm, pblm_classes)."),
)

def _split_kw(holdout_photo: list[str], val_photo: list[str], holdout_group: list[str], holdout_share,
             exclude_group: list[str]) -> dict:
    """TrainConfig keys of the split options (empty lists keep the defaults)."""
    kw: dict = {"holdout_groups": holdout_group, "exclude_groups": exclude_group, "holdout_share": holdout_share}
    if holdout_photo:
        kw["holdout_photos"] = [p for p in holdout_photo if p != "none"]
    if val_photo:
        kw["val_photos"] = [p for p in val_photo if p != "none"]
    return kw

def autoencoder(
    out: Path = typer.Option(Path("runs/ae"), "--out", help="Run folder (checkpoints, metrics.jsonl, ae.pt)."),
    sim: list[str] = COMMON["sim"], realdata: str | None = COMMON["realdata"],
    holdout_build: list[str] = COMMON["holdout_build"], steps: int | None = COMMON["steps"],
    minutes: float | None = COMMON["minutes"], batch: int | None = COMMON["batch"], lr: float | None = COMMON["lr"],
    seed: int = COMMON["seed"], preset: str = COMMON["preset"], threads: int = COMMON["threads"],
    log: Path | None = COMMON["log"], fresh: bool = COMMON["fresh"], val_every: int | None = COMMON["val_every"],
    lr_size: int | None = COMMON["lr_size"],
    gan_start: int | None = typer.Option(None, "--gan-start", help="Step at which the patch GAN loss starts."),
    init_from: str | None = typer.Option(None, "--init-from", help="Start from this ae.pt (EMA weights, scales)."),
    decoder_only: bool = typer.Option(False, "--decoder-only", help="Fine-tune only the HR decoder (needs "
                                      "--init-from)."),
    l1_weight: float | None = typer.Option(None, "--l1-weight", help="Weight of the L1 reconstruction term (default "
                                           "1)."),
    gan_weight: float | None = typer.Option(None, "--gan-weight", help="Weight of the hinge patch-GAN term (default "
                                            "0.05)."),
    fft_weight: float | None = typer.Option(None, "--fft-weight", help="Weight of the FFT log-amplitude term (default "
                                            "0.1)."),
    wavelet_weight: float | None = typer.Option(None, "--wavelet-weight", help="Weight of the Haar wavelet-statistics "
                                                "term (default 0.5)."),
    spectrum_weight: float | None = typer.Option(
        None, "--spectrum-weight", help="Weight of the radial log-power spectrum term (default 0; texture decoders)."),
    latent_noise: float | None = typer.Option(
        None, "--latent-noise", help="With --decoder-only: decode latents plus Gaussian noise of std up to this "
        "(scaled-latent units), so the decoder tolerates a sampler's imperfect latents (default 0)."),
    orient_weight: float | None = typer.Option(
        None, "--orient-weight", help="Weight of the orientation-aware texture term (oriented-gradient energy "
                                      "histograms per scale; default 0)."),
    kind: str | None = typer.Option(None, "--kind", help="Autoencoder latent regulariser: kl | vq (fresh runs)."),
    vq_weight: float | None = typer.Option(None, "--vq-weight", help="Weight of the VQ codebook/commitment loss."),
    photo_weight: float | None = COMMON["photo_weight"], sim_share: float | None = COMMON["sim_share"],
    texture_aug: str | None = COMMON["texture_aug"], holdout_photo: list[str] = COMMON["holdout_photo"],
    val_photo: list[str] = COMMON["val_photo"], holdout_group: list[str] = COMMON["holdout_group"],
    holdout_share: float | None = COMMON["holdout_share"], exclude_group: list[str] = COMMON["exclude_group"],
) -> None:
    """Train the HR autoencoder (f=4) and LR encoder (f=1); resumes from OUT/last.pt."""
    from edge.train.autoencoder import train_autoencoder

    cfg = _cfg(out=str(out), sims=sim, realdata=realdata, holdout_builds=holdout_build, steps=steps,
               minutes=minutes, batch=batch, lr=lr, seed=seed, preset=preset, threads=threads,
               val_every=val_every, lr_size=lr_size, gan_start=gan_start,
               init_from=init_from, decoder_only=decoder_only, l1_weight=l1_weight, gan_weight=gan_weight,
               fft_weight=fft_weight, wavelet_weight=wavelet_weight, spectrum_weight=spectrum_weight,
               latent_noise=latent_noise, orient_weight=orient_weight, ae_kind=kind, vq_weight=vq_weight,
               photo_weight=photo_weight, sim_share=sim_share, texture_aug=texture_aug,
               **_split_kw(holdout_photo, val_photo, holdout_group, holdout_share, exclude_group))
    path = train_autoencoder(cfg, resume=not fresh, log_file=log)
    typer.echo(f"autoencoders written to {path}")

def diffusion(
    ae: Path = typer.Option(..., "--ae", help="ae.pt from `train autoencoder`."),
    out: Path = typer.Option(Path("runs/diffusion"), "--out", help="Run folder."),
    sim: list[str] = COMMON["sim"], realdata: str | None = COMMON["realdata"],
    holdout_build: list[str] = COMMON["holdout_build"], steps: int | None = COMMON["steps"],
    minutes: float | None = COMMON["minutes"], batch: int | None = COMMON["batch"], lr: float | None = COMMON["lr"],
    seed: int = COMMON["seed"], preset: str = COMMON["preset"], threads: int = COMMON["threads"],
    log: Path | None = COMMON["log"], fresh: bool = COMMON["fresh"], val_every: int | None = COMMON["val_every"],
    lr_size: int | None = COMMON["lr_size"],
    prediction: str = typer.Option("v_prediction", "--prediction", help="epsilon | v_prediction | sample."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine | linear."),
    timesteps: int = typer.Option(200, "--timesteps", help="Training timesteps T."),
    init_from: str | None = COMMON["init_net"],
    estimate: str | None = typer.Option(
        None, "--estimate", help="best.pt of `train pixel`: condition on its HR estimate as well (mix starts at 0)."),
    photo_weight: float | None = COMMON["photo_weight"], grain_prob: float | None = COMMON["grain_prob"],
    grain_gain: str | None = COMMON["grain_gain"],
    grain_cond: bool = typer.Option(False, "--grain-cond", help="Condition on the per-image grain descriptor "
                                    "(edge.sr.grain.grain_descriptor; its offset starts at 0)."),
    grain_lr_mult: float | None = typer.Option(None, "--grain-lr-mult", help="Learning-rate multiplier of the "
                                               "grain offset (default 10)."),
    grain_source: str | None = typer.Option(None, "--grain-source", help="What --grain-cond conditions on: lr (the "
                                            "LR grain descriptor) | detail (the grain cap's per-band detail level: "
                                            "measured on the true HR in training, predicted from the LR at "
                                            "inference; needs --grain-cap)."),
    grain_cap: str | None = typer.Option(None, "--grain-cap", help="Grain-cap JSON (`train grain-cap`) or bundle "
                                         "folder whose cap defines the detail condition."),
    grain_noise: float | None = typer.Option(None, "--grain-noise", help="Std of the noise added to the true log "
                                             "detail level in training (default 0.1)."),
    sim_share: float | None = COMMON["sim_share"], texture_aug: str | None = COMMON["texture_aug"],
    holdout_photo: list[str] = COMMON["holdout_photo"], val_photo: list[str] = COMMON["val_photo"],
    holdout_group: list[str] = COMMON["holdout_group"], holdout_share: float | None = COMMON["holdout_share"],
    exclude_group: list[str] = COMMON["exclude_group"],
) -> None:
    """Train the conditional latent denoiser on frozen autoencoders; resumes from OUT/last.pt."""
    from edge.train.diffusion import train_latent

    cfg = _cfg(out=str(out), ae=str(ae), sims=sim, realdata=realdata, holdout_builds=holdout_build, steps=steps,
               minutes=minutes, batch=batch, lr=lr, seed=seed, preset=preset, threads=threads,
               val_every=val_every, lr_size=lr_size, prediction=prediction, schedule=schedule, timesteps=timesteps,
               init_from=init_from, estimate=estimate, photo_weight=photo_weight, grain_prob=grain_prob,
               grain_gain=grain_gain, grain_cond=grain_cond, grain_lr_mult=grain_lr_mult, grain_source=grain_source,
               grain_cap=grain_cap, grain_noise=grain_noise, sim_share=sim_share,
               texture_aug=texture_aug,
               **_split_kw(holdout_photo, val_photo, holdout_group, holdout_share, exclude_group))
    path = train_latent(cfg, "diffusion", resume=not fresh, log_file=log)
    typer.echo(f"denoiser written to {path}")

def regression(
    ae: Path = typer.Option(..., "--ae", help="ae.pt from `train autoencoder`."),
    out: Path = typer.Option(Path("runs/regression"), "--out", help="Run folder."),
    sim: list[str] = COMMON["sim"], realdata: str | None = COMMON["realdata"],
    holdout_build: list[str] = COMMON["holdout_build"], steps: int | None = COMMON["steps"],
    minutes: float | None = COMMON["minutes"], batch: int | None = COMMON["batch"], lr: float | None = COMMON["lr"],
    seed: int = COMMON["seed"], preset: str = COMMON["preset"], threads: int = COMMON["threads"],
    log: Path | None = COMMON["log"], fresh: bool = COMMON["fresh"], val_every: int | None = COMMON["val_every"],
    lr_size: int | None = COMMON["lr_size"], init_from: str | None = COMMON["init_net"],
    photo_weight: float | None = COMMON["photo_weight"], grain_prob: float | None = COMMON["grain_prob"],
    grain_gain: str | None = COMMON["grain_gain"],
) -> None:
    """Train the deterministic regression baseline (same U-Net, condition only, L1); resumes from OUT/last.pt."""
    from edge.train.diffusion import train_latent

    cfg = _cfg(out=str(out), ae=str(ae), sims=sim, realdata=realdata, holdout_builds=holdout_build, steps=steps,
               minutes=minutes, batch=batch, lr=lr, seed=seed, preset=preset, threads=threads,
               val_every=val_every, lr_size=lr_size, init_from=init_from,
               photo_weight=photo_weight, grain_prob=grain_prob, grain_gain=grain_gain)
    path = train_latent(cfg, "regression", resume=not fresh, log_file=log)
    typer.echo(f"regression model written to {path}")

def pixel(
    out: Path = typer.Option(Path("runs/pixel"), "--out", help="Run folder (checkpoints, metrics.jsonl, best.pt)."),
    sim: list[str] = COMMON["sim"], realdata: str | None = COMMON["realdata"],
    holdout_build: list[str] = COMMON["holdout_build"], steps: int | None = COMMON["steps"],
    minutes: float | None = COMMON["minutes"], batch: int | None = COMMON["batch"], lr: float | None = COMMON["lr"],
    seed: int = COMMON["seed"], threads: int = COMMON["threads"], log: Path | None = COMMON["log"],
    fresh: bool = COMMON["fresh"], val_every: int | None = COMMON["val_every"], lr_size: int | None = COMMON["lr_size"],
    photo_weight: float | None = COMMON["photo_weight"],
    init_from: str | None = typer.Option(None, "--init-from", help="Start from this pixel best.pt (same arch)."),
    sim_share: float | None = COMMON["sim_share"], texture_aug: str | None = COMMON["texture_aug"],
    holdout_photo: list[str] = COMMON["holdout_photo"], val_photo: list[str] = COMMON["val_photo"],
    holdout_group: list[str] = COMMON["holdout_group"], holdout_share: float | None = COMMON["holdout_share"],
    exclude_group: list[str] = COMMON["exclude_group"],
) -> None:
    """Train the pixel-space regression CNN (bicubic + residual, L1) whose estimate can condition the denoiser."""
    from edge.train.pixel import train_pixel

    cfg = _cfg(out=str(out), sims=sim, realdata=realdata, holdout_builds=holdout_build, steps=steps,
               minutes=minutes, batch=batch, lr=lr, seed=seed, threads=threads, val_every=val_every,
               lr_size=lr_size, photo_weight=photo_weight, init_from=init_from, sim_share=sim_share,
               texture_aug=texture_aug,
               **_split_kw(holdout_photo, val_photo, holdout_group, holdout_share, exclude_group))
    path = train_pixel(cfg, resume=not fresh, log_file=log)
    typer.echo(f"pixel regressor written to {path}")

def pixel_diffusion(
    out: Path = typer.Option(Path("runs/pixel_diffusion"), "--out", help="Run folder (checkpoints, metrics.jsonl)."),
    sim: list[str] = COMMON["sim"], realdata: str | None = COMMON["realdata"],
    holdout_build: list[str] = COMMON["holdout_build"], steps: int | None = COMMON["steps"],
    minutes: float | None = COMMON["minutes"], batch: int | None = COMMON["batch"], lr: float | None = COMMON["lr"],
    seed: int = COMMON["seed"], threads: int = COMMON["threads"], log: Path | None = COMMON["log"],
    fresh: bool = COMMON["fresh"], val_every: int | None = COMMON["val_every"], lr_size: int | None = COMMON["lr_size"],
    photo_weight: float | None = COMMON["photo_weight"],
    prediction: str = typer.Option("v_prediction", "--prediction", help="epsilon | v_prediction | sample."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine | linear."),
    timesteps: int = typer.Option(200, "--timesteps", help="Training timesteps T."),
) -> None:
    """Train the paper's pixel-space diffusion baseline (noisy HR ++ bicubic LR, no autoencoders; bench only)."""
    from edge.train.pixel_diffusion import train_pixel_diffusion

    cfg = _cfg(out=str(out), sims=sim, realdata=realdata, holdout_builds=holdout_build, steps=steps,
               minutes=minutes, batch=batch, lr=lr, seed=seed, threads=threads, val_every=val_every,
               lr_size=lr_size, photo_weight=photo_weight, prediction=prediction, schedule=schedule,
               timesteps=timesteps)
    path = train_pixel_diffusion(cfg, resume=not fresh, log_file=log)
    typer.echo(f"pixel-space diffusion baseline written to {path}")

def bundle(
    out: Path = typer.Option(..., "--out", help="Bundle directory to write (e.g. models/default)."),
    ae: Path = typer.Option(..., "--ae", help="ae.pt of `train autoencoder`."),
    diffusion: Path = typer.Option(..., "--diffusion", help="best.pt (or final.pt) of `train diffusion`."),
    regression: Path | None = typer.Option(None, "--regression", help="best.pt of `train regression` (optional)."),
    decoder: Path | None = typer.Option(None, "--decoder", help="ae.pt of a --decoder-only fine-tune (optional)."),
    sample_decoder: Path | None = typer.Option(
        None, "--sample-decoder", help="ae.pt of a --decoder-only texture fine-tune: decodes single samples "
        "(optional)."),
    reuse: list[str] = typer.Option([], "--reuse", help="Graph whose ONNX already in OUT is kept (repeatable)."),
    model_id: str | None = typer.Option(None, "--model-id", help="Model id (default "
                                        "lpbf-sr-x<scale>-<preset>-<date>)."),
    sampler: str = typer.Option("dpmpp_2m", "--sampler", help="Default fast sampler: dpmpp_2m | ddim | ddpm."),
    steps: int = typer.Option(15, "--steps", help="Default fast sampler steps."),
    exporter: str = typer.Option("dynamo", "--exporter", help="ONNX exporter: dynamo | legacy."),
) -> None:
    """Export ONNX graphs + safetensors and write manifest.json with every file's sha256."""
    from edge.train.bundle import build_bundle

    b = build_bundle(out, ae, diffusion, regression, decoder, model_id,
                     {"name": sampler, "steps": steps, "init": "noise"}, exporter=exporter, reuse=tuple(reuse),
                     sample_decoder_pt=sample_decoder)
    typer.echo(f"bundle {b.model_id} written to {b.path}")

def grain_cap(
    out: Path = typer.Option(Path("runs/grain_cap.json"), "--out", help="JSON file to write (the fitted cap)."),
    sim: list[str] = COMMON["sim"], realdata: str | None = COMMON["realdata"],
    holdout_build: list[str] = COMMON["holdout_build"], seed: int = COMMON["seed"],
    window: int = typer.Option(32, "--window", help="LR window side the predictor reads and caps."),
    per_unit: int = typer.Option(150, "--per-unit", help="Training windows per sim layer / photograph."),
    into: Path | None = typer.Option(None, "--into", help="Also put the cap into this bundle's manifest."),
    sigmas: str | None = typer.Option(None, "--sigmas", help="Comma list of descending Gaussian sigmas (HR px) "
                                      "that split the output into detail bands; default 2,1.5,1,0.6 at x4."),
    margin: float = typer.Option(1.0, "--margin", help="Allowed detail energy per band = margin x predicted "
                                 "(1.5 for a guard that only acts above the HF target band)."),
    holdout_photo: list[str] = COMMON["holdout_photo"], val_photo: list[str] = COMMON["val_photo"],
    holdout_group: list[str] = COMMON["holdout_group"], holdout_share: float | None = COMMON["holdout_share"],
    exclude_group: list[str] = COMMON["exclude_group"],
) -> None:
    """Fit the grain cap: LR spectrum -> HR detail energy per band (ridge), validated per source; see edge.sr.grain."""
    from edge.train.grain_cap import train_grain_cap

    try:
        split_sigmas = tuple(float(v) for v in sigmas.split(",")) if sigmas else None
    except ValueError:
        raise typer.BadParameter(f"--sigmas wants a comma list of numbers, got {sigmas!r}") from None
    cfg = _cfg(sims=sim, realdata=realdata, holdout_builds=holdout_build, seed=seed,
               **_split_kw(holdout_photo, val_photo, holdout_group, holdout_share, exclude_group))
    cap = train_grain_cap(cfg, out, window=window, per_unit=per_unit, sigmas=split_sigmas, margin=margin)
    for split, rows in cap.validation.items():
        for k, v in rows.items():
            typer.echo(f"{split:8s} {k:45s} n={v['n']:4d} predicted/true {v['median_ratio']:.2f} "
                       f"within [0.6, 1.5] {v['within_0.6_1.5']:.2f} per band {v['band_median_ratio']}")
    if into is not None:
        from edge.train.bundle import set_grain_cap

        set_grain_cap(into, out)
        typer.echo(f"grain cap added to {into}")
    typer.echo(f"grain cap written to {out}")

def unbundle_cmd(
    model: Path = typer.Option(Path("models/default"), "--model", help="Bundle to rebuild checkpoints from."),
    out: Path = typer.Option(Path("runs/shipped"), "--out", help="Folder for ae.pt, pixel.pt, denoiser.pt, ..."),
) -> None:
    """Rebuild training checkpoints (ae.pt, sample_decoder.pt, pixel.pt, denoiser.pt) from a bundle."""
    from edge.train.unbundle import unbundle

    for p in unbundle(model, out):
        typer.echo(f"wrote {p}")


COMMANDS = (("autoencoder", autoencoder), ("diffusion", diffusion), ("regression", regression), ("pixel", pixel),
            ("pixel-diffusion", pixel_diffusion), ("bundle", bundle), ("grain-cap", grain_cap),
            ("unbundle", unbundle_cmd))


def register(app: typer.Typer) -> None:
    """Add the `train` command group (the commands are this module's functions, testable on their own)."""
    from edge.train.distill import register_distill

    train_app = typer.Typer(help="Train the super-resolution models (autoencoders, diffusion U-Net, regression).",
                            no_args_is_help=True)
    for name, fn in COMMANDS:
        train_app.command(name)(fn)
    register_distill(train_app)
    app.add_typer(train_app, name="train")


if __name__ == "__main__":  # `python -m edge.train.cli train ...` works even when other areas' commands fail to load
    _app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    register(_app)
    _app()
