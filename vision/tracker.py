"""The camera's one tracker: an id for each person across analysed frames."""
from __future__ import annotations

import numpy as np

from .detections import Detections, assign


class PersonTracker:
    """Links each person to the nearest one of the previous analysed frame by feet distance; gives them an id.

    The distance is gated by how far a person can walk in the time between
    frames (in body heights, so it holds at any distance from the camera), with
    an optimal one-to-one assignment; a person missed for one frame keeps their
    id and their run. It replaced ByteTrack: at 1-3 analysis fps ByteTrack rarely
    confirms a walking person (they move more than a box width between frames,
    so IoU matching fails) and under-counts by 3-5 people on PETS;
    docs/accuracy.md (``bench/eval.py zones``) has the measurement.
    """

    SPEED_H = 1.5  # body heights per second: a brisk walk (1.4 m/s) of a 1.7 m person is 0.8
    MIN_GATE_H = 0.5  # at high frame rates still tolerate box jitter of half a height
    MISS_FRAMES = 1  # a person unseen for this many frames keeps their id and run
    CONFIRMED = 2  # frames in a row after which a person is a confirmed track (``Analysis.tracks``)

    def __init__(self) -> None:
        self._pts = np.zeros((0, 2))
        self._h = np.zeros((0,))
        self._runs = np.zeros((0,), np.int64)
        self._ids = np.zeros((0,), np.int64)
        self._missed = np.zeros((0,), np.int64)
        self._ts: float | None = None
        self._next_id = 1

    def update(self, ts: float, people: Detections) -> tuple[np.ndarray, np.ndarray]:
        """(analysed frames in a row seen, person id) for each of ``people`` (one frame's, in time order)."""
        pts, h = people.bottom_center.astype(np.float64), np.maximum(people.height.astype(np.float64), 1.0)
        runs, ids = np.ones(len(people), np.int64), np.zeros(len(people), np.int64)
        matched_prev = np.zeros(len(self._pts), bool)
        if len(self._pts) and len(pts) and self._ts is not None:
            dt = max(ts - self._ts, 1e-3) * (1 + self._missed)  # a missed person had longer to walk
            mean_h = (h[:, None] + self._h[None, :]) / 2
            dist = np.linalg.norm(pts[:, None, :] - self._pts[None, :, :], axis=2) / mean_h
            gate = np.maximum(self.SPEED_H * dt[None, :], self.MIN_GATE_H)
            cost = np.where(dist <= gate, dist, 1e6)
            for r, c in assign(cost, cost < 1e6):
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

    def track(self, ts: float, people: Detections) -> tuple[Detections, np.ndarray]:
        """``people`` with ``tracker_id`` set, and how many analysed frames in a row each has been seen."""
        runs, ids = self.update(ts, people)
        tracked = people[np.arange(len(people))]  # a copy: the caller's detections stay as they were
        tracked.tracker_id = ids
        return tracked, runs

    def reset(self) -> None:
        self.__init__()
