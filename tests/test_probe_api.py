"""What an independent probe of the running service broke, kept found: each check against the real server, a real
Redis/Valkey and, for the pages, Chromium. (URLs and camera secrets: tests/test_probe_urls.py; process signals and
the embedded Valkey's supervision: tests/test_probe_lifecycle.py.)"""
from __future__ import annotations

import http.server
import logging
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import yaml
from conftest import API_CONFIG, TEST_PASSWORD, WAIT_MS

from alerts import CaseStore, EvidenceStore
from alerts.redis_server import valkey_binary
from api import create_app
from gridwatch.config import load_config, parse_config
from gridwatch.harness import free_port, serving

ROOT = Path(__file__).resolve().parents[1]
GRIDWATCH = Path(sys.executable).with_name("gridwatch")


def raw_request(base_url: str, head: str, body_chunks=(), chunked: bool = False, limit_s: float = 10.0):
    """Send a request over a plain socket, chunk by chunk, and stop sending as soon as the server answers.

    Returns (status, bytes of body sent before the answer, seconds to the answer).
    """
    u = urlsplit(base_url)
    sock = socket.create_connection((u.hostname, u.port), timeout=limit_s)
    t0, sent = time.monotonic(), 0
    try:
        sock.sendall(head.encode())
        for chunk in body_chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered (or closed): send no more
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            if time.monotonic() - t0 > limit_s:
                break
        sock.settimeout(limit_s)
        answer = sock.recv(65536)
        took = time.monotonic() - t0
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, sent, took


def _zeros(total: int, size: int = 1 << 16):
    for _ in range(total // size):
        yield b"\0" * size


# ---- 3. bodies: credentials first, every body capped as it streams in ------------------------------------------------
def test_anonymous_upload_is_refused_before_its_body_is_read(api, make_case):
    cid = make_case().id
    host = urlsplit(str(api.base_url)).netloc
    head = (f"POST /api/cases/{cid}/photos?actor=w1 HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {400 << 20}\r\n\r\n")
    status, sent, took = raw_request(str(api.base_url), head, _zeros(400 << 20))
    assert status == 401 and took < 3 and sent < 64 << 20, (status, sent, took)
    for path in (f"/api/cases/{cid}/notes", "/api/auth/login"):  # 100 MB of "JSON", declared
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {100 << 20}\r\n\r\n")
        status, sent, took = raw_request(str(api.base_url), head, _zeros(100 << 20))
        assert status in (401, 413) and took < 3 and sent < 64 << 20, (path, status, sent, took)


def test_bodies_are_capped_as_they_stream_in(api, make_case):
    cid = make_case().id
    host = urlsplit(str(api.base_url)).netloc
    token = api.headers_for("op")["Authorization"]
    # declared too large: refused on the header, nothing read
    head = (f"POST /api/cases/{cid}/photos?actor=op HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {400 << 20}\r\n\r\n")
    status, sent, took = raw_request(str(api.base_url), head, _zeros(400 << 20))
    assert status == 413 and took < 3 and sent < 64 << 20, (status, sent, took)
    # not declared (chunked): counted, refused once past the cap of a small JSON route
    head = (f"POST /api/cases/{cid}/notes HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    status, sent, took = raw_request(str(api.base_url), head, _zeros(100 << 20), chunked=True)
    assert status == 413 and took < 5 and sent < 64 << 20, (status, sent, took)
    r = api.post(f"/api/cases/{cid}/notes", json={"actor": "op", "note": "x" * 70_000})
    assert r.status_code == 413 and "at most 64 KiB" in r.json()["detail"]
    assert api.post(f"/api/cases/{cid}/notes", json={"actor": "op", "note": "fine"}).status_code == 200


# ---- 9. a decompression bomb ----------------------------------------------------------------------------------------
def bomb_png(side: int = 20000) -> bytes:
    """A valid PNG of side x side one-bit pixels, all black: a few hundred KiB that decode to gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), b"\0" * (1 + (side + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_before_decoding(api, make_case):
    cid = make_case().id
    png = bomb_png()
    assert len(png) < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; the server runs in this process
    t0 = time.monotonic()
    r = api.post(f"/api/cases/{cid}/photos", params={"actor": "op"}, content=png,
                 headers={"Content-Type": "image/png"})
    took = time.monotonic() - t0
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert r.status_code == 413 and "megapixels" in r.json()["detail"], r.text
    assert took < 2 and grown < 200_000, (took, grown)
    assert api.get(f"/api/cases/{cid}").json()["photo_urls"] == []


# ---- 6. grid workers act on their own cases, as themselves ------------------------------------------------------------
def test_grid_workers_act_only_on_their_own_cases(api, make_case):
    w1 = api.headers_for("w1")
    theirs = make_case().id
    api.store.transition(theirs, "acknowledge", "op")
    api.store.transition(theirs, "dispatch", "op", worker="w2")  # sent to someone else in the same grid
    for action, body in (("arrive", {"actor": "w1"}), ("resolve", {"actor": "w1", "verdict": "confirmed"})):
        r = api.post(f"/api/cases/{theirs}/{action}", json=body, headers=w1)
        assert r.status_code == 403 and "not dispatched to w1" in r.json()["detail"], r.text
    assert api.post(f"/api/cases/{theirs}/notes", json={"actor": "w1", "note": "x"}, headers=w1).status_code == 403
    acked = make_case(zone="z2").id
    api.store.transition(acked, "acknowledge", "op")
    r = api.post(f"/api/cases/{acked}/resolve", json={"actor": "w1", "verdict": "false_alarm"}, headers=w1)
    assert r.status_code == 403  # resolving a never-dispatched case is the operator's shortcut
    r = api.post(f"/api/cases/{acked}/accept", json={"actor": "w1", "worker": "someone-else"}, headers=w1)
    assert r.status_code == 403 and "for themselves" in r.json()["detail"]
    assert api.get(f"/api/cases/{acked}").json()["state"] == "acknowledged"  # nothing happened
    # their own case, the whole way; the operator keeps the shortcut
    assert api.post(f"/api/cases/{acked}/accept", json={"actor": "w1"}, headers=w1).json()["worker"] == "w1"
    assert api.post(f"/api/cases/{acked}/arrive", json={"actor": "w1"}, headers=w1).status_code == 200
    r = api.post(f"/api/cases/{acked}/resolve", json={"actor": "w1", "verdict": "confirmed"}, headers=w1)
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    shortcut = make_case(zone="z3").id
    api.post(f"/api/cases/{shortcut}/acknowledge", json={"actor": "op"})
    assert api.post(f"/api/cases/{shortcut}/resolve", json={"actor": "op", "verdict": "false_alarm"}).status_code == 200


# ---- 12. logout, evidence, forwarded addresses, documents, the admin page ----------------------------------------------
def test_logout_revokes_the_token_everywhere(api):
    r = api.post("/api/auth/login", json={"username": "w1", "password": TEST_PASSWORD}, headers={"Authorization": ""})
    token = r.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/auth/me", headers=bearer).status_code == 200
    assert api.post("/api/auth/logout", headers=bearer).status_code == 204
    assert api.get("/api/auth/me", headers=bearer).status_code == 401
    with httpx.Client(base_url=api.base_url, cookies={"gw_session": token}) as browser:  # a copy of the cookie
        assert browser.get("/api/auth/me").status_code == 401
    keys = list(api.store.r.scan_iter("*:session:revoked:*"))
    assert keys and 0 < api.store.r.pttl(keys[0]) <= api.app.state.accounts.ttl_s * 1000


def test_evidence_only_for_those_who_see_its_case_and_never_through_a_symlink(api, make_case):
    snap = make_case().snapshot  # a case of g-2
    assert api.get(f"/api/evidence/{snap}").status_code == 200  # operator
    assert api.get(f"/api/evidence/{snap}", headers=api.headers_for("w1")).status_code == 200  # g-2
    assert api.get(f"/api/evidence/{snap}", headers=api.headers_for("w-g1")).status_code == 404  # g-1
    link = api.evidence.dir / ("ab" * 16 + ".jpg")
    link.symlink_to("/etc/passwd")
    try:
        r = api.get(f"/api/evidence/{link.name}", headers=api.headers_for("admin"))
        assert r.status_code == 404 and b"root:" not in r.content
    finally:
        link.unlink()


def test_forwarded_for_is_not_believed_from_an_untrusted_peer(api):
    """A local process rotating X-Forwarded-For must not dodge the login limit (uvicorn trusts 127.0.0.1 by default)."""
    statuses = []
    for i in range(api.app.state.config.auth.login_failures + 2):
        r = api.post("/api/auth/login", json={"username": "admin", "password": "guess"},
                     headers={"Authorization": "", "X-Forwarded-For": f"203.0.113.{i}"})
        statuses.append(r.status_code)
    assert statuses[-1] == 429 and "Retry-After" in r.headers, statuses
    assert not list(api.store.r.scan_iter("*:login:fail:203.0.113.*"))


def test_documents_and_admin_page_need_the_right_login(api):
    anon = {"Authorization": ""}
    assert api.get("/openapi.json", headers=anon).status_code == 401
    assert api.get("/docs", headers=anon, follow_redirects=False).status_code == 303
    assert api.get("/openapi.json").json()["info"]["title"] == "gridwatch"  # the operator
    assert api.get("/docs").status_code == 200
    for name in ("op", "w1"):
        r = api.get("/admin", headers=api.headers_for(name))
        assert r.status_code == 403 and "admin page is for admins" in r.json()["detail"]
    assert api.get("/admin", headers=api.headers_for("admin")).status_code == 200


# ---- 10. security headers; the pages pass their own CSP -------------------------------------------------------------
PAGES = ["/", "/worker", "/admin", "/live/cam-1", "/login", "/docs"]


def test_every_answer_carries_the_security_headers(api, make_case):
    snap = make_case().snapshot
    admin = api.headers_for("admin")
    for path in [*PAGES, "/api/alerts", f"/api/evidence/{snap}", "/static/nope.js", "/api/cases/nope"]:
        h = api.get(path, headers=admin).headers
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY", path
        assert h["referrer-policy"] == "same-origin" and "frame-ancestors 'none'" in h["content-security-policy"], path
    csp = api.get("/", headers=admin).headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert api.get("/api/alerts", headers=admin).headers["content-security-policy"].startswith("default-src 'none'")


def test_pages_work_under_their_content_security_policy(api, make_case, browser_page):
    from playwright.sync_api import expect

    cid = make_case().id
    violations: list[str] = []
    page = browser_page(cookies=api.cookies_for("admin"), bypass_csp=False)
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{api.base_url}/")
    expect(page.locator(f'[data-case-id="{cid}"]').first).to_be_visible(timeout=WAIT_MS)
    page.goto(f"{api.base_url}/admin")
    expect(page.locator('[data-camera-id="cam-1"]')).to_be_visible(timeout=WAIT_MS)
    page.goto(f"{api.base_url}/worker")
    page.wait_for_load_state("networkidle")
    login = browser_page(bypass_csp=False)
    login.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    login.goto(f"{api.base_url}/login")
    login.fill("input[name=username]", "op")
    login.fill("input[name=password]", TEST_PASSWORD)
    login.keyboard.press("Enter")
    login.wait_for_url(f"{api.base_url}/", timeout=WAIT_MS)
    assert violations == []


# ---- 11. CSRF from a same-site page on another port ------------------------------------------------------------------
def test_a_page_on_another_origin_cannot_act_with_the_session_cookie(api, make_case, browser_page, tmp_path):
    make_case()  # waiting in g-2's queue
    (tmp_path / "attack.html").write_text(
        f'<form method="post" action="{api.base_url}/api/grids/g-2/take?worker=w1"></form>'
        "<script>document.forms[0].submit()</script>")
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        page = browser_page(cookies=api.cookies_for("w1"))
        page.goto(f"http://127.0.0.1:{evil.server_address[1]}/attack.html")
        page.wait_for_url(f"{api.base_url}/api/grids/g-2/take*", timeout=WAIT_MS)
        assert "cross-site request refused" in page.content()
    finally:
        evil.shutdown()
    assert api.get("/api/grids/g-2/pending").json() == []  # nobody took it
    # the same request from the server's own page goes through
    page = browser_page(cookies=api.cookies_for("w1"))
    page.goto(f"{api.base_url}/worker")
    status = page.evaluate("async () => (await fetch('/api/grids/g-2/take?worker=w1', {method: 'POST'})).status")
    assert status == 200


# ---- 1. account changes reach every running server ---------------------------------------------------------------------
@pytest.fixture
def two_servers(redis_url, tmp_path):
    """Two API processes' apps (as two `gridwatch serve`) over one config file, one accounts file and one Redis."""
    data = {**API_CONFIG, "settings": {"data_dir": str(tmp_path / "data")}}
    path = tmp_path / "gridwatch.yaml"
    path.write_text(yaml.safe_dump(data))
    client = redis.Redis.from_url(redis_url)
    prefix = f"gwprobe-{os.urandom(4).hex()}"
    env = {**os.environ, "GRIDWATCH_PASSWORD": "first password"}
    subprocess.run([str(GRIDWATCH), "user", "add", "--config", str(path), "ana", "--role", "operator"],
                   check=True, env=env, capture_output=True, timeout=60)
    servers = []
    try:
        for _ in range(2):
            cfg = load_config(path)
            app = create_app(cfg, CaseStore(client, prefix=prefix), redis_url, EvidenceStore(tmp_path / "ev"))
            ctx = serving(app)
            servers.append((ctx, ctx.__enter__()))
        yield path, [url for _, url in servers]
    finally:
        for ctx, _ in servers:
            ctx.__exit__(None, None, None)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


def _login(url: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/api/auth/login", json={"username": "ana", "password": password}, timeout=10)


def test_passwd_and_remove_reach_every_running_server_within_seconds(two_servers):
    from conftest import wait_for

    path, urls = two_servers
    tokens = [_login(u, "first password").json()["access_token"] for u in urls]
    env = {**os.environ, "GRIDWATCH_PASSWORD": "second password"}
    subprocess.run([str(GRIDWATCH), "user", "passwd", "--config", str(path), "ana"], check=True, env=env,
                   capture_output=True, timeout=60)
    t0 = time.monotonic()
    for url, token in zip(urls, tokens):
        me = lambda: httpx.get(f"{url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})  # noqa: E731
        assert wait_for(lambda: me().status_code == 401, timeout=5), "the old token still works"
        assert _login(url, "first password").status_code == 401
        assert _login(url, "second password").status_code == 200
    assert time.monotonic() - t0 < 5
    subprocess.run([str(GRIDWATCH), "user", "remove", "--config", str(path), "ana"], check=True,
                   capture_output=True, timeout=60)
    for url in urls:
        assert wait_for(lambda: _login(url, "second password").status_code == 401, timeout=5)


def test_a_broken_accounts_file_keeps_the_accounts_as_they_were(two_servers, caplog):
    path, urls = two_servers
    accounts = path.parent / "data" / "accounts.yaml"
    good = accounts.read_text()
    accounts.write_text(good.replace("role: operator", "role: emperor"))
    time.sleep(1.5)
    with caplog.at_level(logging.ERROR, logger="gridwatch.accounts"):
        assert _login(urls[0], "first password").status_code == 200  # neither locked out nor let anybody in
        assert _login(urls[0], "first password").status_code == 200
    assert sum("cannot be used" in r.getMessage() for r in caplog.records) == 1


# ---- 7. Redis away: 503 with Retry-After, logged once, the event stream closes ---------------------------------------------
@pytest.fixture
def killable_redis(tmp_path):
    """A valkey-server of this test's own on a unix socket (no supervisor): to kill and start again."""
    sock = tmp_path / "vk.sock"
    cmd = [str(valkey_binary()), "--port", "0", "--unixsocket", str(sock), "--dir", str(tmp_path), "--save", "",
           "--appendonly", "yes"]

    def start():
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from conftest import wait_for
        assert wait_for(lambda: sock.exists(), timeout=10)
        return proc

    procs = [start()]
    yield f"unix://{sock}", procs, lambda: procs.append(start())
    for p in procs:
        p.kill()
        p.wait(5)


def test_redis_away_answers_503_with_retry_after_and_logs_once(killable_redis, tmp_path, caplog):
    from conftest import authorize, wait_for

    url, procs, restart = killable_redis
    store = CaseStore(redis.Redis.from_url(url, socket_timeout=2), prefix="gwout")
    app = create_app(parse_config(API_CONFIG), store, url, EvidenceStore(tmp_path / "ev"))
    with serving(app) as base, httpx.Client(base_url=base, headers=authorize(app, "op"), timeout=10) as c:
        assert c.get("/api/alerts").status_code == 200
        lines: list[str] = []

        def listen():
            with c.stream("GET", "/api/events") as events:
                lines.extend(events.iter_lines())
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert wait_for(lambda: any(x.startswith("event: stream.ready") for x in lines), timeout=5)
        procs[0].kill()
        procs[0].wait(5)
        with caplog.at_level(logging.INFO):
            listener.join(10)  # the open stream says why and ends: the browser's EventSource reconnects
            assert not listener.is_alive() and "event: stream.unavailable" in lines and "retry: 5000" in lines
            answers = [c.get(p) for p in ("/api/alerts", "/api/cases/x", "/api/grids/g-2/pending", "/api/events") * 6]
            assert {r.status_code for r in answers} == {503}
            assert all(r.headers["retry-after"] == "5" and "unavailable" in r.json()["detail"] for r in answers)
            restart()
            assert wait_for(lambda: c.get("/api/alerts").status_code == 200, timeout=10)
            assert wait_for(lambda: any("available again" in r.getMessage() for r in caplog.records), timeout=5)
        down = [r for r in caplog.records if "unavailable" in r.getMessage() and r.name == "alerts.outage"]
        assert len(down) == 1 and not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records]
