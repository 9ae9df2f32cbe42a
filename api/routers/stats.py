"""Statistics for the stats page: alerts per day by grid, camera and kind; confirmation rate; response times."""
from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from alerts import CaseStore

from ..auth import PAGE, Staff, check_grid
from ..deps import get_store
from ..schemas import DayCount, Quantiles, StatsOut

router = APIRouter()
Store = Annotated[CaseStore, Depends(get_store)]


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def _quantiles(values: list[float]) -> Quantiles:
    if not values:
        return Quantiles(n=0, p50_s=None, p90_s=None)
    p50, p90 = np.percentile(np.asarray(values, float), [50, 90])
    return Quantiles(n=len(values), p50_s=round(float(p50), 2), p90_s=round(float(p90), 2))


def _counts(rows: list[tuple[str, str]]) -> list[DayCount]:
    return [DayCount(day=d, key=k, alerts=n) for (d, k), n in sorted(Counter(rows).items())]


def compute(store: CaseStore, since: float, grid: str | None = None, scan: int = 20000) -> dict:
    """One pass over the recent cases and their audit logs (read in one pipeline)."""
    cases = [c for c in store.list(grid=grid, limit=scan, scan=scan) if c.created_at >= since]
    pipe = store.r.pipeline(transaction=False)
    for c in cases:
        pipe.lrange(store.k("case", c.id, "history"), 0, -1)
    histories = pipe.execute() if cases else []
    ack, site, close = [], [], []
    for c, raw in zip(cases, histories):
        first: dict[str, float] = {}
        for h in map(json.loads, raw):
            first.setdefault(h["action"], h["ts"])
        t0 = c.created_at
        for action, out in (("acknowledge", ack), ("arrive", site), ("close", close)):
            if action in first:
                out.append(max(0.0, first[action] - t0))
    resolved = [c for c in cases if c.verdict]
    confirmed = sum(c.verdict == "confirmed" for c in resolved)
    days, d = [], since
    while d <= time.time():
        days.append(_day(d))
        d += 86400
    return dict(
        since=since, days=days, alerts=len(cases),
        by_grid=_counts([(_day(c.created_at), c.grid_id) for c in cases]),
        by_camera=_counts([(_day(c.created_at), c.camera_id) for c in cases]),
        by_kind=_counts([(_day(c.created_at), c.kind) for c in cases]),
        resolved=len(resolved), confirmed=confirmed,
        confirmation_rate=round(confirmed / len(resolved), 4) if resolved else None,
        time_to_acknowledge=_quantiles(ack), time_to_site=_quantiles(site), time_to_close=_quantiles(close),
    )


@router.get("/api/stats", tags=["stats"])
def stats(store: Store, user: Staff,
          days: Annotated[int, Query(ge=1, le=90, description="the last this many days (UTC), today included")] = 7,
          grid: Annotated[str | None, Query(max_length=64, description="one grid only")] = None) -> StatsOut:
    """Alerts per day by grid, camera and kind; confirmation rate; time to acknowledge, reach the site, close."""
    if grid:
        check_grid(user, grid)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    return StatsOut(**compute(store, today - (days - 1) * 86400, grid))


@router.get("/stats", include_in_schema=False, dependencies=[PAGE])
def stats_page(request: Request) -> FileResponse:
    return FileResponse(request.app.state.static_dir / "stats.html")
