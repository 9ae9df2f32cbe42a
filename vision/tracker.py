"""ByteTrack per camera, using the implementation that ships with ultralytics."""
from __future__ import annotations

import numpy as np
from ultralytics.trackers.byte_tracker import BYTETracker
from ultralytics.utils import IterableSimpleNamespace

from .detections import Detections


class _BoxesView:
    """The slice of ultralytics' ``Boxes`` interface that BYTETracker reads."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray):
        self.xyxy, self.conf, self.cls = xyxy, conf, cls

    @property
    def xywh(self) -> np.ndarray:
        x1, y1, x2, y2 = self.xyxy.T
        return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> "_BoxesView":
        return _BoxesView(self.xyxy[index], self.conf[index], self.cls[index])


class ByteTracker:
    """Gives each person a stable id across frames; ``lost_s`` is how long a hidden person keeps theirs."""

    def __init__(self, fps: float, lost_s: float = 3.0, high: float = 0.25, low: float = 0.1):
        args = IterableSimpleNamespace(
            tracker_type="bytetrack", track_high_thresh=high, track_low_thresh=low, new_track_thresh=high,
            track_buffer=max(int(round(lost_s * fps)), 1), match_thresh=0.8, fuse_score=True,
        )
        self._tracker = BYTETracker(args)

    def update(self, detections: Detections) -> Detections:
        """Tracked subset of ``detections`` (only confirmed tracks), with ``tracker_id`` set."""
        view = _BoxesView(detections.xyxy.astype(np.float32), detections.confidence.astype(np.float32),
                          detections.class_id.astype(np.float32))
        out = self._tracker.update(view)
        if len(out) == 0:
            empty = detections[np.zeros(len(detections), bool)]
            empty.tracker_id = np.zeros((0,), np.int64)
            return empty
        idx = out[:, 7].astype(np.int64)
        tracked = detections[idx]
        tracked.xyxy = out[:, :4].astype(np.float32)  # Kalman-smoothed box
        tracked.tracker_id = out[:, 4].astype(np.int64)
        return tracked
