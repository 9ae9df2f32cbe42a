"""Incidents -> alerts with evidence -> cases in the grid's queue (through the spool when Redis is away)."""
from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gridwatch.config import GridwatchConfig
from vision.zones import PolygonZone

from .cases import Alert, Case, CaseStore, incident_id_for, priority_of
from .clips import ClipRecorder
from .evidence import EvidenceStore, annotate
from .spool import Outbox, Spool, adopt_orphans

if TYPE_CHECKING:
    from vision.analyser import Analysis
    from vision.detections import Incident

log = logging.getLogger(__name__)

WINDOWS = "conflict-windows"  # <evidence_dir>/conflict-windows/<incident_id>.json: what a conflict alert was judged on
_ID = re.compile(r"^[0-9a-f]{13}-[0-9a-f]{10}$")


def window_path(evidence_dir: Path, incident_id: str) -> Path | None:
    """Where the analysis window of a conflict incident is kept (None for a malformed incident id)."""
    return Path(evidence_dir) / WINDOWS / f"{incident_id}.json" if _ID.match(incident_id) else None


def read_window(evidence_dir: Path, incident_id: str) -> dict | None:
    """The window JSON ``WindowWriter`` wrote for an incident, or None when there is none (or it cannot be read)."""
    path = window_path(evidence_dir, incident_id)
    try:
        return json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None


class WindowWriter:
    """Writes each conflict alert's analysis window (``Incident.evidence``) as JSON on its own thread: the inference
    thread only queues it. A full queue (a stalled disk) drops the window, with a warning, rather than wait."""

    def __init__(self, folder: Path, maxsize: int = 256):
        self.folder = Path(folder)
        self._q: queue.Queue[tuple[str, dict] | None] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.written = self.dropped = 0

    def put(self, incident_id: str, doc: dict) -> bool:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="conflict-windows", daemon=True)
                self._thread.start()
        try:
            self._q.put_nowait((incident_id, doc))
            return True
        except queue.Full:
            self.dropped += 1
            log.warning("conflict window of %s dropped: %d waiting to be written", incident_id, self._q.qsize())
            return False

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            try:
                self.write(*item)
            except Exception:  # one failed write must not end the writer
                log.exception("could not write the conflict window of %s", item[0])
            finally:
                self._q.task_done()
        self._q.task_done()

    def write(self, incident_id: str, doc: dict) -> Path | None:
        if not _ID.match(incident_id):
            return None
        path = self.folder / f"{incident_id}.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(path)
        self.written += 1
        return path

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was queued is written (at most ``timeout`` s); True when it was."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._q.unfinished_tasks

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        if self._thread is not None:
            try:
                self._q.put_nowait(None)
            except queue.Full:
                return
            self._thread.join(timeout)


class AlertPublisher:
    """Turns each incident into alerts that carry its stable id: the start, then its news and its end.

    The queue makes one case per incident (and one per (camera, zone, kind) within
    the cooldown), so a repeated alert never makes a second case. Called for every
    analysed frame: the frames also feed the clip recorder's ring buffer.
    """

    def __init__(self, cfg: GridwatchConfig, store: CaseStore, evidence: EvidenceStore, *,
                 clips: ClipRecorder | None = None, spool_dir: Path | None = None, worker: str | None = None):
        """``worker``: this process's name in the fleet; its spool is ``<spool_dir>/<prefix>.<worker>`` and the spools that
        dead workers left beside it are delivered first (``adopt_orphans``)."""
        self.cfg, self.evidence = cfg, evidence
        self.store = store.with_policy(cfg.alerts)
        self.cameras = {c.id: c for c in cfg.cameras}
        self.zones = {(c.id, z.id): PolygonZone(z.id, z.polygon) for c in cfg.cameras for z in c.zones}
        root = spool_dir or cfg.alerts.spool_dir or Path(evidence.dir).parent / "spool"
        own = root / f"{self.store.p}.{worker}" if worker else root  # the key prefix too: spools deliver to it
        self.outbox = Outbox(Spool(own), self._deliver)
        self.adopted = adopt_orphans(root, own, self._deliver, f"{self.store.p}.") if worker else []
        if clips is None and cfg.alerts.clip.enabled:
            clips = ClipRecorder(evidence, cfg.alerts.clip)
        self.clips = clips
        self._open: dict[tuple[str, str, str], tuple[str, int]] = {}  # incident key -> (id, last seq)
        self.published = 0
        self.windows = WindowWriter(Path(evidence.dir) / WINDOWS)

    def reconfigure(self, cfg: GridwatchConfig) -> None:
        """Cameras and zones changed (admin): evidence and alerts follow the new ones from now on."""
        self.cfg = cfg
        self.cameras = {c.id: c for c in cfg.cameras}
        self.zones = {(c.id, z.id): PolygonZone(z.id, z.polygon) for c in cfg.cameras for z in c.zones}

    def _deliver(self, op: dict) -> object:
        if op["op"] == "alert":
            return self.store.ingest(Alert(**op["alert"]), op["cooldown_s"])
        if op["op"] == "attach":
            return self.store.attach(op["incident_id"], op["field"], op["name"])
        raise ValueError(f"unknown spool operation {op['op']!r}")

    def handle(self, analysis: Analysis) -> list[Case]:
        if self.clips is not None:
            f = analysis.frame
            self.clips.push(f.camera_id, f.ts, f.image)
        cases = []
        for inc in analysis.incidents:
            try:
                if (case := self.publish(inc, analysis)) is not None:
                    cases.append(case)
            except Exception:  # one failed alert must not stop the analysis of every camera
                log.exception("could not publish %s on %s/%s", inc.kind, inc.camera_id, inc.zone_id)
        return cases

    def publish(self, inc: Incident, analysis: Analysis) -> Case | None:
        """Send one incident's alert; returns its case, or None when it was spooled (or was an end)."""
        cam = self.cameras[inc.camera_id]
        zone_cfg = next(z for z in cam.zones if z.id == inc.zone_id)
        key = (cam.id, zone_cfg.id, inc.kind)
        new = inc.phase == "start" or key not in self._open
        iid, seq = (incident_id_for(*key, inc.ts), 0) if new else (self._open[key][0], self._open[key][1] + 1)
        if inc.phase == "end":
            self._open.pop(key, None)
        else:
            self._open[key] = (iid, seq)
        snapshot = self._snapshot(inc, analysis) if new and inc.phase != "end" else None
        crowding = zone_cfg.crowding
        prio, level = priority_of(inc.kind, inc.count, crowding.effective_threshold if crowding else None)
        alert = Alert(kind=inc.kind, camera_id=cam.id, camera_name=cam.name or cam.id, grid_id=cam.grid,
                      zone_id=zone_cfg.id, ts=inc.ts, count=inc.count, score=round(inc.score, 3), detail=inc.detail,
                      snapshot=snapshot, lat=cam.lat, lon=cam.lon, incident_id=iid, seq=seq, priority=prio,
                      level=level, phase=inc.phase)
        if new and inc.phase == "start" and inc.evidence is not None:  # before sending: kept when spooled too
            self.windows.put(iid, {"incident_id": iid, "kind": inc.kind, "camera_id": cam.id, "grid_id": cam.grid,
                                   "zone_id": zone_cfg.id, "ts": inc.ts, "score": inc.score, **inc.evidence})
        result = self.outbox.send({"op": "alert", "alert": alert.as_dict(), "cooldown_s": self.cfg.alerts.cooldown_s})
        if new and inc.phase != "end" and self.clips is not None:
            self.clips.request(cam.id, inc.ts, lambda name, iid=iid: self._attach_clip(iid, name))
        if result is None:
            return None
        status, case = result
        if status == "created":
            self.published += 1
            log.info("alert %s: %s at %s/%s (%d people, priority %d) -> grid %s", case.id, inc.kind, cam.id,
                     zone_cfg.id, inc.count, prio, cam.grid)
        return case

    def _attach_clip(self, incident_id: str, name: str) -> None:
        self.outbox.send({"op": "attach", "incident_id": incident_id, "field": "clip", "name": name})

    def _snapshot(self, inc: Incident, analysis: Analysis) -> str:
        cam = self.cameras[inc.camera_id]
        zone_cfg = next(z for z in cam.zones if z.id == inc.zone_id)
        zone = self.zones[(cam.id, zone_cfg.id)]
        frame = analysis.frame
        title = (f"{inc.kind.upper()} {cam.name or cam.id} / {zone_cfg.name or zone_cfg.id}: {inc.count} people  "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(frame.ts))}")
        image = annotate(frame.image, analysis.detections, analysis.tracks, zone.pixel_polygon(frame.wh),
                         zone.mask(analysis.detections, frame.wh), title)
        return self.evidence.save_jpeg(image)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the clips asked for and deliver what is spooled (as far as Redis allows)."""
        if self.clips is not None:
            self.clips.close(timeout)
        self.windows.close(min(timeout, 5.0))
        self.outbox.flush(min(timeout, 10.0))
        self.outbox.close()
        for outbox in self.adopted:
            outbox.flush(min(timeout, 5.0))
            outbox.close()

    def stats(self) -> dict:
        return {"published": self.published, "spooling": self.outbox.spooling, "spooled": self.outbox.spooled,
                "replayed": self.outbox.replayed + sum(o.replayed for o in self.adopted), "rejected": self.outbox.rejected,
                "conflict_windows": {"written": self.windows.written, "dropped": self.windows.dropped},
                "clips": self.clips.stats() if self.clips is not None else None}
