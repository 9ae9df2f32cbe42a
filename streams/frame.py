"""The unit the intake hands to analysis (defined here so reading cameras needs no model code)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture of one camera, in BGR, with when it arrived."""

    camera_id: str
    image: np.ndarray
    ts: float  # wall-clock seconds (time.time()) when its packet arrived
    seq: int  # per-camera counter of analysed frames

    @property
    def wh(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]
