"""Rules that turn zone observations into incidents, all through one ``Monitor`` protocol.

``ZoneAnalyser`` makes one ``ZoneObservation`` per zone and analysed frame (its
count, the tracker ids of the people it counts, and the frame for the conflict
rule) and hands that same observation to each of the zone's rules. Each rule is
a small state machine fed one observation at a time with its timestamp, so it
behaves the same at any analysis rate and is easy to test. What the rules share
lives in one place, ``GatedMonitor``: the timing (hold, hysteresis, clear time,
cooldown and re-arm, ``Gate``), so that every incident kind treats false alarms
the same way; the zone's active hours (outside them a rule ends its incident
and forgets what it saw); and the building of its incidents.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import numpy as np

from gridwatch.config import DENSITY_LEVELS, CrowdingRule, GatheringRule, LoiteringRule

from .detections import Detections, Incident, IncidentKind
from .steps import Steps
from .zones import ActiveHours

Phase = Literal["start", "end"]


@dataclass(frozen=True, slots=True)
class ZoneObservation:
    """What every rule of a zone is given for one analysed frame (``ZoneAnalyser`` makes it)."""

    ts: float
    count: int  # people in the zone: after inertia, and after the count calibration when the zone has one
    track_ids: tuple[int, ...] = ()  # the tracker ids of the people counted (in the zone for ``inertia`` frames)
    image: np.ndarray | None = None  # the frame (conflict: optical flow and pose crops)
    people: Detections | None = None  # the zone's people before the camera's perspective check (conflict)
    mask: np.ndarray | None = None  # the zone as a frame-sized mask, nonzero inside (conflict's motion search)


class Monitor(Protocol):
    """A zone's rule, fed the zone's observation of each analysed frame in time order (``GatedMonitor``)."""

    kind: ClassVar[IncidentKind]

    @property
    def active(self) -> bool:
        """An incident is running."""
        ...

    def observe(self, ob: ZoneObservation) -> Steps[Incident | None]:
        """The rule on one observation, as steps (``vision.steps``; only conflict asks for pose)."""
        ...

    def stop(self, ts: float, count: int) -> Incident | None:
        """Force the quiet state and forget; the ``"end"`` of a running incident."""
        ...


class Timing(Protocol):
    """What every rule's settings have (``gridwatch.config.rules``)."""

    hold_s: float
    clear_s: float
    cooldown_s: float


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

    def update(self, ts: float, on: bool, off: bool) -> Phase | None:
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


class GatedMonitor:
    """The base of every rule (a ``Monitor``): its ``Gate``, the zone's active hours, its incidents.

    A rule implements ``judge`` (``judge_steps`` when it needs pose) for an
    observation inside the active hours, and ``reset`` to forget what it saw
    when the zone goes quiet; ``observe`` and ``stop`` are the same for all.
    """

    kind: ClassVar[IncidentKind]

    def __init__(self, camera_id: str, zone_id: str, rule: Timing, active_hours: ActiveHours | None = None):
        self.camera_id, self.zone_id = camera_id, zone_id
        self.gate = Gate(rule.hold_s, rule.clear_s, rule.cooldown_s)
        self.active_hours = active_hours if active_hours is not None else ActiveHours([])

    @property
    def active(self) -> bool:
        return self.gate.active

    def observe(self, ob: ZoneObservation) -> Steps[Incident | None]:
        if not self.active_hours(ob.ts):
            return self.stop(ob.ts, ob.count)
        return (yield from self.judge_steps(ob))

    def judge_steps(self, ob: ZoneObservation) -> Steps[Incident | None]:
        """``judge`` as steps; a rule that needs pose overrides this instead."""
        return self.judge(ob)
        yield  # a generator that asks for nothing

    def judge(self, ob: ZoneObservation) -> Incident | None:
        raise NotImplementedError

    def stop(self, ts: float, count: int) -> Incident | None:
        self.reset()
        if self.gate.stop(ts):
            return self.incident("end", ts, count, self.quiet_score(count), "outside the zone's active hours")
        return None

    def reset(self) -> None:
        """Forget what the rule has seen (the zone left its active hours)."""

    def quiet_score(self, count: int) -> float:
        """The score of an incident that ``stop`` ends."""
        return 0.0

    def incident(self, phase: Literal["start", "update", "end"], ts: float, count: int, score: float,
                 detail: str, evidence: dict | None = None) -> Incident:
        return Incident(self.kind, phase, self.camera_id, self.zone_id, ts, count, score, detail, evidence)


def density_level(density: float) -> str:
    """The crowd-safety name of a density (people/m²), e.g. ``"involuntary contact"``."""
    name = "free movement"
    for limit, label in DENSITY_LEVELS:
        if density >= limit:
            name = label
    return name


class CrowdingMonitor(GatedMonitor):
    """Count >= threshold for ``hold_s`` starts an incident; below ``clear_below`` for ``clear_s`` ends it.

    The gap between ``threshold`` and ``clear_below`` (hysteresis) keeps a crowd
    hovering at the threshold from starting and ending incidents every second.
    With the zone's ``area_m2`` the detail gives the density and its level.
    """

    kind = "crowding"

    def __init__(self, camera_id: str, zone_id: str, rule: CrowdingRule, area_m2: float | None = None,
                 active_hours: ActiveHours | None = None):
        rule.effective_threshold  # noqa: B018 - raises now, not at the first frame, when nothing was derived
        super().__init__(camera_id, zone_id, rule, active_hours)
        self.rule, self.area_m2 = rule, area_m2
        self._peak = 0

    def describe(self, count: int) -> str:
        if not self.area_m2:
            return f"{count} people"
        d = count / self.area_m2
        return f"{count} people, {d:.1f}/m² ({density_level(d)})"

    def judge(self, ob: ZoneObservation) -> Incident | None:
        r, ts, count = self.rule, ob.ts, ob.count
        phase = self.gate.update(ts, count >= r.effective_threshold, count < r.effective_clear_below)
        score = self.quiet_score(count)
        if phase == "start":
            self._peak = count
            return self.incident("start", ts, count, score,
                                 f"{self.describe(count)} for {r.hold_s:g}s (threshold {r.effective_threshold})")
        if phase == "end":
            return self.incident("end", ts, count, score, f"count below {r.effective_clear_below} for {r.clear_s:g}s")
        if self.gate.active and count > self._peak:
            self._peak = count
            return self.incident("update", ts, count, score, f"count rose to {self.describe(count)}")
        return None

    def quiet_score(self, count: int) -> float:
        return min(1.0, count / max(self.rule.effective_threshold, 1))  # a crowding score is its count's share


class GatheringMonitor(GatedMonitor):
    """Sudden gathering: the count rises by ``rise`` over the lowest count of the last ``within_s`` seconds.

    The count is first smoothed with a median of the last three observations, so
    one frame with a burst of false detections cannot look like a crowd forming.
    """

    kind = "gathering"

    def __init__(self, camera_id: str, zone_id: str, rule: GatheringRule, active_hours: ActiveHours | None = None):
        super().__init__(camera_id, zone_id, rule, active_hours)
        self.rule = rule
        self._raw: deque[int] = deque(maxlen=3)
        self._history: deque[tuple[float, int]] = deque()

    def judge(self, ob: ZoneObservation) -> Incident | None:
        r, ts = self.rule, ob.ts
        self._raw.append(ob.count)
        smooth = sorted(self._raw)[len(self._raw) // 2]
        while self._history and ts - self._history[0][0] > r.within_s:
            self._history.popleft()
        low = min((n for _, n in self._history), default=smooth)
        self._history.append((ts, smooth))
        rise = smooth - low
        on = rise >= r.rise and smooth >= r.min_count
        phase = self.gate.update(ts, on, not on)
        if phase is None:
            return None
        detail = (f"count rose from {low} to {smooth} within {r.within_s:g}s" if phase == "start"
                  else f"no further rise for {r.clear_s:g}s")
        return self.incident(phase, ts, smooth, min(1.0, rise / r.rise), detail)

    def reset(self) -> None:
        self._history.clear()
        self._raw.clear()


class LoiteringMonitor(GatedMonitor):
    """Someone stays in the zone for ``dwell_s``: dwell time per person id (``ZoneObservation.track_ids``).

    A person who leaves the zone, or whose id is lost, starts again from zero
    when seen next; ``clear_s`` bridges short gaps in the incident itself.
    """

    kind = "loitering"

    def __init__(self, camera_id: str, zone_id: str, rule: LoiteringRule, active_hours: ActiveHours | None = None):
        super().__init__(camera_id, zone_id, rule, active_hours)
        self.rule = rule
        self._first_seen: dict[int, float] = {}

    def dwell(self, ts: float) -> dict[int, float]:
        return {pid: ts - t0 for pid, t0 in self._first_seen.items()}

    def judge(self, ob: ZoneObservation) -> Incident | None:
        ts, ids = ob.ts, set(ob.track_ids)
        self._first_seen = {pid: t0 for pid, t0 in self._first_seen.items() if pid in ids}
        for pid in ids:
            self._first_seen.setdefault(pid, ts)
        dwell = self.dwell(ts)
        loiterers = [pid for pid, d in dwell.items() if d >= self.rule.dwell_s]
        on = len(loiterers) >= self.rule.min_people
        phase = self.gate.update(ts, on, not on)
        if phase is None:
            return None
        longest = max(dwell.values(), default=0.0)
        detail = (f"{len(loiterers)} {'person' if len(loiterers) == 1 else 'people'} in the zone for over "
                  f"{self.rule.dwell_s:g}s (longest {longest:.0f}s)" if phase == "start"
                  else f"nobody over {self.rule.dwell_s:g}s for {self.rule.clear_s:g}s")
        return self.incident(phase, ts, len(ids), min(1.0, longest / (2 * self.rule.dwell_s)), detail)

    def reset(self) -> None:
        self._first_seen.clear()
