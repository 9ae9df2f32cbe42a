"""The queue's other views: pending deliveries, dead letters, escalations, police liaison, feedback per zone."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from alerts import CaseStore
from alerts.cases import Verdict
from gridwatch.config import GridwatchConfig

from ..auth import STAFF, AnyUser, check_grid
from ..deps import get_config, get_store
from ..pagination import Paging, paging
from ..schemas import ErrorOut, PendingOut, StreamEntry, ZoneReportRow

router = APIRouter()
Store = Annotated[CaseStore, Depends(get_store)]
Config = Annotated[GridwatchConfig, Depends(get_config)]
Page = Annotated[Paging, paging(100, 1000)]


def _grid(cfg: GridwatchConfig, grid_id: str) -> str:
    if grid_id not in {g.id for g in cfg.grids}:
        raise HTTPException(404, f"no grid {grid_id}")
    return grid_id


@router.get("/grids/{grid_id}/pending", tags=["queue"], responses={404: {"model": ErrorOut}})
def pending(grid_id: str, store: Store, cfg: Config, user: AnyUser, page: Page) -> list[PendingOut]:
    """Cases taken by a worker's client and not yet accepted (XPENDING): who has them, for how long, how often."""
    check_grid(user, _grid(cfg, grid_id))
    return page.page([PendingOut(**p) for p in store.pending(grid_id)])


@router.get("/grids/{grid_id}/escalations", tags=["queue"], responses={404: {"model": ErrorOut}})
def escalations(grid_id: str, store: Store, cfg: Config, user: AnyUser, page: Page) -> list[StreamEntry]:
    """The grid supervisor's stream: cases whose time limit ran out, newest first."""
    check_grid(user, _grid(cfg, grid_id))
    return page.page([StreamEntry.of(e) for e in store.escalations(grid_id, page.want)])


@router.get("/deadletter", tags=["queue"], dependencies=[STAFF])
def dead_letters(store: Store, page: Page) -> list[StreamEntry]:
    """Cases handed out too many times without a worker accepting them; the operators take them over."""
    return page.page([StreamEntry.of(e) for e in store.dead_letters(page.want)])


@router.get("/police", tags=["queue"], dependencies=[STAFF])
def police(store: Store, page: Page) -> list[StreamEntry]:
    """The police-liaison stream: every fight, from its alert through each step of its case."""
    return page.page([StreamEntry.of(e) for e in store.police_stream(page.want)])


@router.get("/feedback", tags=["feedback"], dependencies=[STAFF])
def feedback(store: Store, page: Page, verdict: Verdict | None = None,
             ) -> list[StreamEntry]:
    """The verdicts of the people who went, each with its evidence (snapshot, clip, photos), newest first."""
    return page.page([StreamEntry.of(e) for e in store.feedback(page.want, verdict)])


@router.get("/reports/zones", tags=["feedback"], dependencies=[STAFF])
def zone_report(store: Store, cfg: Config, page: Page) -> list[ZoneReportRow]:
    """Per camera zone and kind: alerts, confirmed, false alarms, not found; with the zone's current rule.

    A zone with many false alarms wants a higher threshold or a longer hold.
    """
    rules = {(c.id, z.id): getattr(z, "crowding", None) for c in cfg.cameras for z in c.zones}
    rows = []
    for r in store.zone_report():
        rule = rules.get((r["camera_id"], r["zone_id"])) if r["kind"] == "crowding" else None
        rows.append(ZoneReportRow(**r, threshold=getattr(rule, "threshold", None), hold_s=getattr(rule, "hold_s", None)))
    return page.page(rows, len(rows))
