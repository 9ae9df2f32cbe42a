"""The rules a zone runs: crowding, conflict, loitering, gathering; their gates and hysteresis."""
from __future__ import annotations

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


class ConflictRule(_Gate):
    """Fights and scuffles, from the pose-based classifier in models/conflict (vision.conflict)."""

    enabled: bool = True
    hold_s: float = Field(default=0.0, ge=0.0, description="seconds the classifier's score must stay above min_score")
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="classifier probability that starts an incident; default: the threshold the model was validated at",
    )
    clear_score: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="the incident clears when the score stays below this for clear_s (hysteresis); default min_score - 0.2",
    )
    clear_s: float = Field(default=5.0, ge=0.0)
    cooldown_s: float = Field(default=30.0, ge=0.0)

    @model_validator(mode="after")
    def _hysteresis(self) -> "ConflictRule":
        if self.clear_score is not None and self.min_score is not None and self.clear_score > self.min_score:
            raise ValueError(f"clear_score ({self.clear_score}) must not exceed min_score ({self.min_score}); "
                             "lower it so a fight that flickers does not end and restart")
        return self


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
