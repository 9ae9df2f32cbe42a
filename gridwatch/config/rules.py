"""The rules a zone runs: crowding, conflict, loitering, gathering; their gates and hysteresis."""
from __future__ import annotations

from typing import NamedTuple

from pydantic import Field, PrivateAttr, model_validator

from .base import _Strict

# Crowd-safety practice (Fruin's levels of service, UK Green Guide): people per square metre.
DENSITY_LEVELS: tuple[tuple[float, str], ...] = (
    (2.0, "restricted movement"), (3.5, "involuntary contact"), (5.0, "dangerous"),
)


class _Gate(_Strict):
    """Timing every rule shares: how long before it fires, how long before it clears, and when it may fire again."""

    hold_s: float = Field(default=10.0, ge=0.0, description="seconds the condition must hold before an incident starts")
    clear_s: float = Field(default=5.0, ge=0.0, description="seconds the clear condition must hold before the incident ends")
    cooldown_s: float = Field(
        default=0.0, ge=0.0,
        description="after an incident ends, no new one starts in this zone for this long (re-arm delay)",
    )


class CrowdingRule(_Gate):
    """Alert when at least ``threshold`` people (or ``density`` people/m²) stay in the zone for ``hold_s``."""

    threshold: int | None = Field(
        default=None, ge=1,
        description="persons in the zone that make a crowd; or leave it out and give density with the zone's area_m2",
    )
    density: float | None = Field(
        default=None, gt=0, le=10,
        description="people per m² that make a crowd (needs the zone's area_m2); default 2.0 when only area_m2 is given",
    )
    clear_below: int | None = Field(
        default=None, ge=0,
        description="the incident clears when the count drops below this (hysteresis); default threshold - 1, at least 1 below",
    )

    # What the rule runs with, derived from the fields above and the zone's area (Zone._crowd_threshold). Private:
    # a derived value written into a user's field would be saved back into their file, and after that save a new
    # area_m2 would no longer change the threshold.
    _threshold: int | None = PrivateAttr(default=None)
    _clear_below: int | None = PrivateAttr(default=None)
    _density: float | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _hysteresis(self) -> "CrowdingRule":
        if self.threshold is not None:
            self._derive(self.threshold)
        return self  # else the zone derives it from density x area_m2

    def _derive(self, threshold: int, density: float | None = None) -> None:
        clear = self.clear_below if self.clear_below is not None else max(threshold - 1, 0)
        if clear > threshold - 1:
            raise ValueError(f"clear_below ({clear}) must be below threshold ({threshold}); "
                             "set it lower so a crowd that stays does not flap")
        self._threshold, self._clear_below, self._density = threshold, clear, density

    @property
    def effective_threshold(self) -> int:
        """People that make a crowd: ``threshold``, or density x the zone's area."""
        if self._threshold is None:
            raise ValueError("CrowdingRule has no threshold yet: validate it inside its Zone (density x area_m2)")
        return self._threshold

    @property
    def effective_clear_below(self) -> int:
        """The count the incident clears below: ``clear_below``, or one below the threshold."""
        self.effective_threshold  # noqa: B018 - the same error when nothing was derived
        return self._clear_below  # type: ignore[return-value]

    @property
    def effective_density(self) -> float | None:
        """People per m² that make a crowd, when the threshold comes from the zone's area."""
        return self.density if self.density is not None else self._density


class ConflictPoint(NamedTuple):
    """One measured operating point of the conflict rule (docs/accuracy.md, ``bench/eval.py fight
    --operating-points``): the threshold and persistence, and what they bought on the evaluation data."""

    false_alarms_per_hour: float  # expected per camera-hour on calm footage (the row's key)
    min_score: float  # the persistent score (k-th highest of the last n windows) that starts an incident
    k: int
    n: int
    recall: float  # on fight-dev, cross-validation grouped by source video
    precision: float  # same


# Measured for models/conflict/conflict-v3.json with the vetoes on, without calibration (``bench/eval.py fight
# --operating-points``, bench/results/eval_fight_operating_points_fight-dev.json; docs/accuracy.md): recall and
# precision under 5-fold CV grouped by source video on fight-dev; the rate is the alerts counted on the calm footage
# of ../shared (3 cameras, 3.9 minutes: one alert there is 15.5 per hour, so these rates are coarse). Most sensitive
# first. A zone's false_alarms_per_hour picks the most sensitive row whose rate is at or below it; below every row,
# the strictest row, and the camera's calibration aims at the zone's rate.
CONFLICT_OPERATING_POINTS: tuple[ConflictPoint, ...] = (
    ConflictPoint(77.4, 0.30, 1, 6, 0.798, 0.590),
    ConflictPoint(61.9, 0.50, 2, 6, 0.677, 0.650),
    ConflictPoint(46.4, 0.60, 2, 6, 0.616, 0.656),
    ConflictPoint(31.0, 0.60, 3, 6, 0.545, 0.675),
)
DEFAULT_FALSE_ALARMS_PER_HOUR = 2.0  # the project's target on calm footage


def conflict_point(false_alarms_per_hour: float) -> ConflictPoint:
    """The most sensitive documented operating point expected to stay within ``false_alarms_per_hour``."""
    fits = [p for p in CONFLICT_OPERATING_POINTS if p.false_alarms_per_hour <= false_alarms_per_hour]
    return max(fits, key=lambda p: p.false_alarms_per_hour) if fits else min(
        CONFLICT_OPERATING_POINTS, key=lambda p: p.false_alarms_per_hour)


class ConflictRule(_Gate):
    """Fights and scuffles, from the pose-based classifier in models/conflict (vision.conflict).

    Sensitivity is set as the false alarms per camera-hour the zone can live with (``false_alarms_per_hour``);
    the rule turns it into a threshold and a persistence through the measured operating points
    (``CONFLICT_OPERATING_POINTS``) and, with ``calibrate``, each camera's own calm scores. ``min_score`` is the
    older way (a raw classifier threshold, no veto, no calibration); it still works, but not with the rate.
    """

    enabled: bool = True
    hold_s: float = Field(default=0.0, ge=0.0, description="seconds the classifier's score must stay above min_score")
    false_alarms_per_hour: float | None = Field(
        default=None, gt=0.0, le=1000.0,
        description="sensitivity: false alarms per camera-hour expected on calm footage (lower: fewer alarms, fewer "
                    f"fights found); default {DEFAULT_FALSE_ALARMS_PER_HOUR:g}. Measured (docs/accuracy.md): "
                    + "; ".join(f"{p.false_alarms_per_hour:g}/h finds {p.recall:.0%} of fights"
                                for p in CONFLICT_OPERATING_POINTS)
                    + "; a lower rate uses the strictest of these and the camera's own calibration",
    )
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="raw classifier probability that starts an incident (the older setting: no veto, no "
                    "calibration); leave it out and set false_alarms_per_hour instead",
    )
    clear_score: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="the incident clears when the score stays below this for clear_s (hysteresis); default min_score - 0.2",
    )
    clear_s: float = Field(default=5.0, ge=0.0)
    cooldown_s: float = Field(default=30.0, ge=0.0)
    vetoes: bool = Field(default=True, description="no alert while nobody stands close to anybody or a crowd "
                                                   "moves one way")
    calibrate: bool = Field(default=True, description="each camera learns its own calm scores in its first "
                                                      "calibrate_s and raises its threshold to meet the rate")
    calibrate_s: float = Field(default=3600.0, ge=60.0, le=7 * 24 * 3600.0,
                               description="seconds of a camera's first operation it learns its calm from")

    @model_validator(mode="after")
    def _hysteresis(self) -> "ConflictRule":
        if self.min_score is not None and self.false_alarms_per_hour is not None:
            raise ValueError(f"set either false_alarms_per_hour ({self.false_alarms_per_hour:g}) or min_score "
                             f"({self.min_score:g}), not both: false_alarms_per_hour chooses the score itself")
        start = self.min_score if self.min_score is not None else self.operating_point.min_score
        if self.clear_score is not None and self.clear_score > start:
            name = "min_score" if self.min_score is not None else \
                f"the score false_alarms_per_hour {self.target_per_hour:g} starts at"
            raise ValueError(f"clear_score ({self.clear_score}) must not exceed {name} ({start:g}); "
                             "lower it so a fight that flickers does not end and restart")
        return self

    @property
    def target_per_hour(self) -> float:
        """The zone's false-alarm rate: ``false_alarms_per_hour``, or the default."""
        return self.false_alarms_per_hour if self.false_alarms_per_hour is not None else DEFAULT_FALSE_ALARMS_PER_HOUR

    @property
    def operating_point(self) -> ConflictPoint:
        """The measured threshold and persistence for the zone's rate (``conflict_point``)."""
        return conflict_point(self.target_per_hour)


class LoiteringRule(_Gate):
    """Someone stays in the zone for ``dwell_s`` (a tracked person's time inside)."""

    dwell_s: float = Field(default=120.0, gt=0, description="seconds one person stays in the zone before it counts as loitering")
    min_people: int = Field(default=1, ge=1, description="how many people must be loitering at once")
    hold_s: float = Field(default=0.0, ge=0.0)


class GatheringRule(_Gate):
    """A crowd forms fast: the count rises by ``rise`` people within ``within_s``."""

    rise: int = Field(default=8, ge=2, description="people more than the lowest count of the last within_s seconds")
    within_s: float = Field(default=30.0, gt=0, le=600, description="the window the rise must happen in")
    min_count: int = Field(default=0, ge=0, description="and at least this many people in the zone")
    hold_s: float = Field(default=2.0, ge=0.0)
    cooldown_s: float = Field(default=60.0, ge=0.0)


CONFLICT_FPS = 5.0  # the analysis rate models/conflict was trained at (its JSON's sample_fps)
