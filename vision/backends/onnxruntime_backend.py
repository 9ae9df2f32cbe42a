"""ONNX Runtime on the ultralytics ONNX export (dynamic batch and size); CUDA provider when asked and present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..batching import to_blob


class OnnxRuntimeBackend:
    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, model: Path, device: str, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 0: one per core
        # no busy-waiting between ops: the pipeline's other stages need those cores (measured 2x slower with it)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
            idx = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": idx})] + providers
        self.device = device
        self.session = ort.InferenceSession(str(model), opts, providers=providers)
        self._input = self.session.get_inputs()[0].name

    def infer(self, canvas: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self._input: to_blob(canvas)})[0])
