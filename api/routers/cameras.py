"""Cameras and grids: what is configured and how each camera is doing."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from alerts import CaseStore
from gridwatch.config import Camera, GridwatchConfig
from gridwatch.telemetry import Telemetry
from streams.urls import mask_text, mask_url_field, url_secrets

from ..auth import STAFF, AnyUser, check_grid
from ..deps import get_config, get_store, get_telemetry
from ..pagination import Paging, paging
from ..schemas import CameraOut, CameraOwnerOut, ErrorOut, FleetOut, GridOut, InferenceOut, WorkerOut, ZoneOut

router = APIRouter(prefix="/api")
Store = Annotated[CaseStore, Depends(get_store)]
Config = Annotated[GridwatchConfig, Depends(get_config)]
Health = Annotated[Telemetry, Depends(get_telemetry)]

_HEALTH_FIELDS = set(CameraOut.model_fields) - {"id", "name", "grid", "lat", "lon", "fps", "url", "view_url", "zones"}


@router.get("/health", tags=["system"])
def health(store: Store) -> dict:
    store.r.ping()
    return {"status": "ok"}


@router.get("/grids", tags=["cameras"])
def list_grids(cfg: Config, user: AnyUser, page: Annotated[Paging, paging(1000, 5000)]) -> list[GridOut]:
    return page.page([GridOut(id=g.id, name=g.name, parent=g.parent) for g in cfg.grids], len(cfg.grids))


def camera_out(c: Camera, h: dict) -> CameraOut:
    """A camera as anyone who sees its grid may see it: every secret of its URLs masked, in its error too.

    The reader masks its error already; masking again here, with this camera's known secrets,
    also covers what an older reader (or another process) reported.
    """
    counts = h.get("zones", {})
    health = {k: v for k, v in h.items() if k in _HEALTH_FIELDS}
    if health.get("last_error"):
        health["last_error"] = mask_text(health["last_error"], url_secrets(c.url) + url_secrets(c.view_url))
    return CameraOut(
        id=c.id, name=c.name, grid=c.grid, lat=c.lat, lon=c.lon, fps=c.fps, url=mask_url_field(c.url),
        view_url=mask_url_field(c.view_url),
        zones=[ZoneOut(id=z.id, name=z.name, polygon=z.polygon, count=counts.get(z.id)) for z in c.zones],
        **health,
    )


@router.get("/cameras", tags=["cameras"])
def list_cameras(cfg: Config, telemetry: Health, user: AnyUser,
                 page: Annotated[Paging, paging(1000, 1000)]) -> list[CameraOut]:
    """Every configured camera (a grid worker's: those of their grids) with its live health, as last reported."""
    health = telemetry.cameras()
    cams = [c for c in cfg.cameras if user.sees_grid(c.grid)]
    page.headers(len(cams))
    return [camera_out(c, health.get(c.id, {})) for c in cams[page.offset:page.offset + page.limit]]


@router.get("/cameras/{camera_id}", tags=["cameras"], responses={404: {"model": ErrorOut}})
def get_camera(camera_id: str, cfg: Config, telemetry: Health, user: AnyUser) -> CameraOut:
    try:
        cam = cfg.camera(camera_id)
    except KeyError:
        raise HTTPException(404, f"no camera {camera_id}") from None
    check_grid(user, cam.grid)
    return camera_out(cam, telemetry.cameras().get(camera_id, {}))


@router.get("/fleet", tags=["system"], dependencies=[STAFF])
def fleet(cfg: Config, telemetry: Health) -> FleetOut:
    """The worker processes and which camera each owns; a camera whose worker died shows as unowned until another
    takes it (never as online from its last record)."""
    workers = telemetry.workers()
    health = telemetry.cameras(workers)
    owners = telemetry.owners(workers)
    cams = [CameraOwnerOut(id=c.id, grid=c.grid, worker=owners.get(c.id),
                           state=health.get(c.id, {}).get("state", "unknown") if c.id in owners else
                           ("unowned" if c.id in health else "unknown"))
            for c in cfg.cameras if c.enabled]
    return FleetOut(workers=[WorkerOut(**{k: w[k] for k in ("name", "host", "pid", "capacity", "started", "heartbeat",
                                                             "cameras")},
                                       fenced=w.get("pipeline", {}).get("fenced", 0),
                                       inference=InferenceOut(**{k: v for k, v in w.get("pipeline", {}).items()
                                                                 if k in InferenceOut.model_fields}))
                             for w in workers],
                    cameras=cams, unowned=sum(1 for c in cams if c.worker is None))


@router.get("/pipeline", tags=["system"], dependencies=[STAFF])
def pipeline_stats(telemetry: Health) -> dict:
    """The inference loop's numbers: frames, batches, fps, latency; empty when no pipeline reports."""
    return telemetry.pipeline()
