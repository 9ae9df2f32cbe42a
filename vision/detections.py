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
    """N boxes of one frame: pixel ``xyxy``, confidence, class and (after tracking) track id."""

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_id: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    tracker_id: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> "Detections":
        return Detections(
            self.xyxy[index], self.confidence[index], self.class_id[index],
            None if self.tracker_id is None else self.tracker_id[index],
        )

    @property
    def bottom_center(self) -> np.ndarray:
        """Where a person stands: the middle of the box's bottom edge, (N, 2)."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)

    @property
    def center(self) -> np.ndarray:
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2], axis=1)

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
