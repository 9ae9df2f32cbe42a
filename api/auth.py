"""Who is asking: one dependency for the session cookie (pages) and the bearer token (API clients).

Routes declare the roles they admit with ``Security(current_user, scopes=[...])``
(the aliases below); the roles appear in the OpenAPI document as the security
requirement's role list (OpenAPI 3.1 allows roles on non-OAuth schemes), which is
what tests/test_auth_routes.py walks. Grid workers are further limited to the
cases and cameras of their grids by the helpers at the end.
"""
from __future__ import annotations

import asyncio
import json
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from pydantic import BaseModel, Field
from starlette.requests import cookie_parser

from alerts.cases import Case
from gridwatch.accounts import ROLES, AccountBook

COOKIE = "gw_session"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                           description="a token from POST /api/auth/login (`access_token`)")
cookie_scheme = APIKeyCookie(name=COOKIE, auto_error=False, scheme_name="session",
                             description="the session cookie the login page sets (HttpOnly, SameSite=Lax)")


class User(BaseModel):
    """The logged-in account, as handlers see it (never its password hash)."""

    name: str
    role: str
    grids: list[str] = Field(default_factory=list, description="grid_worker: the grids they work in")

    def sees_grid(self, grid_id: str) -> bool:
        return self.role != "grid_worker" or grid_id in self.grids


def get_accounts(request: Request) -> AccountBook:
    return request.app.state.accounts


class LoginThrottle:
    """Password attempts counted in Redis (shared by every API process) per user and address, and per address.

    Per user *and* address so that someone guessing an operator's password from
    one machine cannot lock the operator out everywhere; per address too, with a
    higher limit, against one machine trying many user names. An attempt is
    counted *before* the (slow) password check, in one atomic script, so
    guesses sent in parallel cannot all slip in under the limit; a right
    password takes its attempt back.
    """

    # KEYS: per user+address, per address; ARGV: window ms, limits. INCR + PEXPIRE on the first (Redis 6 has no NX).
    _ATTEMPT = """
    local out = {}
    for i, key in ipairs(KEYS) do
      local n = redis.call('INCR', key)
      if n == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
      if n > tonumber(ARGV[i + 1]) then
        local ttl = redis.call('PTTL', key)
        if ttl < 0 then redis.call('PEXPIRE', key, ARGV[1]); ttl = tonumber(ARGV[1]) end
        return ttl
      end
    end
    return 0
    """

    def __init__(self, r, prefix: str, failures: int, window_s: float):
        self.r, self.prefix, self.failures, self.window_s = r, prefix, failures, window_s
        self._script = r.register_script(self._ATTEMPT)

    def _keys(self, user: str, ip: str) -> list[str]:
        base = f"{self.prefix}:login:fail:{ip}"
        return [f"{base}:{user.lower()}", base]

    def attempt(self, user: str, ip: str) -> float:
        """Count one attempt; the seconds to wait when it is over the limit (then do not check the password), else 0."""
        ms = self._script(keys=self._keys(user, ip),
                          args=[int(self.window_s * 1000), self.failures, 20 * self.failures])
        return max(int(ms) / 1000.0, 1.0) if int(ms) else 0.0

    def succeeded(self, user: str, ip: str) -> None:
        """The right password: this user's count from this address starts again, and the address's attempt is undone."""
        user_key, ip_key = self._keys(user, ip)
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(user_key)
        pipe.decr(ip_key)
        pipe.execute()


def get_throttle(request: Request) -> LoginThrottle:
    a = request.app.state.config.auth
    store = request.app.state.store
    return LoginThrottle(store.r, store.p, a.login_failures, a.login_window_s)


def request_token(authorization: str | None, cookie_header: str | None) -> tuple[str | None, bool]:
    """The token a request carries (a bearer token wins), and whether it came as the session cookie, which a
    browser sends on its own (so only then does a change need a same-origin check, api/guard.py)."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None, False
    cookie = cookie_parser(cookie_header or "").get(COOKIE) or None
    return cookie, cookie is not None


def user_from_request(request: Request, bearer: HTTPAuthorizationCredentials | None, cookie: str | None) -> User | None:
    token = bearer.credentials if bearer is not None else cookie
    if not token:
        return None
    checked = getattr(request.state, "account", None)  # api/guard.py resolved it already for a change
    acc = checked[1] if checked is not None and checked[0] == token else get_accounts(request).resolve(token)
    return None if acc is None else User(name=acc.name, role=acc.role, grids=acc.grids)


async def current_user(request: Request, scopes: SecurityScopes,
                       bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
                       cookie: Annotated[str | None, Depends(cookie_scheme)]) -> User:
    """401 without a valid session or token; 403 when the route's roles (the security scopes) exclude the user's.

    Async, so that the usual request (a token checked within the last second) costs no thread hop; one that needs
    Redis (the revocation check) asks it in a thread (docs/api-scale.md).
    """
    token = bearer.credentials if bearer is not None else cookie
    checked = getattr(request.state, "account", None)
    if token and checked is not None and checked[0] == token:
        acc = checked[1]
    elif token:
        book = get_accounts(request)
        acc = book.resolve(token, ask_redis=False)
        if acc is AccountBook.ASK_REDIS:
            acc = await asyncio.to_thread(book.resolve, token)
    else:
        acc = None
    user = None if acc is None else User(name=acc.name, role=acc.role, grids=acc.grids)
    return _admit(request, scopes, user)


def _current_user_sync(request: Request, scopes: SecurityScopes, bearer: HTTPAuthorizationCredentials | None,
                       cookie: str | None) -> User:
    return _admit(request, scopes, user_from_request(request, bearer, cookie))


def _admit(request: Request, scopes: SecurityScopes, user: User | None) -> User:
    if user is None:
        raise HTTPException(401, "not logged in: POST /api/auth/login, then send the session cookie or "
                                 "'Authorization: Bearer <access_token>'", headers={"WWW-Authenticate": "Bearer"})
    request.state.user = user
    if scopes.scopes and user.role not in scopes.scopes:
        raise HTTPException(403, f"{user.name} is {user.role}; this needs {' or '.join(scopes.scopes)}")
    if scopes.scopes == ["admin"] and request.method in MUTATING:
        request.state.audit_admin = True  # AdminAuditMiddleware writes who/what/when when the response is sent
    return user


ALL_ROLES = list(ROLES)
AnyUser = Annotated[User, Security(current_user, scopes=ALL_ROLES)]
Staff = Annotated[User, Security(current_user, scopes=["operator", "admin"])]
Admin = Annotated[User, Security(current_user, scopes=["admin"])]
# for dependencies=[...] on routers and routes
ANY = Security(current_user, scopes=ALL_ROLES)
STAFF = Security(current_user, scopes=["operator", "admin"])
ADMIN = Security(current_user, scopes=["admin"])


def page_login(request: Request,
               bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
               cookie: Annotated[str | None, Depends(cookie_scheme)]) -> User:
    """HTML pages: not logged in -> 303 to the login page, which comes back here afterwards."""
    user = user_from_request(request, bearer, cookie)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, "log in first", headers={"Location": f"/login?next={quote(target, safe='')}"})
    request.state.user = user
    return user


PAGE = Depends(page_login)


def admin_page_login(user: Annotated[User, Depends(page_login)]) -> User:
    """The admin page is served to admins only (its script lists what an admin can change)."""
    if user.role != "admin":
        raise HTTPException(403, f"{user.name} is {user.role}; the admin page is for admins")
    return user


ADMIN_PAGE = Depends(admin_page_login)


def metrics_access(request: Request,
                   bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
                   cookie: Annotated[str | None, Depends(cookie_scheme)]) -> None:
    """/metrics: public only when the config says so (auth.metrics_public); else an operator's or admin's token."""
    if request.app.state.config.auth.metrics_public:
        return
    _current_user_sync(request, SecurityScopes(["operator", "admin"]), bearer, cookie)


# -- grid workers see their own grids only --------------------------------------------------------
def check_grid(user: User, grid_id: str) -> None:
    if not user.sees_grid(grid_id):
        raise HTTPException(403, f"{user.name} works in {', '.join(user.grids)}, not in {grid_id}")


def check_case(user: User, case: Case) -> Case:
    """Another grid's case is 'not found' for a grid worker: its existence is not theirs to know."""
    if not user.sees_grid(case.grid_id):
        raise HTTPException(404, f"no case {case.id}")
    return case


WORKER_ACTIONS = {"accept", "arrive", "resolve", "note", "photo", "take"}
WORKER_RESOLVES_FROM = {"dispatched", "on_site"}  # resolving from "acknowledged" is the operator's shortcut


def worker_may(user: User, action: str, case: Case | None, actor: str | None, worker: str | None = None) -> None:
    """Grid workers act in the field, as themselves, on their own cases; operators and admins keep every shortcut.

    take and accept: for themselves only (``case``: None for take, which has none yet). arrive, resolve, notes and
    photos: only on a case dispatched to them (resolve once they are on their way or on site).
    """
    if user.role != "grid_worker":
        return
    if action not in WORKER_ACTIONS:
        raise HTTPException(403, f"{action} is for operators; a grid worker may {', '.join(sorted(WORKER_ACTIONS))}")
    if actor is not None and actor != user.name:
        raise HTTPException(403, f"{user.name} acts as themselves, not as {actor}")
    if action in ("take", "accept"):
        if worker is not None and worker != user.name:
            raise HTTPException(403, f"{user.name} takes and accepts cases for themselves, not for {worker}")
        return
    if case is None or case.worker != user.name:
        raise HTTPException(403, f"case {case.id if case else ''} is not dispatched to {user.name}; accept it first "
                                 "(or ask the operator room to send you)")
    if action == "resolve" and case.state not in WORKER_RESOLVES_FROM:
        raise HTTPException(409, f"case {case.id} is {case.state}; a grid worker resolves a case "
                                 "they were sent to (dispatched or on site)")


def visible_cases(store, user: User, *, grid: str | None = None, limit: int = 50, **filters) -> list[Case]:
    """``store.list`` limited to the user's grids (grid workers), merged in the list's own order."""
    if user.role != "grid_worker":
        if grid is None and filters.get("sort", "time") == "time" and not any(
                v for k, v in filters.items() if k != "sort"):
            # the console's plain newest-first page: read just that many (not the 2000 a filtered scan reads)
            return store.list(limit=limit, scan=limit, **filters)
        return store.list(grid=grid, limit=limit, **filters)
    if grid is not None:
        check_grid(user, grid)
        return store.list(grid=grid, limit=limit, **filters)
    rows = [c for g in user.grids for c in store.list(grid=g, limit=limit, **filters)]
    if filters.get("sort") == "priority":
        rows.sort(key=lambda c: (c.state == "closed", c.priority, -c.ts))
    else:
        rows.sort(key=lambda c: -c.created_at)
    return rows[:limit]


class AdminAuditMiddleware:
    """Writes every admin change (a mutating request to an admin-only route) to the admin audit log.

    Pure ASGI: it keeps the request body (up to 16 KiB; URLs masked) and the answer's
    status, so routers need do nothing to be audited.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            return await self.app(scope, receive, send)
        body = bytearray()
        status = {"code": 0}

        async def recv():
            msg = await receive()
            if msg["type"] == "http.request" and len(body) < 16384:
                body.extend(msg.get("body", b"")[:16384 - len(body)])
            return msg

        async def snd(msg):
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, recv, snd)
        finally:
            state = scope.get("state") or {}
            if state.get("audit_admin"):
                try:
                    detail = {"query": scope.get("query_string", b"").decode(errors="replace")}
                    try:
                        detail["body"] = json.loads(body) if body else None
                    except ValueError:
                        detail["body"] = f"<{len(body)} bytes>"
                    route = scope.get("route")
                    scope["app"].state.admin_audit.record(
                        state["user"].name, f"{scope['method']} {getattr(route, 'path', scope['path'])}",
                        scope["path"], detail, status["code"])
                except Exception:  # the audit must not turn a done change into an error; it is logged
                    import logging
                    logging.getLogger(__name__).exception("admin audit write failed for %s", scope["path"])
