"""Prometheus metrics, scraped at /metrics: per camera and for the inference loop."""
from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gridwatch.config import GridwatchConfig
from gridwatch.telemetry import Telemetry
from streams.reader import CameraState

from ..auth import metrics_access
from ..deps import get_config, get_telemetry

router = APIRouter()

STATES = (*get_args(CameraState), "unowned")


class TelemetryCollector:
    """Reads the pipeline's last report from Redis at scrape time (no second bookkeeping in the API)."""

    def __init__(self, cfg: GridwatchConfig, telemetry: Telemetry):
        self.cfg, self.telemetry = cfg, telemetry

    def collect(self):
        workers = self.telemetry.workers()
        health = self.telemetry.cameras(workers)
        # the worker that runs (or last ran) the camera: a camera's counters are per reader, so they restart when it
        # moves, and a series per worker keeps them monotonic, as Prometheus expects of a counter
        labels = ["camera", "grid", "worker"]
        up = GaugeMetricFamily("gridwatch_camera_state", "1 for the camera's current state", labels=labels + ["state"])
        fps_in = GaugeMetricFamily("gridwatch_camera_fps_in", "frames decoded per second", labels=labels)
        fps_an = GaugeMetricFamily("gridwatch_camera_fps_analysed", "frames analysed per second", labels=labels)
        counters = {k: CounterMetricFamily(f"gridwatch_camera_{k}", help_, labels=labels) for k, help_ in {
            "frames_in": "frames decoded", "frames_analysed": "frames handed to the analyser",
            "frames_dropped": "frames replaced before analysis", "frames_skipped": "packets not decoded",
            "decode_errors": "packets that failed to decode", "reconnects": "reconnection attempts",
            "decode_cpu_seconds": "CPU seconds spent decoding"}.items()}
        zone = GaugeMetricFamily("gridwatch_zone_count", "people in the zone", labels=labels + ["zone"])
        for cam in self.cfg.cameras:
            h = health.get(cam.id, {})
            lv = [cam.id, cam.grid, h.get("worker") or ""]
            for s in STATES:
                up.add_metric(lv + [s], 1.0 if h.get("state") == s else 0.0)
            fps_in.add_metric(lv, h.get("fps_in", 0.0))
            fps_an.add_metric(lv, h.get("fps_analysed", 0.0))
            for k, fam in counters.items():
                fam.add_metric(lv, h.get("decode_cpu_s" if k == "decode_cpu_seconds" else k, 0))
            for zid, n in h.get("zones", {}).items():
                zone.add_metric(lv + [zid], n)
        yield from (up, fps_in, fps_an, zone, *counters.values())
        wl = ["worker", "host"]
        alive = GaugeMetricFamily("gridwatch_worker_up", "1 for each worker process reporting", labels=wl)
        owned = GaugeMetricFamily("gridwatch_worker_cameras", "cameras the worker owns", labels=wl)
        frames = CounterMetricFamily("gridwatch_inference_frames", "frames through the model", labels=wl)
        batches = CounterMetricFamily("gridwatch_inference_batches", "model calls", labels=wl)
        latency = {q: GaugeMetricFamily(f"gridwatch_inference_latency_{q}_ms", f"hand-off to incidents, {q}",
                                        labels=wl) for q in ("p50", "p95")}
        for w in workers:
            lv, p = [w["name"], w["host"]], w.get("pipeline") or {}
            alive.add_metric(lv, 1.0)
            owned.add_metric(lv, len(w.get("cameras", [])))
            frames.add_metric(lv, p.get("frames", 0))
            batches.add_metric(lv, p.get("batches", 0))
            for q, fam in latency.items():
                if (v := p.get(f"latency_{q}_ms")) is not None:
                    fam.add_metric(lv, v)
        yield from (alive, owned, frames, batches, *latency.values())


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_access)])
def metrics(cfg: Annotated[GridwatchConfig, Depends(get_config)],
            telemetry: Annotated[Telemetry, Depends(get_telemetry)]) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TelemetryCollector(cfg, telemetry))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
