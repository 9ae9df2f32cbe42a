"""Exports of verified weights to faster runtimes (ONNX, OpenVINO), cached by checksum.

Made offline with ultralytics' own exporter (dynamic batch and image size, so one
export serves every batch and camera resolution), into
``<root>/<sha256 of the weights>/<format>-ul<ultralytics version>/``. The checksum
in the path means a swapped weights file can never pick up a stale export; the
version means an upgrade of the exporter re-exports. An export is built in a
temporary folder and renamed into place, so a crash or a second process never
leaves a half-written one behind.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from .weights import sha256_of

log = logging.getLogger(__name__)

ExportFormat = Literal["onnx", "openvino"]
DEFAULT_EXPORT_ROOT = Path("var") / "cache" / "exports"


def _ultralytics_version() -> str:
    from importlib.metadata import version

    return version("ultralytics")


def export_path(weights: Path, fmt: ExportFormat, root: Path) -> Path:
    """Where the export of ``weights`` in ``fmt`` lives (the folder; may not exist yet)."""
    return Path(root) / sha256_of(weights) / f"{fmt}-ul{_ultralytics_version()}"


def model_file(folder: Path, fmt: ExportFormat) -> Path:
    """The file a runtime loads from an export folder (``model.onnx`` or ``model.xml``)."""
    return folder / ("model.onnx" if fmt == "onnx" else "model.xml")


def export_model(weights: Path, fmt: ExportFormat, root: Path | None = None, imgsz: int = 640) -> Path:
    """Path of the model file of ``weights`` exported to ``fmt``; exports once, then reuses the cache.

    ``imgsz`` is only the tracing shape: the export has dynamic batch, height and width.
    """
    folder = export_path(weights, fmt, root or DEFAULT_EXPORT_ROOT)
    target = model_file(folder, fmt)
    if target.is_file():
        return target
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")  # the exporter must not reach for the hub
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{fmt}-") as tmp:
        work = Path(tmp) / "model.pt"
        shutil.copyfile(weights, work)  # the exporter writes beside its input; the weights may be read-only
        log.info("exporting %s to %s (once; cached in %s)", weights.name, fmt, folder)
        made = Path(YOLO(str(work)).export(format=fmt, dynamic=True, simplify=True, imgsz=imgsz,
                                           device="cpu", verbose=False))
        staged = Path(tmp) / "out"
        if fmt == "onnx":
            staged.mkdir()
            made.replace(model_file(staged, fmt))
        else:
            made.rename(staged)  # model.xml, model.bin, metadata.yaml
        try:
            staged.rename(folder)
        except OSError:  # another process finished first: keep its export
            if not target.is_file():
                raise
    return target
