"""Crowd counts a detector alone gets wrong, corrected per camera from a few frames an admin has counted.

In a dense scene a detector misses people, and misses more of them the farther
they are (smaller, more occluded). The correction is perspective-aware: the
frame is cut into horizontal bands by where each person's head is, and a
non-negative weight per band says how many people one detection there stands
for (far bands get more), plus a constant for people nobody detects::

    count = intercept + sum_b weight_b * detections_in_band_b

It is fitted by non-negative least squares (scipy's ``nnls``) on frames with
true counts and stored as JSON with the camera (the zone's ``count_calibration``).

    python -m vision.counting fit --data ../shared/data/mall-train --out models/counting/mall.json
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .detections import Detections


def head_points(d: Detections) -> np.ndarray:
    """Where a person's head is: the top-centre of the box, (N, 2) pixels (occlusion hides feet, not heads)."""
    return np.stack([(d.xyxy[:, 0] + d.xyxy[:, 2]) / 2, d.xyxy[:, 1]], axis=1)


@dataclass
class CountCalibration:
    """Band weights fitted for one camera and one detector setup (model, input size, tiling, confidence)."""

    band_edges: list[float]  # normalised y of the head, increasing, from 0 to 1
    weights: list[float]
    intercept: float
    detector: dict = field(default_factory=dict)  # {"model", "imgsz", "tiles", "confidence"} it was fitted with
    meta: dict = field(default_factory=dict)

    def features(self, d: Detections, wh: tuple[int, int]) -> np.ndarray:
        """Detections per band (the head's normalised y) above the calibration's confidence."""
        d = d[d.confidence >= self.detector.get("confidence", 0.0)]
        y = head_points(d)[:, 1] / wh[1]
        edges = np.asarray(self.band_edges, np.float64)
        idx = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, len(edges) - 2)
        return np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)

    def estimate_float(self, d: Detections, wh: tuple[int, int]) -> float:
        return float(self.intercept + self.features(d, wh) @ np.asarray(self.weights))

    def estimate(self, d: Detections, wh: tuple[int, int]) -> int:
        """The corrected count; zero people stays zero (the intercept is for crowds, not for empty scenes)."""
        return 0 if len(d) == 0 else max(0, int(round(self.estimate_float(d, wh))))

    @staticmethod
    def fit(frames: list[tuple[Detections, tuple[int, int]]], counts: list[float], detector: dict,
            bands: int = 4, meta: dict | None = None) -> "CountCalibration":
        from scipy.optimize import nnls  # non-negative least squares: a detection never stands for < 0 people

        if len(frames) != len(counts) or len(frames) < bands + 1:
            raise ValueError(f"need at least {bands + 1} counted frames to fit {bands} bands, got {len(frames)}")
        edges = np.linspace(0.0, 1.0, bands + 1).tolist()
        probe = CountCalibration(edges, [1.0] * bands, 0.0, detector)
        A = np.array([np.append(probe.features(d, wh), 1.0) for d, wh in frames])
        coef, _ = nnls(A, np.asarray(counts, np.float64))
        return CountCalibration(edges, coef[:-1].tolist(), float(coef[-1]), detector, meta or {})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @staticmethod
    def load(path: Path | str) -> "CountCalibration":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            return CountCalibration(d["band_edges"], d["weights"], d["intercept"], d.get("detector", {}),
                                    d.get("meta", {}))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"count_calibration {path}: cannot use it ({err}); refit it with "
                             "python -m vision.counting fit") from None


# ----------------------------------------------------------------------------------------------- fitting from a folder


def read_counts(path: Path) -> dict[str, float]:
    import csv

    with open(path) as f:
        return {row["frame"]: float(row["count"]) for row in csv.DictReader(f)}


def detect_folder(folder: Path, names: list[str], detector) -> list[Detections]:
    """Detections of frames/<name> for each name (the layout of mall-train)."""
    import sys

    import cv2
    from tqdm import tqdm

    out = []
    for n in tqdm(names, desc="detect frames", unit="frame", file=sys.stderr):
        img = cv2.imread(str(folder / "frames" / n))
        if img is None:
            raise ValueError(f"{folder / 'frames' / n}: not a readable image")
        out += detector.detect([img])
    return out


def in_roi(d: Detections, roi: np.ndarray | None) -> Detections:
    """People whose head lies inside a region mask (HxW, nonzero = inside)."""
    if roi is None or len(d) == 0:
        return d
    p = np.round(head_points(d)).astype(int)
    p[:, 0] = np.clip(p[:, 0], 0, roi.shape[1] - 1)
    p[:, 1] = np.clip(p[:, 1], 0, roi.shape[0] - 1)
    return d[roi[p[:, 1], p[:, 0]] > 0]


def main(argv: list[str] | None = None) -> int:
    import cv2

    from gridwatch.config import DetectorConfig
    from models import resolve_weights

    from .detector import PersonDetector
    from .tiling import TileGrid, TiledDetector

    ap = argparse.ArgumentParser(prog="python -m vision.counting", description="fit a camera's count calibration")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit from frames/*.jpg + counts.csv (+ roi_mask.png) of one camera")
    f.add_argument("--data", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--model", default="yolov10n.pt")
    f.add_argument("--imgsz", type=int, default=640)
    f.add_argument("--tiles", type=int, default=0)
    f.add_argument("--confidence", type=float, default=0.25)
    f.add_argument("--bands", type=int, default=4)
    args = ap.parse_args(argv)
    counts = read_counts(args.data / "counts.csv")
    roi_path = args.data / "roi_mask.png"
    roi = cv2.imread(str(roi_path), cv2.IMREAD_GRAYSCALE) if roi_path.exists() else None
    det = PersonDetector(resolve_weights(args.model), DetectorConfig(imgsz=args.imgsz, confidence=args.confidence))
    detector = TiledDetector(det, TileGrid(args.tiles, args.tiles)) if args.tiles else det
    names = sorted(counts)
    wh = cv2.imread(str(args.data / "frames" / names[0])).shape[1::-1]
    dets = [in_roi(d, roi) for d in detect_folder(args.data, names, detector)]
    setup = {"model": args.model, "imgsz": args.imgsz, "tiles": args.tiles, "confidence": args.confidence}
    cal = CountCalibration.fit([(d, wh) for d in dets], [counts[n] for n in names], setup, args.bands,
                               {"fitted_on": f"{args.data.name}: {len(names)} frames"})
    cal.save(args.out)
    print(json.dumps(asdict(cal)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
