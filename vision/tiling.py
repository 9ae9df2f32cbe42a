"""Small, distant people: run the detector on the full frame and on overlapping enlarged tiles, then merge.

A nano model at 640 px sees a person 20 px tall in a 1080p frame as 12 px, below
what it was trained to find. Cutting the frame into overlapping tiles that are
each resized to the model's input size enlarges every person; the full frame is
still run so that people larger than a tile stay whole. All tiles of all frames
go through the wrapped detector as one batch, so the "one batched model call"
design of ``PersonDetector`` holds.

This wraps ``PersonDetector`` instead of changing it (another engineer owns the
inference core); anything with ``detect(list[image]) -> list[Detections]`` works.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torchvision.ops import batched_nms  # the well-kept NMS that ultralytics itself uses

from .detections import Detections


class BatchDetector(Protocol):
    def detect(self, images: list[np.ndarray]) -> list[Detections]: ...


@dataclass(frozen=True, slots=True)
class TileGrid:
    """``cols`` x ``rows`` tiles overlapping by ``overlap`` of a tile's size, plus (optionally) the full frame."""

    cols: int = 2
    rows: int = 2
    overlap: float = 0.25
    full_frame: bool = True

    def windows(self, w: int, h: int) -> list[tuple[int, int, int, int]]:
        """Pixel windows (x1, y1, x2, y2); the full frame first when enabled."""
        out = [(0, 0, w, h)] if self.full_frame else []
        tw = w / (self.cols - (self.cols - 1) * self.overlap)
        th = h / (self.rows - (self.rows - 1) * self.overlap)
        for r in range(self.rows):
            for c in range(self.cols):
                x1 = round(c * tw * (1 - self.overlap))
                y1 = round(r * th * (1 - self.overlap))
                out.append((x1, y1, min(round(x1 + tw), w), min(round(y1 + th), h)))
        return out


def _edge_cut(xyxy: np.ndarray, win: tuple[int, int, int, int], frame_wh: tuple[int, int], margin: float = 2.0
              ) -> np.ndarray:
    """Boxes that touch a tile edge lying inside the frame: a person cut in half by the tile, seen whole elsewhere."""
    x1, y1, x2, y2 = win
    w, h = frame_wh
    cut = np.zeros(len(xyxy), bool)
    if x1 > 0:
        cut |= xyxy[:, 0] <= x1 + margin
    if y1 > 0:
        cut |= xyxy[:, 1] <= y1 + margin
    if x2 < w:
        cut |= xyxy[:, 2] >= x2 - margin
    if y2 < h:
        cut |= xyxy[:, 3] >= y2 - margin
    return cut


def merge(parts: list[Detections], iou: float = 0.5) -> Detections:
    """Union of detections in frame coordinates, with duplicates removed by class-aware NMS."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections()
    xyxy = np.concatenate([p.xyxy for p in parts]).astype(np.float32)
    conf = np.concatenate([p.confidence for p in parts]).astype(np.float32)
    cls = np.concatenate([p.class_id for p in parts]).astype(np.int32)
    keep = batched_nms(torch.from_numpy(xyxy), torch.from_numpy(conf), torch.from_numpy(cls.astype(np.int64)),
                       iou).numpy()
    return Detections(xyxy[keep], conf[keep], cls[keep])


class TiledDetector:
    """Full frame + tiles through one batched ``detect`` call; duplicates merged by NMS."""

    def __init__(self, detector: BatchDetector, grid: TileGrid = TileGrid(), nms_iou: float = 0.5):
        self.detector, self.grid, self.nms_iou = detector, grid, nms_iou

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        crops, owners = [], []
        for i, img in enumerate(images):
            h, w = img.shape[:2]
            for win in self.grid.windows(w, h):
                crops.append(np.ascontiguousarray(img[win[1]:win[3], win[0]:win[2]]))
                owners.append((i, win))
        found = self.detector.detect(crops)
        per_image: list[list[Detections]] = [[] for _ in images]
        for (i, win), d in zip(owners, found):
            h, w = images[i].shape[:2]
            d = Detections(d.xyxy + np.array([win[0], win[1], win[0], win[1]], np.float32), d.confidence, d.class_id)
            if win != (0, 0, w, h):
                d = d[~_edge_cut(d.xyxy, win, (w, h))]
            per_image[i].append(d)
        return [merge(parts, self.nms_iou) for parts in per_image]
