"""What the API speaks: typed schemas, kept apart from how cases are stored."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class HistoryEntry(BaseModel):
    ts: float
    actor: str
    action: str
    state: str
    note: str | None = None
    worker: str | None = None
    verdict: str | None = None
    count: int | None = None


class CaseOut(BaseModel):
    id: str
    kind: str
    state: Literal["new", "acknowledged", "dispatched", "verified", "closed"]
    camera_id: str
    camera_name: str
    grid_id: str
    zone_id: str
    ts: float = Field(description="when the incident was detected (unix seconds)")
    count: int = Field(description="people in the zone (peak while the incident lasted)")
    score: float
    detail: str
    snapshot_url: str | None
    lat: float
    lon: float
    verdict: Literal["confirmed", "false_alarm"] | None = None
    worker: str | None = None
    created_at: float
    updated_at: float
    updates: int = 0

    @classmethod
    def of(cls, case: dict) -> "CaseOut":
        snap = case.get("snapshot")
        return cls(**{k: v for k, v in case.items() if k in cls.model_fields},
                   snapshot_url=f"/api/evidence/{snap}" if snap else None)


class CaseDetail(CaseOut):
    history: list[HistoryEntry]

    @classmethod
    def of(cls, case: dict) -> "CaseDetail":
        base = CaseOut.of(case).model_dump()
        return cls(**base, history=[HistoryEntry(**h) for h in case.get("history", [])])


class TransitionIn(BaseModel):
    actor: str = Field(min_length=1, max_length=64, description="who takes the action")
    worker: str | None = Field(default=None, max_length=64, description="dispatch: the grid worker sent")
    verdict: Literal["confirmed", "false_alarm"] | None = Field(default=None, description="verify: the finding")
    note: str | None = Field(default=None, max_length=2000)


class ZoneOut(BaseModel):
    id: str
    name: str
    polygon: list[tuple[float, float]]
    count: int | None = None


class CameraOut(BaseModel):
    id: str
    name: str
    grid: str
    lat: float
    lon: float
    fps: float
    url: str = Field(description="stream URL with any password masked")
    state: str = "unknown"
    since: float | None = None
    frames_in: int = 0
    frames_analysed: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    last_error: str | None = None
    zones: list[ZoneOut]


class GridOut(BaseModel):
    id: str
    name: str
    parent: str | None


class ErrorOut(BaseModel):
    detail: str
