"""Alerts and cases: list, read, act on, notes and photos, take from a grid's queue, evidence, live push.

The queue's background work (escalation, dead letters, retention, outputs) is started by whoever assembles
the service (gridwatch.service.Service), not by including this router.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable
from typing import Annotated, Literal

import redis.asyncio as aioredis
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from alerts import Case, CaseNotFound, CaseStore, EvidenceStore, IllegalTransition
from alerts.cases import Action, CaseState
from alerts.evidence import PhotoTooLarge
from gridwatch.config import GridwatchConfig
from vision.detections import IncidentKind

from ..auth import AnyUser, check_case, check_grid, visible_cases, worker_may
from ..deps import get_config, get_evidence, get_redis_url, get_store
from ..errors import RETRY_AFTER_S
from ..pagination import Paging, paging
from ..schemas import AuditOut, CaseDetail, CaseOut, ErrorOut, NoteIn, TakenCase, TransitionIn, case_out_json
from . import queue

log = logging.getLogger(__name__)


router = APIRouter(prefix="/api")
Store = Annotated[CaseStore, Depends(get_store)]
Config = Annotated[GridwatchConfig, Depends(get_config)]
Evidence = Annotated[EvidenceStore, Depends(get_evidence)]
NOT_FOUND = {404: {"model": ErrorOut}}


def _case_or_404(store: CaseStore, case_id: str) -> Case:
    try:
        return store.get(case_id)
    except CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None


async def _store(request: Request) -> CaseStore:
    """``get_store`` without a thread hop (a sync dependency runs in the thread pool)."""
    return request.app.state.store


def _aclient(request: Request) -> aioredis.Redis:
    """The app's asyncio Redis client (same server as the store), made on first use in the server's event loop
    (an asyncio client belongs to one loop: an app served again in another loop gets another)."""
    state, loop = request.app.state, asyncio.get_running_loop()
    held = getattr(state, "aredis", None)
    if held is None or held[0] is not loop:
        held = state.aredis = (loop, aioredis.from_url(state.redis_url, socket_timeout=10, socket_connect_timeout=5))
    return held[1]


@router.get("/alerts", tags=["cases"], response_model=list[CaseOut])
async def list_alerts(
    request: Request,
    store: Annotated[CaseStore, Depends(_store)],
    grid: str | None = None,
    camera: str | None = None,
    kind: IncidentKind | None = None,
    state: CaseState | None = None,
    worker: str | None = None,
    sort: Literal["time", "priority"] = "time",
    *, user: AnyUser, page: Annotated[Paging, paging(50, 500)],
) -> Response:
    """Alerts, newest first (``sort=priority``: open cases first, fights first, then newest); each alert is one case.

    A grid worker gets their grids' alerts only.
    """
    filters = {"grid": grid, "camera": camera, "kind": kind, "state": state, "worker": worker, "sort": sort,
               "limit": page.want}
    if user.role != "grid_worker" and sort == "time" and not any((grid, camera, kind, state, worker)):
        # the console's plain newest-first page, the most asked: just that many cases (not the 2,000 a filtered
        # scan reads), on the event loop, Redis through asyncio, no thread per request
        rows = await store.alist(_aclient(request), limit=page.want, scan=page.want)
    else:
        # a filtered or priority list reads up to 2,000 cases: the sync client parses a large answer faster
        # than the asyncio one (docs/api-scale.md), in a thread
        rows = await asyncio.to_thread(visible_cases, store, user, **filters)
    # each case's CaseOut JSON is made once per version (api/schemas.py case_out_json)
    return page.json_array(case_out_json(c) for c in page.page(rows))


@router.get("/cases/{case_id}", tags=["cases"], responses=NOT_FOUND)
def get_case(case_id: str, store: Store, user: AnyUser) -> CaseDetail:
    return CaseDetail.of(check_case(user, _case_or_404(store, case_id)))


@router.get("/cases/{case_id}/audit", tags=["cases"], responses=NOT_FOUND)
def audit_case(case_id: str, store: Store, user: AnyUser) -> AuditOut:
    """Checks the case's audit log against its hash chain: was any entry edited or removed?"""
    case = check_case(user, _case_or_404(store, case_id))
    intact, bad = store.verify_history(case_id)
    return AuditOut(case_id=case_id, intact=intact, first_bad=bad, entries=len(case.history))


@router.post("/cases/{case_id}/notes", tags=["cases"], responses={**NOT_FOUND, 409: {"model": ErrorOut}})
def add_note(case_id: str, body: NoteIn, store: Store, user: AnyUser) -> CaseDetail:
    """A note from the worker (or an operator) on the case's timeline."""
    worker_may(user, "note", check_case(user, _case_or_404(store, case_id)), body.actor)
    try:
        store.add_note(case_id, body.actor, body.note, by=user.name)
    except CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None
    except IllegalTransition:
        raise HTTPException(409, f"case {case_id} is closed; notes are taken until it closes") from None
    return CaseDetail.of(store.get(case_id))


@router.post("/cases/{case_id}/photos", tags=["cases"],
             responses={**NOT_FOUND, 409: {"model": ErrorOut}, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}})
async def add_photo(case_id: str, store: Store, evidence: Evidence,
                    actor: Annotated[str, Query(min_length=1, max_length=64)],
                    photo: Annotated[bytes, Body(media_type="image/jpeg", description="the JPEG or PNG file")],
                    user: AnyUser, note: Annotated[str | None, Query(max_length=2000)] = None) -> CaseDetail:
    """A worker's photo: the image file's bytes as the request body (``Content-Type: image/jpeg`` or ``image/png``)."""
    worker_may(user, "photo", check_case(user, await asyncio.to_thread(_case_or_404, store, case_id)), actor)
    try:
        name = await asyncio.to_thread(evidence.save_photo, photo)
    except PhotoTooLarge as err:
        raise HTTPException(413, str(err)) from None
    except ValueError as err:
        raise HTTPException(415, str(err)) from None
    try:
        await asyncio.to_thread(store.add_note, case_id, actor, note, name, user.name)
    except CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None
    except IllegalTransition:
        raise HTTPException(409, f"case {case_id} is closed; photos are taken until it closes") from None
    return CaseDetail.of(await asyncio.to_thread(store.get, case_id))


@router.post("/cases/{case_id}/{action}", tags=["cases"],
             responses={**NOT_FOUND, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}})
def act_on_case(case_id: str, action: Action, body: TransitionIn, store: Store, user: AnyUser) -> CaseDetail:
    """Move a case on. 409 when its state does not allow the action now.

    acknowledge (operator) · dispatch (worker) · accept (the worker who took it from the grid queue) ·
    reassign (worker) · arrive (worker on site) · resolve (verdict: confirmed, false_alarm, not_found) · close

    Grid workers may accept, arrive and resolve their grids' cases, as themselves (``actor`` = their name).
    """
    worker_may(user, action, check_case(user, _case_or_404(store, case_id)), body.actor, body.worker)
    try:
        store.transition(case_id, action, body.actor, worker=body.worker, verdict=body.verdict, note=body.note,
                         by=user.name)
        return CaseDetail.of(store.get(case_id))
    except CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None
    except IllegalTransition as err:
        raise HTTPException(409, str(err)) from None
    except ValueError as err:
        raise HTTPException(422, str(err)) from None


@router.post("/grids/{grid_id}/take", tags=["queue"], responses={204: {"description": "nothing waiting"}, **NOT_FOUND})
def take_case(grid_id: str, worker: Annotated[str, Query(min_length=1, max_length=64)], store: Store, cfg: Config,
              user: AnyUser,
              wait_ms: Annotated[int, Query(ge=0, le=25000, description="wait this long for a case")] = 0
              ) -> TakenCase:
    """A grid worker's client takes the next case of its grid: fights first, then crowds by density.

    Accept it (``POST /api/cases/{id}/accept``) within the claim timeout, or it is handed to another worker.
    """
    if grid_id not in {g.id for g in cfg.grids}:
        raise HTTPException(404, f"no grid {grid_id}")
    check_grid(user, grid_id)
    worker_may(user, "take", None, worker, worker)
    case = store.take(grid_id, worker, block_ms=wait_ms or None)
    if case is None:
        raise HTTPException(204)
    return TakenCase.of(case)


@router.get("/evidence/{name}", tags=["cases"], response_class=FileResponse, responses=NOT_FOUND)
def evidence(name: str, files: Evidence, store: Store, user: AnyUser):
    """Snapshots (JPEG), photos (JPEG, PNG) and clips (MP4, with range requests for seeking).

    A grid worker gets a file only when a case of their grids refers to it (others: 404, as for the cases).
    """
    path = files.path(name)
    if path is None or not _may_see_evidence(store, user, name):
        raise HTTPException(404, f"no evidence {name}")
    return FileResponse(path, media_type=files.media_type(name),
                        headers={"Cache-Control": "max-age=86400, immutable"})


def _redis_away(request: Request, err: Exception) -> ServerSentEvent:
    """The stream's last word while Redis is away: reconnect in a few seconds (the outage is logged once)."""
    request.app.state.redis_outage.failed(err)
    return ServerSentEvent(event="stream.unavailable", retry=RETRY_AFTER_S * 1000,
                           data=json.dumps({"detail": "the case database (Redis) is unavailable; reconnecting"}))


def _may_see_evidence(store: CaseStore, user, name: str) -> bool:
    if user.role != "grid_worker":
        return True  # operators and admins see every case
    for cid in store.evidence_cases(name):
        try:
            if user.sees_grid(store.get(cid).grid_id):
                return True
        except CaseNotFound:
            continue
    return False


def _redis_up(store: Store) -> None:
    """A stream opened while Redis is away is refused (503, Retry-After) before it starts, as every route that needs
    Redis is; the login check no longer asks Redis on every request (gridwatch/accounts.py SessionRevocations)."""
    store.r.ping()


@router.get("/events", tags=["cases"], response_class=EventSourceResponse, dependencies=[Depends(_redis_up)])
async def events(request: Request, user: AnyUser, store: Store, redis_url: Annotated[str, Depends(get_redis_url)],
                 last_event_id: Annotated[str | None, Header()] = None) -> AsyncIterable[ServerSentEvent]:
    """Pushes ``case.created``, ``case.updated``, ``case.escalated`` and ``case.deadletter``; resumes after ``Last-Event-ID``.

    The first event is ``stream.ready``, sent once the stream's start is pinned: everything that happens after it
    is pushed, so a page that (re)loads its lists on ``stream.ready`` misses nothing in between.
    """
    client = aioredis.from_url(redis_url, socket_timeout=30)
    try:
        last = last_event_id or "$"
        if last == "$":  # pin the position at once: "$" in a later XREAD would skip what arrives meanwhile
            try:
                newest = await client.xrevrange(store.events_stream, count=1)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as err:
                yield _redis_away(request, err)
                return
            last = newest[0][0].decode() if newest else "0-0"
        yield ServerSentEvent(event="stream.ready", data=json.dumps({"after": last}))
        while not await request.is_disconnected():
            try:
                got = await client.xread({store.events_stream: last}, block=5000, count=100)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as err:
                # Redis away or restarting: end this stream; the browser's EventSource reconnects (after the
                # retry hint) with Last-Event-ID and resumes where it stopped
                yield _redis_away(request, err)
                return
            for _, entries in got or []:
                for msg_id, fields in entries:
                    last = msg_id.decode()
                    case = Case.model_validate_json(fields[b"case"])
                    if not user.sees_grid(case.grid_id):
                        continue  # a grid worker hears of their grids' cases only
                    yield ServerSentEvent(id=last, event=fields[b"type"].decode(),
                                          raw_data=case_out_json(case).decode())
    finally:
        await client.aclose()


router.include_router(queue.router)
