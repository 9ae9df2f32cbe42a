"""Who may use the API and the pages."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .base import _Strict


class AuthConfig(_Strict):
    """Who may use the API and the pages (api/auth.py); accounts live in their own file (gridwatch/accounts.py)."""

    accounts_file: Path | None = Field(
        default=None, description="YAML with the accounts and their argon2 password hashes; default DATA_DIR/accounts.yaml "
        "(made by `gridwatch user add`; the first start creates an admin and prints its password once)")
    secret_file: Path | None = Field(
        default=None, description="key that signs session cookies and tokens; default DATA_DIR/session.key, made at first start")
    session_ttl_s: float = Field(default=12 * 3600, ge=60, le=90 * 86400,
                                 description="a login (cookie or bearer token) is valid this long")
    cookie_secure: bool = Field(default=False, description="send the session cookie over HTTPS only (set it behind TLS)")
    metrics_public: bool = Field(default=False, description="serve /metrics without credentials (a Prometheus "
                                 "on a trusted network); otherwise an operator's or admin's token is needed")
    login_failures: int = Field(default=5, ge=1, le=1000, description="wrong passwords for one user from one address "
                                "before that pair must wait (20x this from one address for any user)")
    login_window_s: float = Field(default=300.0, ge=1, le=86400,
                                  description="failures count for this long; the wait ends when it has passed")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; empty: none (the client's own address counts, e.g. for the login limit)")
    allowed_origins: list[str] = Field(
        default_factory=list, description="other origins (scheme://host[:port]) whose pages may send changes with the "
        "session cookie; the server's own origin always may (a proxy that rewrites Host needs its public origin here)")
    docs_public: bool = Field(default=False, description="serve /docs and /openapi.json without a login")
