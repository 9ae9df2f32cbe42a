"""The HTTP API on a real uvicorn server and a real Redis: alerts, cases, transitions, evidence, push."""
import json
import threading
import time


def test_cameras_with_health_and_no_password(api, make_case):
    api.store.put_health({"cam-1": {"state": "online", "frames_in": 10, "frames_analysed": 4, "zones": {"z1": 3}}})
    body = api.get("/api/cameras").json()
    assert body[0]["state"] == "online" and body[0]["zones"][0]["count"] == 3
    assert "topsecret" not in json.dumps(body) and body[0]["url"] == "rtsp://admin:***@192.0.2.1/s"


def test_alerts_filter_and_case_history(api, make_case):
    crowd = make_case()
    fight = make_case(kind="conflict", count=2)
    assert [a["id"] for a in api.get("/api/alerts").json()] == [fight["id"], crowd["id"]]
    assert [a["id"] for a in api.get("/api/alerts", params={"kind": "crowding"}).json()] == [crowd["id"]]
    assert api.get("/api/alerts", params={"grid": "g-1"}).json() == []
    assert api.get("/api/alerts", params={"kind": "parade"}).status_code == 422
    detail = api.get(f"/api/cases/{crowd['id']}").json()
    assert detail["history"][0]["action"] == "create" and detail["snapshot_url"].startswith("/api/evidence/")
    assert api.get("/api/cases/none").status_code == 404


def test_transitions_and_409_on_illegal(api, make_case):
    cid = make_case()["id"]
    r = api.post(f"/api/cases/{cid}/close", json={"actor": "op"})
    assert r.status_code == 409 and "cannot close" in r.json()["detail"] and "it is new" in r.json()["detail"]
    assert api.post(f"/api/cases/{cid}/acknowledge", json={"actor": "op"}).json()["state"] == "acknowledged"
    r = api.post(f"/api/cases/{cid}/dispatch", json={"actor": "op"})
    assert r.status_code == 422 and "worker" in r.json()["detail"]
    assert api.post(f"/api/cases/{cid}/dispatch", json={"actor": "op", "worker": "w1"}).json()["worker"] == "w1"
    r = api.post(f"/api/cases/{cid}/verify", json={"actor": "w1", "verdict": "false_alarm", "note": "queue for bus"})
    assert r.json()["verdict"] == "false_alarm"
    done = api.post(f"/api/cases/{cid}/close", json={"actor": "op"}).json()
    assert done["state"] == "closed"
    assert [h["actor"] for h in done["history"]] == ["gridwatch", "op", "op", "w1", "op"]


def test_evidence_is_served_and_paths_are_refused(api, make_case):
    case = make_case()
    r = api.get(f"/api/evidence/{case['snapshot']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert api.get("/api/evidence/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert api.get("/api/evidence/0000.jpg").status_code == 404


def test_worker_takes_from_grid_queue(api, make_case):
    case = make_case()
    assert api.post("/api/grids/g-2/take", params={"worker": "w1"}).json()["id"] == case["id"]
    assert api.post("/api/grids/g-2/take", params={"worker": "w2"}).status_code == 204
    assert api.post("/api/grids/nope/take", params={"worker": "w2"}).status_code == 404


def test_new_alerts_are_pushed_as_server_sent_events(api, make_case):
    got = []

    def listen():
        with api.stream("GET", "/api/events", timeout=15) as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event:
                    got.append((event, json.loads(line.split(":", 1)[1])))
                    if len(got) == 2:
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(0.8)  # let the listener subscribe
    t0 = time.time()
    case = make_case()
    api.post(f"/api/cases/{case['id']}/acknowledge", json={"actor": "op"})
    t.join(15)
    assert [(e, d["id"], d["state"]) for e, d in got] == [("case.created", case["id"], "new"),
                                                        ("case.updated", case["id"], "acknowledged")]
    assert time.time() - t0 < 5


def test_openapi_and_operator_page(api, make_case):
    spec = api.get("/openapi.json").json()
    assert "/api/cases/{case_id}/{action}" in spec["paths"] and "/api/alerts" in spec["paths"]
    assert api.get("/docs").status_code == 200
    page = api.get("/")
    assert page.status_code == 200 and "EventSource" in page.text
