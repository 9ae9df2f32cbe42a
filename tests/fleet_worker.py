"""``python -m tests.fleet_worker --config ... [worker options]``: ``gridwatch worker`` with the detector replaced.

The fleet tests run several workers on a 2-core machine; the real detector is exercised by one of them
(tests/test_fleet.py) and by the rest of the suite. Everything else is real: RTSP, Redis, tooz, the spool.
``GW_FAKE_PEOPLE`` people stand in the middle of every frame, so a crowding zone there sees a crowd as long as the
camera is analysed.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from vision.detections import Detections


class StandingCrowd:
    """A detector double: the same ``n`` people in every frame, side by side across the middle."""

    def __init__(self, *_args, **_kwargs):
        self.n = int(os.environ.get("GW_FAKE_PEOPLE", "4"))

    def detect(self, images: list) -> list[Detections]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            xs = np.linspace(0.2, 0.8, self.n) * w
            boxes = np.stack([xs - 0.03 * w, np.full(self.n, 0.35 * h), xs + 0.03 * w, np.full(self.n, 0.65 * h)], 1)
            out.append(Detections(boxes.astype(np.float32), np.full(self.n, 0.9, np.float32),
                                  np.zeros(self.n, np.int32)))
        return out


if __name__ == "__main__":
    import gridwatch.service
    from gridwatch.cli import main

    if os.environ.get("GW_FAKE_DETECTOR", "1") == "1":
        gridwatch.service.PersonDetector = StandingCrowd  # type: ignore[misc]
        gridwatch.service.resolve_weights = lambda *a, **k: None  # type: ignore[assignment]
    sys.exit(main(["worker", *sys.argv[1:]]))
