"""Shared fixtures: real servers (Valkey, Redis at REDIS_URL, GStreamer RTSP) and real footage."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import redis

from alerts import CaseStore, EmbeddedValkey
from gridwatch.demo import fetch_vtest
from gridwatch.harness import rtsp_server_available

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_CI = bool(os.environ.get("CI"))


def need(condition: bool, reason: str) -> None:
    """Skip when a real part is missing here; in CI, where .ci/run installs everything, fail instead."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI should have installed this: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def vtest() -> Path:
    """PETS 2009 pedestrians (768x576, 10 fps) from Debian's opencv-doc, fetched with apt-get download."""
    path = fetch_vtest(ROOT / ".cache" / "footage")
    need(path is not None, "vtest.avi unavailable: apt-get download opencv-doc failed")
    return path


@pytest.fixture(scope="session")
def rtsp_ok() -> bool:
    need(rtsp_server_available(), "GStreamer RTSP server not installed (see .ci/run for the apt packages)")
    return True


@pytest.fixture(scope="session")
def zk_ok() -> bool:
    from gridwatch.harness import zookeeper_available

    reason = zookeeper_available()
    need(reason is None, f"{reason} (scripts/setup.sh --test installs Debian's zookeeper)")
    return True


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (evaluation footage lives outside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def valkey(tmp_path_factory) -> EmbeddedValkey:
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey")).start()
    yield server
    server.stop()


def _redis_params():
    params = ["embedded-valkey"]
    if os.environ.get("REDIS_URL"):
        params.append("REDIS_URL")
    return params


@pytest.fixture(params=_redis_params())
def redis_url(request, valkey) -> str:
    """Each Redis-backed test runs on the embedded Valkey, and again on REDIS_URL's server when it is set."""
    if request.param == "embedded-valkey":
        return valkey.url
    return os.environ["REDIS_URL"]


@pytest.fixture
def store(redis_url) -> CaseStore:
    """A case store under a fresh key prefix, so tests never see each other's cases; cleaned up after."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"gwtest-{uuid.uuid4().hex[:8]}"
    yield CaseStore(client, prefix=prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory) -> Path:
    """A 3-second H.264 clip (a moving square, 320x240, 10 fps), made here with PyAV."""
    import av
    import numpy as np

    path = tmp_path_factory.mktemp("clips") / "short.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(30):
            img = np.zeros((240, 320, 3), np.uint8)
            img[100:140, 10 * i:10 * i + 40] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


API_CONFIG = {
    "grids": [{"id": "g-1", "name": "One"}, {"id": "g-2", "name": "Two", "parent": "g-1"}],
    "cameras": [{"id": "cam-1", "name": "Gate", "url": "rtsp://admin:topsecret@192.0.2.1/s", "grid": "g-2",
                 "lat": 31.2, "lon": 121.4, "zones": [{"id": "z1", "polygon": [[0, 0], [1, 0], [1, 1]],
                                                      "crowding": {"threshold": 5}}]}],
}


TEST_PASSWORD = "correct horse battery"
TEST_ACCOUNTS = {"op": ("operator", []), "admin": ("admin", []), "w1": ("grid_worker", ["g-2"]),
                 "w-g1": ("grid_worker", ["g-1"])}
_HASHES: dict[str, str] = {}


def authorize(app, name: str = "op", role: str | None = None, grids: list[str] | None = None) -> dict[str, str]:
    """Give ``app`` the account ``name`` (password TEST_PASSWORD) and return its bearer header.

    The real AccountBook signs the token; only the argon2 hash is made once per session (it is slow on purpose).
    """
    from gridwatch.accounts import Account, hash_password

    role_, grids_ = TEST_ACCOUNTS.get(name, ("grid_worker", ["g-2"]))
    role, grids = role or role_, grids if grids is not None else (grids_ if role in (None, role_) else [])
    if "hash" not in _HASHES:
        _HASHES["hash"] = hash_password(TEST_PASSWORD)
    book = app.state.accounts
    acc = book.get(name)
    if acc is None or acc.role != role or acc.grids != grids:
        acc = Account(name=name, role=role, grids=grids, password_hash=_HASHES["hash"])
        book.add(acc)
    return {"Authorization": f"Bearer {book.issue(acc)}"}


def browser_cookies(app, base_url: str, name: str = "op", **kw) -> list[dict]:
    """The session cookie of ``name`` for Playwright's ``context.add_cookies`` (the login page's cookie)."""
    from api.auth import COOKIE

    token = authorize(app, name, **kw)["Authorization"].removeprefix("Bearer ")
    return [{"name": COOKIE, "value": token, "url": str(base_url).rstrip("/") + "/"}]


@pytest.fixture
def api(store, redis_url, tmp_path):
    """The API on a real uvicorn server on a free loopback port, over a real Redis; an httpx client to it."""
    import httpx

    from alerts import EvidenceStore
    from api import create_app
    from gridwatch.config import parse_config
    from gridwatch.harness import serving

    evidence = EvidenceStore(tmp_path / "evidence")
    app = create_app(parse_config(API_CONFIG), store, redis_url, evidence)
    with serving(app) as base_url:
        for name in TEST_ACCOUNTS:
            authorize(app, name)
        # the client is the operator "op"; api.headers_for("w1") / api.cookies_for("w1") act as someone else
        with httpx.Client(base_url=base_url, timeout=10, headers=authorize(app, "op")) as client:
            client.store, client.evidence, client.app = store, evidence, app
            client.headers_for = lambda name="op", **kw: authorize(app, name, **kw)
            client.cookies_for = lambda name="op", **kw: browser_cookies(app, client.base_url, name, **kw)
            yield client


@pytest.fixture
def make_case(api):
    """Make a case through the real store, with a real JPEG snapshot: make_case(kind=..., zone=..., count=...)."""
    import time

    import numpy as np

    from alerts import Alert

    def make(kind="crowding", zone="z1", count=9):
        snap = api.evidence.save_jpeg(np.full((48, 64, 3), 127, np.uint8))
        _, case = api.store.ingest(
            Alert(kind=kind, camera_id="cam-1", camera_name="Gate", grid_id="g-2", zone_id=zone, ts=time.time(),
                  count=count, score=0.8, detail=f"{count} people", snapshot=snap, lat=31.2, lon=121.4), 60)
        return case

    return make


SHOTS = ROOT / "var" / "test-screenshots"  # kept from each run: what the pages looked like
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture
def browser_page():
    """Pages in Debian's Chromium, headless, driven by Playwright (no browser download).

    ``browser_page(viewport=..., cookies=..., timeout_ms=..., **context_options)`` opens one.
    """
    import shutil

    need(shutil.which(CHROMIUM) is not None, "Debian's chromium is not installed (scripts/setup.sh --test)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def open_page(viewport=None, cookies=(), timeout_ms: int = 10000, **context_options):
            # Playwright's wait_for_function evaluates strings, which the pages' CSP (rightly) forbids; the pages
            # under their real CSP are tested in tests/test_probe_api.py (bypass_csp=False there)
            context_options.setdefault("bypass_csp", True)
            ctx = browser.new_context(viewport=viewport or {"width": 1366, "height": 900}, **context_options)
            if cookies:
                ctx.add_cookies(list(cookies))
            page = ctx.new_page()
            page.set_default_timeout(timeout_ms)
            return page

        yield open_page
        browser.close()


def shot(page, name: str, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    """Poll ``predicate`` until it is truthy or ``timeout`` passes; returns its last value."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(step)
    return predicate()


WAIT_MS = 10000  # expect()'s own default is 5 s; the pages' is 10 s (conftest.browser_page)

# What a page hears on its event stream, for the tests to wait on (installed before the page's own script):
# window.streamReady counts the server's stream.ready (its start is pinned: changes after it are pushed), and
# window.heard holds the cases pushed, so a test can wait until a change has reached the page before it acts on it.
HEAR = """(() => {
  const ES = window.EventSource;
  window.streamReady = 0; window.heard = [];
  window.EventSource = class extends ES { constructor(...args) { super(...args);
    this.addEventListener("stream.ready", () => { window.streamReady += 1; });
    for (const name of ["case.created", "case.updated", "case.escalated", "case.deadletter"])
      this.addEventListener(name, (ev) => { try { window.heard.push(JSON.parse(ev.data)); } catch (_) { /* no */ } });
  } };
})()"""


def heard(api, page, case_id):
    """Wait until the page has heard the push of the case's latest change."""
    ts = api.store.get(case_id).updated_at
    page.wait_for_function("([id, ts]) => window.heard.some((c) => c.id === id && c.updated_at >= ts)",
                           arg=[case_id, ts])
