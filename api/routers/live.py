"""Live view: WebRTC offer/answer for a camera, and what to draw over its video."""
from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from gridwatch.config import GridwatchConfig
from gridwatch.telemetry import Telemetry

from ..auth import PAGE, AnyUser, check_grid
from ..deps import get_config, get_telemetry
from ..schemas import ErrorOut

router = APIRouter()
Config = Annotated[GridwatchConfig, Depends(get_config)]


class SessionDescription(BaseModel):
    sdp: str = Field(min_length=1, max_length=100_000)
    type: Literal["offer", "answer"]


class Overlay(BaseModel):
    ts: float | None = Field(default=None, description="wall time the analysed frame arrived from the camera (the "
                             "live view's frames carry the same clock, so the page draws each overlay over its own "
                             "frame); null: no recent analysis")
    boxes: list[list[float]] = Field(default_factory=list, description="people, [x1, y1, x2, y2] in 0..1")
    zones: dict[str, int] = Field(default_factory=dict, description="people per zone")
    now: float = Field(default_factory=time.time,
                       description="the server's wall time of this answer: how old ``ts`` is, on the server's clock")
    recent: list[dict] = Field(default_factory=list, description="the camera's last few analyses (ts, boxes, zones), "
                               "oldest first: the page matches each video frame to the one of its moment")


def _camera(cfg: GridwatchConfig, camera_id: str):
    try:
        return cfg.camera(camera_id)
    except KeyError:
        raise HTTPException(404, f"no camera {camera_id}") from None


@router.post("/api/cameras/{camera_id}/webrtc", tags=["live"],
             responses={404: {"model": ErrorOut}, 502: {"model": ErrorOut}})
async def webrtc_offer(camera_id: str, offer: SessionDescription, request: Request, cfg: Config,
                       user: AnyUser) -> SessionDescription:
    """Send the browser's SDP offer; the answer carries the camera's video (H.264 passed through from RTSP)."""
    if offer.type != "offer":
        raise HTTPException(422, "type must be 'offer'")
    cam = _camera(cfg, camera_id)
    check_grid(user, cam.grid)
    try:
        answer = await request.app.state.live.answer(cam, offer.sdp, offer.type, cfg.settings.media_dirs)
    except (OSError, LookupError) as err:  # the camera cannot be reached now
        raise HTTPException(502, f"camera {camera_id} cannot be opened: {err}") from None
    return SessionDescription(sdp=answer.sdp, type=answer.type)


@router.get("/api/cameras/{camera_id}/overlay", tags=["live"], responses={404: {"model": ErrorOut}})
def overlay(camera_id: str, cfg: Config, telemetry: Annotated[Telemetry, Depends(get_telemetry)],
            user: AnyUser) -> Overlay:
    check_grid(user, _camera(cfg, camera_id).grid)
    recent = telemetry.recent_overlays(camera_id)  # the newest is the last: one read, not two
    return Overlay(**(recent[-1] if recent else {}), recent=recent)


@router.get("/live/{camera_id}", include_in_schema=False, dependencies=[PAGE])
def live_page(camera_id: str, cfg: Config, request: Request) -> FileResponse:
    _camera(cfg, camera_id)
    return FileResponse(request.app.state.static_dir / "live.html")
