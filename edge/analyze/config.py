"""Settings of layer analysis and anomaly thresholds (per printer).

Pixel sizes below are given for an image `ref_width_px` wide; on an image of width W they are scaled
by W / ref_width_px (lengths) and its square (areas), so the same config works on LR and SR images.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge.config_base import Section


class AnalyzeConfig(Section):
    """Segmentation and anomaly-flag thresholds."""

    ref_width_px: int = Field(1024, ge=64, description="Image width (px) at which the pixel thresholds below are "
                              "given; scaled to each image's width.")
    pixel_scale: float | None = Field(None, gt=0, description="Fixed length scale of pixel thresholds (overrides width "
                                      "/ ref_width_px; use for crops of a plate).")
    expected_masks_dir: str | None = Field(None, description="Folder of the job's expected part masks per layer "
                                           "(sliced CAD), named 00001.png ...; none = box mode (parts judged against "
                                           "earlier layers only).")
    ignore_corner_frac: float = Field(0.1, ge=0, lt=0.5, description="Square corners of this fraction of the image "
                                      "side are ignored (registration marks live there).")
    # segmentation
    sauvola_window: int = Field(51, ge=3, description="Sauvola threshold window (pixels, odd) at ref_width_px.")
    sauvola_k: float = Field(0.2, gt=0, lt=1, description="Sauvola k parameter.")
    part_polarity: Literal["auto", "dark", "bright"] = Field("auto", description="Whether fused parts look darker or "
                                                             "brighter than powder ('auto' decides per image).")
    flat_sigma_frac: float = Field(0.08, gt=0, lt=1, description="Gaussian sigma of the flat-field (vignetting) "
                                   "estimate, as a fraction of image width.")
    texture_window: int = Field(9, ge=3, description="Window (px at ref_width_px) of the local texture (standard "
                                "deviation) filter.")
    dilation_px: int = Field(3, ge=0, description="Dilation radius (px at ref_width_px) applied to the Sauvola mask "
                             "before connected components.")
    min_part_area_px: int = Field(300, ge=1, description="Smallest part component kept (px^2 at ref_width_px).")
    feature_min: float = Field(3.0, gt=0, description="Parts must differ from powder by this many robust sigmas on the "
                               "feature map.")
    feature_scales_px: tuple[float, ...] = Field((1.5, 3.0, 6.0), description="Gaussian scales (px at ref_width_px) of "
                                                 "the multi-scale part-contrast feature.")
    part_contrast_min: float = Field(1.5, gt=0, description="A part's median feature must exceed that of the powder "
                                     "around it by this many robust sigmas.")
    refine_boundary: bool = Field(True, description="Snap part boundaries to the finely smoothed intensity (two-class "
                                  "reassignment in a band).")
    random_prompts: int = Field(4, ge=0, description="Random interior prompt points per component besides the "
                                "distance-transform maximum.")
    min_confidence: float = Field(0.35, ge=0, le=1, description="Mask proposals with a lower confidence (class "
                                  "separability) are dropped.")
    min_stability: float = Field(0.6, ge=0, le=1, description="Mask proposals with a lower stability (IoU across "
                                 "threshold offsets) are dropped.")
    dedup_iou: float = Field(0.85, gt=0, le=1, description="Proposals overlapping an accepted one by more than this "
                             "IoU are duplicates.")
    area_low: float = Field(0.8, gt=0, lt=1, description="Below this fraction of the expected area the prompt loop "
                            "retries.")
    area_high: float = Field(1.2, gt=1, description="Above this multiple of the expected area the prompt loop retries.")
    max_prompt_iterations: int = Field(10, ge=1, description="Prompt-loop iterations before the layer is flagged "
                                       "segmentation_failed.")
    seed: int = Field(0, description="Seed of the random interior prompt points (reproducible masks).")
    segment_method: Literal["auto", "classifier", "prompts"] = Field(
        "auto",
        description=("Fused-area segmentation: 'classifier' = a two-class brightness/roughness discriminant the image "
        "fits to itself (edge.analyze.fused); 'prompts' = the paper's Sauvola -> prompts -> mask proposals (needed "
        "for Segment Anything); 'auto' = prompts on frames registered to the plate (the box's frames, where its "
        "thresholds were set), the classifier on photographs of unknown printers."))
    fused_median_px: float = Field(
        2.0, gt=0,
        description=("Classifier: radius (px at ref_width_px) of the median that takes bright specks out of the "
        "brightness feature.")
    )
    fused_smooth_px: float = Field(
        3.0, gt=0,
        description="Classifier: Gaussian scale (px at ref_width_px) of the brightness feature."
    )
    fused_texture_px: float = Field(
        2.0, gt=0,
        description=("Classifier: Gaussian scale (px at ref_width_px) over which the fine high-pass energy (roughness)"
        " is averaged.")
    )
    fused_seed_sigma: float = Field(
        4.0, gt=0,
        description=("Classifier: pixels departing from powder by this many robust sigmas in either feature seed the "
        "fused class.")
    )
    fused_powder_sigma: float = Field(
        2.0, gt=0,
        description=("Classifier: a fused pixel lies at least this many powder sigmas (along the discriminant) off the "
        "powder, whatever the class midpoint."))
    fused_min_significance: float = Field(
        3.0, gt=0,
        description=("Classifier: a part's summed evidence (mean excess over the decision level in powder sigmas x "
        "sqrt(area / feature correlation area)) must reach this.")
    )
    fused_hole_px: float = Field(
        6.0, ge=0,
        description="Classifier: holes in a part smaller than this side (px at ref_width_px) squared are filled."
    )
    sam_checkpoint: str | None = Field(None, description="Path to a Segment Anything checkpoint; None uses the "
                                       "classical proposer.")
    sam_model_type: str = Field("vit_b", description="Segment Anything model type of sam_checkpoint (vit_b, vit_l, "
                                "vit_h).")
    # anomaly flags
    recoater_travel: Literal["auto", "x", "y"] = Field(
        "auto",
        description=("Image axis the recoater blade travels along (streaks run along it, hopping bands across it); "
        "'auto' reads it from the baseline or the powder's own streak texture.")
    )
    hopping_width_px: int = Field(40, ge=3, description="Blade width (px at ref_width_px) over which hopping bands "
                                  "must be coherent.")
    dark_frame_max: float = Field(8.0, ge=0, description="Mean grey level below which a frame is treated as a failed "
                                  "(black) capture.")
    hopping_contrast: float = Field(8.0, gt=0, description="Periodic band energy along the travel (robust sigmas above "
                                    "the powder's) for recoater hopping.")
    hopping_purity: float = Field(
        0.5, gt=0, le=1,
        description=("Share of the local along-travel profile variance a hopping period must hold (1 = a pure "
        "sinusoid; a single blob or edge holds much less).")
    )
    hopping_period_px: tuple[float, float] = Field(
        (10.0, 30.0),
        description=("Shortest and longest repeat (px at ref_width_px) of recoater chatter bands along the travel "
        "(blade bounce, about 1-3 mm).")
    )
    blob_contrast: float = Field(4.0, gt=0, description="Local brightness deviation (robust sigmas) for debris / "
                                 "super-elevation blobs.")
    part_margin_px: int = Field(6, ge=0, description="Margin (px at ref_width_px) around parts excluded from "
                                "powder-texture detectors.")
    elevation_rim_px: int = Field(6, ge=1, description="Width (px at ref_width_px) of the part-edge band searched for "
                                  "super-elevation.")
    elevation_contrast: float = Field(3.0, gt=0, description="Brightness (robust sigmas above powder) of proud "
                                      "material on a part for super_elevation.")
    elevation_min_area_px: int = Field(80, ge=1, description="Smallest bright edge region (px^2 at ref_width_px) "
                                       "flagged as super_elevation.")
    spatter_max_area_px: int = Field(12, ge=1, description="Largest spatter particle (px^2 at ref_width_px).")
    spatter_per_mpx: float = Field(1200.0, gt=0, description="Spatter particles per powder megapixel (at ref_width_px) "
                                   "above which spatter is flagged.")
    geometry_area_tol: float = Field(0.2, gt=0, lt=1, description="Relative part-area change (vs expected or previous "
                                     "layer) for part_geometry_deviation.")
    geometry_tol_px: int = Field(3, ge=0, description="Boundary tolerance (px at ref_width_px) before a part-shape "
                                 "difference counts.")
    geometry_min_radius_px: float = Field(12.0, gt=0, description="Smallest dent, or bulge without CAD masks "
                                          "(equivalent radius, px at ref_width_px), flagged as "
                                          "part_geometry_deviation.")
    geometry_min_depth_px: float = Field(8.0, gt=0, description="With CAD masks: material reaching this far (px at "
                                         "ref_width_px) out of the expected outline is a part_geometry_deviation "
                                         "(critical at critical_score times it).")
    geometry_evidence: float = Field(4.0, gt=0, description="With CAD masks: peak brightness difference from powder "
                                     "(robust sigmas of the smoothed powder level) of material outside the outline.")
    geometry_region: float = Field(2.0, gt=0, description="With CAD masks: brightness difference from powder (same "
                                   "sigmas) that bounds the extent of such material (hysteresis low threshold).")
    geometry_dark_band_px: float = Field(12.0, ge=0, description="With CAD masks: dark (part-like) material outside "
                                         "the outline counts only beyond this distance (px at ref_width_px), where the "
                                         "darker rim and spatter halo of a part have faded.")
    geometry_smooth_px: float = Field(3.0, gt=0, description="Smoothing scale (px at ref_width_px) of the "
                                      "outside-the-outline evidence map, and the radius of its opening.")
    laser_saturation: int = Field(250, ge=1, le=255, description="Grey level treated as saturated (laser or glare in "
                                  "the image).")
    laser_min_area_px: int = Field(200, ge=1, description="Saturated region size (px^2 at ref_width_px) that means the "
                                   "laser is in the image.")
    lr_confirm_sigma: float = Field(4.0, gt=0, description="With the LR at hand (SR layers): debris, scratch and "
                                    "spatter flags stay only where the LR residual against its 7 px median reaches "
                                    "this many robust sigmas inside the flag's box (edge/analyze/artefacts.py).")
    lr_confirm_min_px: int = Field(3, ge=1, description="LR pixels at lr_confirm_sigma a spatter flag's box must hold "
                                   "(and more than twice chance).")
    sr_std_high: float = Field(8.0, gt=0, description="SR per-pixel spread (grey levels; std of sr.samples "
                               "grain-capped samples) above which the SR texture is not trusted; 8: the lowest level "
                               "at which >= 80 % of the regions flagged on development builds were really wrong "
                               "(docs/analysis.md, bench/sr_uncertain_calib.py).")
    sr_uncertain_min_area_px: int = Field(400, ge=1, description="Smallest region (px^2 at ref_width_px) above "
                                          "sr_std_high that raises sr_uncertain.")
    critical_score: float = Field(2.0, gt=1, description="A flag whose score is this multiple of its threshold is "
                                  "critical.")
    critical_persist_layers: int = Field(3, ge=1, description="A minor flag that persists this many layers becomes "
                                         "critical.")
    persist_iou: float = Field(0.2, ge=0, le=1, description="Box IoU for a flag to continue a flag of the previous "
                               "layer.")
    # powder judged against the printer's own normal (edge.analyze.powder / recoat / baseline)
    baseline_path: str | None = Field(
        None,
        description=("Printer baseline (`lpbf-edge calib baseline`) the powder detectors judge frames against; none = "
        "zero-config (each frame judged by itself, thresholds widened by zero_config_margin).")
    )
    baseline_running_frames: int = Field(
        5, ge=0,
        description=("Recent clean frames merged into the baseline during a job (per-pixel median with the install "
        "frames; 0 = install frames only).")
    )
    baseline_bootstrap_frames: int = Field(
        5, ge=0,
        description=("Without baseline_path the box learns its baseline itself from this many clean recoat frames "
        "(zero-config judge, then checked against each other) and keeps it in store.root/baseline_self; "
        "0 = stay zero-config.")
    )
    baseline_clean_margin: float = Field(
        1.2, ge=1,
        description=("With a baseline, each powder threshold is at least this multiple of the highest score the "
        "baseline's clean frames reached (leave-one-out).")
    )
    zero_config_margin: float = Field(
        1.25, ge=1,
        description="Without a baseline, the powder thresholds are widened by this factor."
    )
    info_frac: float = Field(
        0.75, gt=0, lt=1,
        description=("Powder evidence from this fraction of a threshold up to the threshold is reported as severity "
        "'info' (never changes the layer state).")
    )
    powder_work_px: int = Field(
        512, ge=64,
        description="Longer side (px) of the grid the powder detectors work on (frames are area-downsampled to it)."
    )
    powder_border_frac: float = Field(
        0.03, ge=0, lt=0.4,
        description="Image border (fraction of the longer side) the powder detectors ignore."
    )
    powder_dark_frac: float = Field(
        0.5, gt=0, lt=1,
        description=("Pixels darker than this fraction of the plate's median level are not judged (walls, shadows "
        "outside the plate).")
    )
    powder_edge_contrast: float = Field(
        0.15, gt=0,
        description=("Relative brightness step (over ~3 work px) that marks a wall, plate edge or fixture; its "
        "surroundings (2 % of the side) are not judged.")
    )
    powder_illum_frac: float = Field(
        0.15, gt=0, lt=1,
        description=("Zero-config illumination: window of the robust (median) smooth illumination estimate, as a "
        "fraction of the side.")
    )
    powder_line_contrast: float = Field(
        8.0, gt=0,
        description=("Streak threshold: thin-line statistic along the travel (robust sigmas of its own distribution on"
        " the plate).")
    )
    powder_line_width_px: float = Field(
        1.0, gt=0,
        description="Streak width scale (work-grid px) of the across-travel band-pass."
    )
    powder_line_len_frac: float = Field(
        0.5, gt=0, le=1,
        description=("Window (fraction of the side along the travel) of the running median of the line statistic; a "
        "streak must hold its contrast over half of it.")
    )
    powder_mark_contrast: float = Field(
        7.0, gt=0,
        description="Mark threshold (scratches, debris, deformation scars): band-pass peak in robust sigmas."
    )
    powder_mark_sigmas_px: tuple[float, ...] = Field(
        (1.0, 2.0),
        description=("Scales (work-grid px) of the mark band-pass (difference of Gaussians at each and 4x it; thin "
        "scratches to mm-sized debris).")
    )
    powder_mark_min_area_px: int = Field(
        150, ge=1,
        description=("Smallest mark (px^2 at ref_width_px, measured at half its threshold): larger than a single "
        "bright particle.")
    )
    powder_level_contrast: float = Field(
        6.0, gt=0,
        description=("Uneven/incomplete powder: low-passed level departure in robust sigmas of the plate's own low-"
        "passed level.")
    )
    powder_level_min_rel: float = Field(
        0.05, gt=0,
        description="...and at least this relative brightness change (0.05 = 5 %) with a baseline."
    )
    zero_config_level_min_rel: float = Field(
        0.1, gt=0,
        description=("Least relative brightness change of uneven powder without a baseline (the illumination model of "
        "a single frame is rougher).")
    )
    powder_level_sigma_frac: float = Field(
        0.016, gt=0, lt=0.5,
        description="Low-pass scale of the powder level, as a fraction of the longer side."
    )
    powder_level_min_area_frac: float = Field(
        0.005, gt=0, lt=1,
        description="Smallest uneven region, as a fraction of the judged plate area."
    )
    cvd_size: int = Field(512, ge=32, description="Images are resized to this side for the wavelet covariance distance "
                          "(paper: 512).")
    cvd_angles: int = Field(4, ge=1, description="Wavelet orientations L of the CVD phase-harmonic operator.")

    @model_validator(mode="after")
    def _period_range(self) -> AnalyzeConfig:
        """The hopping period range must be (shortest, longest)."""
        lo, hi = self.hopping_period_px
        if not 0 < lo <= hi:
            raise ValueError("hopping_period_px must be (shortest, longest) with 0 < shortest <= longest, got "
                             f"{self.hopping_period_px}")
        return self
