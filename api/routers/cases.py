"""Alerts and cases: list, read, act on, take from a grid's queue, evidence, live push."""
from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable
from typing import Annotated, Literal

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from alerts import CaseNotFound, CaseStore, EvidenceStore, IllegalTransition
from gridwatch.config import GridwatchConfig

from ..deps import get_config, get_evidence, get_store
from ..schemas import CaseDetail, CaseOut, ErrorOut, TransitionIn

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api")
Store = Annotated[CaseStore, Depends(get_store)]
Config = Annotated[GridwatchConfig, Depends(get_config)]


@router.get("/alerts", tags=["cases"])
def list_alerts(
    store: Store,
    grid: str | None = None,
    camera: str | None = None,
    kind: Literal["crowding", "conflict"] | None = None,
    state: Literal["new", "acknowledged", "dispatched", "verified", "closed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[CaseOut]:
    """Alerts, newest first; each alert is one case."""
    return [CaseOut.of(c) for c in store.list(grid=grid, camera=camera, kind=kind, state=state, limit=limit)]


@router.get("/cases/{case_id}", tags=["cases"], responses={404: {"model": ErrorOut}})
def get_case(case_id: str, store: Store) -> CaseDetail:
    try:
        return CaseDetail.of(store.get(case_id))
    except CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None


@router.post("/cases/{case_id}/{action}", tags=["cases"],
             responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}})
def act_on_case(case_id: str, action: Literal["acknowledge", "dispatch", "verify", "close"], body: TransitionIn,
                store: Store) -> CaseDetail:
    """Move a case on: acknowledge, dispatch (worker), verify (verdict), close. 409 when not allowed now."""
    try:
        store.transition(case_id, action, body.actor, worker=body.worker, verdict=body.verdict, note=body.note)
        return CaseDetail.of(store.get(case_id))
    except CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None
    except IllegalTransition as err:
        raise HTTPException(409, str(err)) from None
    except ValueError as err:
        raise HTTPException(422, str(err)) from None


@router.post("/grids/{grid_id}/take", tags=["cases"], responses={204: {"description": "nothing waiting"}})
def take_case(grid_id: str, worker: Annotated[str, Query(min_length=1, max_length=64)], store: Store,
              cfg: Config) -> CaseOut | None:
    """A grid worker's client takes the next case of its grid (consumer group read)."""
    if grid_id not in {g.id for g in cfg.grids}:
        raise HTTPException(404, f"no grid {grid_id}")
    case = store.take(grid_id, worker)
    if case is None:
        raise HTTPException(204)
    return CaseOut.of(case)


@router.get("/evidence/{name}", tags=["cases"], response_class=FileResponse, responses={404: {"model": ErrorOut}})
def evidence(name: str, store: Annotated[EvidenceStore, Depends(get_evidence)]):
    path = store.path(name)
    if path is None:
        raise HTTPException(404, f"no evidence {name}")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400, immutable"})


@router.get("/events", tags=["cases"], response_class=EventSourceResponse)
async def events(request: Request,
                 last_event_id: Annotated[str | None, Header()] = None) -> AsyncIterable[ServerSentEvent]:
    """Pushes ``case.created`` and ``case.updated`` as they happen; resumes after ``Last-Event-ID``."""
    store: CaseStore = request.app.state.store
    client = aioredis.from_url(request.app.state.redis_url, socket_timeout=30)
    last = last_event_id or "$"
    try:
        while not await request.is_disconnected():
            try:
                got = await client.xread({store.events_stream: last}, block=5000, count=100)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as err:
                # Redis restarting: end this stream; the browser's EventSource reconnects with
                # Last-Event-ID and resumes where it stopped
                log.warning("event stream interrupted: %s", err)
                return
            for _, entries in got or []:
                for msg_id, fields in entries:
                    last = msg_id.decode()
                    case = json.loads(fields[b"case"])
                    yield ServerSentEvent(id=last, event=fields[b"type"].decode(),
                                          raw_data=CaseOut.of(case).model_dump_json())
    finally:
        await client.aclose()
