"""Accounts (operator, grid_worker, admin), their password hashes, the signing key, and the admin audit log.

Accounts live in their own YAML file (``auth.accounts_file``, default
``DATA_DIR/accounts.yaml``) so that ``gridwatch user add`` never rewrites the
hand-written config. Passwords are hashed with argon2id (argon2-cffi); only
hashes are stored. Sessions and bearer tokens are the same signed token
(itsdangerous), carrying a fingerprint of the password hash so that a new
password ends every session of the old one, and an id that logout revokes.

Running servers see ``gridwatch user add|passwd|remove`` within about a second:
each checks the accounts file's identity (inode, size, mtime) at most once a
second and reloads it when it changed, so every ``serve`` process reading the
same file follows it without a restart.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Literal, get_args

import redis
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gridwatch.config import ConfigError, GridwatchConfig, Problem, problems_of
from streams.urls import mask_json

Role = Literal["operator", "grid_worker", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
_HASHER = PasswordHasher()  # argon2id, the library's RFC 9106 defaults
log = logging.getLogger(__name__)


class Account(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="login name")
    role: Role
    grids: list[str] = Field(default_factory=list, description="grid_worker: the grids whose cases they see")
    password_hash: str = Field(description="argon2 hash (gridwatch user add makes it); never a password")
    display_name: str = ""

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, v: str) -> str:
        if not v.startswith("$argon2"):
            raise ValueError("must be an argon2 hash ($argon2id$...); make one with `gridwatch user add`")
        return v

    @model_validator(mode="after")
    def _grids(self) -> "Account":
        if self.role == "grid_worker" and not self.grids:
            raise ValueError("a grid_worker needs at least one grid under grids:")
        if self.role != "grid_worker" and self.grids:
            raise ValueError(f"grids: only grid workers are bound to grids (this account is {self.role})")
        return self

    @property
    def fingerprint(self) -> str:
        """Changes with the password: tokens signed for the old one stop working."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:12]


class AccountsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accounts: list[Account] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "AccountsFile":
        seen: set[str] = set()
        for i, a in enumerate(self.accounts):
            if a.name in seen:
                raise ValueError(f"accounts[{i}].name: {a.name!r} is already used")
            seen.add(a.name)
        return self


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("password: at least 8 characters")
    return _HASHER.hash(password)


def load_secret(path: Path) -> bytes:
    """The signing key; made (0600) at first start so that sessions survive restarts."""
    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


class SessionRevocations:
    """Token ids ended before their time (logout), in Redis so that every API process honours them.

    Each id is kept only as long as its token would have lived. A token found not revoked is believed for
    ``CLEAR_S`` (1 s) without asking Redis again: a console sends several requests a second, and that one EXISTS was a
    third of the Redis round trips of a case list (docs/api-scale.md). A logout in this process counts at once;
    in another process within ``CLEAR_S``, as a changed accounts file does (``AccountBook.REFRESH_S``).
    """

    CLEAR_S = 1.0
    MAX_CLEAR = 10000  # token ids remembered as not revoked (then forgotten all at once)

    def __init__(self, client: redis.Redis, prefix: str = "gw"):
        self.r, self.prefix = client, prefix
        self._clear: dict[str, float] = {}  # token id -> monotonic time until which it is believed not revoked

    def _key(self, token_id: str) -> str:
        return f"{self.prefix}:session:revoked:{token_id}"

    def revoke(self, token_id: str, expires_at: float) -> None:
        self._clear.pop(token_id, None)
        ms = int((expires_at - time.time()) * 1000)
        if ms > 0:
            self.r.set(self._key(token_id), b"1", px=ms)

    def known_clear(self, token_id: str) -> bool:
        """Whether the token is believed not revoked without asking Redis (checked within ``CLEAR_S``)."""
        return self._clear.get(token_id, 0.0) > time.monotonic()

    def revoked(self, token_id: str) -> bool:
        now = time.monotonic()
        if self._clear.get(token_id, 0.0) > now:
            return False
        if self.r.exists(self._key(token_id)):
            self._clear.pop(token_id, None)
            return True
        if len(self._clear) >= self.MAX_CLEAR:
            self._clear.clear()
        self._clear[token_id] = now + self.CLEAR_S
        return False


class AccountBook:
    """The accounts the API knows, and the signer of their sessions; thread-safe reads.

    A book loaded from a file follows that file (``refresh``); one built in code stays as built.
    """

    REFRESH_S = 1.0  # how stale a running server's view of the accounts file may be

    def __init__(self, accounts: list[Account], secret: bytes, ttl_s: float = 12 * 3600, path: Path | None = None,
                 grids: set[str] | None = None):
        self._by_name = {a.name: a for a in accounts}
        self.ttl_s, self.path, self._grids = ttl_s, path, grids
        self._signer = URLSafeTimedSerializer(secret, salt="gridwatch-session")
        self._lock = threading.Lock()
        self._identity = self._file_identity()
        self._checked = time.monotonic()
        self._bad_identity: tuple | None = None
        self.revocations: SessionRevocations | None = None  # set by the API (Redis); None: logout only drops the cookie

    # -- loading and saving ------------------------------------------------------------------------
    @staticmethod
    def _read(path: Path, grids: set[str] | None) -> list[Account]:
        data: dict = {}
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as err:
                raise ConfigError(path, [Problem(("(file)",), f"not valid YAML: {err}")]) from None
        try:
            parsed = AccountsFile.model_validate(data)
        except ValidationError as err:
            raise ConfigError(path, problems_of(err)) from None
        if grids is not None:
            bad = [Problem(("accounts", i, "grids"), f"{g!r} is not a grid of the config")
                   for i, a in enumerate(parsed.accounts) for g in a.grids if g not in grids]
            if bad:
                raise ConfigError(path, bad)
        return parsed.accounts

    @classmethod
    def load(cls, path: Path, cfg: GridwatchConfig | None = None, secret: bytes = b"", ttl_s: float = 12 * 3600
             ) -> "AccountBook":
        """Read and validate the accounts file; grid workers' grids must exist in ``cfg``."""
        path = Path(path)
        grids = {g.id for g in cfg.grids} if cfg is not None else None
        return cls(cls._read(path, grids), secret, ttl_s, path, grids)

    @classmethod
    def for_config(cls, cfg: GridwatchConfig) -> "AccountBook":
        """The config's accounts file and key; a config built in code (paths not resolved) gets an empty book
        with a key that lives as long as the process (nobody can log in until accounts are added)."""
        au = cfg.auth
        if au.accounts_file is None or au.secret_file is None:
            return cls([], secrets.token_bytes(32), au.session_ttl_s)
        return cls.load(au.accounts_file, cfg, load_secret(au.secret_file), au.session_ttl_s)

    def _file_identity(self) -> tuple | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return ("missing",)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self, force: bool = False) -> bool:
        """Reload the file when it changed (at most once per REFRESH_S); True when the accounts were replaced.

        A file that no longer validates keeps the accounts as they were (logged once): a typo in the file must
        not lock everybody out, nor let anybody in.
        """
        if self.path is None or (not force and time.monotonic() - self._checked < self.REFRESH_S):
            return False
        self._checked = time.monotonic()
        identity = self._file_identity()
        if identity == self._identity or identity == self._bad_identity:
            return False
        try:
            accounts = self._read(self.path, self._grids)
        except (ConfigError, OSError) as err:
            self._bad_identity = identity
            log.error("accounts file changed but cannot be used; keeping the accounts as they were: %s", err)
            return False
        with self._lock:
            self._by_name = {a.name: a for a in accounts}
            self._identity, self._bad_identity = identity, None
        log.info("accounts reloaded from %s (%d accounts)", self.path, len(accounts))
        return True

    def save(self) -> None:
        """Atomically, 0600: the file holds password hashes."""
        if self.path is None:
            raise ValueError("this account book has no file")
        data = AccountsFile(accounts=list(self._by_name.values())).model_dump(mode="json", exclude_defaults=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# gridwatch accounts: argon2 hashes only; edit with `gridwatch user add|passwd|remove`\n")
            f.write(yaml.safe_dump(data, sort_keys=False))
        tmp.replace(self.path)
        with self._lock:
            self._identity = self._file_identity()

    # -- accounts ----------------------------------------------------------------------------------
    def get(self, name: str) -> Account | None:
        return self._by_name.get(name)

    def all(self) -> list[Account]:
        return list(self._by_name.values())

    def put(self, name: str, role: str, password: str, grids: list[str] | None = None) -> Account:
        """Add or replace an account (validated like the file)."""
        acc = Account(name=name, role=role, grids=grids or [], password_hash=hash_password(password))
        with self._lock:
            self._by_name[name] = acc
        return acc

    def add(self, acc: Account) -> Account:
        """Add or replace an account whose hash is already made."""
        with self._lock:
            self._by_name[acc.name] = acc
        return acc

    def remove(self, name: str) -> bool:
        with self._lock:
            return self._by_name.pop(name, None) is not None

    def verify(self, name: str, password: str) -> Account | None:
        """The account when the password is right; the same work is done for unknown names (no timing oracle)."""
        self.refresh()
        acc = self._by_name.get(name)
        try:
            _HASHER.verify(acc.password_hash if acc else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return acc

    # -- sessions ----------------------------------------------------------------------------------
    def issue(self, acc: Account, ttl_s: float | None = None) -> str:
        return self._signer.dumps({"u": acc.name, "f": acc.fingerprint, "ttl": ttl_s or self.ttl_s,
                                   "j": secrets.token_urlsafe(12)})

    def claims(self, token: str) -> dict | None:
        """The token's content (user, fingerprint, id, ``exp``) if it is genuine and unexpired; no account check."""
        try:
            data, signed_at = self._signer.loads(token, return_timestamp=True)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("j"), str):
            return None
        exp = signed_at.timestamp() + float(data.get("ttl", self.ttl_s))
        return {**data, "exp": exp} if time.time() <= exp else None

    ASK_REDIS = object()  # resolve(ask_redis=False): the answer needs Redis

    def resolve(self, token: str, *, ask_redis: bool = True):
        """The account a token was issued to, if it is genuine, unexpired, not logged out, and its password unchanged.

        May ask Redis (the revocations); its connection errors propagate (the API answers 503). ``ask_redis=False``:
        answers only what it can without Redis, else ``AccountBook.ASK_REDIS`` (an async caller then asks in a
        thread, and does not block its event loop on Redis).
        """
        self.refresh()
        data = self.claims(token)
        if data is None:
            return None
        acc = self._by_name.get(data.get("u", ""))
        if acc is None or acc.fingerprint != data.get("f"):
            return None
        rev = self.revocations
        if rev is not None and not ask_redis and not rev.known_clear(data["j"]):
            return self.ASK_REDIS
        if rev is not None and rev.revoked(data["j"]):
            return None
        return acc

    def revoke(self, token: str) -> bool:
        """Logout: the token stops working everywhere now (not only when its TTL ends)."""
        data = self.claims(token)
        if data is None or self.revocations is None:
            return False
        self.revocations.revoke(data["j"], data["exp"])
        return True


_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def ensure_admin(book: AccountBook, name: str = "admin") -> str | None:
    """First start: no admin yet, so make one; returns the password to show once (None when one exists).

    ``GRIDWATCH_ADMIN_PASSWORD`` sets it (for automated installs); otherwise it is generated.
    """
    if any(a.role == "admin" for a in book.all()):
        return None
    password = os.environ.get("GRIDWATCH_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    book.put(name, "admin", password)
    book.save()
    return None if os.environ.get("GRIDWATCH_ADMIN_PASSWORD") else password


class AdminAudit:
    """Append-only, hash-chained log of admin changes (who, what, when), as the case audit in alerts/cases.py."""

    def __init__(self, client: redis.Redis, prefix: str = "gw"):
        self.r, self.key = client, f"{prefix}:audit:admin"

    def record(self, actor: str, action: str, target: str, detail: dict | None = None, status: int | None = None) -> dict:
        entry = {"ts": time.time(), "actor": actor, "action": action, "target": target,
                 "detail": mask_json(detail or {}), "status": status}
        # chain: each entry carries the hash of the one before (WATCH keeps two writers from forking it)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.key)
                    last = pipe.lindex(self.key, -1)
                    entry["prev"] = hashlib.sha256(last).hexdigest() if last else ""
                    pipe.multi()
                    pipe.rpush(self.key, json.dumps(entry, sort_keys=True))
                    pipe.execute()
                    return entry
                except redis.WatchError:
                    continue

    def entries(self, offset: int = 0, limit: int = 100) -> tuple[list[dict], int]:
        """Newest first."""
        total = int(self.r.llen(self.key))
        end = total - 1 - offset
        start = max(0, end - limit + 1)
        raw = self.r.lrange(self.key, start, end) if end >= 0 else []
        return [json.loads(x) for x in reversed(raw)], total

    def verify(self) -> tuple[bool, int | None]:
        prev = ""
        for i, raw in enumerate(self.r.lrange(self.key, 0, -1)):
            if json.loads(raw).get("prev") != prev:
                return False, i
            prev = hashlib.sha256(raw).hexdigest()
        return True, None
