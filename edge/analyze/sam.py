"""Segment Anything as a MaskProposer, used only when the user supplies a checkpoint (optional `segment_anything`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.analyze.segment import Proposal


class SamUnavailableError(RuntimeError):
    """Segment Anything was asked for but its package or checkpoint is missing."""


class SamProposer:
    """Point-prompted SAM masks; SAM's predicted IoU is the confidence, its stability score the stability."""

    def __init__(self, checkpoint: str | Path, model_type: str = "vit_b"):
        p = Path(checkpoint)
        if not p.is_file():
            raise SamUnavailableError(f"analyze.sam_checkpoint: {p} does not exist (set it to null for the classical "
                                      "proposer)")
        try:
            from segment_anything import SamPredictor, sam_model_registry
        except ImportError as exc:
            raise SamUnavailableError("analyze.sam_checkpoint is set but the 'segment_anything' package is not "
                                      "installed") from exc
        if model_type not in sam_model_registry:
            raise SamUnavailableError(f"analyze.sam_model_type {model_type!r} unknown; use one of "
                                      f"{sorted(sam_model_registry)}")
        self.predictor = SamPredictor(sam_model_registry[model_type](checkpoint=str(p)))

    def set_image(self, image: np.ndarray, feature: np.ndarray) -> None:
        """Embed the grey image (as RGB) once per layer."""
        self.predictor.set_image(np.repeat(image[..., None], 3, axis=2))

    def propose(self, point_xy: tuple[int, int], box: tuple[int, int, int, int], sensitivity: float) -> list[Proposal]:
        """Three multimask proposals for a positive point inside the box; sensitivity > 0 prefers larger masks."""
        masks, scores, _ = self.predictor.predict(
            point_coords=np.array([point_xy], dtype=np.float32), point_labels=np.array([1]),
            box=np.array(box, dtype=np.float32),
            multimask_output=True, return_logits=True,
        )
        out = []
        for logits, score in zip(masks, scores, strict=False):
            m = logits > 0
            lo, hi = logits > -1.0, logits > 1.0  # SAM's stability score: IoU across +-1 logit offsets
            stab = float(hi.sum() / max(lo.sum(), 1))
            out.append(Proposal(m, float(score) + 0.1 * sensitivity * float(m.mean()), stab))
        return out
