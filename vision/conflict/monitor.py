"""The runtime conflict rule: observations -> sliding-window score -> false-alarm control -> incidents.

The classifier's window score alone raised about 80 alerts per camera-hour on
calm walkways (docs/accuracy.md). Between the score and the incident sits a
false-alarm control stage, each part of which can be tested on its own:

- ``SceneVeto``: a window in which nobody stands close to anybody (nobody, or a
  single person, or people apart), or in which a crowd moves one way (walking,
  not fighting), cannot count as a fight, whatever its score;
- ``Persistence``: an alert needs the score high in ``k`` of the last ``n``
  windows (about 2.5 s of evidence with the 1.5 s windows), not in one;
- ``CalmCalibration``: each camera learns its own calm score distribution in its
  first minutes-to-hours of operation and raises its threshold to the one that
  gives the zone's target false-alarm rate per hour.

The threshold, ``k`` and ``n`` come from the zone's sensitivity,
``ConflictRule.false_alarms_per_hour``, through the operating-point table the
evaluation measured (``gridwatch.config.rules.CONFLICT_OPERATING_POINTS``).
"""
from __future__ import annotations

import math
from collections import deque
from functools import lru_cache
from pathlib import Path

import numpy as np

from gridwatch.config import ConflictRule
from gridwatch.config.rules import ConflictPoint

from ..detections import Detections, Incident, centres
from ..rules import GatedMonitor, ZoneObservation
from ..steps import Steps
from ..zones import ActiveHours
from .features import FEATURE_NAMES, link, window_features
from .model import DEFAULT_MODEL, ConflictModel
from .observe import CropPose, Observation, Observer, close_pairs


@lru_cache(maxsize=4)
def shared_model(path: Path = DEFAULT_MODEL, version: str | None = None) -> ConflictModel:
    """One loaded classifier per file for the whole process (it is read-only), named by its version (the file's
    stem unless the registry names it): the evidence of each alert says which version judged it."""
    model = ConflictModel.load(path)
    model.meta = {**(model.meta or {}), "version": version or (model.meta or {}).get("version") or Path(path).stem}
    return model


@lru_cache(maxsize=4)
def shared_pose(device: str = "auto", backend: str = "auto", export_dir: Path | None = None) -> CropPose:
    """One pose model per process and runtime (the detector's device, backend and export cache), shared by every
    camera's monitor (it is stateless)."""
    from models import resolve_weights

    return CropPose(resolve_weights("yolo11n-pose.pt"), device=device, backend=backend, export_dir=export_dir)


class Persistence:
    """k of the last n window scores must be high: the k-th highest of the last n is the score that counts.

    ``push`` returns that k-th highest score (0 until k scores were seen), so "at least k of the last n windows
    at or above t" is exactly "persistent score >= t", and calibration can work on one number per window.
    ``k == n`` is n windows in a row.
    """

    def __init__(self, k: int, n: int):
        if not 1 <= k <= n:
            raise ValueError(f"persistence needs 1 <= k <= n, got k={k}, n={n}")
        self.k, self.n = k, n
        self._last: deque[float] = deque(maxlen=n)

    def push(self, score: float) -> float:
        self._last.append(float(score))
        if len(self._last) < self.k:
            return 0.0
        return sorted(self._last, reverse=True)[self.k - 1]

    def reset(self) -> None:
        self._last.clear()


class SceneVeto:
    """Scene cues under which a high score is not a fight: ``why(window)`` names the cue, or None.

    - nobody close to anybody: in no observation of the window do two people (detector's or pose's) stand within
      ``CLOSE_H`` body heights of each other; this covers an empty zone and a single person too;
    - a crowd moving one way: people linked from one observation to the next (``features.link``) who move faster
      than ``min_speed`` body heights per second, on average at least ``movers`` of them, and their directions
      agree (mean resultant length of their unit velocities at least ``one_way``): people walking together, whose
      fast motion the classifier may take for a scuffle. People who fight do not all head one way.

    Measured on fight-dev (docs/accuracy.md): the one-way veto touches none of the fight windows the classifier
    scores at 0.5 or more; the closeness veto costs some fights the detector sees as one blob.
    """

    def __init__(self, movers: float = 2.0, one_way: float = 0.9, min_speed: float = 0.3):
        self.movers, self.one_way, self.min_speed = movers, one_way, min_speed
        self._memo: dict[tuple[int, int], tuple] = {}  # (id a, id b) -> (a, b, movers, agreement)

    def why(self, window: list[Observation]) -> str | None:
        if not window:
            return "nobody in the zone"
        if not any(close_pairs(o.xyxy) for o in window):
            people = max(len(o.xyxy) for o in window)
            return ("nobody in the zone" if people == 0 else "a single person" if people == 1
                    else "nobody close to anybody")
        movers, agree = self.directions(window)
        if movers >= self.movers and agree >= self.one_way:
            return "a crowd moving one way"
        return None

    def directions(self, window: list[Observation]) -> tuple[float, float]:
        """Mean number of people moving faster than ``min_speed`` per pair of observations, and the mean
        resultant length of their directions (1: all one way, 0: every way) over pairs with two or more.

        Each pair of consecutive observations is measured once and remembered while it is in the window (a
        sliding window would otherwise link the same boxes again at every step)."""
        steps = {}
        for a, b in zip(window, window[1:]):
            seen = self._memo.get((id(a), id(b)))
            steps[(id(a), id(b))] = seen if seen is not None and seen[0] is a and seen[1] is b else (
                a, b, *self._step(a, b))
        self._memo = steps
        counts = [n for _, _, n, _ in steps.values() if n is not None]
        lengths = [r for _, _, _, r in steps.values() if r is not None]
        return (float(np.mean(counts)) if counts else 0.0), (float(np.mean(lengths)) if lengths else 0.0)

    def _step(self, a: Observation, b: Observation) -> tuple[int | None, float | None]:
        dt = b.ts - a.ts
        if dt <= 0:
            return None, None
        links = link(a.xyxy, b.xyxy)
        k = np.nonzero(links >= 0)[0]
        h = np.maximum(b.xyxy[k, 3] - b.xyxy[k, 1], 1.0)[:, None]
        v = (centres(b.xyxy[k]) - centres(a.xyxy[links[k]])) / h / dt
        speed = np.linalg.norm(v, axis=1)
        unit = v[speed >= self.min_speed] / speed[speed >= self.min_speed, None]
        return len(unit), (float(np.linalg.norm(unit.mean(axis=0))) if len(unit) >= 2 else None)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class CalmCalibration:
    """A camera's own calm score distribution -> the threshold for ``target_per_hour`` false alarms per hour.

    Fed the persistent score of every window in which no incident runs, for the first ``learn_s`` seconds of
    the camera's operation (then it stops learning: a camera's calm is taken to be what it saw first). Usable once
    ``min_s`` seconds were seen. An alert is an up-crossing of the threshold by the persistent score; with minutes
    of data a rate of one an hour cannot be counted, so the tail of the scores is extrapolated: among the live
    windows (score above ``LIVE``; vetoed and empty ones carry no tail), above the ``tail`` quantile ``u`` of their
    logits the excesses are taken as exponential (peaks over threshold, the generalised Pareto with shape 0), and
    runs above ``u`` as lasting ``mean_run`` windows, so at a threshold t (a logit)

        alerts per hour = windows per hour / mean_run * live share * (1 - tail) * exp(-(t - u) / mean excess).

    Tested on scores with exactly such a tail: ten minutes set a threshold that gives 2.25 alerts an hour for a
    target of 2 over 40 further hours. Real calm is not that tidy (scores drift with the time of day, lighting,
    crowds), so the threshold only ever raises the operating point's, never lowers it.

    State is kept in memory only, per monitor: a restarted process learns again from its first minutes (during
    which the operating point's own threshold applies). A fight during learning raises the threshold (it reads as
    calm), so the calibrated threshold is capped at ``cap``.
    """

    def __init__(self, target_per_hour: float, rate_fps: float, learn_s: float = 3600.0, min_s: float = 60.0,
                 tail: float = 0.9, cap: float = 0.95):
        if target_per_hour <= 0:
            raise ValueError("target_per_hour must be above 0")
        self.target, self.rate_fps = target_per_hour, rate_fps
        self.learn_s, self.min_s, self.tail, self.cap = learn_s, min_s, tail, cap
        self._scores: list[float] = []
        self._first_ts: float | None = None
        self._cached: tuple[int, float | None] | None = None

    @property
    def seconds(self) -> float:
        return len(self._scores) / self.rate_fps

    @property
    def learning(self) -> bool:
        return self.seconds < self.learn_s

    @property
    def ready(self) -> bool:
        return self.seconds >= self.min_s

    def add(self, score: float) -> None:
        if self.learning:
            self._scores.append(float(score))

    REFRESH = 150  # windows between refits (30 s at 5 fps)
    LIVE = 1e-3  # persistent scores at or below this (vetoed, not a full window yet) carry no tail information

    def _tail(self) -> tuple[float, float, float, float] | None:
        """(share of live windows, u, mean excess above u, mean run length above u in windows), on the logits of
        the live windows; None when too few are live to say anything (a camera that is all calm)."""
        s = np.asarray(self._scores)
        live = s > self.LIVE
        if live.sum() < 20:
            return None
        z = _logit(s[live])
        u = float(np.quantile(z, self.tail))
        excess = float((z[z > u] - u).mean()) if (z > u).any() else 0.0
        above = _logit(s) > u
        starts = int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))
        run = above.sum() / max(starts, 1)
        # floors: a flat calm must not make a knife-edge tail
        return float(live.mean()), u, max(excess, 0.25), max(float(run), 1.0)

    def rate_at(self, threshold: float) -> float:
        """Estimated alerts per hour at ``threshold`` (a persistent score), from what was learned: up-crossings
        counted where the learned scores reach it, the tail's extrapolation above."""
        fit = self._tail()
        if fit is None:
            return 0.0
        share, u, m, run = fit
        t = float(_logit(np.asarray([threshold]))[0])
        if t <= u:
            above = np.asarray(self._scores) >= threshold
            ups = int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))
            return ups / max(self.seconds / 3600.0, 1e-9)
        return 3600.0 * self.rate_fps / run * share * (1 - self.tail) * math.exp(-(t - u) / m)

    def threshold(self) -> float | None:
        """The persistent-score threshold for ``target_per_hour`` (None until ``ready``, or when the camera's
        calm gives no live scores to learn from), at most ``cap``."""
        if not self.ready:
            return None
        n = len(self._scores)
        if self._cached is not None and (n == self._cached[0] or self.learning and n - self._cached[0] < self.REFRESH):
            return self._cached[1]  # refitted every REFRESH windows: a fit per window per zone would cost too much
        fit = self._tail()
        out = None
        if fit is not None:
            share, u, m, run = fit
            p = self.target * run / (3600.0 * self.rate_fps) / share  # the share of live windows allowed above
            z = _logit(np.asarray(self._scores))
            t = (u + m * math.log((1 - self.tail) / p) if p < 1 - self.tail
                 else float(np.quantile(z[np.asarray(self._scores) > self.LIVE], 1 - min(p, 1.0))))
            out = min(1.0 / (1.0 + math.exp(-t)), self.cap)
        self._cached = (n, out)
        return out

    def reset(self) -> None:
        self._scores.clear()
        self._cached = None


class ConflictMonitor(GatedMonitor):
    """The classifier's window score through the false-alarm control stage (module docstring), then the gate:
    ``hold_s``, clear below ``clear_score`` for ``clear_s``, ``cooldown_s`` before re-arming.

    With the rule's ``min_score`` set (a raw threshold, the way zones were configured before
    ``false_alarms_per_hour``), the monitor runs as it did then: ``hold_windows`` windows in a row at or above it,
    no veto, no calibration.

    It observes the frame (``ZoneObservation.image``: pose runs on crops of it, optical flow on all of it) and the
    zone's people before the perspective check; pass ``pose=None`` (tests, or a zone with pose switched off) to run
    on motion and boxes alone.
    """

    kind = "conflict"

    def __init__(self, camera_id: str, zone_id: str, rule: ConflictRule, model: ConflictModel | None = None,
                 pose: CropPose | None = None, active_hours: ActiveHours | None = None,
                 point: ConflictPoint | None = None):
        """``point``: an operating point other than the rule's (the evaluation's grid of them)."""
        super().__init__(camera_id, zone_id, rule, active_hours)
        self.rule = rule
        self._model = model or shared_model()  # the pipeline passes the version the config names
        # only a motion model reads the motion image: the others do not pay for it on every frame
        self.observer = Observer(pose, motion=getattr(self._model, "kind", None) == "motion")
        self.raw = rule.min_score is not None and point is None  # the old raw-threshold way
        point = point or rule.operating_point
        self.base_score = rule.min_score if self.raw else point.min_score
        k, n = (self.model.hold_windows,) * 2 if self.raw else (point.k, point.n)
        self.persistence = Persistence(k, n)
        self.veto = SceneVeto() if rule.vetoes and not self.raw else None
        self.calibration = (CalmCalibration(rule.target_per_hour, self.model.sample_fps, rule.calibrate_s)
                            if rule.calibrate and not self.raw else None)
        self.clear_score = rule.clear_score if rule.clear_score is not None else max(self.base_score - 0.2, 0.0)
        self._window: deque[Observation] = deque()
        # the windows behind the persistent score (the last n): (observations, score, veto), the evidence of a start
        self._judged: deque[tuple[tuple[Observation, ...], float, str | None]] = deque(maxlen=self.persistence.n)
        self._last_ts: float | None = None  # the last frame observed (thinning to the model's rate)
        self.score = 0.0  # the classifier's score of the last window
        self.persistent = 0.0  # the k-th highest of the last n (vetoed windows count 0)
        self.vetoed: str | None = None  # why the last window could not count, if a veto said so

    @property
    def model(self) -> ConflictModel:
        return self._model

    @property
    def model_version(self) -> str:
        return str((getattr(self._model, "meta", None) or {}).get("version") or "custom")

    @property
    def min_score(self) -> float:
        """The threshold in force: the operating point's, raised by the camera's calibration once it is ready."""
        cal = self.calibration.threshold() if self.calibration is not None else None
        return max(self.base_score, cal) if cal is not None else self.base_score

    def _score(self) -> float:
        w = self._window
        if len(w) < 2 or w[-1].ts - w[0].ts < 0.75 * self.model.window_s:
            return 0.0  # not a full window yet
        score_window = getattr(self.model, "score_window", None)
        if score_window is not None:
            return float(score_window(list(w)))
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
        self.vetoed = self.veto.why(list(self._window)) if self.veto is not None and self.score > 0 else None
        self.persistent = self.persistence.push(0.0 if self.vetoed else self.score)
        self._judged.append((tuple(self._window), self.score, self.vetoed))
        threshold = self.min_score
        if self.calibration is not None and not self.gate.active:
            self.calibration.add(self.persistent)
        phase = self.gate.update(ts, self.persistent >= threshold, self.score < self.clear_score)
        if phase == "start":
            k, n = self.persistence.k, self.persistence.n
            return self.incident("start", ts, len(ob.xyxy), self.score,
                                 f"fight probability {self.score:.2f} over the last {self.model.window_s:g}s; "
                                 f"{k} of the last {n} windows at or above {threshold:.2f}",
                                 evidence=self.evidence(threshold))
        if phase == "end":
            return self.incident("end", ts, len(ob.xyxy), self.score, f"calm for {self.rule.clear_s:g}s")
        return None

    def evidence(self, threshold: float) -> dict:
        """What this start was judged on, for learning from its verdict (``gridwatch conflict retrain``): each of the
        last n windows' feature vector (``window_features``, what a trees model scores), its score and veto, the
        threshold in force, k and n, and the model's version. Computed here, on a start only (rare)."""
        windows = []
        for obs, score, vetoed in self._judged:
            full = len(obs) >= 2 and obs[-1].ts - obs[0].ts >= 0.75 * self.model.window_s
            windows.append({"end_ts": round(obs[-1].ts, 3) if obs else None, "score": round(float(score), 5),
                            "vetoed": vetoed, "full": full,
                            "features": ([round(float(v), 6) for v in window_features(list(obs))] if full else None)})
        return {"format": 1, "model": self.model_version, "model_kind": getattr(self.model, "kind", None),
                "score": float(self.score), "persistent": float(self.persistent), "threshold": float(threshold),
                "k": self.persistence.k,
                "n": self.persistence.n, "window_s": self.model.window_s, "sample_fps": self.model.sample_fps,
                "feature_names": list(FEATURE_NAMES), "windows": windows}

    def reset(self) -> None:
        """Forget the window (the zone left its active hours); a camera's calibration is kept: same camera."""
        self._window.clear()
        self._judged.clear()
        self.persistence.reset()
