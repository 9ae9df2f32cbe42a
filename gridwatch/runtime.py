"""The pipeline process: camera readers -> one batched inference loop -> analysers -> alert publisher.

Stages talk through small interfaces (``FrameSlot``, ``PersonDetector.detect``,
``CameraAnalyser.analyse``, ``AlertPublisher.handle``), so a later issue can
swap one of them, or split cameras among processes, without rewiring the rest.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Protocol, runtime_checkable

import redis

from alerts import AlertPublisher, CaseStore
from alerts.outage import OutageLog
from gridwatch.config import GridwatchConfig
from gridwatch.telemetry import Telemetry, WorkerInfo
from models.conflict.registry import model_for
from streams import CameraReader, FrameSlot
from vision.analyser import Analysis, CameraAnalyser
from vision.batching import BatchPolicy, DynamicBatcher
from vision.detections import Detections, Frame
from vision.steps import drive_all

log = logging.getLogger(__name__)


class Detector(Protocol):
    """What the loop needs of a detector: images in, one Detections per image out."""

    def detect(self, images: list) -> list[Detections]: ...


@runtime_checkable
class StagedDetector(Detector, Protocol):
    """A detector split in three stages the loop runs in three threads (vision.detector.PersonDetector is one):
    letterbox on the CPU, the network, NMS; and the largest batch its device takes."""

    batch_limit: int

    def prepare(self, images: list) -> object: ...

    def infer(self, prepared: object) -> object: ...

    def finish(self, inferred: object) -> list[Detections]: ...


class _Stages:
    """A detector's three stages; a plain ``Detector`` runs it all in the network stage."""

    def __init__(self, detector: Detector):
        staged = isinstance(detector, StagedDetector)
        self.prepare = detector.prepare if staged else (lambda images: images)
        self.infer = detector.infer if staged else detector.detect
        self.finish = detector.finish if staged else (lambda found: found)


@dataclass
class _Batch:
    frames: list[Frame]
    work: object  # what the last stage made of the frames
    t_taken: float


class InferenceLoop(threading.Thread):
    """Frames of all cameras -> dynamic batches -> detector -> analysers, as a three-stage pipeline.

    Stage 1 (this thread) waits for a batch (``DynamicBatcher``: full, or its
    oldest frame waited ``max_wait_s``) and letterboxes it; stage 2 runs the
    network; stage 3 does NMS, the per-camera analysers and the sink. Stage 1
    only takes frames when stage 2 is about to need them (one batch prepared
    ahead), so no frame ages in a queue while newer ones arrive.
    """

    def __init__(self, slots: dict[str, FrameSlot], wake: threading.Event, detector: Detector,
                 analysers: dict[str, CameraAnalyser], sink: Callable[[Analysis], object],
                 policy: BatchPolicy | None = None):
        super().__init__(name="inference", daemon=True)
        self.slots, self.wake, self.detector, self.analysers, self.sink = slots, wake, detector, analysers, sink
        policy = policy or BatchPolicy()
        limit = detector.batch_limit if isinstance(detector, StagedDetector) else policy.max_batch  # fits the device
        self.policy = replace(policy, max_batch=max(1, min(policy.max_batch, limit)))
        self.batcher = DynamicBatcher(slots, wake, self.policy)
        self._stages = _Stages(detector)
        self._stop_event = threading.Event()
        self._ahead = threading.Semaphore(1)  # batches prepared but not yet in the network
        self._to_infer: queue.Queue[_Batch | None] = queue.Queue()
        self._to_finish: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._workers = [threading.Thread(target=self._infer_stage, name="inference-net", daemon=True),
                         threading.Thread(target=self._finish_stage, name="inference-post", daemon=True)]
        self.frames = 0
        self.batches = 0
        self.latency_s: deque[float] = deque(maxlen=500)  # packet arrival -> incidents, per frame
        self.wait_s: deque[float] = deque(maxlen=500)  # packet arrival -> taken into a batch, per frame
        self.stage_s: dict[str, deque[float]] = {k: deque(maxlen=200) for k in ("prepare", "infer", "finish")}
        self.started = time.time()
        self.error: str | None = None

    def start(self) -> None:
        for w in self._workers:
            w.start()
        super().start()

    def stop(self) -> None:
        self._stop_event.set()
        self.wake.set()
        if self.is_alive():
            self.join(30)
        self._to_infer.put(None)
        for w in self._workers:
            if w.is_alive():
                w.join(30)

    def _fail(self, where: str, err: Exception) -> None:
        self.error = f"{type(err).__name__}: {err}"  # keep analysing the fleet; the error shows in stats
        log.error("inference %s failed", where, exc_info=err)

    def _timed(self, stage: str, fn, arg):
        t0 = time.perf_counter()
        out = fn(arg)
        self.stage_s[stage].append(time.perf_counter() - t0)
        return out

    def _deliver(self, frames: list[Frame], detections: list[Detections]) -> None:
        # the cameras' analyses side by side, so the conflict rules' pose runs as one batch for the whole batch
        analyses = drive_all([self.analysers[f.camera_id].analyse_steps(f, d) for f, d in zip(frames, detections)])
        for frame, analysis in zip(frames, analyses):
            if isinstance(analysis, Exception):  # this camera's analysis failed: the others still go out
                self._fail(f"analysis of {frame.camera_id}", analysis)
                continue
            self.sink(analysis)
            self.latency_s.append(time.time() - frame.ts)
        self.frames += len(frames)
        self.batches += 1

    def run_once(self) -> int:
        """One batch of what is there now, through all stages in this thread; returns how many frames."""
        self.batcher.poll()
        frames = self.batcher.take_batch()
        if not frames:
            return 0
        work = self._stages.prepare([f.image for f in frames])
        self._deliver(frames, self._stages.finish(self._stages.infer(work)))
        return len(frames)

    def run(self) -> None:
        while not self._stop_event.is_set():
            if not self._ahead.acquire(timeout=0.5):
                continue
            try:
                frames = self.batcher.next_batch(self._stop_event)
                if not frames:
                    self._ahead.release()
                    continue
                now = time.time()
                self.wait_s.extend(now - f.ts for f in frames)
                work = self._timed("prepare", self._stages.prepare, [f.image for f in frames])
                self._to_infer.put(_Batch(frames, work, now))
            except Exception as err:
                self._ahead.release()
                self._fail("prepare", err)
                time.sleep(0.5)
        self._to_infer.put(None)

    def _infer_stage(self) -> None:
        while (batch := self._to_infer.get()) is not None:
            self._ahead.release()  # stage 1 may take the next frames now
            try:
                batch.work = self._timed("infer", self._stages.infer, batch.work)
                self._to_finish.put(batch)
            except Exception as err:
                self._fail("network", err)
        self._to_finish.put(None)

    def _finish_stage(self) -> None:
        while (batch := self._to_finish.get()) is not None:
            try:
                self._deliver(batch.frames, self._timed("finish", self._stages.finish, batch.work))
            except Exception as err:
                self._fail("post-processing", err)

    def stats(self) -> dict:
        def pct(values, q: float) -> float | None:
            v = sorted(values)
            return 1000 * v[min(int(len(v) * q), len(v) - 1)] if v else None

        elapsed = max(time.time() - self.started, 1e-6)
        b = self.batcher.stats
        return {"frames": self.frames, "batches": self.batches, "fps": self.frames / elapsed,
                "mean_batch": self.frames / max(self.batches, 1), "max_batch": self.policy.max_batch,
                "latency_p50_ms": pct(self.latency_s, 0.5), "latency_p95_ms": pct(self.latency_s, 0.95),
                "wait_p95_ms": pct(self.wait_s, 0.95), "stale_dropped": b.stale, "replaced_waiting": b.replaced,
                "batches_full": b.full,
                "batches_timed_out": b.timed_out,
                **{f"{k}_p50_ms": pct(v, 0.5) for k, v in self.stage_s.items()}, "error": self.error}


def overlay_of(analysis: Analysis) -> dict:
    """People of the analysed frame in normalised coordinates, for drawing over live video."""
    w, h = analysis.frame.wh
    det = analysis.detections
    boxes = (det.xyxy / [w, h, w, h]).round(4).tolist() if len(det) else []
    return {"ts": analysis.frame.ts, "boxes": boxes,
            "zones": {z.zone_id: z.count for z in analysis.zones}}


class Pipeline:
    """Everything that runs per fleet: readers, the inference loop, the publisher and health reporting."""

    def __init__(self, cfg: GridwatchConfig, detector: Detector, store: CaseStore, publisher: AlertPublisher,
                 health_every_s: float = 1.0, overlay_every_s: float = 0.2, worker: WorkerInfo | None = None,
                 owned: set[str] | None = None, lease: Callable[[], bool] | None = None,
                 fleet_stats: Callable[[], dict] | None = None):
        """``owned``: the cameras this worker runs (None: every enabled camera, a fleet of one); ``lease``: asked
        before anything is published (gridwatch.fleet.FleetMember.valid: false while a frozen worker may have lost
        its cameras to another); ``fleet_stats``: the membership's numbers for the worker's report."""
        self.cfg, self.store, self.publisher = cfg, store, publisher
        self.worker = worker or WorkerInfo.this_process()
        self._owned = owned
        self._lease = lease or (lambda: True)
        self._fleet_stats = fleet_stats or dict
        self.wake = threading.Event()
        cams = self._cameras(cfg)
        self.active = cams  # the cameras this process runs now
        self.slots = {cid: FrameSlot(self.wake) for cid in cams}
        self.readers = {cid: self._reader(c) for cid, c in cams.items()}
        self.telemetry = Telemetry(store.r, store.p, worker=self.worker)
        self.conflict_model = model_for(cfg)  # first: an unknown settings.conflict_model stops the start
        self.analysers = {cid: self._analyser(c) for cid, c in cams.items()}
        self._reconfig_lock = threading.Lock()
        self.zone_counts: dict[tuple[str, str], int] = {}
        self.discarded = 0  # analyses not published: the lease was in doubt or the camera had moved away
        det = cfg.detector
        self.inference = InferenceLoop(self.slots, self.wake, detector, self.analysers, self._on_analysis,
                                       BatchPolicy(det.max_batch, det.max_wait_ms / 1000, det.max_age_ms / 1000))
        self._health_every = health_every_s
        self._stop = threading.Event()
        self._health_thread = threading.Thread(target=self._report_health, name="health", daemon=True)
        # the live-view overlays: each camera's analyses since the last write (the page matches one to each video
        # frame), written in one round trip a few times a second by their own thread, not one SET per analysed frame
        # on the inference thread (492 cameras x 2 fps = ~1,000 SET/s)
        self._overlays: dict[str, list[dict]] = {}
        self._overlay_lock = threading.Lock()
        self._overlay_every = overlay_every_s
        self._overlay_thread = threading.Thread(target=self._write_overlays, name="overlays", daemon=True)

    def _analyser(self, cam) -> CameraAnalyser:
        return CameraAnalyser(cam, self.conflict_model, detector=self.cfg.detector)

    def _cameras(self, cfg: GridwatchConfig) -> dict:
        return {c.id: c for c in cfg.cameras if c.enabled and (self._owned is None or c.id in self._owned)}

    def assign(self, owned: set[str] | None) -> dict[str, list[str]]:
        """Run these cameras from now on (the fleet moved some here or away); the config stays as it is."""
        with self._reconfig_lock:
            self._owned = None if owned is None else set(owned)
        return self.reconfigure(self.cfg)

    def _reader(self, cam) -> CameraReader:
        ing = self.cfg.ingest
        return CameraReader(cam.id, cam.url, cam.fps, self.slots[cam.id], open_timeout=ing.open_timeout_s,
                            read_timeout=ing.read_timeout_s, max_side=ing.max_side, hwaccel=ing.hwaccel,
                            media_dirs=self.cfg.settings.media_dirs)

    def reconfigure(self, cfg: GridwatchConfig) -> dict[str, list[str]]:
        """Apply a changed config while running: start, stop or restart readers, rebuild changed analysers.

        Slots and analysers of removed cameras are kept (emptied, unfed) rather than
        deleted, so the inference loop, which holds the same dicts, never looks up
        a camera that vanished under it.
        """
        with self._reconfig_lock:
            old, new = self.active, self._cameras(cfg)
            changes: dict[str, list[str]] = {"added": [], "removed": [], "restarted": [], "rezoned": []}
            remodel = False
            try:  # another conflict model version (an admin activated one, or rolled back)
                model = model_for(cfg)
                remodel = model is not self.conflict_model
                self.conflict_model = model
            except Exception:  # unknown or unreadable: keep the version running now
                log.exception("conflict model %r could not be loaded; the running version stays",
                              cfg.settings.conflict_model)
            self.cfg, self.active = cfg, new
            for cid in old.keys() - new.keys():
                self.readers.pop(cid).stop(timeout=0)
                changes["removed"].append(cid)
            for cid, cam in new.items():
                before = old.get(cid)
                if before is None:
                    self.slots.setdefault(cid, FrameSlot(self.wake))
                    self.analysers[cid] = self._analyser(cam)
                    changes["added"].append(cid)
                elif (before.zones, before.perspective_check, before.fps) != (cam.zones, cam.perspective_check, cam.fps) \
                        or (remodel and any(z.conflict.enabled for z in cam.zones)):
                    # new rules (or check, or tracker rate, or conflict model): a clean state
                    self.analysers[cid] = self._analyser(cam)
                    changes["rezoned"].append(cid)
                if before is None or (before.url, before.fps) != (cam.url, cam.fps):
                    if cid in self.readers:
                        self.readers.pop(cid).stop(timeout=0)
                        changes["restarted"].append(cid)
                    self.readers[cid] = self._reader(cam)
                    self.readers[cid].start()
            self.inference.batcher.watch(self.slots)  # the cameras added (or gone) since
            self.publisher.reconfigure(cfg)
            log.info("config applied: %s", {k: v for k, v in changes.items() if v})
            return changes

    def _on_analysis(self, analysis: Analysis) -> None:
        if not self._lease() or analysis.frame.camera_id not in self.active:
            self.discarded += 1  # another worker may own this camera now: publishing would double its alerts
            return
        for z in analysis.zones:
            self.zone_counts[(z.camera_id, z.zone_id)] = z.count
        overlay = overlay_of(analysis)
        with self._overlay_lock:
            recent = self._overlays.setdefault(analysis.frame.camera_id, [])
            recent.append(overlay)
            del recent[:-10]  # a stalled writer keeps the newest few, not all
        self.publisher.handle(analysis)  # every frame: the publisher may keep recent frames for evidence

    def health(self) -> dict[str, dict]:
        out = {}
        for cid, reader in list(self.readers.items()):
            h = reader.snapshot_health()
            h["zones"] = {z: n for (c, z), n in self.zone_counts.items() if c == cid}
            out[cid] = h
        return out

    def _report_health(self) -> None:
        outage = OutageLog("Redis (camera health)", log)  # logged once per outage, not once per round
        while not self._stop.wait(self._health_every):
            try:
                # a worker whose lease is in doubt (just woken from a freeze) claims nothing until it rejoined
                owned = list(self.active) if self._lease() else []
                self.telemetry.put({c: h for c, h in self.health().items() if c in owned},
                                   {**self.inference.stats(), "discarded": self.discarded, **self._fleet_stats()},
                                   owned=owned)
                outage.ok()
            except redis.ConnectionError as err:  # Redis away: the next round tries again
                outage.failed(err)
            except Exception as err:
                log.warning("could not write camera health: %s", err)

    def _write_overlays(self) -> None:
        while not self._stop.wait(self._overlay_every):
            with self._overlay_lock:
                batch, self._overlays = self._overlays, {}
            if not batch:
                continue
            try:
                self.telemetry.put_overlays(batch)
            except Exception as err:  # the live overlay is a nicety; the next round writes newer ones
                log.debug("overlays not written: %s", err)

    def start(self) -> "Pipeline":
        for r in self.readers.values():
            r.start()
        self.inference.start()
        self._health_thread.start()
        self._overlay_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for r in self.readers.values():
            r._stop_event.set()
        for r in self.readers.values():
            r.stop()
        self.inference.stop()
        try:
            self.telemetry.retire()  # gone now, not when the record expires
        except redis.RedisError:
            pass
