"""The HTTP API on a real uvicorn server and a real Redis: alerts, cases, transitions, evidence, push."""
import json
import threading
import time


def test_cameras_with_health_and_no_password(api, make_case):
    from gridwatch.telemetry import Telemetry

    health = {"cam-1": {"state": "online", "frames_in": 10, "frames_analysed": 4, "zones": {"z1": 3}}}
    Telemetry(api.store.r, api.store.p).put(health, {})  # as the pipeline writes it
    body = api.get("/api/cameras").json()
    assert body[0]["state"] == "online" and body[0]["zones"][0]["count"] == 3
    assert "topsecret" not in json.dumps(body) and body[0]["url"] == "rtsp://admin:***@192.0.2.1/s"


def test_alerts_filter_and_case_history(api, make_case):
    crowd = make_case()
    fight = make_case(kind="conflict", count=2)
    assert [a["id"] for a in api.get("/api/alerts").json()] == [fight.id, crowd.id]
    assert [a["id"] for a in api.get("/api/alerts", params={"kind": "crowding"}).json()] == [crowd.id]
    assert api.get("/api/alerts", params={"grid": "g-1"}).json() == []
    assert api.get("/api/alerts", params={"kind": "parade"}).status_code == 422
    detail = api.get(f"/api/cases/{crowd.id}").json()
    assert detail["history"][0]["action"] == "create" and detail["snapshot_url"].startswith("/api/evidence/")
    assert api.get("/api/cases/none").status_code == 404


def test_transitions_and_409_on_illegal(api, make_case):
    cid = make_case().id
    r = api.post(f"/api/cases/{cid}/close", json={"actor": "op"})
    assert r.status_code == 409 and "cannot close" in r.json()["detail"] and "it is new" in r.json()["detail"]
    assert api.post(f"/api/cases/{cid}/acknowledge", json={"actor": "op"}).json()["state"] == "acknowledged"
    r = api.post(f"/api/cases/{cid}/dispatch", json={"actor": "op"})
    assert r.status_code == 422 and "worker" in r.json()["detail"]
    assert api.post(f"/api/cases/{cid}/dispatch", json={"actor": "op", "worker": "w1"}).json()["worker"] == "w1"
    assert api.post(f"/api/cases/{cid}/arrive", json={"actor": "w1"}).json()["state"] == "on_site"
    r = api.post(f"/api/cases/{cid}/resolve", json={"actor": "w1", "verdict": "maybe"})
    assert r.status_code == 422
    r = api.post(f"/api/cases/{cid}/resolve", json={"actor": "w1", "verdict": "false_alarm", "note": "queue for bus"})
    assert r.json()["verdict"] == "false_alarm" and r.json()["state"] == "resolved"
    done = api.post(f"/api/cases/{cid}/close", json={"actor": "op"}).json()
    assert done["state"] == "closed"
    assert [h["actor"] for h in done["history"]] == ["gridwatch", "op", "op", "w1", "w1", "op"]
    # the operator entered w1's arrival and verdict (a radio call): the history keeps who really sent them
    assert [h["by"] for h in done["history"]] == [None, None, None, "op", "op", None]
    assert api.post(f"/api/cases/{cid}/verify", json={"actor": "op"}).status_code == 422  # the old action is gone
    audit = api.get(f"/api/cases/{cid}/audit").json()
    assert audit == {"case_id": cid, "intact": True, "first_bad": None, "entries": 6}


def test_notes_and_photos_from_the_worker(api, make_case):
    import cv2
    import numpy as np

    cid = make_case().id
    r = api.post(f"/api/cases/{cid}/notes", json={"actor": "w1", "note": "people queue for the bus"})
    assert r.status_code == 200 and r.json()["notes"] == 1 and r.json()["history"][-1]["action"] == "note"
    photo = cv2.imencode(".jpg", np.full((120, 160, 3), (30, 90, 200), np.uint8))[1].tobytes()
    r = api.post(f"/api/cases/{cid}/photos", params={"actor": "w1", "note": "the queue"}, content=photo,
                 headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    url = r.json()["photo_urls"][0]
    got = api.get(url)
    assert got.status_code == 200 and got.content == photo and got.headers["content-type"] == "image/jpeg"
    r = api.post(f"/api/cases/{cid}/photos", params={"actor": "w1"}, content=b"not a picture",
                 headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 415 and "JPEG or PNG" in r.json()["detail"]
    assert api.post("/api/cases/nope/notes", json={"actor": "w1", "note": "x"}).status_code == 404


def test_evidence_is_served_and_paths_are_refused(api, make_case):
    case = make_case()
    r = api.get(f"/api/evidence/{case.snapshot}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert api.get("/api/evidence/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert api.get("/api/evidence/0000.jpg").status_code == 404


def test_worker_takes_from_grid_queue_and_accepts(api, make_case):
    crowd = make_case()
    fight = make_case(kind="conflict", count=2)
    taken = api.post("/api/grids/g-2/take", params={"worker": "w1"}).json()
    assert taken["id"] == fight.id and taken["priority"] == 1 and taken["deliveries"] == 1  # fights first
    assert api.post("/api/grids/g-2/take", params={"worker": "w2"}).json()["id"] == crowd.id
    assert api.post("/api/grids/g-2/take", params={"worker": "w3"}).status_code == 204
    assert api.post("/api/grids/nope/take", params={"worker": "w2"}).status_code == 404
    pending = api.get("/api/grids/g-2/pending").json()
    assert sorted((p["worker"], p["case"]) for p in pending) == [("w1", fight.id), ("w2", crowd.id)]
    r = api.post(f"/api/cases/{fight.id}/accept", json={"actor": "w1"})
    assert r.json()["state"] == "dispatched" and r.json()["worker"] == "w1"
    assert [p["case"] for p in api.get("/api/grids/g-2/pending").json()] == [crowd.id]
    assert [a["id"] for a in api.get("/api/alerts", params={"worker": "w1"}).json()] == [fight.id]
    police = api.get("/api/police").json()
    assert [(p["fields"]["case"], p["fields"]["type"]) for p in police] == [(fight.id, "dispatched"),
                                                                            (fight.id, "created")]
    assert api.get("/api/deadletter").json() == []


def test_feedback_report_per_zone(api, make_case):
    for verdict in ("false_alarm", "confirmed"):
        cid = make_case(zone=f"z-{verdict}").id
        for action, body in [("acknowledge", {}), ("resolve", {"verdict": verdict, "note": "seen on site"})]:
            assert api.post(f"/api/cases/{cid}/{action}", json={"actor": "w1", **body}).status_code == 200
    make_case(zone="z1")
    rows = {r["zone_id"]: r for r in api.get("/api/reports/zones").json()}
    assert (rows["z-false_alarm"]["false_alarm"], rows["z-false_alarm"]["false_alarm_rate"]) == (1, 1.0)
    assert (rows["z-confirmed"]["confirmed"], rows["z-confirmed"]["alerts"]) == (1, 1)
    assert rows["z1"]["unresolved"] == 1 and rows["z1"]["threshold"] == 5  # the zone's rule, to re-tune
    fb = api.get("/api/feedback", params={"verdict": "false_alarm"}).json()
    assert len(fb) == 1 and fb[0]["fields"]["zone"] == "z-false_alarm" and fb[0]["fields"]["snapshot"].endswith(".jpg")


def test_new_alerts_are_pushed_as_server_sent_events(api, make_case):
    got, ready = [], threading.Event()

    def listen():
        with api.stream("GET", "/api/events", timeout=15) as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "stream.ready":
                    ready.set()  # the stream's start is pinned: everything from now on is pushed
                elif line.startswith("data:") and event:
                    got.append((event, json.loads(line.split(":", 1)[1])))
                    if len(got) == 2:
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    t0 = time.time()
    case = make_case()
    api.post(f"/api/cases/{case.id}/acknowledge", json={"actor": "op"})
    t.join(15)
    assert [(e, d["id"], d["state"]) for e, d in got] == [("case.created", case.id, "new"),
                                                        ("case.updated", case.id, "acknowledged")]
    assert time.time() - t0 < 5


def test_openapi_and_operator_page(api, make_case):
    spec = api.get("/openapi.json").json()
    for path in ("/api/cases/{case_id}/{action}", "/api/alerts", "/api/grids/{grid_id}/take", "/api/reports/zones",
                 "/api/cases/{case_id}/photos", "/api/deadletter", "/api/police", "/api/feedback"):
        assert path in spec["paths"], path
    assert api.get("/docs").status_code == 200
    page = api.get("/")
    assert page.status_code == 200 and "EventSource" in page.text
