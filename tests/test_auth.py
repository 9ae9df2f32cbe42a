"""Access control on the real server: every route of the live OpenAPI document, with each role.

Roles come from the document itself (each operation's security requirement lists the roles it admits), so a
route another router adds later is walked too, and a route that forgets its auth dependency fails here.
"""
import re
import time

import pytest
import yaml
from conftest import TEST_PASSWORD, shot

from alerts import Alert

PUBLIC = {("get", "/api/health"), ("post", "/api/auth/login")}
USERS = {"op": "operator", "w1": "grid_worker", "w-g1": "grid_worker", "admin": "admin"}  # w1: g-2, w-g1: g-1
ERROR_KEYS = {"detail", "status", "errors"}


def _call(api, method, url, headers, params, body):
    kw = {"headers": headers, "params": params}
    if body is not None:
        kw["content" if isinstance(body, bytes) else "json"] = body
    with api.stream(method.upper(), url, **kw) as r:  # streamed: /api/events never ends on its own
        body = r.read() if r.headers.get("content-type", "").startswith("application/json") else b""
        return r.status_code, body, r.headers


def _roles(op) -> set[str] | None:
    reqs = op.get("security")
    if not reqs:
        return None
    return {role for req in reqs for roles in req.values() for role in roles} or set(USERS.values())


def test_every_route_of_the_openapi_document_with_each_role(api, make_case):
    import json

    case = make_case()  # grid g-2, camera cam-1
    doc = api.get("/openapi.json").json()
    values = {"case_id": case.id, "camera_id": "cam-1", "grid_id": "g-2", "name": case.snapshot,
              "action": "arrive"}
    anon = {"Authorization": ""}  # the api client sends the operator's token unless told otherwise
    walked = public = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            url = re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], "x"), path)
            roles = _roles(op)
            if roles is None:
                assert (method, path) in PUBLIC, f"{method.upper()} {path} answers without credentials"
                public += 1
                continue
            walked += 1
            body = (b"" if "image/jpeg" in op.get("requestBody", {}).get("content", {})
                    else {"actor": "x"} if op.get("requestBody") else None)
            status, raw, headers = _call(api, method, url, anon, {}, body)
            assert status == 401, f"anonymous {method.upper()} {path}: {status}"
            assert set(json.loads(raw)) == ERROR_KEYS and headers["www-authenticate"] == "Bearer"
            for name, role in USERS.items():
                params = {p["name"]: name for p in op.get("parameters", [])
                          if p["in"] == "query" and p.get("required")}  # worker=, actor=: themselves
                if isinstance(body, dict):
                    body = {"actor": name}
                status, raw, _ = _call(api, method, url, api.headers_for(name), params, body)
                where = f"{name} ({role}) {method.upper()} {path}: {status} {raw[:200]!r}"
                if role not in roles:
                    assert status == 403, where
                    assert set(json.loads(raw)) == ERROR_KEYS, where
                elif name == "w-g1" and re.search(r"\{(case_id|camera_id|grid_id)\}", path):
                    assert status in (403, 404, 422), where  # another grid's case, camera or queue (422: refused earlier)
                elif name == "w1" and path == "/api/cases/{case_id}/{action}":
                    assert status == 403, where  # their grid's case, but not sent to them: not theirs to act on
                elif name == "w1" and path in ("/api/cases/{case_id}/notes", "/api/cases/{case_id}/photos"):
                    assert status == 422, where  # the generated body is empty (refused before who is asked)
                else:
                    assert status not in (401, 403), where
                    assert status < 500, where
    assert public == len(PUBLIC) and walked > 25


def test_login_cookie_and_bearer_then_password_change_ends_sessions(api):
    r = api.post("/api/auth/login", json={"username": "op", "password": "wrong password"}, headers={"Authorization": ""})
    assert r.status_code == 401 and r.json()["detail"] == "wrong user name or password"
    r = api.post("/api/auth/login", json={"username": "nobody", "password": TEST_PASSWORD}, headers={"Authorization": ""})
    assert r.status_code == 401
    r = api.post("/api/auth/login", json={"username": "w1", "password": TEST_PASSWORD}, headers={"Authorization": ""})
    assert r.status_code == 200, r.text
    token, cookie = r.json()["access_token"], r.cookies["gw_session"]
    assert r.json()["user"] == {"name": "w1", "role": "grid_worker", "grids": ["g-2"]}
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=lax" in r.headers["set-cookie"].lower()
    import httpx

    with httpx.Client(base_url=api.base_url) as fresh:
        assert fresh.get("/api/auth/me").status_code == 401
        assert fresh.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "w1"
        fresh.cookies.set("gw_session", cookie)
        assert fresh.get("/api/auth/me").json()["role"] == "grid_worker"
        assert fresh.get("/api/auth/me", headers={"Authorization": "Bearer forged.token"}).status_code == 401
        # a new password: the old sessions end
        book = api.app.state.accounts
        book.put("w1", "grid_worker", "another password 2", ["g-2"])
        assert fresh.get("/api/auth/me").status_code == 401
        assert fresh.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def other_grids_alert(kind: str, zone: str, count: int, detail: str) -> Alert:
    """An alert of a camera in g-1 (make_case's are in g-2)."""
    return Alert(kind=kind, camera_id="cam-x", camera_name="Other", grid_id="g-1", zone_id=zone, ts=time.time(),
                 count=count, score=0.8, detail=detail, snapshot=None, lat=31.0, lon=121.0)


def test_grid_worker_sees_only_their_grids(api, make_case):
    mine = make_case()  # g-2
    api.store.ingest(other_grids_alert("crowding", "z9", 9, "9 people"), 60)
    assert {a["grid_id"] for a in api.get("/api/alerts").json()} == {"g-1", "g-2"}  # the operator sees both
    w1, wg1 = api.headers_for("w1"), api.headers_for("w-g1")
    assert [a["id"] for a in api.get("/api/alerts", headers=w1).json()] == [mine.id]
    assert {a["grid_id"] for a in api.get("/api/alerts", headers=wg1).json()} == {"g-1"}
    r = api.get("/api/alerts", params={"grid": "g-2"}, headers=wg1)
    assert r.status_code == 403 and "w-g1 works in g-1, not in g-2" == r.json()["detail"]
    assert api.get(f"/api/cases/{mine.id}", headers=wg1).status_code == 404
    assert api.get(f"/api/cases/{mine.id}", headers=w1).status_code == 200
    assert api.get("/api/cameras", headers=wg1).json() == []  # cam-1 is in g-2
    # a worker acts as themselves, and only in the field
    r = api.post(f"/api/cases/{mine.id}/acknowledge", json={"actor": "w1"}, headers=w1)
    assert r.status_code == 403 and "for operators" in r.json()["detail"]
    r = api.post(f"/api/cases/{mine.id}/notes", json={"actor": "op", "note": "x"}, headers=w1)
    assert r.status_code == 403 and "acts as themselves" in r.json()["detail"]
    r = api.post(f"/api/cases/{mine.id}/notes", json={"actor": "w1", "note": "here"}, headers=w1)
    assert r.status_code == 403 and "not dispatched to w1" in r.json()["detail"]  # their grid's, not yet theirs
    assert api.post(f"/api/cases/{mine.id}/accept", json={"actor": "w1"}, headers=w1).status_code == 200
    assert api.post(f"/api/cases/{mine.id}/notes", json={"actor": "w1", "note": "here"}, headers=w1).status_code == 200
    assert api.post("/api/grids/g-2/take", params={"worker": "w2"}, headers=w1).status_code == 403
    assert api.get("/api/deadletter", headers=w1).status_code == 403
    # the event stream carries only their grids' cases
    import json
    import threading

    got, ready = [], threading.Event()

    def listen():
        with api.stream("GET", "/api/events", headers=wg1, timeout=10) as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                    if event == "stream.ready":
                        ready.set()
                elif line.startswith("data:") and event != "stream.ready":
                    got.append(json.loads(line[5:])["grid_id"])
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    make_case()  # g-2: not for w-g1
    api.store.ingest(other_grids_alert("conflict", "z8", 2, "fight"), 60)
    t.join(10)
    assert got == ["g-1"]


def test_pages_redirect_to_login_and_metrics_need_a_token(api):
    import httpx

    with httpx.Client(base_url=api.base_url) as anon:
        for page in ("/", "/live/cam-1", "/stats"):
            r = anon.get(page)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2F"), page
        assert anon.get("/login").status_code == 200 and "password" in anon.get("/login").text
        assert anon.get("/metrics").status_code == 401
        assert anon.get("/api/health").json() == {"status": "ok"}
    assert api.get("/metrics").status_code == 200  # the operator
    assert api.get("/metrics", headers=api.headers_for("w1")).status_code == 403
    api.app.state.config.auth.metrics_public = True
    with httpx.Client(base_url=api.base_url) as anon:
        assert anon.get("/metrics").status_code == 200


def test_camera_passwords_never_leave_the_api(api):
    for name in USERS:
        for path in ("/api/cameras", "/api/cameras/cam-1", "/openapi.json"):
            assert "topsecret" not in api.get(path, headers=api.headers_for(name)).text


def test_accounts_file_cli_and_first_admin(tmp_path, monkeypatch):
    """`gridwatch user add` writes argon2 hashes; a bad file is refused naming the field; the first admin once."""
    from gridwatch.accounts import AccountBook, ensure_admin, load_secret
    from gridwatch.cli import main
    from gridwatch.config import ConfigError, load_config

    cfg_path = tmp_path / "gw.yaml"
    cfg_path.write_text(yaml.safe_dump({"grids": [{"id": "g-1"}], "settings": {"data_dir": "data"}}))
    monkeypatch.setenv("GRIDWATCH_PASSWORD", "s3cret-password")
    assert main(["user", "add", "--config", str(cfg_path), "zhao", "--role", "grid_worker", "--grid", "g-1"]) == 0
    assert main(["user", "add", "--config", str(cfg_path), "li", "--role", "grid_worker", "--grid", "g-9"]) == 1
    text = (tmp_path / "data" / "accounts.yaml").read_text()
    assert "$argon2id$" in text and "s3cret-password" not in text
    assert (tmp_path / "data" / "accounts.yaml").stat().st_mode & 0o777 == 0o600
    cfg = load_config(cfg_path)
    book = AccountBook.for_config(cfg)
    assert book.verify("zhao", "s3cret-password").grids == ["g-1"] and book.verify("zhao", "nope") is None
    # the first start makes an admin and shows its password once
    monkeypatch.delenv("GRIDWATCH_ADMIN_PASSWORD", raising=False)
    password = ensure_admin(book)
    assert password and book.verify("admin", password) and ensure_admin(book) is None
    assert AccountBook.for_config(cfg).verify("admin", password)  # saved
    # a hand-edited file with a plain password is refused, naming the field
    (tmp_path / "data" / "accounts.yaml").write_text("accounts:\n- {name: x, role: operator, password_hash: hunter2}\n")
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.password_hash: must be an argon2 hash"):
        AccountBook.for_config(cfg)
    assert load_secret(tmp_path / "data" / "session.key") == load_secret(tmp_path / "data" / "session.key")


def test_browser_logs_in_and_lands_on_the_operator_page(api, make_case, browser_page):
    case = make_case()
    page = browser_page(viewport={"width": 1200, "height": 800})
    page.goto(f"{api.base_url}/")
    page.wait_for_selector("#login")
    assert "/login?next=%2F" in page.url
    page.fill("#username", "op")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('error').textContent.includes('wrong')")
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(f'[data-case-id="{case.id}"]')
    assert page.url.rstrip("/") == str(api.base_url).rstrip("/")
    shot(page, "login-then-operator")


def test_admin_changes_are_audited(api):
    r = api.put("/api/admin/grids/g-3", params={"create": "true"}, json={"id": "g-3", "name": "Three"},
                headers=api.headers_for("admin"))
    assert r.status_code == 200, r.text
    assert api.put("/api/admin/grids/g-3", json={"id": "g-3", "name": "x"}).status_code == 403  # the operator
    assert api.get("/api/audit").status_code == 403
    audit = api.get("/api/audit", headers=api.headers_for("admin")).json()
    assert audit["intact"] and audit["total"] == 1
    e = audit["entries"][0]
    assert (e["actor"], e["action"], e["target"], e["status"]) == ("admin", "PUT /api/admin/grids/{grid_id}",
                                                                 "/api/admin/grids/g-3", 200)
    assert e["detail"]["body"] == {"id": "g-3", "name": "Three"} and time.time() - e["ts"] < 30
    # append only: an edited entry breaks the chain
    key = api.app.state.admin_audit.key
    api.store.r.rpush(key, '{"actor": "mallory", "prev": "forged"}')
    assert api.get("/api/audit", headers=api.headers_for("admin")).json()["first_bad"] == 1


def test_wrong_passwords_make_that_user_wait_from_that_address(api):
    """Five wrong passwords for one user from one address: 429 with Retry-After, even with the right password;
    other users are not locked out; the count lives in Redis (every API process sees it) and expires."""
    def login(user, password):
        return api.post("/api/auth/login", json={"username": user, "password": password}, headers={"Authorization": ""})

    assert login("admin", TEST_PASSWORD).status_code == 200  # a success clears nothing it should not
    for _ in range(api.app.state.config.auth.login_failures):
        assert login("admin", "guess").status_code == 401
    r = login("admin", TEST_PASSWORD)
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 300
    assert "too many wrong passwords" in r.json()["detail"]
    assert login("w1", TEST_PASSWORD).status_code == 200  # someone else from the same address still gets in
    keys = [k.decode() for k in api.store.r.scan_iter(f"{api.store.p}:login:fail:*")]
    assert any(k.endswith(":admin") for k in keys)
    assert all(0 < api.store.r.pttl(k) <= 300_000 for k in keys)
    for k in keys:  # the window passes
        api.store.r.delete(k)
    assert login("admin", TEST_PASSWORD).status_code == 200
    # guesses sent all at once: each is counted before its password is checked, so only the limit's worth get through
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: login("admin", "guess").status_code, range(16)))
    assert codes.count(401) == api.app.state.config.auth.login_failures and codes.count(429) == 16 - codes.count(401)
