"""Inference runtimes behind one interface (``Backend.infer``): torch, ONNX Runtime, OpenVINO.

``make_backend`` builds one from verified weights, exporting them first when the
runtime needs another format (cached by checksum, see ``models.export``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .base import Backend

BACKENDS = ("torch", "onnxruntime", "openvino")
_MODULE = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}


def available_backends(device: str = "cpu") -> list[str]:
    """The backends whose runtime is installed and that can run on ``device``."""
    out = [b for b in BACKENDS if importlib.util.find_spec(_MODULE[b]) is not None]
    if device.startswith("cuda"):
        out = [b for b in out if b != "openvino"]
        if "onnxruntime" in out:
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                out.remove("onnxruntime")
    return out


def choose_backend(requested: str, device: str) -> str:
    """``auto``: torch (FP16) on CUDA; on CPU the fastest installed runtime, openvino then onnxruntime."""
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "torch"
    have = available_backends(device)
    return next(b for b in ("openvino", "onnxruntime", "torch") if b in have)


def make_backend(name: str, weights: Path, device: str, export_root: Path | None = None) -> Backend:
    """A ready backend ``name`` (not ``auto``) for ``weights`` on ``device``."""
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(weights, device)
    from models.export import export_model

    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(export_model(weights, "onnx", export_root), device)
    if name == "openvino":
        from .openvino_backend import OpenVinoBackend

        return OpenVinoBackend(export_model(weights, "openvino", export_root), device)
    raise ValueError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "available_backends", "choose_backend", "make_backend"]
