"""Zone membership: which tracked people stand inside an admin-drawn polygon."""
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


class ZonePresence:
    """Who has been in the zone for how many analysed frames in a row (Frigate's ``inertia``), with an id each.

    At 1-3 analysis fps ByteTrack rarely confirms a walking person (they move
    more than a box width between frames, so IoU matching fails), so this links
    each person to the nearest one of the previous frame by feet distance,
    gated by how far a person can walk in the time between frames (in body
    heights, so it holds at any distance from the camera), with an optimal
    one-to-one assignment. A person missed for one frame keeps their run.
    docs/accuracy.md has the measurement that chose this over confirmed tracks.
    """

    SPEED_H = 1.5  # body heights per second: a brisk walk (1.4 m/s) of a 1.7 m person is 0.8
    MIN_GATE_H = 0.5  # at high frame rates still tolerate box jitter of half a height
    MISS_FRAMES = 1  # a person unseen for this many frames keeps their run

    def __init__(self) -> None:
        self._pts = np.zeros((0, 2))
        self._h = np.zeros((0,))
        self._runs = np.zeros((0,), np.int64)
        self._ids = np.zeros((0,), np.int64)
        self._missed = np.zeros((0,), np.int64)
        self._ts: float | None = None
        self._next_id = 1

    def update(self, ts: float, people: Detections) -> tuple[np.ndarray, np.ndarray]:
        """(frames in a row, person id) for each of ``people`` (the zone's detections of this frame)."""
        from scipy.optimize import linear_sum_assignment  # Hungarian assignment, well-kept

        pts, h = people.bottom_center.astype(np.float64), np.maximum(people.height.astype(np.float64), 1.0)
        runs, ids = np.ones(len(people), np.int64), np.zeros(len(people), np.int64)
        matched_prev = np.zeros(len(self._pts), bool)
        if len(self._pts) and len(pts) and self._ts is not None:
            dt = max(ts - self._ts, 1e-3) * (1 + self._missed)  # a missed person had longer to walk
            mean_h = (h[:, None] + self._h[None, :]) / 2
            dist = np.linalg.norm(pts[:, None, :] - self._pts[None, :, :], axis=2) / mean_h
            gate = np.maximum(self.SPEED_H * dt[None, :], self.MIN_GATE_H)
            cost = np.where(dist <= gate, dist, 1e6)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < 1e6:
                    runs[r], ids[r] = self._runs[c] + 1, self._ids[c]
                    matched_prev[c] = True
        for r in np.nonzero(ids == 0)[0]:
            ids[r], self._next_id = self._next_id, self._next_id + 1
        keep = ~matched_prev & (self._missed < self.MISS_FRAMES)  # carry the unseen for a frame
        self._pts = np.concatenate([pts, self._pts[keep]])
        self._h = np.concatenate([h, self._h[keep]])
        self._runs = np.concatenate([runs, self._runs[keep]])
        self._ids = np.concatenate([ids, self._ids[keep]])
        self._missed = np.concatenate([np.zeros(len(pts), np.int64), self._missed[keep] + 1])
        self._ts = ts
        return runs, ids

    def reset(self) -> None:
        self.__init__()


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
