"""Rules that turn zone observations into incidents.

Each rule is a small state machine fed one observation at a time with its
timestamp, so it behaves the same at any analysis rate and is easy to test. The
timing they share (hold, hysteresis, clear time, cooldown and re-arm) lives in
one place, ``Gate``, so every incident kind treats false alarms the same way.
"""
from __future__ import annotations

from collections import deque
from typing import Literal

from gridwatch.config import DENSITY_LEVELS, CrowdingRule, GatheringRule, LoiteringRule

from .detections import Incident

Phase = Literal["start", "end"]


class Gate:
    """Hold -> start; clear condition for ``clear_s`` -> end; then ``cooldown_s`` before it can start again.

    ``on`` and ``off`` are separate conditions so that a rule can leave a band
    between them (hysteresis) in which an active incident neither ends nor a
    quiet zone starts one.
    """

    def __init__(self, hold_s: float, clear_s: float, cooldown_s: float):
        self.hold_s, self.clear_s, self.cooldown_s = hold_s, clear_s, cooldown_s
        self.active = False
        self._since: float | None = None  # start of the run that may flip the state
        self._rearm_at = float("-inf")

    def step(self, ts: float, on: bool, off: bool) -> Phase | None:
        if not self.active:
            if not on or ts < self._rearm_at:
                self._since = None
                return None
            self._since = ts if self._since is None else self._since
            if ts - self._since < self.hold_s:
                return None
            self.active, self._since = True, None
            return "start"
        if not off:
            self._since = None
            return None
        self._since = ts if self._since is None else self._since
        if ts - self._since < self.clear_s:
            return None
        return self._end(ts)

    def stop(self, ts: float) -> Phase | None:
        """Force the quiet state (zone leaves its active hours); ``"end"`` when an incident was running."""
        self._since = None
        return self._end(ts) if self.active else None

    def _end(self, ts: float) -> Phase:
        self.active, self._since = False, None
        self._rearm_at = ts + self.cooldown_s
        return "end"


def density_level(density: float) -> str:
    """The crowd-safety name of a density (people/m²), e.g. ``"involuntary contact"``."""
    name = "free movement"
    for limit, label in DENSITY_LEVELS:
        if density >= limit:
            name = label
    return name


class CrowdingMonitor:
    """Count >= threshold for ``hold_s`` starts an incident; below ``clear_below`` for ``clear_s`` ends it.

    The gap between ``threshold`` and ``clear_below`` (hysteresis) keeps a crowd
    hovering at the threshold from starting and ending incidents every second.
    With the zone's ``area_m2`` the detail gives the density and its level.
    """

    def __init__(self, camera_id: str, zone_id: str, rule: CrowdingRule, area_m2: float | None = None):
        rule.effective_threshold  # noqa: B018 - raises now, not at the first frame, when nothing was derived
        self.camera_id, self.zone_id, self.rule, self.area_m2 = camera_id, zone_id, rule, area_m2
        self.gate = Gate(rule.hold_s, rule.clear_s, rule.cooldown_s)
        self._peak = 0

    @property
    def active(self) -> bool:
        return self.gate.active

    def describe(self, count: int) -> str:
        if not self.area_m2:
            return f"{count} people"
        d = count / self.area_m2
        return f"{count} people, {d:.1f}/m² ({density_level(d)})"

    def update(self, ts: float, count: int) -> Incident | None:
        r = self.rule
        phase = self.gate.step(ts, count >= r.effective_threshold, count < r.effective_clear_below)
        if phase == "start":
            self._peak = count
            return self._incident("start", ts, count,
                                  f"{self.describe(count)} for {r.hold_s:g}s (threshold {r.effective_threshold})")
        if phase == "end":
            return self._incident("end", ts, count, f"count below {r.effective_clear_below} for {r.clear_s:g}s")
        if self.gate.active and count > self._peak:
            self._peak = count
            return self._incident("update", ts, count, f"count rose to {self.describe(count)}")
        return None

    def stop(self, ts: float, count: int) -> Incident | None:
        if self.gate.stop(ts):
            return self._incident("end", ts, count, "outside the zone's active hours")
        return None

    def _incident(self, phase, ts, count, detail) -> Incident:
        score = min(1.0, count / max(self.rule.effective_threshold, 1))
        return Incident("crowding", phase, self.camera_id, self.zone_id, ts, count, score, detail)


class GatheringMonitor:
    """Sudden gathering: the count rises by ``rise`` over the lowest count of the last ``within_s`` seconds.

    The count is first smoothed with a median of the last three observations, so
    one frame with a burst of false detections cannot look like a crowd forming.
    """

    def __init__(self, camera_id: str, zone_id: str, rule: GatheringRule):
        self.camera_id, self.zone_id, self.rule = camera_id, zone_id, rule
        self.gate = Gate(rule.hold_s, rule.clear_s, rule.cooldown_s)
        self._raw: deque[int] = deque(maxlen=3)
        self._history: deque[tuple[float, int]] = deque()

    @property
    def active(self) -> bool:
        return self.gate.active

    def update(self, ts: float, count: int) -> Incident | None:
        r = self.rule
        self._raw.append(count)
        smooth = sorted(self._raw)[len(self._raw) // 2]
        while self._history and ts - self._history[0][0] > r.within_s:
            self._history.popleft()
        low = min((n for _, n in self._history), default=smooth)
        self._history.append((ts, smooth))
        rise = smooth - low
        on = rise >= r.rise and smooth >= r.min_count
        phase = self.gate.step(ts, on, not on)
        if phase is None:
            return None
        detail = (f"count rose from {low} to {smooth} within {r.within_s:g}s" if phase == "start"
                  else f"no further rise for {r.clear_s:g}s")
        return Incident("gathering", phase, self.camera_id, self.zone_id, ts, smooth,
                        min(1.0, rise / r.rise), detail)

    def stop(self, ts: float, count: int) -> Incident | None:
        self._history.clear()
        self._raw.clear()
        if self.gate.stop(ts):
            return Incident("gathering", "end", self.camera_id, self.zone_id, ts, count, 0.0,
                            "outside the zone's active hours")
        return None


class LoiteringMonitor:
    """Someone stays in the zone for ``dwell_s``: dwell time per person id (from the zone's presence tracks).

    A person who leaves the zone, or whose id is lost, starts again from zero
    when seen next; ``clear_s`` bridges short gaps in the incident itself.
    """

    def __init__(self, camera_id: str, zone_id: str, rule: LoiteringRule):
        self.camera_id, self.zone_id, self.rule = camera_id, zone_id, rule
        self.gate = Gate(rule.hold_s, rule.clear_s, rule.cooldown_s)
        self._first_seen: dict[int, float] = {}

    @property
    def active(self) -> bool:
        return self.gate.active

    def dwell(self, ts: float) -> dict[int, float]:
        return {pid: ts - t0 for pid, t0 in self._first_seen.items()}

    def update(self, ts: float, person_ids: tuple[int, ...] | list[int]) -> Incident | None:
        ids = set(person_ids)
        self._first_seen = {pid: t0 for pid, t0 in self._first_seen.items() if pid in ids}
        for pid in ids:
            self._first_seen.setdefault(pid, ts)
        dwell = self.dwell(ts)
        loiterers = [pid for pid, d in dwell.items() if d >= self.rule.dwell_s]
        on = len(loiterers) >= self.rule.min_people
        phase = self.gate.step(ts, on, not on)
        if phase is None:
            return None
        longest = max(dwell.values(), default=0.0)
        detail = (f"{len(loiterers)} {'person' if len(loiterers) == 1 else 'people'} in the zone for over "
                  f"{self.rule.dwell_s:g}s (longest {longest:.0f}s)" if phase == "start"
                  else f"nobody over {self.rule.dwell_s:g}s for {self.rule.clear_s:g}s")
        return Incident("loitering", phase, self.camera_id, self.zone_id, ts, len(ids),
                        min(1.0, longest / (2 * self.rule.dwell_s)), detail)

    def stop(self, ts: float, count: int) -> Incident | None:
        self._first_seen.clear()
        if self.gate.stop(ts):
            return Incident("loitering", "end", self.camera_id, self.zone_id, ts, count, 0.0,
                            "outside the zone's active hours")
        return None

