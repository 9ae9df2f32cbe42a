"""The pipeline process: camera readers -> one batched inference loop -> analysers -> alert publisher.

Stages talk through small interfaces (``FrameSlot``, ``PersonDetector.detect``,
``CameraAnalyser.analyse``, ``AlertPublisher.handle``), so a later issue can
swap one of them, or split cameras among processes, without rewiring the rest.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, Protocol

from alerts import AlertPublisher, CaseStore
from gridwatch.config import GridwatchConfig
from gridwatch.telemetry import Telemetry
from streams import CameraReader, FrameSlot
from vision.analyser import Analysis, CameraAnalyser
from vision.detections import Detections, Frame

log = logging.getLogger(__name__)


class Detector(Protocol):
    def detect(self, images: list) -> list[Detections]: ...


class InferenceLoop(threading.Thread):
    """Takes the newest frame of every camera that has one and runs them through the model as one batch."""

    def __init__(self, slots: dict[str, FrameSlot], wake: threading.Event, detector: Detector,
                 analysers: dict[str, CameraAnalyser], sink: Callable[[Analysis], object]):
        super().__init__(name="inference", daemon=True)
        self.slots, self.wake, self.detector, self.analysers, self.sink = slots, wake, detector, analysers, sink
        self._stop_event = threading.Event()
        self.frames = 0
        self.batches = 0
        self.latency_s: deque[float] = deque(maxlen=500)  # hand-off -> incidents, per frame
        self.started = time.time()
        self.error: str | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self.wake.set()
        if self.is_alive():
            self.join(30)

    def step(self) -> int:
        """One batch; returns how many frames it analysed."""
        frames: list[Frame] = [f for s in self.slots.values() if (f := s.take()) is not None]
        if not frames:
            return 0
        detections = self.detector.detect([f.image for f in frames])
        for frame, dets in zip(frames, detections):
            analysis = self.analysers[frame.camera_id].analyse(frame, dets)
            self.sink(analysis)
            self.latency_s.append(time.time() - frame.ts)
        self.frames += len(frames)
        self.batches += 1
        return len(frames)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            try:
                self.step()
            except Exception as err:  # keep analysing the fleet; the error shows in stats
                self.error = f"{type(err).__name__}: {err}"
                log.exception("inference step failed")
                time.sleep(0.5)

    def stats(self) -> dict:
        lat = sorted(self.latency_s)
        elapsed = max(time.time() - self.started, 1e-6)
        return {"frames": self.frames, "batches": self.batches, "fps": self.frames / elapsed,
                "mean_batch": self.frames / max(self.batches, 1),
                "latency_p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
                "latency_p95_ms": 1000 * lat[int(len(lat) * 0.95)] if lat else None, "error": self.error}


class Pipeline:
    """Everything that runs per fleet: readers, the inference loop, the publisher and health reporting."""

    def __init__(self, cfg: GridwatchConfig, detector: Detector, store: CaseStore, publisher: AlertPublisher,
                 health_every_s: float = 1.0):
        self.cfg, self.store, self.publisher = cfg, store, publisher
        self.wake = threading.Event()
        cams = [c for c in cfg.cameras if c.enabled]
        self.slots = {c.id: FrameSlot(self.wake) for c in cams}
        ing = cfg.ingest
        self.readers = {c.id: CameraReader(c.id, c.url, c.fps, self.slots[c.id], open_timeout=ing.open_timeout_s,
                                           read_timeout=ing.read_timeout_s, max_side=ing.max_side,
                                           hwaccel=ing.hwaccel)
                        for c in cams}
        self.telemetry = Telemetry(store.r, store.p)
        self.analysers = {c.id: CameraAnalyser(c) for c in cams}
        self.zone_counts: dict[tuple[str, str], int] = {}
        self.inference = InferenceLoop(self.slots, self.wake, detector, self.analysers, self._on_analysis)
        self._health_every = health_every_s
        self._stop = threading.Event()
        self._health_thread = threading.Thread(target=self._report_health, name="health", daemon=True)

    def _on_analysis(self, analysis: Analysis) -> None:
        for z in analysis.zones:
            self.zone_counts[(z.camera_id, z.zone_id)] = z.count
        self.publisher.handle(analysis)  # every frame: the publisher may keep recent frames for evidence

    def health(self) -> dict[str, dict]:
        out = {}
        for cid, reader in self.readers.items():
            h = reader.snapshot_health()
            h["zones"] = {z: n for (c, z), n in self.zone_counts.items() if c == cid}
            out[cid] = h
        return out

    def _report_health(self) -> None:
        while not self._stop.wait(self._health_every):
            try:
                self.telemetry.put(self.health(), self.inference.stats())
            except Exception as err:  # Redis away for a moment: the next round tries again
                log.warning("could not write camera health: %s", err)

    def start(self) -> "Pipeline":
        for r in self.readers.values():
            r.start()
        self.inference.start()
        self._health_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for r in self.readers.values():
            r._stop_event.set()
        for r in self.readers.values():
            r.stop()
        self.inference.stop()
