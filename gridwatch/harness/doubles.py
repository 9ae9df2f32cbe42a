"""A detector double for the fleet's tests and benchmark: many worker processes on a 2-core machine cannot each run
the real detector, and what they measure (membership, failover, spools, cases) does not depend on it."""
from __future__ import annotations

import numpy as np

from vision.detections import Detections


class StandingCrowd:
    """The same ``n`` people in every frame, side by side across the middle: a crowding zone there sees a crowd for
    as long as the camera is analysed."""

    def __init__(self, n: int = 4):
        self.n = n

    def detect(self, images: list) -> list[Detections]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            xs = np.linspace(0.2, 0.8, self.n) * w
            boxes = np.stack([xs - 0.03 * w, np.full(self.n, 0.35 * h), xs + 0.03 * w, np.full(self.n, 0.65 * h)], 1)
            out.append(Detections(boxes.astype(np.float32), np.full(self.n, 0.9, np.float32),
                                  np.zeros(self.n, np.int32)))
        return out

    @classmethod
    def replacing_the_detector(cls, n: int) -> None:
        """Make ``gridwatch.service`` build this double instead of the detector (and need no weights): for a
        ``gridwatch worker`` started by a test or benchmark launcher, in its own process."""
        import gridwatch.service

        gridwatch.service.PersonDetector = lambda *_a, **_k: cls(n)  # type: ignore[misc,assignment]
        gridwatch.service.resolve_weights = lambda *_a, **_k: None  # type: ignore[assignment]
