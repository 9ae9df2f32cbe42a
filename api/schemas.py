"""What the API speaks: typed schemas. A case's are derived from the case as stored (alerts.cases.Case)."""
from __future__ import annotations

from copy import deepcopy
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from alerts.cases import Case, DeliveredCase, HistoryEntry  # a case and its vocabularies are declared once, there
from alerts.cases import Verdict as VerdictName
from gridwatch.accounts import Role
from streams.reader import CameraState


def _evidence_url(name: str | None) -> str | None:
    return f"/api/evidence/{name}" if name else None


def _fields_of(model: type[BaseModel], names) -> dict[str, tuple[Any, Any]]:
    """Fields of a model, to declare again in another (create_model): each with its type, default and description."""
    return {n: (model.model_fields[n].annotation, deepcopy(model.model_fields[n])) for n in names}


# What the API shows of a case is the case's fields, in its order, except that its evidence files are URLs and the
# queue's bookkeeping is left out.
_EVIDENCE_URLS: dict[str, tuple[str, tuple[Any, Any]]] = {
    "snapshot": ("snapshot_url", (str | None, ...)),
    "clip": ("clip_url", (str | None, Field(default=None, description="H.264 MP4, from before to after the alert"))),
    "photos": ("photo_urls", (list[str], Field(default_factory=list, description="photos from the worker"))),
}
_NOT_SHOWN = {"resolved_by", "stream_id", "queue", "history_head", "history"}


def _case_fields() -> dict[str, tuple[Any, Any]]:
    out: dict[str, tuple[Any, Any]] = {}
    for name in Case.model_fields:
        if name in _EVIDENCE_URLS:
            url, field = _EVIDENCE_URLS[name]
            out[url] = field
        elif name not in _NOT_SHOWN:
            out.update(_fields_of(Case, [name]))
    return out


class _CaseView(BaseModel):
    @classmethod
    def of(cls, case: Case):
        """The view of ``case``: the fields it shares with the case, the evidence files' URLs, the audit log if shown."""
        values = {n: getattr(case, n) for n in cls.model_fields if n in type(case).model_fields}
        values.update(snapshot_url=_evidence_url(case.snapshot), clip_url=_evidence_url(case.clip),
                      photo_urls=[_evidence_url(p) for p in case.photos])
        if "history" in values:
            values["history"] = case.history or []
        return cls(**values)


CaseOut = create_model("CaseOut", __base__=_CaseView, __module__=__name__, **_case_fields())

# a memo of what case_out_json made, per case id: (version, updated_at) and the JSON. Keyed by content (every write
# changes both), so it is right whichever store or app the case came from; one entry per case, at most _OUT_JSON_MAX
_OUT_JSON: dict[str, tuple[tuple[int, float], bytes]] = {}
_OUT_JSON_MAX = 20000


def case_out_json(case: Case) -> bytes:
    """``CaseOut.of(case)`` as JSON, made once per version of the case: lists and the event stream send the same
    cases over and over (every write changes a case's ``version`` and ``updated_at``, so a changed case is made
    again). What FastAPI would have sent for the model, without validating and serialising it on every request."""
    stamp = (case.version, case.updated_at)
    held = _OUT_JSON.get(case.id)
    if held is not None and held[0] == stamp:
        return held[1]
    view = CaseOut.of(case)
    out = view.__pydantic_serializer__.to_json(view)
    if len(_OUT_JSON) >= _OUT_JSON_MAX and case.id not in _OUT_JSON:
        _OUT_JSON.clear()
    _OUT_JSON[case.id] = (stamp, out)
    return out


class CaseDetail(CaseOut):
    history: list[HistoryEntry]


# what a worker's client gets from the grid's queue (CaseStore.take): the case and its delivery
TakenCase = create_model("TakenCase", __base__=CaseOut, __module__=__name__,
                         **_fields_of(DeliveredCase, ("delivery_id", "deliveries")))


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
    state: Literal["unknown", "unowned"] | CameraState = Field(
        default="unknown", description="unknown: never reported; unowned: its worker died or it is moving to another, "
        "so nobody analyses it right now; otherwise its reader's state")
    worker: str | None = Field(default=None, description="the worker process that runs it (or ran it, when unowned)")
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


class InferenceOut(BaseModel):
    fps: float = Field(default=0.0, description="frames analysed per second since the worker started")
    mean_batch: float = 0.0
    max_batch: int | None = None
    latency_p50_ms: float | None = Field(default=None, description="packet arrival to incidents, median")
    latency_p95_ms: float | None = None
    frames: int = 0
    discarded: int = Field(default=0, description="analyses not published: the camera had moved or the lease was "
                                                  "in doubt")
    error: str | None = None


class WorkerOut(BaseModel):
    name: str
    host: str
    pid: int
    capacity: int = Field(description="its weight on the fleet's hash ring")
    started: float
    heartbeat: float = Field(description="its last report (unix seconds); reports older than 5 s drop it from the list")
    cameras: list[str] = Field(description="the cameras it owns now")
    fenced: int = Field(default=0, description="times it dropped its cameras after a freeze had cost it its membership")
    inference: InferenceOut


class CameraOwnerOut(BaseModel):
    id: str
    grid: str
    worker: str | None = Field(description="the live worker that owns it; None when nobody does")
    state: str = Field(description="its reader's state, 'unowned' when its worker is gone, 'unknown' before any report")


class FleetOut(BaseModel):
    workers: list[WorkerOut]
    cameras: list[CameraOwnerOut]
    unowned: int = Field(description="enabled cameras no live worker owns")
