"""End to end on real parts: pedestrians served over RTSP -> YOLO -> crowding alert with a snapshot
-> the grid's Redis stream -> the API -> a grid worker's case through its states."""
import threading
import time

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from conftest import authorize, wait_for

from gridwatch.config import parse_config
from gridwatch.harness import RtspServer, free_port
from gridwatch.service import Service
from models import WeightsNotFound


def config(url: str, data_dir, redis_url=None, model="yolov10n.pt"):
    return parse_config({
        "grids": [{"id": "g-9", "name": "Campus"}],
        "cameras": [{"id": "cam-walk", "name": "Walkway", "url": url, "grid": "g-9", "lat": 31.2, "lon": 121.4,
                     "fps": 3, "zones": [{"id": "path", "polygon": [[0, 0.25], [1, 0.25], [1, 1], [0, 1]],
                                          "crowding": {"threshold": 3, "hold_s": 2}}]}],
        "detector": {"model": model},
        "settings": {"data_dir": str(data_dir), "redis_url": redis_url},
    }).resolve_paths(data_dir)


def test_camera_to_case(vtest, rtsp_ok, tmp_path, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)  # the embedded default
    with RtspServer({"walk": vtest}) as cam, Service(config(cam.url("walk"), tmp_path)) as svc:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(svc.app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        try:
            grid_stream = svc.store.grid_stream("g-9")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not svc.store.r.exists(grid_stream):
                time.sleep(0.25)
            entries = svc.store.r.xrange(grid_stream)
            assert len(entries) == 1, f"no alert within 60 s; pipeline {svc.pipeline.inference.stats()}"
            case_id = entries[0][1][b"case"].decode()

            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=authorize(svc.app)) as api:
                alerts = api.get("/api/alerts", params={"grid": "g-9"}).json()
                assert [a["id"] for a in alerts] == [case_id]
                a = alerts[0]
                assert a["kind"] == "crowding" and a["camera_id"] == "cam-walk" and a["count"] >= 3
                jpeg = api.get(a["snapshot_url"])
                assert jpeg.status_code == 200
                image = cv2.imdecode(np.frombuffer(jpeg.content, np.uint8), cv2.IMREAD_COLOR)
                assert image.shape == (576, 768, 3)
                # the zone is drawn in red over the lower three quarters
                red = (image[..., 2] > 200) & (image[..., 1] < 60) & (image[..., 0] < 60)
                assert red.sum() > 500

                cams = api.get("/api/cameras").json()
                assert cams[0]["state"] == "online" and cams[0]["frames_analysed"] > 0
                # the live view's overlay: the pipeline's last analysed frame, people in normalised coordinates
                def people_overlay():
                    o = api.get("/api/cameras/cam-walk/overlay").json()
                    return o if o.get("boxes") and o.get("zones", {}).get("path", 0) >= 1 else None

                overlay = wait_for(people_overlay, 10)
                assert overlay, api.get("/api/cameras/cam-walk/overlay").json()
                assert all(0 <= v <= 1.01 for b in overlay["boxes"] for v in b) and time.time() - overlay["ts"] < 5

                for action, body in [("acknowledge", {}), ("dispatch", {"worker": "w-wang"}), ("arrive", {}),
                                     ("resolve", {"verdict": "confirmed", "note": "crowd at the walkway"}),
                                     ("close", {})]:
                    r = api.post(f"/api/cases/{case_id}/{action}", json={"actor": "op-1", **body})
                    assert r.status_code == 200, r.text
                final = api.get(f"/api/cases/{case_id}").json()
                assert final["state"] == "closed" and final["verdict"] == "confirmed"
                # (the pipeline's own entries, e.g. the clip, may come in between)
                assert [h["state"] for h in final["history"] if h["actor"] == "op-1"] == [
                    "acknowledged", "dispatched", "on_site", "resolved", "closed"]
            # the ongoing crowd stayed one case (cooldown), not one per frame
            time.sleep(2)
            assert svc.store.r.xlen(grid_stream) == 1
            assert svc.pipeline.inference.frames > 5
        finally:
            server.should_exit = True


def test_no_weights_no_start(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDWATCH_OFFLINE", "1")
    monkeypatch.setattr("models.weights._package_file", lambda module, rel: None)
    with pytest.raises(WeightsNotFound):
        with Service(config("rtsp://127.0.0.1:1/x", tmp_path)):
            pass
    assert not (tmp_path / "valkey").exists()  # refused before any server was started
