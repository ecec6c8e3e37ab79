"""Expected part masks of a job (sliced CAD) read lazily from a folder, one PNG per layer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import cv2
import numpy as np

from edge.analyze.layer import AnalysisInputError


class ExpectedMaskDir(Mapping[int, np.ndarray]):
    """Layer number -> expected mask from `<dir>/<layer:05d>.png` (non-zero = part), loaded on demand."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise AnalysisInputError(f"{self.folder}: expected-masks folder does not exist "
                                     "(analyze.expected_masks_dir)")

    def _path(self, layer: int) -> Path:
        return self.folder / f"{int(layer):05d}.png"

    def __getitem__(self, layer: int) -> np.ndarray:
        """The mask of `layer`; KeyError when the job has no slice for it, a clear error when it is unreadable."""
        path = self._path(layer)
        if not path.is_file():
            raise KeyError(layer)
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2:
            raise AnalysisInputError(f"{path}: not a readable single-channel mask image")
        return mask

    def __iter__(self) -> Iterator[int]:
        return (int(p.stem) for p in sorted(self.folder.glob("[0-9][0-9][0-9][0-9][0-9].png")))

    def __len__(self) -> int:
        return sum(1 for _ in self)
