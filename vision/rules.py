"""Rules that turn zone states into incidents.

Each rule is a small state machine fed one observation at a time with its
timestamp, so it behaves the same at any analysis rate and is easy to test.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from gridwatch.config import ConflictRule, CrowdingRule

from .detections import Detections, Incident


class CrowdingMonitor:
    """Count >= threshold for ``hold_s`` starts an incident; below ``clear_below`` for ``clear_s`` ends it.

    The gap between ``threshold`` and ``clear_below`` (hysteresis) keeps a crowd
    hovering at the threshold from starting and ending incidents every second.
    """

    def __init__(self, camera_id: str, zone_id: str, rule: CrowdingRule):
        self.camera_id, self.zone_id, self.rule = camera_id, zone_id, rule
        self.active = False
        self._since: float | None = None  # start of the run that may flip the state
        self._peak = 0

    def update(self, ts: float, count: int) -> Incident | None:
        r = self.rule
        if not self.active:
            if count < r.threshold:
                self._since = None
                return None
            self._since = ts if self._since is None else self._since
            if ts - self._since < r.hold_s:
                return None
            self.active, self._since, self._peak = True, None, count
            return self._incident("start", ts, count, f"{count} people for {r.hold_s:g}s (threshold {r.threshold})")
        if count >= r.clear_below:  # type: ignore[operator]  # set by the model validator
            self._since = None
            if count > self._peak:
                self._peak = count
                return self._incident("update", ts, count, f"count rose to {count}")
            return None
        self._since = ts if self._since is None else self._since
        if ts - self._since < r.clear_s:
            return None
        self.active, self._since = False, None
        return self._incident("end", ts, count, f"count below {r.clear_below} for {r.clear_s:g}s")

    def _incident(self, phase, ts, count, detail) -> Incident:
        score = min(1.0, count / max(self.rule.threshold, 1))
        return Incident("crowding", phase, self.camera_id, self.zone_id, ts, count, score, detail)


@dataclass
class _TrackHistory:
    ts: deque = field(default_factory=lambda: deque(maxlen=6))
    boxes: deque = field(default_factory=lambda: deque(maxlen=6))


class ConflictMonitor:
    """A first, deliberately simple conflict signal (a later issue replaces it with a pose-based classifier).

    It fires when two tracked people in the zone are close (centres within
    ``1.0 x`` their mean box height) and at least one of them moves erratically:
    the change of box velocity and of box shape, in body heights per second,
    is what separates a scuffle from two people walking side by side.
    """

    CLOSE = 1.0  # centre distance in mean box heights
    AGITATION_FULL = 3.0  # heights/s of velocity+shape change that scores 1.0

    def __init__(self, camera_id: str, zone_id: str, rule: ConflictRule):
        self.camera_id, self.zone_id, self.rule = camera_id, zone_id, rule
        self._tracks: dict[int, _TrackHistory] = {}
        self._since: float | None = None
        self.active = False
        self._last_seen = 0.0

    def _agitation(self, h: _TrackHistory) -> float:
        if len(h.ts) < 3:
            return 0.0
        t = np.asarray(h.ts)
        b = np.asarray(h.boxes, dtype=np.float64)
        dt = np.maximum(np.diff(t), 1e-3)[:, None]
        height = np.maximum(b[:, 3] - b[:, 1], 1.0).mean()
        vel = np.diff(b, axis=0) / dt  # each box edge's velocity
        return float(np.abs(np.diff(vel, axis=0)).mean() / height)  # velocity change, in heights/s

    def update(self, ts: float, people: Detections) -> Incident | None:
        if people.tracker_id is None:
            return None
        live = set()
        for tid, box in zip(people.tracker_id.tolist(), people.xyxy):
            h = self._tracks.setdefault(int(tid), _TrackHistory())
            h.ts.append(ts)
            h.boxes.append(box.copy())
            live.add(int(tid))
        for tid in list(self._tracks):
            if tid not in live:
                del self._tracks[tid]
        score = self._score(people)
        if score >= self.rule.min_score:
            self._since = ts if self._since is None else self._since
            self._last_seen = ts
            if not self.active and ts - self._since >= self.rule.hold_s:
                self.active = True
                return Incident("conflict", "start", self.camera_id, self.zone_id, ts, len(people), score,
                                "close people moving erratically")
            return None
        self._since = None
        if self.active and ts - self._last_seen > 5.0:
            self.active = False
            return Incident("conflict", "end", self.camera_id, self.zone_id, ts, len(people), score, "calm for 5s")
        return None

    def _score(self, people: Detections) -> float:
        if len(people) < 2:
            return 0.0
        c, hgt = people.center, np.maximum(people.height, 1.0)
        d = np.linalg.norm(c[:, None, :] - c[None, :, :], axis=2)
        mean_h = (hgt[:, None] + hgt[None, :]) / 2
        close = (d < self.CLOSE * mean_h) & ~np.eye(len(people), dtype=bool)
        best = 0.0
        ids = people.tracker_id.tolist()  # type: ignore[union-attr]
        agitation = [self._agitation(self._tracks[int(t)]) for t in ids]
        for i, j in zip(*np.nonzero(np.triu(close))):
            best = max(best, min(1.0, max(agitation[i], agitation[j]) / self.AGITATION_FULL))
        return best
