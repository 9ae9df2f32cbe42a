"""The HTTP API on a real uvicorn server and a real Redis: alerts, cases, transitions, evidence, push."""
import json
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn

from alerts import Alert, EvidenceStore
from api import create_app
from gridwatch.config import parse_config
from streams.rtsp import free_port

CFG = parse_config({
    "grids": [{"id": "g-1", "name": "One"}, {"id": "g-2", "name": "Two", "parent": "g-1"}],
    "cameras": [{"id": "cam-1", "name": "Gate", "url": "rtsp://admin:topsecret@192.0.2.1/s", "grid": "g-2",
                 "lat": 31.2, "lon": 121.4, "zones": [{"id": "z1", "polygon": [[0, 0], [1, 0], [1, 1]],
                                                      "crowding": {"threshold": 5}}]}],
})


@pytest.fixture
def api(store, redis_url, tmp_path):
    evidence = EvidenceStore(tmp_path / "evidence")
    app = create_app(CFG, store, redis_url, evidence)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        client.store, client.evidence = store, evidence
        yield client
    server.should_exit = True
    thread.join(10)


def make_case(client, kind="crowding", zone="z1", count=9):
    snap = client.evidence.save_jpeg(np.full((48, 64, 3), 127, np.uint8))
    case, _ = client.store.create_case(
        Alert(kind, "cam-1", "Gate", "g-2", zone, time.time(), count, 0.8, f"{count} people", snap, 31.2, 121.4), 60)
    return case


def test_cameras_with_health_and_no_password(api):
    api.store.put_health({"cam-1": {"state": "online", "frames_in": 10, "frames_analysed": 4, "zones": {"z1": 3}}})
    body = api.get("/api/cameras").json()
    assert body[0]["state"] == "online" and body[0]["zones"][0]["count"] == 3
    assert "topsecret" not in json.dumps(body) and body[0]["url"] == "rtsp://admin:***@192.0.2.1/s"


def test_alerts_filter_and_case_history(api):
    crowd = make_case(api)
    fight = make_case(api, kind="conflict", count=2)
    assert [a["id"] for a in api.get("/api/alerts").json()] == [fight["id"], crowd["id"]]
    assert [a["id"] for a in api.get("/api/alerts", params={"kind": "crowding"}).json()] == [crowd["id"]]
    assert api.get("/api/alerts", params={"grid": "g-1"}).json() == []
    assert api.get("/api/alerts", params={"kind": "parade"}).status_code == 422
    detail = api.get(f"/api/cases/{crowd['id']}").json()
    assert detail["history"][0]["action"] == "create" and detail["snapshot_url"].startswith("/api/evidence/")
    assert api.get("/api/cases/none").status_code == 404


def test_transitions_and_409_on_illegal(api):
    cid = make_case(api)["id"]
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


def test_evidence_is_served_and_paths_are_refused(api):
    case = make_case(api)
    r = api.get(f"/api/evidence/{case['snapshot']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert api.get("/api/evidence/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert api.get("/api/evidence/0000.jpg").status_code == 404


def test_worker_takes_from_grid_queue(api):
    case = make_case(api)
    assert api.post("/api/grids/g-2/take", params={"worker": "w1"}).json()["id"] == case["id"]
    assert api.post("/api/grids/g-2/take", params={"worker": "w2"}).status_code == 204
    assert api.post("/api/grids/nope/take", params={"worker": "w2"}).status_code == 404


def test_new_alerts_are_pushed_as_server_sent_events(api):
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
    case = make_case(api)
    api.post(f"/api/cases/{case['id']}/acknowledge", json={"actor": "op"})
    t.join(15)
    assert [(e, d["id"], d["state"]) for e, d in got] == [("case.created", case["id"], "new"),
                                                        ("case.updated", case["id"], "acknowledged")]
    assert time.time() - t0 < 5


def test_openapi_and_operator_page(api):
    spec = api.get("/openapi.json").json()
    assert "/api/cases/{case_id}/{action}" in spec["paths"] and "/api/alerts" in spec["paths"]
    assert api.get("/docs").status_code == 200
    page = api.get("/")
    assert page.status_code == 200 and "EventSource" in page.text
