"""One error body everywhere: ``{"detail": str, "status": int, "errors": [{"field", "message"}]}``.

HTTP errors (401, 403, 404, 409, ...), validation errors (422) and unexpected
failures (500) all answer with ErrorOut, and the OpenAPI document says so for
every operation.
"""
from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridwatch.config import mask_url

from .schemas import ErrorOut, FieldError

log = logging.getLogger(__name__)


def _field(loc: tuple | list) -> str:
    return ".".join(str(p) for p in loc) or "(request)"


def error_response(status: int, detail: str, errors: list[FieldError] | None = None,
                   headers: dict | None = None) -> Response:
    if status in (204, 304) or status < 200:
        return Response(status_code=status, headers=headers)
    # last line of defence: no camera password leaves in an error, whatever raised it
    body = ErrorOut(detail=mask_url(detail), status=status,
                    errors=[e.model_copy(update={"message": mask_url(e.message)}) for e in errors or []])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    errors: list[FieldError] = []
    if isinstance(exc.detail, list):  # a router's own field problems: [{"loc": [...], "msg": ...}]
        errors = [FieldError(field=_field(e.get("loc", ())), message=str(e.get("msg", "invalid")))
                  for e in exc.detail if isinstance(e, dict)]
        detail = "invalid request: " + "; ".join(f"{e.field}: {e.message}" for e in errors)
    else:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(exc.status_code, detail, errors, headers=getattr(exc, "headers", None))


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = [FieldError(field=_field(e.get("loc", ())), message=e.get("msg", "invalid")) for e in exc.errors()]
    detail = "invalid request: " + "; ".join(f"{e.field}: {e.message}" for e in errors)
    return error_response(422, detail[:2000], errors)


RETRY_AFTER_S = 5  # the embedded Valkey is restarted within about a second; a remote Redis may take longer


def redis_unavailable(app: FastAPI, err: BaseException | None = None) -> tuple[int, str, dict[str, str]]:
    """What a request answers while Redis is away: 503 with Retry-After; the outage is logged once (alerts.outage)."""
    app.state.redis_outage.failed(err or "a request could not reach it")
    return (503, f"the case database (Redis) is unavailable; try again in {RETRY_AFTER_S} s",
            {"Retry-After": str(RETRY_AFTER_S)})


async def redis_error(request: Request, exc: Exception) -> Response:
    status, detail, headers = redis_unavailable(request.app, exc)
    return error_response(status, detail, headers=headers)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error; it is logged on the server")


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    # unreachable, timed out, or loading its data after a restart (BusyLoadingError is a ConnectionError)
    app.add_exception_handler(redis.ConnectionError, redis_error)
    app.add_exception_handler(redis.TimeoutError, redis_error)
    app.add_exception_handler(Exception, server_error)
    _document(app)


def _document(app: FastAPI) -> None:
    """Every operation documents ErrorOut for 401/403 (when it needs a login), 404 and 422."""
    base = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        doc = base()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorOut, FieldError):
            schemas.setdefault(model.__name__, model.model_json_schema(ref_template="#/components/schemas/{model}"))
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
        for path in doc.get("paths", {}).values():
            for op in path.values():
                responses = op.setdefault("responses", {})
                wanted = {"422": "invalid request (each field named in errors)"} if (
                    op.get("parameters") or op.get("requestBody")) else {}
                if op.get("requestBody"):
                    wanted["400"] = "the body cannot be parsed (not JSON, or not the declared encoding)"
                    wanted["413"] = "the body is larger than this route takes (api/guard.py)"
                if op.get("security"):
                    wanted |= {"401": "not logged in", "403": "the user's role or grid does not allow this"}
                wanted["503"] = "the case database (Redis) is unavailable; retry after Retry-After seconds"
                for code, text in wanted.items():
                    responses[code] = {"description": responses.get(code, {}).get("description", text), **ref}
                for code, resp in responses.items():
                    if code.startswith(("4", "5")):
                        resp.update(ref)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi
