"""The FastAPI app: routers, error shape, the operator page."""
from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from alerts import CaseStore, EvidenceStore
from alerts.outage import OutageLog
from gridwatch.accounts import AccountBook, AdminAudit, SessionRevocations
from gridwatch.config import GridwatchConfig
from gridwatch.telemetry import Telemetry

from . import errors
from .auth import ANY, PAGE, AdminAuditMiddleware
from .guard import RequestGuard
from .live import LiveViews
from .routers import admin, cameras, cases, live, metrics, stats
from .routers import auth as auth_routes

STATIC = Path(__file__).with_name("static")


def create_app(cfg: GridwatchConfig, store: CaseStore, redis_url: str, evidence: EvidenceStore,
               accounts: AccountBook | None = None) -> FastAPI:
    """An app bound to one config and one case store; nothing global, so tests can make several.

    ``accounts``: who may log in; default the config's accounts file (gridwatch/accounts.py).
    """
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await app.state.live.close()  # hang up every live view's peer connection
        if (held := getattr(app.state, "aredis", None)) is not None:  # the case list's asyncio client
            await held[1].aclose()

    public_docs = cfg.auth.docs_public  # else the API's map is for logged-in users only
    app = FastAPI(title="gridwatch", version="0.1.0", lifespan=lifespan,
                  description="Cameras, alerts and grid cases of the governance centre.",
                  openapi_url="/openapi.json" if public_docs else None, docs_url="/docs" if public_docs else None,
                  redoc_url="/redoc" if public_docs else None)
    app.state.config, app.state.store, app.state.redis_url, app.state.evidence = cfg, store, redis_url, evidence
    app.state.telemetry = Telemetry(store.r, store.p)
    app.state.config_path = None  # set by whoever loaded the config from a file (admin saves go there)
    app.state.live = LiveViews(cfg.live.ice_addresses, cfg.live.stun_servers)
    app.state.static_dir = STATIC
    app.state.accounts = accounts if accounts is not None else AccountBook.for_config(cfg)
    app.state.accounts.revocations = SessionRevocations(store.r, store.p)  # logout ends a token everywhere
    app.state.admin_audit = AdminAudit(store.r, store.p)
    app.state.admin_lock = threading.Lock()  # admin edits one at a time (api/routers/admin.py)
    app.state.redis_outage = OutageLog("Redis (API)", probe=store.r.ping)
    errors.install(app)  # one error body everywhere, documented in the OpenAPI
    app.add_middleware(AdminAuditMiddleware)  # admin changes: who, what, when
    app.add_middleware(RequestGuard)  # outermost: credentials before bodies, body limits, CSRF, security headers
    app.include_router(auth_routes.router)
    app.include_router(stats.router)
    app.include_router(cameras.router)
    app.include_router(metrics.router)
    app.include_router(live.router)
    app.include_router(cases.router)
    app.include_router(admin.router)  # /api/admin/...: cameras, zones, rules, grids
    app.include_router(admin.console)  # /api/map
    app.include_router(admin.pages)  # /worker, /admin
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False, dependencies=[PAGE])
    def operator_page() -> FileResponse:
        return FileResponse(STATIC / "operator.html")

    if not public_docs:  # the same documents, behind the login
        @app.get("/openapi.json", include_in_schema=False, dependencies=[ANY])
        def openapi_document() -> JSONResponse:
            return JSONResponse(app.openapi())

        @app.get("/docs", include_in_schema=False, dependencies=[PAGE])
        def swagger(request: Request) -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="gridwatch API")

        @app.get("/redoc", include_in_schema=False, dependencies=[PAGE])
        def redoc(request: Request) -> HTMLResponse:
            return get_redoc_html(openapi_url="/openapi.json", title="gridwatch API")

    return app
