"""The runtime conflict rule: observations -> sliding-window features -> classifier -> incidents."""
from __future__ import annotations

from collections import deque
from functools import lru_cache
from pathlib import Path

from gridwatch.config import ConflictRule

from ..detections import Detections, Incident
from ..rules import GatedMonitor, ZoneObservation
from ..steps import Steps
from ..zones import ActiveHours
from .features import window_features
from .model import DEFAULT_MODEL, ConflictModel
from .observe import CropPose, Observation, Observer


@lru_cache(maxsize=4)
def shared_model(path: Path = DEFAULT_MODEL) -> ConflictModel:
    """One loaded classifier per file for the whole process (it is read-only)."""
    return ConflictModel.load(path)


@lru_cache(maxsize=4)
def shared_pose(device: str = "auto", backend: str = "auto", export_dir: Path | None = None) -> CropPose:
    """One pose model per process and runtime (the detector's device, backend and export cache), shared by every
    camera's monitor (it is stateless)."""
    from models import resolve_weights

    return CropPose(resolve_weights("yolo11n-pose.pt"), device=device, backend=backend, export_dir=export_dir)


class ConflictMonitor(GatedMonitor):
    """Fires when the classifier's fight probability stays above ``min_score`` for the model's hold windows
    (and the rule's ``hold_s``); clears below ``clear_score`` for ``clear_s``; then ``cooldown_s`` before re-arming.

    It observes the frame (``ZoneObservation.image``: pose runs on crops of it, optical flow on all of it) and the
    zone's people before the perspective check; pass ``pose=None`` (tests, or a zone with pose switched off) to run
    on motion and boxes alone.
    """

    kind = "conflict"

    def __init__(self, camera_id: str, zone_id: str, rule: ConflictRule, model: ConflictModel | None = None,
                 pose: CropPose | None = None, active_hours: ActiveHours | None = None):
        super().__init__(camera_id, zone_id, rule, active_hours)
        self.rule = rule
        self.model = model or shared_model()
        self.observer = Observer(pose)
        self.min_score = rule.min_score if rule.min_score is not None else self.model.threshold
        self.clear_score = rule.clear_score if rule.clear_score is not None else max(self.min_score - 0.2, 0.0)
        self._window: deque[Observation] = deque()
        self._run = 0  # consecutive windows above min_score
        self._last_ts: float | None = None  # the last frame observed (thinning to the model's rate)
        self.score = 0.0

    def _score(self) -> float:
        w = self._window
        if len(w) < 2 or w[-1].ts - w[0].ts < 0.75 * self.model.window_s:
            return 0.0  # not a full window yet
        return float(self.model.proba(window_features(list(w)))[0])

    def judge_steps(self, ob: ZoneObservation) -> Steps[Incident | None]:
        """Observe the frame (yielding its pose request) and run the rule on it.

        A camera analysed faster than the model's ``sample_fps`` is thinned to it: the features (flow between
        observations, speeds, changes) mean what they meant in training only at that rate.
        """
        if ob.image is None:
            raise ValueError("the conflict rule observes the frame: ZoneObservation.image is missing")
        ts = ob.ts
        if self._last_ts is not None and ts - self._last_ts < 0.75 / self.model.sample_fps:
            return None
        self._last_ts = ts
        people = ob.people if ob.people is not None else Detections()
        seen = yield from self.observer.observe_steps(ts, ob.image, people, ob.mask)
        return self.push(seen)

    def push(self, ob: Observation) -> Incident | None:
        """The rule on an observation already made (what ``observe`` does after observing; replays use it)."""
        ts = ob.ts
        self._window.append(ob)
        while self._window and self._window[0].ts <= ts - self.model.window_s - 1e-6:
            self._window.popleft()
        self.score = self._score()
        self._run = self._run + 1 if self.score >= self.min_score else 0
        on = self._run >= self.model.hold_windows
        phase = self.gate.update(ts, on, self.score < self.clear_score)
        if phase == "start":
            return self.incident("start", ts, len(ob.xyxy), self.score,
                                 f"fight probability {self.score:.2f} over the last {self.model.window_s:g}s")
        if phase == "end":
            return self.incident("end", ts, len(ob.xyxy), self.score, f"calm for {self.rule.clear_s:g}s")
        return None

    def reset(self) -> None:
        self._window.clear()
        self._run = 0
