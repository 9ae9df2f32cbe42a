"""Per-camera analysis: detections -> the camera's tracker -> zone observations -> rules -> incidents."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gridwatch.config import Camera, DetectorConfig, Zone

from .conflict.model import ConflictModel
from .conflict.monitor import ConflictMonitor, shared_pose
from .conflict.observe import CropPose
from .counting import CountCalibration
from .detections import Detections, Frame, Incident, ZoneState
from .perspective import PerspectiveCheck
from .rules import CrowdingMonitor, GatheringMonitor, LoiteringMonitor, Monitor, ZoneObservation
from .steps import Steps, drive
from .tracker import PersonTracker
from .zones import ActiveHours, Inertia, PolygonZone


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything one frame produced; what the alert stage needs for evidence."""

    frame: Frame
    detections: Detections  # every person found in the frame (after the perspective check), with their tracker id
    tracks: Detections  # the confirmed ones among them (seen in PersonTracker.CONFIRMED analysed frames in a row)
    zones: tuple[ZoneState, ...]
    incidents: tuple[Incident, ...]


class ZoneAnalyser:
    """One zone: its filters (confidence, box size, inertia), its count, and its rules (``Monitor``s)."""

    def __init__(self, camera_id: str, zone: Zone, conflict_model: ConflictModel | None = None,
                 pose: CropPose | None = None):
        self.camera_id, self.cfg = camera_id, zone
        self.zone = PolygonZone(zone.id, zone.polygon)
        self.inertia = Inertia()
        hours = ActiveHours(zone.active_hours)
        self.calibration = CountCalibration.load(zone.count_calibration) if zone.count_calibration else None
        self.crowding = (CrowdingMonitor(camera_id, zone.id, zone.crowding, zone.area_m2, hours)
                         if zone.crowding else None)
        self.gathering = GatheringMonitor(camera_id, zone.id, zone.gathering, hours) if zone.gathering else None
        self.loitering = LoiteringMonitor(camera_id, zone.id, zone.loitering, hours) if zone.loitering else None
        self.conflict = (ConflictMonitor(camera_id, zone.id, zone.conflict, conflict_model, pose, hours)
                         if zone.conflict.enabled else None)
        self.monitors: list[Monitor] = [m for m in (self.crowding, self.gathering, self.loitering, self.conflict)
                                        if m is not None]
        self._mask: np.ndarray | None = None

    def pixel_mask(self, wh: tuple[int, int]) -> np.ndarray:
        """The zone as a frame-sized mask (the count calibration's edge cue, conflict's motion), made once per size."""
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

    def observe(self, frame: Frame, tracked: Detections, unchecked: Detections | None = None
                ) -> tuple[ZoneState, ZoneObservation]:
        """The zone's state and its rules' observation: who of ``tracked`` (the camera's people, with tracker ids)
        has been in the zone for ``inertia`` analysed frames in a row, and their count.

        ``unchecked``: the detections before the camera's perspective check, for the conflict rule (its model
        was trained on them, and a person falling or bent double is exactly a box of an unusual size)."""
        people = self.candidates(tracked, frame.wh)
        if people.tracker_id is None:
            raise ValueError("ZoneAnalyser counts tracked people: set tracker_id (CameraAnalyser's PersonTracker)")
        settled = self.inertia.update(people.tracker_id) >= self.cfg.inertia
        counted = people[settled]
        mask = self.pixel_mask(frame.wh)
        count = self.calibration.estimate(counted, frame.image, mask) if self.calibration else len(counted)
        track_ids = tuple(int(i) for i in people.tracker_id[settled])
        state = ZoneState(self.camera_id, self.cfg.id, frame.ts, count, track_ids)
        raw = people if unchecked is None else self.candidates(unchecked, frame.wh)
        return state, ZoneObservation(frame.ts, count, track_ids, frame.image, raw, mask)

    def steps(self, frame: Frame, tracked: Detections, unchecked: Detections | None = None
              ) -> Steps[tuple[ZoneState, list[Incident]]]:
        """One frame, as steps: each rule observes the zone (the conflict rule's pose request is yielded;
        ``CameraAnalyser`` drives them)."""
        state, ob = self.observe(frame, tracked, unchecked)
        out: list[Incident] = []
        for monitor in self.monitors:
            if (inc := (yield from monitor.observe(ob))) is not None:
                out.append(inc)
        return state, out


class CameraAnalyser:
    """Owns one camera's perspective check, its one tracker and its zones; fed frames in time order.

    ``conflict_model`` and ``pose`` may be passed in to share them across
    cameras; by default one process-wide copy of each is used (loaded on the
    first camera with a conflict zone).
    """

    def __init__(self, camera: Camera, conflict_model: ConflictModel | None = None, pose: CropPose | None = None,
                 detector: DetectorConfig | None = None):
        self.camera_id = camera.id
        self.perspective = PerspectiveCheck() if camera.perspective_check else None
        self.tracker = PersonTracker()
        if pose is None and any(z.conflict.enabled for z in camera.zones):
            d = detector or DetectorConfig()  # pose runs where and as the detector does
            pose = shared_pose(d.device, d.backend, d.export_dir)
        self.zones = [ZoneAnalyser(camera.id, z, conflict_model, pose) for z in camera.zones]

    def analyse(self, frame: Frame, detections: Detections) -> Analysis:
        return drive(self.analyse_steps(frame, detections))

    def analyse_steps(self, frame: Frame, detections: Detections) -> Steps[Analysis]:
        """``analyse`` as steps: ``steps.drive_all`` runs a batch of cameras' steps with their pose batched."""
        unchecked = detections
        if self.perspective is not None:
            detections = self.perspective(detections, frame.wh)
        tracked, runs = self.tracker.track(frame.ts, detections)
        states, incidents = [], []
        for zone in self.zones:
            state, found = yield from zone.steps(frame, tracked, unchecked)
            states.append(state)
            incidents += found
        tracks = tracked[runs >= PersonTracker.CONFIRMED]
        return Analysis(frame, tracked, tracks, tuple(states), tuple(incidents))
