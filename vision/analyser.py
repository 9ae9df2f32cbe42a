"""Per-camera analysis: detections -> tracks -> zone states -> incidents."""
from __future__ import annotations

from dataclasses import dataclass

from gridwatch.config import Camera

from .detections import Detections, Frame, Incident, ZoneState
from .rules import ConflictMonitor, CrowdingMonitor
from .tracker import ByteTracker
from .zones import PolygonZone


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything one frame produced; what the alert stage needs for evidence."""

    frame: Frame
    detections: Detections  # every person found in the frame
    tracks: Detections  # the confirmed tracks among them, with ids
    zones: tuple[ZoneState, ...]
    incidents: tuple[Incident, ...]


class CameraAnalyser:
    """Owns one camera's tracker and rule state; fed frames in time order."""

    def __init__(self, camera: Camera):
        self.camera_id = camera.id
        self.tracker = ByteTracker(fps=camera.fps)
        self.zones = [PolygonZone(z.id, z.polygon) for z in camera.zones]
        self.crowding = {z.id: CrowdingMonitor(camera.id, z.id, z.crowding) for z in camera.zones if z.crowding}
        self.conflict = {z.id: ConflictMonitor(camera.id, z.id, z.conflict) for z in camera.zones if z.conflict.enabled}

    def analyse(self, frame: Frame, detections: Detections) -> Analysis:
        tracks = self.tracker.update(detections)
        states, incidents = [], []
        for zone in self.zones:
            # Counts come from detections, not confirmed tracks: at 1-3 analysis fps a walking person
            # often moves too far between frames for ByteTrack to confirm a new track, and a crowd
            # would be under-counted. Tracks carry identity (conflict now, dwell and inertia later).
            count = int(zone.mask(detections, frame.wh).sum())
            tracked = tracks[zone.mask(tracks, frame.wh)]
            ids = tuple(int(t) for t in tracked.tracker_id)  # type: ignore[union-attr]
            states.append(ZoneState(self.camera_id, zone.zone_id, frame.ts, count, ids))
            for monitor, observation in ((self.crowding.get(zone.zone_id), count),
                                         (self.conflict.get(zone.zone_id), tracked)):
                if monitor is not None and (inc := monitor.update(frame.ts, observation)) is not None:
                    incidents.append(inc)
        return Analysis(frame, detections, tracks, tuple(states), tuple(incidents))
