"""Admin changes reach the running pipeline without a restart (ConfigChannel -> Pipeline.reconfigure)."""

import redis
from conftest import wait_for

from gridwatch.config import keep_secret, load_config, parse_config, save_config
from gridwatch.configsync import ConfigChannel
from gridwatch.harness import RtspServer
from gridwatch.service import Service
from gridwatch.telemetry import Telemetry


def cfg_with(cameras, data_dir):
    return parse_config({"grids": [{"id": "g-1"}], "cameras": cameras,
                         "settings": {"data_dir": str(data_dir)}}).resolve_paths(data_dir)


def cam(cid, url, zones=()):
    return {"id": cid, "url": url, "grid": "g-1", "lat": 31.2, "lon": 121.4, "fps": 2, "zones": list(zones)}


def test_cameras_added_removed_and_rezoned_while_running(vtest, rtsp_ok, tmp_path, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    with RtspServer({"a": vtest, "b": vtest}) as server:
        first = cfg_with([cam("cam-a", server.url("a"))], tmp_path)
        with Service(first) as svc:
            telemetry = Telemetry(svc.store.r, svc.store.p)
            assert wait_for(lambda: telemetry.cameras().get("cam-a", {}).get("frames_analysed", 0) > 0, 30)
            zone = {"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "crowding": {"threshold": 1, "hold_s": 0}}
            second = cfg_with([cam("cam-b", server.url("b"), [zone])], tmp_path)
            ConfigChannel(redis.Redis.from_url(svc.redis_url), svc.store.p).publish(second, actor="admin-1")
            # cam-b starts being read and analysed with its new zone; cam-a stops
            assert wait_for(lambda: telemetry.cameras().get("cam-b", {}).get("zones", {}).get("all") is not None, 40)
            assert "cam-a" not in svc.pipeline.readers and "cam-b" in svc.pipeline.readers
            assert [c.id for c in svc.app.state.config.cameras] == ["cam-b"]


def test_save_config_round_trips_and_keeps_secrets(tmp_path):
    path = tmp_path / "gw.yaml"
    cfg = cfg_with([cam("cam-a", "rtsp://admin:s3cret@192.0.2.1/x")], tmp_path)
    save_config(cfg, path)
    again = load_config(path)
    assert again.cameras[0].url == "rtsp://admin:s3cret@192.0.2.1/x"
    # the admin page sends back the masked URL it was shown: the stored password stays, for the same host only
    assert keep_secret("rtsp://admin:***@192.0.2.1/y", again.cameras[0].url) == "rtsp://admin:s3cret@192.0.2.1/y"
    assert keep_secret("rtsp://admin:***@192.0.2.9/x", again.cameras[0].url) == "rtsp://admin:***@192.0.2.9/x"
