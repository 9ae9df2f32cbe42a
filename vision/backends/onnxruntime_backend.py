"""ONNX Runtime on the ultralytics ONNX export (dynamic batch and size); CUDA provider when asked and present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model: Path, device: str, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 0: one per core
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
            idx = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": idx})] + providers
        self.device = device
        self.session = ort.InferenceSession(str(model), opts, providers=providers)
        self._input = self.session.get_inputs()[0].name

    def infer(self, blob: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self._input: blob})[0])
