"""OpenVINO on the ultralytics OpenVINO export: the fastest CPU backend measured here (docs/inference.md)."""
from __future__ import annotations

import threading
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
        # no pinning: the decoders and the pipeline's other stages share these cores, and a stream pinned
        # to a busy core would hold up the whole batch
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "ENABLE_CPU_PINNING": False}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        core = ov.Core()
        self.compiled = core.compile_model(self._with_preprocessing(core.read_model(str(model))), "CPU", config)
        hint = str(self.compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        self.precision = "bf16" if "bf" in hint else "fp16" if "16" in hint else "fp32"
        streams = max(int(self.compiled.get_property("NUM_STREAMS")), 1)
        self._requests = [self.compiled.create_infer_request() for _ in range(streams)]
        self._lock = threading.Lock()  # the requests are reused: one batch at a time (detect() may be shared)

    @staticmethod
    def _with_preprocessing(model):
        """uint8 BGR NHWC in; conversion to float RGB NCHW / 255 inside the graph (fused, vectorised)."""
        from openvino import Layout, Type
        from openvino.preprocess import ColorFormat, PrePostProcessor

        ppp = PrePostProcessor(model)
        ppp.input().tensor().set_element_type(Type.u8).set_layout(Layout("NHWC")).set_color_format(ColorFormat.BGR)
        ppp.input().preprocess().convert_element_type(Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
        ppp.input().model().set_layout(Layout("NCHW"))
        return ppp.build()

    def infer(self, canvas: np.ndarray) -> torch.Tensor:
        parts = [p for p in np.array_split(canvas, min(len(self._requests), len(canvas))) if len(p)]
        with self._lock:
            used = self._requests[:len(parts)]
            for req, part in zip(used, parts):
                req.start_async({0: np.ascontiguousarray(part)})
            for req in used:
                req.wait()
            return torch.from_numpy(np.concatenate([req.get_output_tensor(0).data for req in used]))
