"""Cameras and grids: what is configured and how each camera is doing."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from alerts import CaseStore
from gridwatch.config import GridwatchConfig

from ..deps import get_config, get_store
from ..schemas import CameraOut, GridOut, ZoneOut

router = APIRouter(prefix="/api")
Store = Annotated[CaseStore, Depends(get_store)]
Config = Annotated[GridwatchConfig, Depends(get_config)]

@router.get("/health", tags=["system"])
def health(store: Store) -> dict:
    store.r.ping()
    return {"status": "ok"}


@router.get("/grids", tags=["cameras"])
def list_grids(cfg: Config) -> list[GridOut]:
    return [GridOut(id=g.id, name=g.name, parent=g.parent) for g in cfg.grids]


@router.get("/cameras", tags=["cameras"])
def list_cameras(cfg: Config, store: Store) -> list[CameraOut]:
    """Every configured camera with its live health, as last reported by the pipeline."""
    health = store.health()
    out = []
    for c in cfg.cameras:
        h = health.get(c.id, {})
        counts = h.get("zones", {})
        out.append(CameraOut(
            id=c.id, name=c.name, grid=c.grid, lat=c.lat, lon=c.lon, fps=c.fps, url=c.safe_url,
            zones=[ZoneOut(id=z.id, name=z.name, polygon=z.polygon, count=counts.get(z.id)) for z in c.zones],
            **{k: h[k] for k in ("state", "since", "frames_in", "frames_analysed", "frames_dropped", "reconnects",
                                 "last_error") if k in h},
        ))
    return out
