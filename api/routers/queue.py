"""The queue's other views: pending deliveries, dead letters, escalations, police liaison, feedback per zone."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from alerts import CaseStore
from gridwatch.config import GridwatchConfig

from ..deps import get_config, get_store
from ..schemas import ErrorOut, PendingOut, StreamEntry, ZoneReportRow

router = APIRouter()
Store = Annotated[CaseStore, Depends(get_store)]
Config = Annotated[GridwatchConfig, Depends(get_config)]
Count = Annotated[int, Query(ge=1, le=1000)]


def _grid(cfg: GridwatchConfig, grid_id: str) -> str:
    if grid_id not in {g.id for g in cfg.grids}:
        raise HTTPException(404, f"no grid {grid_id}")
    return grid_id


@router.get("/grids/{grid_id}/pending", tags=["queue"], responses={404: {"model": ErrorOut}})
def pending(grid_id: str, store: Store, cfg: Config) -> list[PendingOut]:
    """Cases taken by a worker's client and not yet accepted (XPENDING): who has them, for how long, how often."""
    return [PendingOut(**p) for p in store.pending(_grid(cfg, grid_id))]


@router.get("/grids/{grid_id}/escalations", tags=["queue"], responses={404: {"model": ErrorOut}})
def escalations(grid_id: str, store: Store, cfg: Config, count: Count = 100) -> list[StreamEntry]:
    """The grid supervisor's stream: cases whose time limit ran out, newest first."""
    return [StreamEntry.of(e) for e in store.escalations(_grid(cfg, grid_id), count)]


@router.get("/deadletter", tags=["queue"])
def dead_letters(store: Store, count: Count = 100) -> list[StreamEntry]:
    """Cases handed out too many times without a worker accepting them; the operators take them over."""
    return [StreamEntry.of(e) for e in store.dead_letters(count)]


@router.get("/police", tags=["queue"])
def police(store: Store, count: Count = 100) -> list[StreamEntry]:
    """The police-liaison stream: every fight, from its alert through each step of its case."""
    return [StreamEntry.of(e) for e in store.police_stream(count)]


@router.get("/feedback", tags=["feedback"])
def feedback(store: Store, verdict: Literal["confirmed", "false_alarm", "not_found"] | None = None,
             count: Count = 100) -> list[StreamEntry]:
    """The verdicts of the people who went, each with its evidence (snapshot, clip, photos), newest first."""
    return [StreamEntry.of(e) for e in store.feedback(count, verdict)]


@router.get("/reports/zones", tags=["feedback"])
def zone_report(store: Store, cfg: Config) -> list[ZoneReportRow]:
    """Per camera zone and kind: alerts, confirmed, false alarms, not found; with the zone's current rule.

    A zone with many false alarms wants a higher threshold or a longer hold.
    """
    rules = {(c.id, z.id): getattr(z, "crowding", None) for c in cfg.cameras for z in c.zones}
    rows = []
    for r in store.zone_report():
        rule = rules.get((r["camera_id"], r["zone_id"])) if r["kind"] == "crowding" else None
        rows.append(ZoneReportRow(**r, threshold=getattr(rule, "threshold", None), hold_s=getattr(rule, "hold_s", None)))
    return rows
