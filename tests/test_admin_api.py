"""Admin API (/api/admin/...): edits validated by the config model, saved, published on the ConfigChannel.

Real uvicorn, real Redis, the real RTSP server with real footage for the camera test button.
"""
from pathlib import Path

import cv2
import numpy as np

from gridwatch.config import load_config
from gridwatch.configsync import ConfigChannel
from gridwatch.harness import RtspServer

ZONE = {"id": "door", "name": "Door", "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 0.95], [0.1, 0.95]],
        "min_confidence": 0.3, "active_hours": ["07:00-22:00"],
        "crowding": {"threshold": 6, "hold_s": 4}, "gathering": {"rise": 4, "within_s": 20}}


def channel(api) -> ConfigChannel:
    return ConfigChannel(api.store.r, api.store.p)


def fields(r) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {e["field"]: e["message"] for e in r.json()["errors"]}


def test_edit_keeps_the_password_saves_and_publishes(api, tmp_path):
    admin = api.headers_for("admin")
    path = tmp_path / "gw.yaml"
    api.app.state.config_path = path
    assert api.get("/api/admin/config").status_code == 403  # an operator may not
    r = api.get("/api/admin/config", headers=admin)
    assert r.status_code == 200 and "topsecret" not in r.text
    cam = r.json()["cameras"][0]
    assert cam["url"] == "rtsp://admin:***@192.0.2.1/s"

    cam["zones"].append(ZONE)
    cam["name"] = "Gate (north)"
    r = api.put("/api/admin/cameras/cam-1", json=cam, headers=admin, params={"actor": "someone-else"})
    assert r.status_code == 200, r.text
    assert "topsecret" not in r.text and r.json()["saved_to"] == str(path)
    version = r.json()["version"]

    # the running config, the published one and the file: the new zone, and the password kept
    published = channel(api).current()
    assert channel(api).version() == version
    assert published.camera("cam-1").url == "rtsp://admin:topsecret@192.0.2.1/s"
    zone = published.camera("cam-1").zones[1]
    assert (zone.crowding.threshold, zone.crowding.effective_clear_below, zone.gathering.rise) == (6, 5, 4)
    assert load_config(path).camera("cam-1").url == "rtsp://admin:topsecret@192.0.2.1/s"
    got = api.get("/api/cameras/cam-1").json()
    assert got["name"] == "Gate (north)" and [z["id"] for z in got["zones"]] == ["z1", "door"]
    # the admin audit names the logged-in admin, whatever actor the client claims
    assert api.get("/api/audit", headers=admin).json()["entries"][-1]["actor"] == "admin"

    # a rule switched off, a zone removed
    cam = api.get("/api/admin/config", headers=admin).json()["cameras"][0]
    cam["zones"] = [z for z in cam["zones"] if z["id"] != "z1"]
    cam["zones"][0]["gathering"] = None
    assert api.put("/api/admin/cameras/cam-1", json=cam, headers=admin).status_code == 200
    zones = channel(api).current().camera("cam-1").zones
    assert [z.id for z in zones] == ["door"] and zones[0].gathering is None


def test_invalid_changes_name_each_field_and_change_nothing(api):
    admin = api.headers_for("admin")
    cam = api.get("/api/admin/config", headers=admin).json()["cameras"][0]
    before = channel(api).version()
    bad = {**cam, "grid": "g-9", "lat": 95,
           "zones": [{**ZONE, "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]], "crowding": {"threshold": 5, "clear_below": 7}},
                     {"id": "z 2", "polygon": [[0, 0], [0.5, 0]]}]}
    got = fields(api.put("/api/admin/cameras/cam-1", json=bad, headers=admin))
    assert "cross" in got["body.zones.0.polygon"]
    assert "clear_below" in got["body.zones.0.crowding"]
    assert "at least 3 points" in got["body.zones.1.polygon"]
    assert "body.zones.1.id" in got and "body.lat" in got
    # the whole-config check (the grid must exist) names its field the same way
    got = fields(api.put("/api/admin/cameras/cam-1", json={**cam, "grid": "g-9"}, headers=admin))
    assert got == {"body.grid": "'g-9' is not a grid in this file; add it under grids:"}
    # a new user with the masked password: there is no password to keep
    got = fields(api.put("/api/admin/cameras/cam-1", json={**cam, "url": "rtsp://other:***@192.0.2.1/s"}, headers=admin))
    assert "password" in got["body.url"]
    # a count calibration fitted for 960-px detections, on this config's 640-px detector: refused, with the fix
    mall = str(Path(__file__).resolve().parents[1] / "models" / "counting" / "mall.json")
    counted = {**cam, "zones": [{**cam["zones"][0], "count_calibration": mall}]}
    got = fields(api.put("/api/admin/cameras/cam-1", json=counted, headers=admin))
    assert "imgsz 960" in got["body.zones.0.count_calibration"]
    assert "python -m vision.counting fit" in got["body.zones.0.count_calibration"]
    assert channel(api).version() == before
    assert api.app.state.config.camera("cam-1").grid == "g-2"


def test_new_camera_test_button_and_snapshot_on_the_real_rtsp_server(api, vtest, rtsp_ok):
    admin = api.headers_for("admin")
    with RtspServer({"walk": vtest}) as server:
        url = server.url("walk")
        r = api.post("/api/admin/cameras/test", json={"url": url}, headers=admin)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (int(r.headers["x-height"]), int(r.headers["x-width"])) == (576, 768)
        assert img.std() > 10  # a real picture, not a blank

        r = api.post("/api/admin/cameras/test", json={"url": "rtsp://u:pw-never-shown@127.0.0.1:9/x"}, headers=admin)
        assert r.status_code == 502 and "pw-never-shown" not in r.text and "127.0.0.1:9" in r.json()["detail"]

        new = {"id": "cam-walk", "name": "Walkway", "url": url, "grid": "g-1", "lat": 31.21, "lon": 121.41, "zones": [ZONE]}
        r = api.put("/api/admin/cameras/cam-walk", params={"create": "true"}, json=new, headers=admin)
        assert r.status_code == 200, r.text
        assert api.put("/api/admin/cameras/cam-walk", params={"create": "true"}, json=new, headers=admin).status_code == 409
        assert [c["id"] for c in api.get("/api/cameras").json()] == ["cam-1", "cam-walk"]
        assert [c.id for c in channel(api).current().cameras] == ["cam-1", "cam-walk"]
        r = api.get("/api/admin/cameras/cam-walk/snapshot", headers=admin)
        assert r.status_code == 200 and cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR) is not None

        assert api.delete("/api/admin/cameras/cam-walk", headers=admin).status_code == 200
        assert [c.id for c in channel(api).current().cameras] == ["cam-1"]


def test_grid_outline_for_the_map(api):
    admin = api.headers_for("admin")
    ring = [[121.39, 31.19], [121.41, 31.19], [121.41, 31.21], [121.39, 31.21], [121.39, 31.19]]
    r = api.put("/api/admin/grids/g-2", json={"id": "g-2", "name": "Two", "parent": "g-1",
                                              "outline": {"type": "Polygon", "coordinates": [ring[:-1]]}}, headers=admin)
    assert "not closed" in fields(r)["body.outline.coordinates"]
    r = api.put("/api/admin/grids/g-2", json={"id": "g-2", "name": "Two", "parent": "g-1",
                                              "outline": {"type": "Polygon", "coordinates": [ring]}}, headers=admin)
    assert r.status_code == 200, r.text
    m = api.get("/api/map").json()
    assert m["grids"][1]["outline"]["coordinates"] == [ring] and m["grids"][0]["outline"] is None
    assert m["cameras"] == [{"id": "cam-1", "name": "Gate", "grid": "g-2", "lat": 31.2, "lon": 121.4}]
    assert channel(api).current().grids[1].outline is not None


WRITTEN = """\
grids:
- id: g-1
  name: One
cameras:
- id: cam-1
  url: rtsp://admin:topsecret@192.0.2.1/s
  grid: g-1
  lat: 31.2
  lon: 121.4
  zones:
  - id: square
    polygon: [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
    area_m2: 10.0
    crowding: {density: 3.0}
- id: cam-2
  url: rtsp://192.0.2.2/s
  grid: g-1
  lat: 31.3
  lon: 121.5
  fps: 2.0
settings:
  data_dir: var
alerts:
  evidence_dir: evidence
"""


def test_saving_through_the_admin_api_writes_back_what_the_user_wrote_plus_the_edit(store, redis_url, tmp_path):
    """The bug: a zone with density and area_m2 got its derived threshold written back by the first save (so a new
    area changed nothing after it), and paths were written back absolute. Now the file keeps what was written."""
    import httpx
    import yaml
    from conftest import authorize

    from alerts import EvidenceStore
    from api import create_app
    from gridwatch.harness import serving

    path = tmp_path / "gw.yaml"
    path.write_text(WRITTEN)
    cfg = load_config(path)
    assert cfg.settings.data_dir == tmp_path / "var"  # the runtime copy resolves; the file stays as written
    assert cfg.camera("cam-1").zones[0].crowding.effective_threshold == 30
    app = create_app(cfg, store, redis_url, EvidenceStore(tmp_path / "ev"))
    app.state.config_path = path
    with serving(app) as base, httpx.Client(base_url=base, headers=authorize(app, "admin"), timeout=10) as admin:
        for area, threshold in ((20.0, 60), (5.0, 15)):
            cam = admin.get("/api/admin/config").json()["cameras"][0]  # as the page gets it: every field
            assert cam["zones"][0]["crowding"]["threshold"] is None and cam["url"] == "rtsp://admin:***@192.0.2.1/s"
            cam["zones"][0]["area_m2"] = area  # the admin's edit
            assert admin.put("/api/admin/cameras/cam-1", json=cam).status_code == 200
            expected = yaml.safe_load(WRITTEN)
            expected["cameras"][0]["zones"][0]["area_m2"] = area
            assert yaml.safe_load(path.read_text()) == expected  # exactly what was written, plus the edit
            running = app.state.config.camera("cam-1").zones[0].crowding
            assert running.effective_threshold == threshold and running.threshold is None
            assert ConfigChannel(store.r, store.p).current().camera("cam-1").zones[0].crowding.effective_threshold \
                == threshold
        assert app.state.config.alerts.evidence_dir == tmp_path / "evidence"
        assert load_config(path).settings.data_dir == tmp_path / "var"
