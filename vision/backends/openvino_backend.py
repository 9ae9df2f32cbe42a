"""OpenVINO on the ultralytics OpenVINO export: the fastest CPU backend measured here (docs/inference.md)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class OpenVinoBackend:
    """One batch is split over OpenVINO's CPU streams and run as parallel requests.

    With the THROUGHPUT hint OpenVINO gives each stream a share of the cores; one
    synchronous request would use only one stream (one core of two here), so the
    batch is cut into one part per stream. ``precision`` None keeps OpenVINO's
    choice (bf16 on CPUs with AVX512-BF16/AMX, else f32); "f32" forces full precision.
    """

    name = "openvino"

    def __init__(self, model: Path, device: str = "cpu", precision: str | None = None):
        import openvino as ov

        if device != "cpu":
            raise RuntimeError(f"the openvino backend runs on the CPU here, not {device}")
        self.device = device
        config = {"PERFORMANCE_HINT": "THROUGHPUT"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.compiled = ov.Core().compile_model(str(model), "CPU", config)
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        streams = max(int(self.compiled.get_property("NUM_STREAMS")), 1)
        self._requests = [self.compiled.create_infer_request() for _ in range(streams)]

    def infer(self, blob: np.ndarray) -> torch.Tensor:
        parts = [p for p in np.array_split(blob, min(len(self._requests), len(blob))) if len(p)]
        used = self._requests[:len(parts)]
        for req, part in zip(used, parts):
            req.start_async({0: np.ascontiguousarray(part)})
        for req in used:
            req.wait()
        return torch.from_numpy(np.concatenate([req.get_output_tensor(0).data for req in used]))
