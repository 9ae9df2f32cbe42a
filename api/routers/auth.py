"""Login and logout (cookie for the pages, bearer token for API clients), who am I, the admin audit log."""
from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse

from gridwatch.accounts import AccountBook, AdminAudit
from gridwatch.config import GridwatchConfig

from ..auth import ANY, COOKIE, Admin, AnyUser, LoginThrottle, get_accounts, get_throttle, request_token
from ..deps import get_config
from ..pagination import Paging, paging
from ..schemas import AdminAuditEntry, AdminAuditOut, ErrorOut, LoginIn, TokenOut, UserOut

router = APIRouter()
Accounts = Annotated[AccountBook, Depends(get_accounts)]


@router.post("/api/auth/login", tags=["auth"], responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}})
async def login(body: LoginIn, request: Request, response: Response, accounts: Accounts,
                cfg: Annotated[GridwatchConfig, Depends(get_config)],
                throttle: Annotated[LoginThrottle, Depends(get_throttle)]) -> TokenOut:
    """Check the password (argon2); answer a bearer token and set the same token as the session cookie.

    Too many wrong passwords for one user from one address: 429 with Retry-After, without checking the password.
    """
    ip = request.client.host if request.client else "?"  # behind a proxy: auth.trusted_proxies (api/server.py)
    if wait := throttle.attempt(body.username, ip):
        raise HTTPException(429, f"too many wrong passwords for {body.username!r} from this address; try again in "
                                 f"{int(wait) + 1} s", headers={"Retry-After": str(int(wait) + 1)})
    acc = await asyncio.to_thread(accounts.verify, body.username, body.password)  # argon2 is slow on purpose
    if acc is None:
        raise HTTPException(401, "wrong user name or password")
    throttle.succeeded(body.username, ip)
    token = accounts.issue(acc)
    response.set_cookie(COOKIE, token, max_age=int(accounts.ttl_s), httponly=True, samesite="lax",
                        secure=cfg.auth.cookie_secure, path="/")
    return TokenOut(access_token=token, expires_in=int(accounts.ttl_s),
                    user=UserOut(name=acc.name, role=acc.role, grids=acc.grids))


@router.post("/api/auth/logout", tags=["auth"], status_code=204, dependencies=[ANY])
def logout(request: Request, response: Response, accounts: Accounts) -> None:
    """End this session everywhere: the token (cookie or bearer) is revoked in Redis until it would have expired,
    so a copy of it (a stolen cookie, a token in a script) stops working too; the cookie is dropped."""
    token, _ = request_token(request.headers.get("authorization"), request.headers.get("cookie"))
    if token:
        accounts.revoke(token)
    response.delete_cookie(COOKIE, path="/")


@router.get("/api/auth/me", tags=["auth"])
def me(user: AnyUser) -> UserOut:
    return UserOut(**user.model_dump())


@router.get("/api/audit", tags=["auth"])
def admin_audit(request: Request, user: Admin, page: Annotated[Paging, paging(100, 1000)]) -> AdminAuditOut:
    """Admin changes (cameras, zones, grids, ...): who, what, when; append only and hash-chained."""
    audit: AdminAudit = request.app.state.admin_audit
    entries, total = audit.entries(page.offset, page.limit)
    page.headers(total)
    intact, bad = audit.verify()
    return AdminAuditOut(intact=intact, first_bad=bad, total=total, entries=[AdminAuditEntry(**e) for e in entries])


@router.api_route("/login", methods=["GET", "HEAD"], include_in_schema=False)
def login_page(request: Request) -> FileResponse:
    return FileResponse(request.app.state.static_dir / "login.html")
