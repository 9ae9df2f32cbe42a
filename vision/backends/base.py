"""The one interface every inference runtime implements."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class Backend(Protocol):
    """Runs the raw network on a letterboxed batch; post-processing (NMS) is shared by all backends.

    ``infer`` takes float32 RGB in [0, 1], shape (B, 3, H, W) with H, W multiples of 32,
    and returns the raw head output (B, 4 + classes, anchors) as a torch tensor, on the
    device where it was computed, so NMS can run there without a copy.
    """

    name: str
    device: str

    def infer(self, blob: np.ndarray) -> torch.Tensor: ...
