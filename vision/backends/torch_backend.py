"""PyTorch through ultralytics' AutoBackend: the reference backend, and the GPU one (FP16 on CUDA)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TorchBackend:
    name = "torch"

    def __init__(self, weights: Path, device: str):
        from ultralytics.nn.autobackend import AutoBackend

        self.device = device
        self._dev = torch.device(device)
        self.half = self._dev.type == "cuda"
        self.precision = "fp16" if self.half else "fp32"
        # end2end=False: the one-to-many head + NMS, as ultralytics' own predict does by default
        self.model = AutoBackend(model=str(weights), device=self._dev, fp16=self.half, fuse=True,
                                 end2end=False, verbose=False)
        self.model.eval()

    @torch.inference_mode()
    def infer(self, canvas: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(canvas)
        if self._dev.type == "cuda":
            x = x.pin_memory().to(self._dev, non_blocking=True)  # uint8: a quarter of the float bytes
        x = x.permute(0, 3, 1, 2).flip(1)  # BGR HWC -> RGB CHW, as ultralytics' predictor does it
        x = (x.half() if self.half else x.float()).div_(255)
        y = self.model(x)
        y = y[0] if isinstance(y, (list, tuple)) else y
        return y.float()
