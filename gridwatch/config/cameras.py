"""Grids, cameras and their zones: where gridwatch looks and what each zone watches for."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from streams.urls import UnsafeSource, check_source, mask_url_field, scheme_of

from .base import _Strict
from .rules import CONFLICT_FPS, DENSITY_LEVELS, ConflictRule, CrowdingRule, GatheringRule, LoiteringRule

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


def _segments_cross(p1, p2, p3, p4) -> bool:
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(p3, p4, p1), orient(p3, p4, p2)
    d3, d4 = orient(p1, p2, p3), orient(p1, p2, p4)
    return (d1 * d2 < 0) and (d3 * d4 < 0)


_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class Zone(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    polygon: list[Point] = Field(description="vertices in normalised image coordinates (0..1, x right, y down)")
    area_m2: float | None = Field(default=None, gt=0, description="the zone's real ground area; enables density (people/m²)")
    min_confidence: float = Field(default=0.0, ge=0.0, lt=1.0, description="ignore detections below this confidence here")
    min_box_height: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="ignore people whose box is shorter than this fraction of the frame height",
    )
    inertia: int = Field(default=2, ge=1, le=30,
                         description="analysed frames in a row a person must be seen in the zone before counting")
    active_hours: list[str] = Field(
        default_factory=list,
        description='local times the rules run, e.g. ["07:00-23:00"] or ["22:00-06:00"]; empty: always',
    )
    count_calibration: Path | None = Field(
        default=None, description="JSON from `python -m vision.counting fit`: corrects dense-crowd counts for this camera",
    )
    crowding: CrowdingRule | None = None
    conflict: ConflictRule = Field(default_factory=lambda: ConflictRule(enabled=False))
    loitering: LoiteringRule | None = None
    gathering: GatheringRule | None = None

    @field_validator("active_hours")
    @classmethod
    def _hours(cls, spans: list[str]) -> list[str]:
        for s in spans:
            if not _HOURS.match(s):
                raise ValueError(f"{s!r} is not a time span; write HH:MM-HH:MM in 24-hour time, e.g. 07:30-22:00")
            if s[:5] == s[6:]:
                raise ValueError(f"{s!r} starts and ends at the same time; leave active_hours empty to run always")
        return spans

    @model_validator(mode="after")
    def _crowd_threshold(self) -> "Zone":
        c = self.crowding
        if c is None or c.threshold is not None:
            if c is not None and c.density is not None and self.area_m2 is None:
                raise ValueError("crowding.density needs the zone's area_m2 (square metres of ground in the polygon)")
            return self
        if self.area_m2 is None:
            raise ValueError("crowding needs a threshold (people), or a density (people/m²) with the zone's area_m2")
        density = c.density if c.density is not None else DENSITY_LEVELS[0][0]
        c._derive(max(1, math.ceil(density * self.area_m2)), density)  # into private fields, never the user's
        return self

    @field_validator("polygon")
    @classmethod
    def _polygon_is_simple(cls, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(pts) < 3:
            raise ValueError(f"a zone needs at least 3 points, got {len(pts)}; list them as [[x, y], ...] in 0..1")
        n = len(pts)
        edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
        for i in range(n):
            for j in range(i + 2, n):
                if i == 0 and j == n - 1:
                    continue  # neighbours through the closing edge
                if _segments_cross(*edges[i], *edges[j]):
                    raise ValueError(f"the polygon's edges {i} and {j} cross; order the points around the outline")
        area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1])))
        if area < 1e-4:
            raise ValueError("the polygon has (almost) no area; its points are collinear or repeated")
        return pts


class Camera(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    url: str = Field(description="detect stream: rtsp:// or rtsps:// URL (a low-resolution substream is best), "
                                 "or a video file inside settings.media_dirs (demo, tests)")
    view_url: str | None = Field(default=None, description="main stream for live view and clips; default: url")
    grid: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    fps: float = Field(default=2.0, gt=0, le=30, description="analysis frames per second")
    enabled: bool = True
    perspective_check: bool = Field(
        default=True, description="learn how tall people are at each image row and drop weak boxes of an impossible "
                                  "size (vision.perspective); turn off for PTZ cameras that zoom")
    zones: list[Zone] = Field(default_factory=list)

    @field_validator("url", "view_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        """The URL's form; whether a local file may be opened depends on settings.media_dirs (GridwatchConfig)."""
        if url is None:
            return None
        scheme = scheme_of(url)
        if scheme in ("rtsp", "rtsps"):
            try:
                check_source(url)
            except UnsafeSource as err:
                raise ValueError(f"{mask_url_field(url)!r} {err.reason}") from None
            return url
        if scheme in ("", "file"):
            return url
        raise ValueError(f"unsupported scheme {scheme!r} in {mask_url_field(url)!r}; use rtsp://, rtsps:// or "
                         "a video file inside a folder listed in settings.media_dirs")

    @model_validator(mode="after")
    def _conflict_rate(self) -> "Camera":
        if self.fps < CONFLICT_FPS and any(z.conflict.enabled for z in self.zones):
            raise ValueError(f"fps {self.fps:g} is too low for the conflict rule: its classifier was trained on "
                             f"{CONFLICT_FPS:g} analysed frames per second; set fps: {CONFLICT_FPS:g} (higher rates "
                             "are thinned to it)")
        return self

    @model_validator(mode="after")
    def _unique_zones(self) -> "Camera":
        seen: set[str] = set()
        for z in self.zones:
            if z.id in seen:
                raise ValueError(f"zone id {z.id!r} appears twice on camera {self.id!r}; zone ids must be unique per camera")
            seen.add(z.id)
        return self

    @property
    def safe_url(self) -> str:
        return mask_url_field(self.url)


Position = tuple[Annotated[float, Field(ge=-180.0, le=180.0)], Annotated[float, Field(ge=-90.0, le=90.0)]]


class GeoPolygon(_Strict):
    """A GeoJSON Polygon geometry (RFC 7946): rings of [longitude, latitude] (WGS84), the first ring the outline."""

    type: Literal["Polygon"] = "Polygon"
    coordinates: list[list[Position]] = Field(
        min_length=1, description="[[[lon, lat], ...]]: the outer ring, then any holes; each ring closed (last = first)")

    @field_validator("coordinates")
    @classmethod
    def _rings(cls, rings: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        for i, ring in enumerate(rings):
            if len(ring) < 4:
                raise ValueError(f"ring {i} has {len(ring)} positions; a ring needs at least 4 (3 corners and the first again)")
            if tuple(ring[0]) != tuple(ring[-1]):
                raise ValueError(f"ring {i} is not closed; repeat its first position [lon, lat] at the end")
        return rings


class Grid(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    parent: str | None = None
    outline: GeoPolygon | None = Field(
        default=None, description="the grid's area on the map, a GeoJSON Polygon in [lon, lat]; the operator map draws it")
