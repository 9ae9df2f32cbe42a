"""The outermost layer of every request: credentials before bodies, body limits, CSRF, security headers.

Pure ASGI, so it acts before FastAPI reads a byte of the body (FastAPI parses the
body before it runs a route's dependencies, which is why the login check alone
came too late: an anonymous 400 MB upload was read into memory, then refused).

* A mutating request to ``/api`` (all but the login) must carry a valid session
  cookie or bearer token, checked on its headers; without one it is answered
  401 at once and its body is never read.
* Every body is capped as it streams in (``Content-Length`` is checked first; a
  chunked body is counted): photos at their documented 10 MiB, admin changes
  and WebRTC offers at 256 KiB, everything else at 64 KiB; over the cap, 413.
* A change authorised by the session cookie must come from a page of this
  server (``Origin``, else ``Sec-Fetch-Site: same-origin``) or of an origin in
  ``auth.allowed_origins``: SameSite=Lax still lets a page on another port of the
  same host send it. Bearer tokens are not sent by browsers on their own, so
  they need no such check.
* Every answer carries ``X-Content-Type-Options``, ``X-Frame-Options``,
  ``Referrer-Policy`` and a Content-Security-Policy; an HTML page's policy
  admits exactly its own inline scripts (by hash), nothing from elsewhere.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import redis

from .auth import request_token
from .errors import error_response, redis_unavailable

KiB, MiB = 1024, 1024 * 1024
PHOTO_LIMIT = 10 * MiB  # documented in the README and the photo route
LIMITS: list[tuple[re.Pattern, int]] = [
    (re.compile(r"^/api/cases/[^/]+/photos$"), PHOTO_LIMIT),
    (re.compile(r"^/api/admin/"), 256 * KiB),  # a camera with its zones and rules
    (re.compile(r"^/api/cameras/[^/]+/webrtc$"), 256 * KiB),  # an SDP offer
]
DEFAULT_LIMIT = 64 * KiB  # notes, transitions, login: small JSON
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_ROUTES = {"/api/auth/login"}  # changes that need no login (the login itself)

_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)
PAGE_POLICY = ("default-src 'self'; script-src 'self'{hashes}{extra}; style-src 'self' 'unsafe-inline'{extra}; "
               "img-src 'self' data: blob:{img}; media-src 'self' blob:; connect-src 'self'; object-src 'none'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
# FastAPI's /docs and /redoc load Swagger UI / ReDoc from this CDN (see api/app.py: they need a login)
DOCS_CDN = " https://cdn.jsdelivr.net"
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"same-origin"), (b"cross-origin-opener-policy", b"same-origin")]

Send = Callable[[dict], Awaitable[None]]


def body_limit(path: str) -> int:
    for pattern, limit in LIMITS:
        if pattern.match(path):
            return limit
    return DEFAULT_LIMIT


def page_policy(html: bytes, path: str) -> str:
    """The CSP of one HTML page: its inline scripts by hash (they stay inline; nothing else may run)."""
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(m).digest()).decode()}'"
                     for m in _SCRIPT.findall(html))
    docs = path in ("/docs", "/redoc")
    return PAGE_POLICY.format(hashes=hashes, extra=DOCS_CDN if docs else "",
                              img=" https://fastapi.tiangolo.com" if docs else "")


class RequestGuard:
    """See the module's docstring. ``app``: the ASGI app inside; the FastAPI app comes from ``scope["app"]``."""

    def __init__(self, app):
        self.app = app
        self._policies: dict[tuple[bool, bytes], str] = {}  # (a docs page?, page digest) -> CSP

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = self._with_headers(scope, send)
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if method in MUTATING:
            refusal = await self._refusal(scope, headers, method, path)
            if refusal is not None:
                return await self._answer(scope, receive, send, *refusal)
        if method in MUTATING or "content-length" in headers or "chunked" in headers.get("transfer-encoding", ""):
            limit = body_limit(path)
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                return await self._answer(scope, receive, send, 413, self._too_large(limit))
            body = await self._read(receive, limit)
            if body is None:
                return await self._answer(scope, receive, send, 413, self._too_large(limit))
            receive = self._replay(body, receive)
        await self.app(scope, receive, send)

    # -- checks on the headers, before the body ----------------------------------------------------------------
    async def _refusal(self, scope, headers: dict[str, str], method: str, path: str) -> tuple | None:
        """(status, detail, headers) when the request must be refused on its headers alone; else None."""
        app = scope["app"]
        token, cookie = request_token(headers.get("authorization"), headers.get("cookie"))
        if path.startswith("/api/") and path not in OPEN_ROUTES:
            user = None
            if token:
                try:
                    user = app.state.accounts.resolve(token, ask_redis=False)  # no thread when it needs no Redis
                    if user is app.state.accounts.ASK_REDIS:
                        user = await asyncio.to_thread(app.state.accounts.resolve, token)
                except redis.RedisError:
                    return redis_unavailable(app)  # one place decides what a Redis outage answers
                scope.setdefault("state", {})["account"] = (token, user)  # the route's login check reuses it
            if user is None:
                return (401, "not logged in: POST /api/auth/login, then send the session cookie or "
                             "'Authorization: Bearer <access_token>'", {"WWW-Authenticate": "Bearer"})
        login = path in OPEN_ROUTES  # no cookie is used there: only a foreign Origin is refused (login CSRF)
        if (cookie or login) and not self._same_origin(scope, headers, app, strict=not login):
            return (403, "cross-site request refused: changes with the session cookie are accepted only from "
                         "this server's own pages (or an origin in auth.allowed_origins)", None)
        return None

    @staticmethod
    def _same_origin(scope, headers: dict[str, str], app, strict: bool) -> bool:
        """Origin is this server's (or allowed); without Origin, Sec-Fetch-Site decides; with neither, ``not strict``."""
        origin = headers.get("origin")
        if origin is None or origin == "null":
            site = headers.get("sec-fetch-site")
            if site is not None:
                return site in ("same-origin", "none")
            return not strict and origin is None
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        allowed = {own.lower(), *(o.rstrip("/").lower() for o in app.state.config.auth.allowed_origins)}
        parts = urlsplit(origin)
        return f"{parts.scheme}://{parts.netloc}".lower() in allowed

    # -- the body, counted --------------------------------------------------------------------------------------
    @staticmethod
    async def _read(receive, limit: int) -> bytes | None:
        """The whole body, or None as soon as it passes ``limit`` (the rest is never read)."""
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _replay(body: bytes, receive):
        sent = False

        async def again():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would say it
        return again

    @staticmethod
    def _too_large(limit: int) -> str:
        return f"request body too large: at most {limit // KiB} KiB here" if limit < MiB else \
            f"request body too large: at most {limit // MiB} MiB here"

    @staticmethod
    async def _answer(scope, receive, send: Send, status: int, detail: str, headers: dict[str, str] | None = None
                      ) -> None:
        """The API's one error body (api/errors.py); the connection closes, as the body may be left unread."""
        await error_response(status, detail, headers={**(headers or {}), "Connection": "close"})(scope, receive, send)

    # -- headers on every answer ---------------------------------------------------------------------------------
    def _with_headers(self, scope, send: Send) -> Send:
        """Adds the security headers; an HTML answer is held until its end to hash its inline scripts."""
        held: dict = {}
        parts: list[bytes] = []

        async def wrapped(msg):
            if msg["type"] == "http.response.start":
                raw = list(msg.get("headers", []))
                names = {k.lower() for k, _ in raw}
                raw += [h for h in HEADERS if h[0] not in names]
                ctype = next((v for k, v in raw if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html") and b"content-security-policy" not in names:
                    held["start"] = {**msg, "headers": raw}
                    return
                if b"content-security-policy" not in names:
                    raw.append((b"content-security-policy", OTHER_POLICY.encode()))
                return await send({**msg, "headers": raw})
            if msg["type"] == "http.response.body" and "start" in held:
                parts.append(msg.get("body", b""))
                if msg.get("more_body", False):
                    return
                html = b"".join(parts)
                key = (scope["path"] in ("/docs", "/redoc"), hashlib.sha256(html).digest())
                if key not in self._policies:
                    self._policies[key] = page_policy(html, scope["path"])
                start = held.pop("start")
                start["headers"] = start["headers"] + [(b"content-security-policy", self._policies[key].encode())]
                await send(start)
                return await send({"type": "http.response.body", "body": html, "more_body": False})
            return await send(msg)
        return wrapped
