"""Incidents -> alerts with evidence -> cases in the grid's queue."""
from __future__ import annotations

import logging
import time

from gridwatch.config import GridwatchConfig
from vision.analyser import Analysis
from vision.detections import Incident
from vision.zones import PolygonZone

from .cases import Alert, CaseStore
from .evidence import EvidenceStore, annotate

log = logging.getLogger(__name__)


class AlertPublisher:
    """Turns each incident that starts or grows into an alert; one open case per (camera, zone, kind).

    The cooldown is kept in Redis (``SET NX PX``), so it holds across restarts
    and across processes that share a queue.
    """

    def __init__(self, cfg: GridwatchConfig, store: CaseStore, evidence: EvidenceStore):
        self.cfg, self.store, self.evidence = cfg, store, evidence
        self.cameras = {c.id: c for c in cfg.cameras}
        self.zones = {(c.id, z.id): PolygonZone(z.id, z.polygon) for c in cfg.cameras for z in c.zones}
        self.published = 0

    def handle(self, analysis: Analysis) -> list[dict]:
        cases = []
        for inc in analysis.incidents:
            if inc.phase == "end":
                log.info("incident ended: %s %s/%s", inc.kind, inc.camera_id, inc.zone_id)
                continue
            try:
                cases.append(self.publish(inc, analysis))
            except Exception:  # one failed alert must not stop the analysis of every camera
                log.exception("could not publish %s on %s/%s", inc.kind, inc.camera_id, inc.zone_id)
        return cases

    def publish(self, inc: Incident, analysis: Analysis) -> dict:
        cam = self.cameras[inc.camera_id]
        zone_cfg = next(z for z in cam.zones if z.id == inc.zone_id)
        zone = self.zones[(cam.id, zone_cfg.id)]
        snapshot = None
        if inc.phase == "start" or self.store.open_case_for(f"{cam.id}:{zone_cfg.id}:{inc.kind}") is None:
            frame = analysis.frame
            title = (f"{inc.kind.upper()} {cam.name or cam.id} / {zone_cfg.name or zone_cfg.id}: {inc.count} people  "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(frame.ts))}")
            image = annotate(frame.image, analysis.detections, analysis.tracks, zone.pixel_polygon(frame.wh),
                             zone.mask(analysis.detections, frame.wh), title)
            snapshot = self.evidence.save_jpeg(image)
        alert = Alert(inc.kind, cam.id, cam.name or cam.id, cam.grid, zone_cfg.id, inc.ts, inc.count,
                      round(inc.score, 3), inc.detail, snapshot, cam.lat, cam.lon)
        case, created = self.store.create_case(alert, self.cfg.alerts.cooldown_s)
        if created:
            self.published += 1
            log.info("alert %s: %s at %s/%s (%d people) -> grid %s", case["id"], inc.kind, cam.id, zone_cfg.id,
                     inc.count, cam.grid)
        return case
