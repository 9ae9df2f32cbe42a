"""Camera health through the API and as Prometheus metrics, as the pipeline reports it."""
from prometheus_client.parser import text_string_to_metric_families

from gridwatch.telemetry import Telemetry


def report(api, **health):
    Telemetry(api.store.r, api.store.p).put(
        {"cam-1": {"state": "stalled", "since": 1000.0, "fps_in": 24.5, "fps_analysed": 2.0, "frames_in": 900,
                   "frames_analysed": 72, "frames_dropped": 3, "frames_skipped": 800, "reconnects": 4,
                   "decode_cpu_s": 1.5, "decode_mode": "keyframes", "zones": {"z1": 6},
                   "last_error": "stream ended", "history": [{"state": "online", "since": 990.0},
                                                            {"state": "stalled", "since": 1000.0}], **health}},
        {"frames": 500, "batches": 60, "fps": 9.5, "mean_batch": 8.3, "latency_p50_ms": 80.0,
         "latency_p95_ms": 140.0, "error": None})


def test_camera_health_in_the_api(api):
    report(api)
    cam = api.get("/api/cameras/cam-1").json()
    assert cam["state"] == "stalled" and cam["fps_in"] == 24.5 and cam["decode_mode"] == "keyframes"
    assert [h["state"] for h in cam["history"]] == ["online", "stalled"]
    assert cam["zones"][0]["count"] == 6
    assert "topsecret" not in str(cam) and cam["url"].startswith("rtsp://admin:***@")
    assert api.get("/api/cameras/nope").status_code == 404
    assert api.get("/api/pipeline").json()["mean_batch"] == 8.3


def test_camera_without_report_is_unknown(api):
    cam = api.get("/api/cameras").json()[0]
    assert cam["state"] == "unknown" and cam["frames_in"] == 0


def test_prometheus_metrics(api):
    report(api)
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    states = {s.labels["state"]: s.value for s in fams["gridwatch_camera_state"].samples}
    assert states["stalled"] == 1.0 and states["online"] == 0.0
    reconnects = [s for s in fams["gridwatch_camera_reconnects"].samples if s.name.endswith("_total")]
    assert reconnects[0].value == 4 and reconnects[0].labels == {"camera": "cam-1", "grid": "g-2"}
    assert fams["gridwatch_zone_count"].samples[0].value == 6
    assert fams["gridwatch_inference_latency_p95_ms"].samples[0].value == 140.0
    assert "topsecret" not in r.text
