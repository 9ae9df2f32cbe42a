"""What the API speaks: typed schemas, kept apart from how cases are stored."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from alerts.cases import CaseState as CaseStateName  # the vocabularies are declared once, where cases live
from alerts.cases import Verdict as VerdictName
from gridwatch.accounts import Role
from streams.reader import CameraState


def _evidence_url(name: str | None) -> str | None:
    return f"/api/evidence/{name}" if name else None


class HistoryEntry(BaseModel):
    """One line of the audit log: who did what, when; append only."""

    ts: float
    actor: str
    by: str | None = Field(default=None, description="the logged-in account that recorded it, when that is not "
                                                      "the actor (an operator entering what a worker radioed in)")
    action: str
    state: str
    note: str | None = None
    worker: str | None = None
    verdict: str | None = None
    count: int | None = None
    priority: int | None = None
    level: int | None = Field(default=None, description="escalate: how many times in this state")
    snapshot: str | None = None
    clip: str | None = None
    photo: str | None = None


class CaseOut(BaseModel):
    id: str
    incident_id: str | None = None
    kind: str
    state: CaseStateName
    priority: int = Field(default=4, description="1 fight; crowds 2 (>= 2x threshold), 3 (>= 1.5x), 4")
    level: str | None = Field(default=None, description="fight, or the crowd's density level")
    camera_id: str
    camera_name: str
    grid_id: str
    zone_id: str
    ts: float = Field(description="when the incident was detected (unix seconds)")
    count: int = Field(description="people in the zone (peak while the incident lasted)")
    score: float
    detail: str
    snapshot_url: str | None
    clip_url: str | None = Field(default=None, description="H.264 MP4, from before to after the alert")
    photo_urls: list[str] = Field(default_factory=list, description="photos from the worker")
    lat: float
    lon: float
    verdict: VerdictName | None = None
    worker: str | None = None
    created_at: float
    updated_at: float
    state_since: float | None = None
    updates: int = 0
    incidents: int = 1
    notes: int = 0
    escalations: int = 0
    escalation_level: int = Field(default=0, description="escalations in the current state")
    dead_letter: bool = Field(default=False, description="delivered too often without a worker accepting it")
    end_ts: float | None = Field(default=None, description="when the incident itself ended, if it has")
    version: int = Field(default=1, description="goes up by one with every change: two copies of a case with the "
                                                "same version are the same (pages skip re-rendering)")

    @classmethod
    def of(cls, case: dict) -> "CaseOut":
        return cls(**{k: v for k, v in case.items() if k in cls.model_fields},
                   snapshot_url=_evidence_url(case.get("snapshot")), clip_url=_evidence_url(case.get("clip")),
                   photo_urls=[_evidence_url(p) for p in case.get("photos") or []])


class CaseDetail(CaseOut):
    history: list[HistoryEntry]

    @classmethod
    def of(cls, case: dict) -> "CaseDetail":
        base = CaseOut.of(case).model_dump()
        return cls(**base, history=[HistoryEntry(**h) for h in case.get("history", [])])


class TakenCase(CaseOut):
    delivery_id: str = Field(description="the grid queue's entry; accept the case to acknowledge it")
    deliveries: int = Field(description="how many times this case has been handed out")


class TransitionIn(BaseModel):
    actor: str = Field(min_length=1, max_length=64, description="who takes the action")
    worker: str | None = Field(default=None, max_length=64, description="dispatch, reassign: the grid worker sent")
    verdict: VerdictName | None = Field(default=None, description="resolve: what the worker found")
    note: str | None = Field(default=None, max_length=2000)


class NoteIn(BaseModel):
    actor: str = Field(min_length=1, max_length=64, description="who writes it")
    note: str = Field(min_length=1, max_length=2000)


class AuditOut(BaseModel):
    case_id: str
    intact: bool = Field(description="every entry is as it was written (hash chain and head match)")
    first_bad: int | None = Field(default=None, description="index of the first entry that is not")
    entries: int


class PendingOut(BaseModel):
    delivery_id: str
    case: str | None
    worker: str
    idle_s: float
    deliveries: int
    priority: int


class ZoneReportRow(BaseModel):
    camera_id: str
    zone_id: str
    kind: str
    alerts: int
    confirmed: int
    false_alarm: int
    not_found: int
    unresolved: int
    false_alarm_rate: float | None = Field(description="false alarms / resolved alerts")
    threshold: int | None = Field(default=None, description="the zone's crowding threshold now")
    hold_s: float | None = None


class StreamEntry(BaseModel):
    """An entry of a Redis stream (dead letters, police liaison, supervisor, feedback): its id and fields."""

    id: str
    fields: dict[str, str]

    @classmethod
    def of(cls, row: dict) -> "StreamEntry":
        return cls(id=row["id"], fields={k: v for k, v in row.items() if k != "id"})


class ZoneOut(BaseModel):
    id: str
    name: str
    polygon: list[tuple[float, float]]
    count: int | None = None


class CameraStateChange(BaseModel):
    state: str
    since: float


class CameraOut(BaseModel):
    id: str
    name: str
    grid: str
    lat: float
    lon: float
    fps: float
    url: str = Field(description="detect stream URL with any password masked")
    view_url: str | None = Field(default=None, description="main stream URL, password masked")
    state: Literal["unknown"] | CameraState = "unknown"
    since: float | None = Field(default=None, description="when the camera entered its state (unix seconds)")
    history: list[CameraStateChange] = Field(default_factory=list, description="recent state changes, oldest first")
    fps_in: float = Field(default=0.0, description="frames decoded per second")
    fps_analysed: float = Field(default=0.0, description="frames handed to the analyser per second")
    frames_in: int = 0
    frames_analysed: int = 0
    frames_dropped: int = 0
    frames_skipped: int = Field(default=0, description="packets never decoded because no analysis needed them")
    decode_errors: int = 0
    decode_cpu_s: float = Field(default=0.0, description="CPU seconds spent decoding this camera")
    decode_mode: str = Field(default="unknown", description="keyframes | until-due | all")
    hwaccel: str = "cpu"
    reconnects: int = 0
    last_error: str | None = Field(default=None, description="last error, credentials masked")
    width: int | None = None
    height: int | None = None
    zones: list[ZoneOut]


class GridOut(BaseModel):
    id: str
    name: str
    parent: str | None


class FieldError(BaseModel):
    field: str = Field(description="where: query.kind, body.actor, path.case_id ...")
    message: str


class ErrorOut(BaseModel):
    """The one error body of every route and status (api/errors.py)."""

    detail: str = Field(description="what is wrong, for a person")
    status: int = Field(default=500, description="the HTTP status again")
    errors: list[FieldError] = Field(default_factory=list, description="validation errors, one per field")


# ---- access control (api/auth.py, api/routers/auth.py) and statistics (api/routers/stats.py) ----------------
class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    name: str
    role: Role
    grids: list[str] = Field(default_factory=list, description="grid_worker: the grids they work in")


class TokenOut(BaseModel):
    access_token: str = Field(description="send as 'Authorization: Bearer <token>'; the login also sets the cookie")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds")
    user: UserOut


class AdminAuditEntry(BaseModel):
    """Defaults everywhere: an entry someone wrote by hand still shows (and breaks the chain) rather than a 500."""

    ts: float = 0.0
    actor: str = ""
    action: str = Field(default="", description="method and route, e.g. 'PUT /api/admin/cameras/{camera_id}'")
    target: str = Field(default="", description="the path changed")
    detail: dict = Field(default_factory=dict, description="query and body (camera passwords masked)")
    status: int | None = Field(default=None, description="the answer's HTTP status")
    prev: str = Field(default="", description="SHA-256 of the entry before (hash chain)")


class AdminAuditOut(BaseModel):
    intact: bool = Field(description="the hash chain holds: no entry edited or removed")
    first_bad: int | None = None
    total: int
    entries: list[AdminAuditEntry] = Field(description="newest first")


class Quantiles(BaseModel):
    n: int = Field(description="cases measured")
    p50_s: float | None
    p90_s: float | None


class DayCount(BaseModel):
    day: str = Field(description="YYYY-MM-DD (UTC)")
    key: str = Field(description="the grid, camera or kind")
    alerts: int


class StatsOut(BaseModel):
    since: float = Field(description="unix seconds: the first day counted")
    days: list[str]
    alerts: int
    by_grid: list[DayCount]
    by_camera: list[DayCount]
    by_kind: list[DayCount]
    resolved: int
    confirmed: int
    confirmation_rate: float | None = Field(description="confirmed / resolved cases")
    time_to_acknowledge: Quantiles
    time_to_site: Quantiles = Field(description="from the alert to the worker's arrival (on_site)")
    time_to_close: Quantiles


# ---- admin (api/routers/admin.py) and the console's map -------------------------------------------------------
# The admin edits the config's own models (gridwatch.config.Camera, Grid), so a change is checked exactly as the
# YAML file is; these are what comes around them.
from gridwatch.config import Camera, GeoPolygon, Grid  # noqa: E402


class AdminConfigOut(BaseModel):
    version: int = Field(description="the ConfigChannel version now running (0: none published yet)")
    saved_to: str | None = Field(description="the YAML file changes are written to; null: not saved to a file")
    grids: list[Grid]
    cameras: list[Camera] = Field(description="camera URLs with their passwords masked (***)")


class AdminSavedOut(BaseModel):
    version: int = Field(description="the ConfigChannel version published; the pipeline applies it within ~1 s")
    saved_to: str | None
    camera: Camera | None = Field(default=None, description="the camera as stored, password masked")
    grid: Grid | None = None


class CameraTestIn(BaseModel):
    url: str = Field(min_length=1, max_length=2000, description="as typed; a masked password (***) means the stored one")
    camera_id: str | None = Field(default=None, description="the camera being edited, whose stored password to use")


class MapGrid(BaseModel):
    id: str
    name: str
    parent: str | None
    outline: GeoPolygon | None = Field(description="GeoJSON Polygon in [lon, lat], from the config")


class MapCamera(BaseModel):
    id: str
    name: str
    grid: str
    lat: float
    lon: float


class MapOut(BaseModel):
    grids: list[MapGrid]
    cameras: list[MapCamera]
