"""Person height by image row, learnt per fixed camera, to drop weak boxes of a size no person there could have.

On a fixed camera looking at a ground plane, a standing person's box height
grows about linearly with the image row of their feet (Hoiem, Efros & Hebert,
"Putting objects in perspective", 2006). The detector's weak false positives
break that rule: on PETS S2L1 most of them are a sign post 18 px tall where a
person would be 31 px, or slivers beside real people. So each camera learns
``height = slope * foot_row + intercept`` (both as fractions of the frame
height, so a resolution change keeps the model) from its own confident, uncut
boxes, and a box below ``trust`` confidence whose height is outside
``[low, high]`` times the expected one is dropped. Confident boxes are never
dropped, nor short ones that overlap another box (someone in front hides the
legs: crowds stay counted), and nothing is dropped until the fit is good
(enough samples, most of them close to the line): an overhead or moving camera
simply keeps every box. The line is used on every row, also beyond those it
was learnt on (the PETS sign post stands above where people walk): it assumes
one flat ground, so a camera that sees stairs or a balcony should turn it off.
"""
from __future__ import annotations

from collections import deque
from typing import Iterable

import numpy as np

from .detections import Detections, iou_matrix

BORDER = 2.0  # pixels: a box this close to the frame edge is cut off, its height says nothing


class PerspectiveCheck:
    """Stateful, one per camera; call it on each frame's detections in time order."""

    def __init__(self, trust: float = 0.5, low: float = 0.7, high: float = 1.6, min_samples: int = 30,
                 keep: int = 1000, min_inliers: float = 0.6):
        self.trust, self.low, self.high = trust, low, high
        self.min_samples, self.min_inliers = min_samples, min_inliers
        self._foot: deque[float] = deque(maxlen=keep)  # normalised foot rows of confident people
        self._height: deque[float] = deque(maxlen=keep)
        self._new = 0
        self.model: tuple[float, float] | None = None  # (slope, intercept), normalised; None: not trusted yet

    def expected_height(self, foot_y: np.ndarray) -> np.ndarray | None:
        """Expected person height (fraction of frame height) at normalised foot rows; None until fitted."""
        if self.model is None:
            return None
        return self.model[0] * np.asarray(foot_y) + self.model[1]

    def __call__(self, d: Detections, wh: tuple[int, int]) -> Detections:
        w, h = wh
        if len(d) == 0:
            return d
        foot, height = d.xyxy[:, 3] / h, d.height / h
        uncut = ((d.xyxy[:, 0] > BORDER) & (d.xyxy[:, 1] > BORDER) & (d.xyxy[:, 2] < w - BORDER)
                 & (d.xyxy[:, 3] < h - BORDER))
        keep = np.ones(len(d), bool)
        expected = self.expected_height(foot)
        if expected is not None:
            ratio = height / np.maximum(expected, 1e-3)
            # short because someone stands in front: a box overlapping another is an occluded person, not clutter
            hidden = (ratio < self.low) & _overlaps_another(d.xyxy)
            plausible = ((ratio >= self.low) & (ratio <= self.high)) | hidden
            keep = (d.confidence >= self.trust) | plausible | ~uncut | (expected <= 0)
        learn = (d.confidence >= self.trust) & uncut
        self._foot.extend(foot[learn].tolist())
        self._height.extend(height[learn].tolist())
        self._new += int(learn.sum())
        # refit often while learning, then every 200 new samples (the line moves slowly; this runs per frame)
        if self._new >= (10 if self.model is None else 200) and len(self._foot) >= self.min_samples:
            self._fit()
        return d[keep]

    def _fit(self) -> None:
        """Line through the samples by least squares with outliers trimmed (sitting, bending, merged boxes)."""
        self._new = 0
        y, hgt = np.asarray(self._foot), np.asarray(self._height)
        inlier = np.ones(len(y), bool)
        for _ in range(3):
            if inlier.sum() < self.min_samples or np.ptp(y[inlier]) < 0.05:
                self.model = None
                return
            slope, icpt = np.polyfit(y[inlier], hgt[inlier], 1)
            fit = slope * y + icpt
            inlier = np.abs(hgt - fit) <= 0.3 * np.maximum(fit, 1e-3)
        # a line most people do not follow (overhead view, a zooming camera) checks nothing
        self.model = (float(slope), float(icpt)) if inlier.mean() >= self.min_inliers else None


def _overlaps_another(xyxy: np.ndarray) -> np.ndarray:
    """Per box: whether it intersects any other box of the frame."""
    touch = iou_matrix(xyxy, xyxy) > 0
    np.fill_diagonal(touch, False)
    return touch.any(axis=1)


def checked_in_order(frames: Iterable[Detections], wh: tuple[int, int]) -> list[Detections]:
    """One camera's frames in time order through a fresh check: what the runtime passes on (evaluation, fitting)."""
    check = PerspectiveCheck()
    return [check(d, wh) for d in frames]
