"""The one interface every inference runtime implements."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class Backend(Protocol):
    """Runs the raw network on a letterboxed batch; post-processing (NMS) is shared by all backends.

    ``infer`` takes the letterboxed frames as they are, uint8 BGR (B, H, W, 3) with
    H, W multiples of 32 (``vision.batching.make_canvas``), does its own conversion to
    the network's float RGB (B, 3, H, W) in [0, 1] where it is cheapest, and returns
    the raw head output (B, 4 + classes, anchors) as a torch tensor on the device
    where it was computed, so NMS can run there without a copy.
    """

    name: str
    device: str
    precision: str  # fp32, fp16 or bf16: what the network computes in

    def infer(self, canvas: np.ndarray) -> torch.Tensor: ...
