"""Camera health through the API and as Prometheus metrics, as the pipeline reports it."""
from prometheus_client.parser import text_string_to_metric_families

from gridwatch.telemetry import Telemetry, WorkerInfo

WORKER = WorkerInfo("w-a", "host-a", 4242, capacity=8)


def report(api, worker: WorkerInfo | None = None, **health):
    Telemetry(api.store.r, api.store.p, worker=worker or WORKER).put(
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
    pipeline = api.get("/api/pipeline").json()
    assert pipeline["mean_batch"] == 500 / 60 and pipeline["workers"] == 1 and cam["worker"] == "w-a"


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
    assert reconnects[0].value == 4 and reconnects[0].labels == {"camera": "cam-1", "grid": "g-2", "worker": "w-a"}
    assert fams["gridwatch_zone_count"].samples[0].value == 6
    latency = fams["gridwatch_inference_latency_p95_ms"].samples[0]
    assert latency.value == 140.0 and latency.labels == {"worker": "w-a", "host": "host-a"}
    assert fams["gridwatch_worker_cameras"].samples[0].value == 1
    assert "topsecret" not in r.text


def test_fleet_lists_workers_and_owners(api):
    report(api)
    fleet = api.get("/api/fleet").json()
    assert [w["name"] for w in fleet["workers"]] == ["w-a"]
    w = fleet["workers"][0]
    assert (w["host"], w["pid"], w["capacity"], w["cameras"]) == ("host-a", 4242, 8, ["cam-1"])
    assert w["inference"]["latency_p95_ms"] == 140.0 and w["inference"]["fps"] == 9.5
    assert [(c["id"], c["worker"], c["state"]) for c in fleet["cameras"]] == [("cam-1", "w-a", "stalled")]
    assert fleet["unowned"] == 0


def test_a_dead_workers_camera_is_unowned_not_online(api):
    """The record stays in Redis after its worker died; the API must not believe it."""
    report(api, state="online")
    assert api.get("/api/cameras/cam-1").json()["state"] == "online"
    api.store.r.delete(f"{api.store.p}:worker:w-a")  # the worker's record expired: it stopped reporting
    cam = api.get("/api/cameras/cam-1").json()
    assert cam["state"] == "unowned" and cam["worker"] == "w-a"
    fleet = api.get("/api/fleet").json()
    assert fleet["workers"] == [] and fleet["unowned"] == 1
    assert fleet["cameras"][0] == {"id": "cam-1", "grid": "g-2", "worker": None, "state": "unowned"}
    # another worker takes it: its report replaces the stale one
    report(api, worker=WorkerInfo("w-b", "host-b", 77), state="connecting")
    cam = api.get("/api/cameras/cam-1").json()
    assert cam["state"] == "connecting" and cam["worker"] == "w-b"


def test_a_worker_that_stopped_reporting_drops_out(api):
    """A paused worker's record may not have expired yet; a report older than 5 s no longer counts."""
    import json
    import time

    report(api, state="online")
    key = f"{api.store.p}:worker:w-a"
    record = json.loads(api.store.r.get(key))
    api.store.r.zadd(f"{api.store.p}:workers", {"w-a": time.time() - 6})
    api.store.r.set(key, json.dumps(record), ex=30)
    assert api.get("/api/fleet").json()["workers"] == []
    assert api.get("/api/cameras/cam-1").json()["state"] == "unowned"
