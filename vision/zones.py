"""Zone membership: which tracked people stand inside an admin-drawn polygon."""
from __future__ import annotations

import numpy as np
from matplotlib.path import Path as _MplPath  # vectorised, well-tested point-in-polygon

from .detections import Detections


class PolygonZone:
    """A polygon in normalised coordinates; a person is in it when the bottom-centre of the box is."""

    def __init__(self, zone_id: str, polygon: list[tuple[float, float]]):
        self.zone_id = zone_id
        self.polygon = np.asarray(polygon, dtype=np.float64)
        self._path = _MplPath(self.polygon)

    def contains(self, points_norm: np.ndarray) -> np.ndarray:
        """Boolean mask for (N, 2) points in normalised coordinates."""
        if len(points_norm) == 0:
            return np.zeros((0,), bool)
        # radius=1e-9 keeps points exactly on the edge inside, whatever the vertex order
        inside = self._path.contains_points(points_norm, radius=1e-9)
        return inside | self._path.contains_points(points_norm, radius=-1e-9)

    def mask(self, detections: Detections, frame_wh: tuple[int, int]) -> np.ndarray:
        w, h = frame_wh
        return self.contains(detections.bottom_center / np.array([w, h], dtype=np.float64))

    def pixel_polygon(self, frame_wh: tuple[int, int]) -> np.ndarray:
        w, h = frame_wh
        return np.round(self.polygon * np.array([w, h])).astype(np.int32)
