"""Per-camera analysis: detections -> tracks -> zone states -> incidents."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gridwatch.config import Camera, DetectorConfig, Zone

from .conflict.model import ConflictModel
from .conflict.monitor import ConflictMonitor, shared_pose
from .conflict.observe import CropPose, Steps, drive
from .counting import CountCalibration
from .detections import Detections, Frame, Incident, ZoneState
from .perspective import PerspectiveCheck
from .rules import CrowdingMonitor, GatheringMonitor, LoiteringMonitor
from .tracker import ByteTracker
from .zones import ActiveHours, PolygonZone, ZonePresence


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything one frame produced; what the alert stage needs for evidence."""

    frame: Frame
    detections: Detections  # every person found in the frame
    tracks: Detections  # the confirmed tracks among them, with ids
    zones: tuple[ZoneState, ...]
    incidents: tuple[Incident, ...]


class ZoneAnalyser:
    """One zone's filters (confidence, box size, inertia, active hours), its count and its rules."""

    def __init__(self, camera_id: str, zone: Zone, conflict_model: ConflictModel | None = None,
                 pose: CropPose | None = None):
        self.camera_id, self.cfg = camera_id, zone
        self.zone = PolygonZone(zone.id, zone.polygon)
        self.presence = ZonePresence()
        self.active_hours = ActiveHours(zone.active_hours)
        self.calibration = CountCalibration.load(zone.count_calibration) if zone.count_calibration else None
        self.crowding = CrowdingMonitor(camera_id, zone.id, zone.crowding, zone.area_m2) if zone.crowding else None
        self.gathering = GatheringMonitor(camera_id, zone.id, zone.gathering) if zone.gathering else None
        self.loitering = LoiteringMonitor(camera_id, zone.id, zone.loitering) if zone.loitering else None
        self.conflict = (ConflictMonitor(camera_id, zone.id, zone.conflict, conflict_model, pose)
                         if zone.conflict.enabled else None)
        self._mask: np.ndarray | None = None

    def pixel_mask(self, wh: tuple[int, int]) -> np.ndarray:
        """The zone as a frame-sized mask (for the count calibration's edge cue), made once per frame size."""
        if self._mask is None or self._mask.shape != (wh[1], wh[0]):
            self._mask = np.zeros((wh[1], wh[0]), np.uint8)
            cv2.fillPoly(self._mask, [self.zone.pixel_polygon(wh)], 1)
        return self._mask

    def candidates(self, detections: Detections, wh: tuple[int, int]) -> Detections:
        """The zone's people: feet inside the polygon, confident enough and big enough (false-alarm controls)."""
        z = self.cfg
        keep = self.zone.mask(detections, wh)
        keep &= detections.confidence >= z.min_confidence
        keep &= detections.height >= z.min_box_height * wh[1]
        return detections[keep]

    def steps(self, frame: Frame, detections: Detections, tracks: Detections,
              unchecked: Detections | None = None) -> Steps[tuple[ZoneState, list[Incident]]]:
        """One frame, as steps: the conflict rule's pose request is yielded (``CameraAnalyser`` drives them).

        ``unchecked``: the detections before the camera's perspective check, for the conflict rule (its model
        was trained on them, and a person falling or bent double is exactly a box of an unusual size)."""
        people = self.candidates(detections, frame.wh)
        runs, ids = self.presence.update(frame.ts, people)
        settled = runs >= self.cfg.inertia
        counted = people[settled]
        count = (self.calibration.estimate(counted, frame.image, self.pixel_mask(frame.wh)) if self.calibration
                 else len(counted))
        tracked = tracks[self.zone.mask(tracks, frame.wh)]
        state = ZoneState(self.camera_id, self.cfg.id, frame.ts, count,
                          tuple(int(t) for t in tracked.tracker_id))  # type: ignore[union-attr]
        monitors = [m for m in (self.crowding, self.gathering, self.loitering, self.conflict) if m is not None]
        if not self.active_hours(frame.ts):
            return state, [i for m in monitors if (i := m.stop(frame.ts, count)) is not None]
        out: list[Incident] = []
        for monitor, observation in ((self.crowding, (count,)), (self.gathering, (count,)),
                                     (self.loitering, (ids[settled].tolist(),))):
            if monitor is not None and (inc := monitor.update(frame.ts, *observation)) is not None:
                out.append(inc)
        if self.conflict is not None:
            fighters = people if unchecked is None else self.candidates(unchecked, frame.wh)
            inc = yield from self.conflict.update_steps(frame.ts, frame.image, fighters, self.pixel_mask(frame.wh))
            if inc is not None:
                out.append(inc)
        return state, out


class CameraAnalyser:
    """Owns one camera's tracker and zones; fed frames in time order.

    ``conflict_model`` and ``pose`` may be passed in to share them across
    cameras; by default one process-wide copy of each is used (loaded on the
    first camera with a conflict zone).
    """

    def __init__(self, camera: Camera, conflict_model: ConflictModel | None = None, pose: CropPose | None = None,
                 detector: DetectorConfig | None = None):
        self.camera_id = camera.id
        self.perspective = PerspectiveCheck() if camera.perspective_check else None
        self.tracker = ByteTracker(fps=camera.fps)
        if pose is None and any(z.conflict.enabled for z in camera.zones):
            d = detector or DetectorConfig()  # pose runs where and as the detector does
            pose = shared_pose(d.device, d.backend, d.export_dir)
        self.zones = [ZoneAnalyser(camera.id, z, conflict_model, pose) for z in camera.zones]

    def analyse(self, frame: Frame, detections: Detections) -> Analysis:
        return drive(self.analyse_steps(frame, detections))

    def analyse_steps(self, frame: Frame, detections: Detections) -> Steps[Analysis]:
        """``analyse`` as steps: ``observe.drive_all`` runs a batch of cameras' steps with their pose batched."""
        unchecked = detections
        if self.perspective is not None:
            detections = self.perspective(detections, frame.wh)
        tracks = self.tracker.update(detections)
        states, incidents = [], []
        for zone in self.zones:
            state, found = yield from zone.steps(frame, detections, tracks, unchecked)
            states.append(state)
            incidents += found
        return Analysis(frame, detections, tracks, tuple(states), tuple(incidents))

