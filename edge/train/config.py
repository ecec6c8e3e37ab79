"""Training run settings (a plain dataclass, stored in every checkpoint and in the bundle manifest)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TrainConfig:
    """Everything that defines a training run; unset model fields come from the preset."""

    out: str = "runs/ae"
    sims: list[str] = field(default_factory=list)
    realdata: str | None = None
    holdout_builds: list[str] = field(default_factory=list)
    holdout_photos: list[str] = field(default_factory=lambda: ["S05.jpg"])
    val_photos: list[str] = field(default_factory=lambda: ["10448.png"])
    preset: str = "small"
    arch: dict | None = None
    steps: int = 1000
    minutes: float | None = None
    batch: int = 16
    lr_size: int = 16
    lr: float = 2e-4
    seed: int = 0
    val_every: int = 100
    save_every: int = 50
    ema_decay: float = 0.999
    threads: int = 2
    scale: int = 4
    photo_weight: float = 2.0  # a photograph's patch is drawn this many times as often as a sim layer's
    grain_prob: float = 0.0  # fraction of synthetic-LR training patches whose HR fine detail is rescaled first
    grain_gain: list[float] = field(default_factory=lambda: [0.5, 2.0])  # log-uniform range of that gain
    sim_share: float | None = None  # draw this share of patches from sim layers, the rest equally per photo group
    texture_aug: str = "none"  # structured-texture augmentations of synthetic-LR patches: none | structured
    holdout_groups: list[str] = field(default_factory=list)  # photo groups whose hashed share is held out
    holdout_share: float = 0.25  # that share
    exclude_groups: list[str] = field(default_factory=list)  # groups left out entirely (leave-one-source-out)
    # autoencoder
    l1_weight: float = 1.0  # < 1 for a texture (sample) decoder that may trade pixel error for real texture
    kl_weight: float = 1e-5
    gan_weight: float = 0.05
    gan_start: int = 300
    fft_weight: float = 0.1
    spectrum_weight: float = 0.0  # radial log-power spectrum match (texture decoders)
    wavelet_weight: float = 0.5
    ae_kind: str = "kl"  # kl | vq: the autoencoders' latent regulariser (a fresh run; init_from keeps its own)
    vq_weight: float = 1.0  # weight of the VQ codebook + commitment loss (ae_kind vq)
    orient_weight: float = 0.0  # orientation-aware texture term (losses.orientation_loss)
    latent_noise: float = 0.0  # decoder-only: add N(0, U(0, this)^2) noise to the scaled latent (robust sample decoder)
    decoder_only: bool = False  # fine-tune the HR decoder only (encoders frozen: latents, scales unchanged)
    # ae.pt (autoencoder) or best.pt (diffusion/regression) whose EMA weights start this run
    init_from: str | None = None
    # diffusion / regression
    ae: str | None = None
    estimate: str | None = None  # best.pt of `train pixel`: condition the denoiser on its estimate as well
    grain_cond: bool = False  # condition the denoiser on the per-image grain descriptor (edge.sr.grain)
    grain_lr_mult: float = 10.0  # learning-rate multiplier of the (zero-initialised, small) grain offset
    grain_source: str = "lr"  # "lr": the LR grain descriptor; "detail": the grain cap's detail level (grain_cap)
    grain_cap: str | None = None  # grain-cap JSON or bundle folder whose cap defines the detail condition
    grain_noise: float = 0.1  # std of the noise on the (true, log) detail level in training: the cap's error
    prediction: str = "v_prediction"
    schedule: str = "cosine"
    timesteps: int = 200
    pool_tiles: int = 128
    pool_tile: int = 40
    pool_refresh_every: int = 20

    def to_json(self) -> dict:
        """Plain dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        """Inverse of to_json (unknown keys rejected)."""
        return cls(**d)
