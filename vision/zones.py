"""Zones: which people stand inside an admin-drawn polygon, for how long, and when its rules run."""
from __future__ import annotations

import time

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


class Inertia:
    """Frigate's ``inertia``: how many analysed frames in a row each person (by tracker id) has been in the zone.

    A person the zone misses for one frame (not detected, filtered out, or a
    step outside the polygon) keeps their run, as the tracker keeps their id.
    """

    MISS_FRAMES = 1

    def __init__(self) -> None:
        self._runs: dict[int, int] = {}
        self._missed: dict[int, int] = {}

    def update(self, ids: np.ndarray) -> np.ndarray:
        """Frames in a row in the zone for each of ``ids`` (the tracker ids of the zone's people this frame)."""
        runs = np.array([self._runs.get(int(i), 0) + 1 for i in ids], np.int64)
        seen = {int(i): int(r) for i, r in zip(ids, runs)}
        missed = dict.fromkeys(seen, 0)
        for i, r in self._runs.items():
            if i not in seen and self._missed[i] < self.MISS_FRAMES:  # carry the unseen for a frame
                seen[i], missed[i] = r, self._missed[i] + 1
        self._runs, self._missed = seen, missed
        return runs


def parse_hours(spans: list[str]) -> list[tuple[int, int]]:
    """``["22:00-06:00"]`` -> ``[(1320, 360)]`` in minutes of the day (validated by the config model)."""
    out = []
    for s in spans:
        a, b = s.split("-")
        out.append((int(a[:2]) * 60 + int(a[3:]), int(b[:2]) * 60 + int(b[3:])))
    return out


class ActiveHours:
    """When a zone's rules run: local-time spans, which may wrap past midnight; none means always."""

    def __init__(self, spans: list[str]):
        self.spans = parse_hours(spans)

    def __call__(self, ts: float) -> bool:
        if not self.spans:
            return True
        t = time.localtime(ts)
        minute = t.tm_hour * 60 + t.tm_min
        return any((a <= minute < b) if a < b else (minute >= a or minute < b) for a, b in self.spans)
