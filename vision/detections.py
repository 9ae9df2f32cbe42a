"""The central data types that flow through the pipeline.

frames -> ``Detections`` -> (tracked) ``Detections`` -> ``ZoneState`` -> ``Incident``.
Plain numpy, no framework types, so every stage can be replaced on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from streams.frame import Frame  # noqa: F401  (re-exported: frames are the first stage of the flow)


@dataclass(slots=True)
class Detections:
    """N boxes of one frame: pixel ``xyxy``, confidence, class, (after tracking) track id and (from a pose model)
    keypoints, (N, K, 3) pixel x, y and visibility."""

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_id: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    tracker_id: np.ndarray | None = None
    keypoints: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> "Detections":
        return Detections(
            self.xyxy[index], self.confidence[index], self.class_id[index],
            None if self.tracker_id is None else self.tracker_id[index],
            None if self.keypoints is None else self.keypoints[index],
        )

    @property
    def bottom_center(self) -> np.ndarray:
        """Where a person stands: the middle of the box's bottom edge, (N, 2)."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)

    @property
    def center(self) -> np.ndarray:
        return centres(self.xyxy)

    @property
    def height(self) -> np.ndarray:
        return self.xyxy[:, 3] - self.xyxy[:, 1]


IncidentKind = Literal["crowding", "conflict", "loitering", "gathering"]


@dataclass(frozen=True, slots=True)
class ZoneState:
    """What one zone of one camera holds at one instant."""

    camera_id: str
    zone_id: str
    ts: float
    count: int
    track_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Incident:
    """A rule's verdict that something is happening (``start``), still is (``update``) or stopped (``end``)."""

    kind: IncidentKind
    phase: Literal["start", "update", "end"]
    camera_id: str
    zone_id: str
    ts: float
    count: int
    score: float  # confidence of the rule, 0..1
    detail: str = ""
    # what the rule judged, kept with the alert so a verdict on it can teach the next model version (conflict: the
    # feature vectors of the windows the classifier scored, their scores, the threshold and the model's version)
    evidence: dict | None = field(default=None, compare=False, hash=False, repr=False)


def centres(xyxy: np.ndarray) -> np.ndarray:
    """The centre of every box (N, 4 xyxy): (N, 2)."""
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)


def assign(cost: np.ndarray, keep: np.ndarray) -> list[tuple[int, int]]:
    """The optimal one-to-one pairs (row, column) of a cost matrix (Hungarian, scipy's), then only those ``keep``
    allows: the tracker, the conflict features and the pose-to-person matching all pair things this way."""
    from scipy.optimize import linear_sum_assignment  # well-kept; imported here so vision loads without scipy

    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if keep[r, c]]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4 xyxy) with every box in ``b`` (M, 4): (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)
