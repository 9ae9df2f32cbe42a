"""Admin: cameras, zones and their rules, edited while gridwatch runs; the worker and admin pages; the console's map.

Every change is the config model's own: the body is a ``gridwatch.config.Camera`` (or ``Grid``), validated
as the YAML file is, then the whole config is validated again (grid references, unique ids). A valid
change is written to the config file (when there is one) and published on the ``ConfigChannel``: the running
pipeline applies it within about a second, without a restart. Camera passwords never leave the server:
URLs are masked (``rtsp://user:***@host``) and a masked URL sent back keeps the stored password, for the same
scheme, host, port and user only. The camera test and snapshot open only what ``streams.urls.check_source``
allows (RTSP, or video files in ``settings.media_dirs``), and say little about what they found.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Annotated, TypeVar

import cv2
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, ValidationError

from alerts import CaseStore
from gridwatch.config import Camera, Grid, GridwatchConfig, Problem, keep_secret, problems_of, save_config
from gridwatch.configsync import ConfigChannel
from streams.urls import UnsafeSource, has_masked_secret, mask_text, mask_url_field, url_secrets
from vision.counting import calibration_problems

from ..auth import ADMIN, ADMIN_PAGE, ANY, PAGE, AnyUser
from ..deps import get_config, get_config_path, get_store, set_config
from ..schemas import (
    AdminConfigOut,
    AdminSavedOut,
    CameraTestIn,
    ErrorOut,
    MapCamera,
    MapGrid,
    MapOut,
)

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[ADMIN])
console = APIRouter(prefix="/api", tags=["cameras"], dependencies=[ANY])
pages = APIRouter(include_in_schema=False, dependencies=[PAGE])

Actor = Annotated[str, Query(min_length=1, max_length=64, description="who makes the change (audit)")]
INVALID = {422: {"model": ErrorOut, "description": "each problem in errors, with its field path (body.zones.0.polygon)"}}
M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)


def _lock(request: Request) -> threading.Lock:
    """One change at a time per app (made by create_app): each edit reads the config, changes it, publishes it whole."""
    return request.app.state.admin_lock


def _channel(store: CaseStore) -> ConfigChannel:
    return ConfigChannel(store.r, store.p)


Config = Annotated[GridwatchConfig, Depends(get_config)]
Store = Annotated[CaseStore, Depends(get_store)]
ConfigPath = Annotated[Path | None, Depends(get_config_path)]


def _masked(cam: Camera) -> Camera:
    return cam.model_copy(update={"url": mask_url_field(cam.url), "view_url": mask_url_field(cam.view_url)})


def _saved_to(path: Path | None) -> str | None:
    return str(path) if path else None


def _problem(loc: list, msg: str) -> dict:
    return {"loc": loc, "msg": msg, "type": "value_error"}


def _body_problems(problems: list[Problem], section: str, index: int) -> list[dict]:
    """The config's problems as field paths of the item sent: ``cameras[3].zones[0].polygon`` is
    ``body.zones.0.polygon`` when camera 3 is the one being edited, and ``body`` (with its place named) otherwise."""
    out = []
    for p in problems:
        if p.loc[:2] == (section, index):
            out.append(_problem(["body", *p.loc[2:]], p.msg))
        else:
            out.append(_problem(["body"], f"{p.where}: {p.msg}"))
    return out


def _commit(request: Request, current: GridwatchConfig, data: dict, section: str, index: int, actor: str
            ) -> tuple[GridwatchConfig, int]:
    """Validate the config as written with the change, save that to the file, publish it; the app serves its runtime
    copy (paths resolved, derived values filled in) from now on."""
    path = get_config_path(request)
    base = current.base or (Path(path).resolve().parent if path else None)
    try:
        written = GridwatchConfig.model_validate(data, context={"base": base} if base else None)
    except ValidationError as err:
        raise HTTPException(422, _body_problems(problems_of(err), section, index)) from None
    cfg = written.resolve_paths(base) if base is not None else written
    mine = [p for p in calibration_problems(cfg, base) if p.loc[:2] == (section, index)]
    if mine:  # a count calibration fitted for other detections than this config's detector gives
        raise HTTPException(422, _body_problems(mine, section, index))
    if path:
        try:
            save_config(cfg, path)
        except OSError as err:
            raise HTTPException(500, f"cannot write {path}: {err.strerror or err}; nothing was changed") from None
    version = _channel(get_store(request)).publish(cfg, actor)
    set_config(request, cfg)
    return cfg, version


def _edited(written: GridwatchConfig, section: str, items: list) -> dict:
    """The config as written, with one section replaced: only the sections the user wrote, plus that one."""
    return {**{k: getattr(written, k) for k in written.model_fields_set}, section: items}


def _as_written(new: M, old: M | None) -> M:
    """An edited item as its user would write it: what differs from the defaults, plus whatever they had written
    before (even where it equals a default now). The form sends every field; saving all of them would bury the
    few the admin chose under the defaults, and fix today's defaults into the file."""
    def keep(full, changed, before):
        if isinstance(full, dict):
            changed = changed if isinstance(changed, dict) else {}
            before = before if isinstance(before, dict) else {}
            return {k: keep(v, changed.get(k), before.get(k)) for k, v in full.items() if k in changed or k in before}
        if isinstance(full, list) and full and all(isinstance(x, dict) for x in full):  # zones: matched by id
            olds = {b.get("id"): b for b in before or () if isinstance(b, dict)}
            news = changed if isinstance(changed, list) and len(changed) == len(full) else [{}] * len(full)
            return [keep(f, c, olds.get(f.get("id"))) for f, c in zip(full, news)]
        return full

    data = keep(new.model_dump(mode="json"), new.model_dump(mode="json", exclude_defaults=True),
                old.model_dump(mode="json", exclude_unset=True) if old is not None else None)
    return type(new).model_validate(data)


def _who(request: Request, actor: str) -> str:
    """The logged-in user when there is one (access control), else the ``actor`` the client names."""
    user = getattr(request.state, "user", None)
    return getattr(user, "name", None) or actor


# ---- config -----------------------------------------------------------------------------------------------------
@router.get("/schema")
def camera_schema() -> dict:
    """The JSON Schema of a camera (with its zones and rules): the admin page builds its form from it."""
    return Camera.model_json_schema()


@router.get("/config")
def admin_config(cfg: Config, store: Store, path: ConfigPath) -> AdminConfigOut:
    """Grids and cameras as configured now (passwords masked), with the running config's version."""
    cfg = cfg.written  # as written: no derived thresholds, relative paths
    return AdminConfigOut(version=_channel(store).version(), saved_to=_saved_to(path),
                          grids=cfg.grids, cameras=[_masked(c) for c in cfg.cameras])


def _exists_as_asked(ids: list[str], key: str, create: bool, what: str) -> None:
    """409 when adding what exists, 404 when changing what does not."""
    if create and key in ids:
        raise HTTPException(409, f"{what} {key} exists already; choose another id")
    if not create and key not in ids:
        raise HTTPException(404, f"no {what} {key}; to add it, send create=true")


@router.put("/cameras/{camera_id}", responses={**INVALID, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
def put_camera(camera_id: str, camera: Camera, request: Request, current: Config, path: ConfigPath,
               actor: Actor = "admin",
               create: Annotated[bool, Query(description="a new camera: 409 if camera_id exists")] = False,
               ) -> AdminSavedOut:
    """Add a camera (``create=true``) or replace one (its zones and rules too; ``camera.id`` may rename it).

    A URL sent back with the masked password (``***``) keeps the stored password.
    """
    with _lock(request):
        written = current.written
        ids = [c.id for c in written.cameras]
        _exists_as_asked(ids, camera_id, create, "camera")
        old = written.camera(camera_id) if camera_id in ids else None
        url = keep_secret(camera.url, old.url if old else None)
        view_url = keep_secret(camera.view_url, (old.view_url or old.url) if old else None)
        problems = [_problem(["body", f], RETYPE) for f, u in (("url", url), ("view_url", view_url))
                    if has_masked_secret(u)]
        if problems:
            raise HTTPException(422, problems)
        new = _as_written(camera.model_copy(update={"url": url, "view_url": view_url}), old)
        cams = list(written.cameras)
        index = ids.index(camera_id) if old else len(cams)
        cams[index:index + 1] = [new]
        cfg, version = _commit(request, current, _edited(written, "cameras", cams), "cameras", index,
                               _who(request, actor))
    return AdminSavedOut(version=version, saved_to=_saved_to(path), camera=_masked(cfg.written.camera(new.id)))


@router.delete("/cameras/{camera_id}", responses={404: {"model": ErrorOut}})
def delete_camera(camera_id: str, request: Request, current: Config, path: ConfigPath,
                  actor: Actor = "admin") -> AdminSavedOut:
    with _lock(request):
        written = current.written
        if camera_id not in {c.id for c in written.cameras}:
            raise HTTPException(404, f"no camera {camera_id}")
        data = _edited(written, "cameras", [c for c in written.cameras if c.id != camera_id])
        _, version = _commit(request, current, data, "cameras", -1, _who(request, actor))
    return AdminSavedOut(version=version, saved_to=_saved_to(path))


@router.put("/grids/{grid_id}", responses={**INVALID, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
def put_grid(grid_id: str, grid: Grid, request: Request, current: Config, path: ConfigPath, actor: Actor = "admin",
             create: bool = False) -> AdminSavedOut:
    """Add a grid (``create=true``) or change one: its name, parent and map outline (GeoJSON Polygon)."""
    with _lock(request):
        written = current.written
        ids = [g.id for g in written.grids]
        _exists_as_asked(ids, grid_id, create, "grid")
        if not create and grid.id != grid_id:
            raise HTTPException(422, [_problem(["body", "id"], "a grid's id cannot change here: cameras and cases refer to it")])
        grids = list(written.grids)
        index = ids.index(grid_id) if grid_id in ids else len(grids)
        grid = _as_written(grid, written.grids[index] if grid_id in ids else None)
        grids[index:index + 1] = [grid]
        _, version = _commit(request, current, _edited(written, "grids", grids), "grids", index, _who(request, actor))
    return AdminSavedOut(version=version, saved_to=_saved_to(path), grid=grid)


# ---- pictures from cameras ----------------------------------------------------------------------------------------
RETYPE = ("type the password again: the stored one is kept only for the same scheme, host, port and user "
          "(and there must be one)")


async def _jpeg(url: str, cfg: GridwatchConfig, loc: list) -> Response:
    """One picture from an allowed URL; a failure is 502 with a coarse message, the detail goes to the log."""
    from streams.snapshot import MESSAGES, SnapshotError, grab

    try:  # grab asks streams.urls.check_source first: a URL that may not be opened is refused before any I/O
        img = await asyncio.to_thread(grab, url, list(cfg.settings.media_dirs), 8.0)
    except UnsafeSource as err:
        raise HTTPException(422, [_problem(loc, err.reason)]) from None
    except SnapshotError as err:
        log.warning("camera picture from %s failed (%s): %s", mask_url_field(url), err.kind, err.detail)
        raise HTTPException(502, str(err)) from None
    except Exception as err:  # noqa: BLE001 - any other failure is the camera's too; only the log says which
        log.warning("camera picture from %s failed: %s", mask_url_field(url),
                    mask_text(f"{type(err).__name__}: {err}", url_secrets(url)))
        raise HTTPException(502, f"{mask_url_field(url)}: {MESSAGES['unreachable']}") from None
    _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    h, w = img.shape[:2]
    return Response(buf.tobytes(), media_type="image/jpeg",
                    headers={"Cache-Control": "no-store", "X-Width": str(w), "X-Height": str(h)})


_JPEG = {200: {"content": {"image/jpeg": {}}, "description": "a picture from the camera, now"},
         422: {"model": ErrorOut, "description": "a URL that may not be opened (only rtsp://, rtsps:// and video "
                                                 "files in settings.media_dirs), or a masked password to type"},
         502: {"model": ErrorOut, "description": "no picture: unreachable, a wrong password, or not a video"}}


@router.post("/cameras/test", response_class=Response, responses=_JPEG)
async def test_camera(body: CameraTestIn, cfg: Config) -> Response:
    """Connect to a URL (as typed in the form) and return one picture.

    A masked password uses the stored one of ``camera_id``, for the same scheme, host, port and user only.
    """
    url = body.url
    if has_masked_secret(url) and body.camera_id:
        try:
            old = cfg.camera(body.camera_id)
        except KeyError:
            old = None
        for stored in (old.url, old.view_url) if old is not None else ():
            kept = keep_secret(body.url, stored) if stored else None
            if kept and not has_masked_secret(kept):
                url = kept
                break
    if has_masked_secret(url):
        raise HTTPException(422, [_problem(["body", "url"], RETYPE)])
    return await _jpeg(url, cfg, ["body", "url"])


@router.get("/cameras/{camera_id}/snapshot", response_class=Response, responses={**_JPEG, 404: {"model": ErrorOut}})
async def camera_snapshot(camera_id: str, cfg: Config) -> Response:
    """A picture from the camera's analysed stream now: the zone editor draws over it."""
    try:
        cam = cfg.camera(camera_id)
    except KeyError:
        raise HTTPException(404, f"no camera {camera_id}") from None
    return await _jpeg(cam.url, cfg, ["url"])


# ---- conflict model versions (learning from the room: gridwatch/learning.py) ------------------------------------------
class ConflictVersionOut(BaseModel):
    name: str
    shipped: bool = Field(description="shipped with gridwatch; otherwise made by `gridwatch conflict retrain`")
    active: bool = Field(description="the version every worker runs now (settings.conflict_model)")
    default: bool = Field(description="the version a config without settings.conflict_model runs")
    parent: str | None = Field(default=None, description="the version that was active when it was made")
    created: str | None = None
    base_cv: dict | None = Field(default=None, description="base data cross-validation grouped by source video: "
                                                           "accuracy, precision, recall, f1, ...")
    parent_base_cv: dict | None = Field(default=None, description="the parent's base CV, scored by the same rule")
    held_back: dict | None = Field(default=None, description="the site's held-back verdicts: new and current")
    training: dict | None = None
    promoted: bool | None = None
    decision: str | None = Field(default=None, description="why it was (not) promoted")


class ConflictModelsOut(BaseModel):
    active: str
    default: str
    config_version: int
    versions: list[ConflictVersionOut]


def _conflict_models(cfg: GridwatchConfig, store: CaseStore) -> ConflictModelsOut:
    from models.conflict.registry import Registry

    reg = Registry.for_config(cfg)
    active = reg.active_name(cfg)
    return ConflictModelsOut(active=active, default=reg.default, config_version=_channel(store).version(),
                             versions=[ConflictVersionOut(**v.summary(active, reg.default)) for v in reg.versions()])


@router.get("/conflict/models")
def conflict_models(cfg: Config, store: Store) -> ConflictModelsOut:
    """The conflict model versions with their scores (base CV, held-back verdicts) and which one runs."""
    return _conflict_models(cfg, store)


@router.post("/conflict/models/{version}/activate", responses={404: {"model": ErrorOut}})
def activate_conflict_model(version: str, request: Request, current: Config, store: Store, path: ConfigPath,
                            actor: Actor = "admin") -> ConflictModelsOut:
    """Run ``version`` on every worker from now on (``settings.conflict_model``, saved and published like every
    admin change); rolling back is activating an older version."""
    from models.conflict.registry import UnknownVersion, activate

    with _lock(request):
        try:
            cfg, _ = activate(current, version, channel=_channel(store), config_path=path, actor=_who(request, actor))
        except UnknownVersion as err:
            raise HTTPException(404, str(err)) from None
        except OSError as err:
            raise HTTPException(500, f"cannot write {path}: {err.strerror or err}; nothing was changed") from None
        set_config(request, cfg)
    return _conflict_models(cfg, store)


# ---- the console's map ----------------------------------------------------------------------------------------------
@console.get("/map")
def map_data(cfg: Config, user: AnyUser) -> MapOut:
    """Grids with their GeoJSON outlines and cameras with their positions, for the operator console's map."""
    return MapOut(grids=[MapGrid(id=g.id, name=g.name, parent=g.parent, outline=g.outline)
                         for g in cfg.grids if user.sees_grid(g.id)],
                  cameras=[MapCamera(id=c.id, name=c.name, grid=c.grid, lat=c.lat, lon=c.lon)
                           for c in cfg.cameras if user.sees_grid(c.grid)])


# ---- pages ----------------------------------------------------------------------------------------------------------
@pages.get("/worker")
def worker_page(request: Request) -> FileResponse:
    return FileResponse(request.app.state.static_dir / "worker.html")


@pages.get("/admin", dependencies=[ADMIN_PAGE])
def admin_page(request: Request) -> FileResponse:
    return FileResponse(request.app.state.static_dir / "admin.html")


@pages.get("/admin/models", dependencies=[ADMIN_PAGE])
def models_page(request: Request) -> FileResponse:
    """The conflict model versions: scores, activate, roll back (api/static/models.html)."""
    return FileResponse(request.app.state.static_dir / "models.html")
