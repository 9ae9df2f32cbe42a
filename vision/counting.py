"""Crowd counts a detector alone gets wrong, corrected per camera from a few frames an admin has counted.

In a dense scene a detector misses people, and misses more of them the farther
they are (smaller, more occluded). The correction is perspective-aware: the
frame is cut into horizontal bands, and per band it weighs two cues, the
detections whose head lies there and the edge pixels (Canny) inside the zone
there, a classic crowd-counting cue that still sees people the detector merges
or misses (Chan & Vasconcelos; Chen et al., the Mall dataset's paper)::

    count = intercept + sum_b (a_b * detections_b + e_b * kilo_edge_pixels_b)

It is fitted by ridge regression (scikit-learn) on frames with true counts and
stored as JSON with the camera (the zone's ``count_calibration``). The edge
pixels of the empty scene land in the intercept, so it is specific to one
camera view: refit it when the camera moves.

    python -m vision.counting fit --data ../shared/data/mall-train --out models/counting/mall.json
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import cv2
import numpy as np

from gridwatch.config.base import Problem

from .detections import Detections

if TYPE_CHECKING:
    from gridwatch.config import GridwatchConfig

EDGE_WIDTH = 640  # edges are counted on the frame resized to this width, so numbers do not depend on resolution


def head_points(d: Detections) -> np.ndarray:
    """Where a person's head is: the top-centre of the box, (N, 2) pixels (occlusion hides feet, not heads)."""
    return np.stack([(d.xyxy[:, 0] + d.xyxy[:, 2]) / 2, d.xyxy[:, 1]], axis=1)


def edge_bands(image: np.ndarray, mask: np.ndarray | None, edges: list[float], low: int = 50, high: int = 150
               ) -> np.ndarray:
    """Thousands of Canny edge pixels inside ``mask`` per horizontal band (normalised y ``edges``)."""
    h, w = image.shape[:2]
    size = (EDGE_WIDTH, max(int(round(h * EDGE_WIDTH / w)), 8))
    grey = cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    e = cv2.Canny(grey, low, high) > 0
    if mask is not None:
        e &= cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    rows = e.sum(axis=1).astype(np.float64)
    cuts = np.round(np.asarray(edges) * size[1]).astype(int)
    return np.array([rows[a:b].sum() for a, b in zip(cuts[:-1], cuts[1:])]) / 1000.0


@dataclass
class CountCalibration:
    """Band weights fitted for one camera view and one detector setup (model, input size, tiling, confidence)."""

    band_edges: list[float]  # normalised y, increasing, from 0 to 1
    det_coef: list[float]
    edge_coef: list[float]
    intercept: float
    detector: dict = field(default_factory=dict)  # {"model", "imgsz", "tiles", "confidence"} it was fitted with
    meta: dict = field(default_factory=dict)

    def features(self, d: Detections, image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Detections per band (by the head's normalised y, above the calibration's confidence), then edges per band."""
        d = d[d.confidence >= self.detector.get("confidence", 0.0)]
        y = head_points(d)[:, 1] / image.shape[0]
        edges = np.asarray(self.band_edges, np.float64)
        idx = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, len(edges) - 2)
        det = np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)
        return np.concatenate([det, edge_bands(image, mask, self.band_edges)])

    def estimate_float(self, d: Detections, image: np.ndarray, mask: np.ndarray | None = None) -> float:
        coef = np.asarray(self.det_coef + self.edge_coef)
        return float(self.intercept + self.features(d, image, mask) @ coef)

    def estimate(self, d: Detections, image: np.ndarray, mask: np.ndarray | None = None) -> int:
        """The corrected count, never below zero."""
        return max(0, int(round(self.estimate_float(d, image, mask))))

    @staticmethod
    def fit(frames: Iterable[tuple[Detections, np.ndarray]], counts: list[float], mask: np.ndarray | None,
            detector: dict, bands: int = 4, meta: dict | None = None) -> "CountCalibration":
        """Fit from (detections, image) pairs with true counts; ridge keeps it stable with a few dozen frames."""
        from sklearn.linear_model import Ridge

        edges = np.linspace(0.0, 1.0, bands + 1).tolist()
        probe = CountCalibration(edges, [0.0] * bands, [0.0] * bands, 0.0, detector)
        A = np.array([probe.features(d, img, mask) for d, img in frames])
        if len(A) != len(counts) or len(A) < 2 * bands + 2:
            raise ValueError(f"need at least {2 * bands + 2} counted frames (with their counts) to fit {bands} "
                             f"bands, got {len(A)} frames and {len(counts)} counts")
        r = Ridge(alpha=0.1).fit(A, np.asarray(counts, np.float64))
        return CountCalibration(edges, r.coef_[:bands].tolist(), r.coef_[bands:].tolist(), float(r.intercept_),
                                detector, meta or {})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @staticmethod
    def load(path: Path | str) -> "CountCalibration":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            return CountCalibration(d["band_edges"], d["det_coef"], d["edge_coef"], d["intercept"],
                                    d.get("detector", {}), d.get("meta", {}))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"count_calibration {path}: cannot use it ({err}); refit it with "
                             "python -m vision.counting fit") from None


# ----------------------------------------------------------------------------------------------- fitting from a folder


def calibration_problems(cfg: GridwatchConfig, base: Path | None = None) -> list[Problem]:
    """Zones whose count calibration was fitted for other detections than the ones the detector will give it.

    A calibration's weights are per detection of one setup (model, input size,
    tiling, confidence, perspective check); fed another setup's detections it
    counts wrong without any error, so a mismatch is refused at load time.
    """
    det, out = cfg.detector, []
    for i, cam in enumerate(cfg.cameras):
        for j, z in enumerate(cam.zones):
            if z.count_calibration is None:
                continue
            where = ("cameras", i, "zones", j, "count_calibration")
            path = Path(z.count_calibration)
            if base is not None and not path.is_absolute():
                path = base / path  # as load_config will resolve it
            try:
                if not path.is_file() or path.stat().st_size > 1 << 20:
                    raise ValueError("not a calibration file (a JSON file of at most 1 MiB)")
                fitted = json.loads(path.read_text()).get("detector", {})
                if not isinstance(fitted, dict):
                    raise ValueError("its detector is not a mapping")
                float(fitted.get("confidence", 0.0))
            except (OSError, ValueError, AttributeError, TypeError) as err:
                out.append(Problem(where, f"cannot use {z.count_calibration}: {err}; fit one with "
                                          "python -m vision.counting fit"))
                continue
            want = {"model": Path(det.model).name, "imgsz": det.imgsz, "tiles": 0,
                    "perspective_check": cam.perspective_check}
            got = {"model": Path(str(fitted.get("model", ""))).name, "imgsz": fitted.get("imgsz"),
                   "tiles": fitted.get("tiles", 0), "perspective_check": fitted.get("perspective_check", False)}
            wrong = [k for k in want if want[k] != got[k]]
            if float(fitted.get("confidence", 0.0)) < det.confidence - 1e-9:
                wrong.append("confidence")
            if wrong:
                out.append(Problem(where, (
                    f"{z.count_calibration} was fitted for other detections ({', '.join(f'{k} {fitted.get(k)}' for k in wrong)}; "
                    f"this config gives {', '.join(f'{k} {want.get(k, det.confidence)}' for k in wrong)}); set detector "
                    f"to match it, or refit it: python -m vision.counting fit --data FOLDER --out FILE "
                    f"--model {det.model} --imgsz {det.imgsz} --confidence {det.confidence}"
                    + ("" if cam.perspective_check else " --no-perspective-check"))))
    return out


def read_counts(path: Path) -> dict[str, float]:
    import csv

    with open(path) as f:
        return {row["frame"]: float(row["count"]) for row in csv.DictReader(f)}


def detect_folder(folder: Path, names: list[str], detector) -> list[Detections]:
    """Detections of frames/<name> for each name (the layout of mall-train)."""
    import sys

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
    from gridwatch.config import DetectorConfig
    from models import resolve_weights

    from .detector import PersonDetector
    from .perspective import checked_in_order
    from .tiling import TiledDetector, TileGrid

    ap = argparse.ArgumentParser(prog="python -m vision.counting", description="fit a camera's count calibration")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit from frames/*.jpg + counts.csv (+ roi_mask.png) of one camera")
    f.add_argument("--data", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--model", default="yolov10n.pt")
    f.add_argument("--imgsz", type=int, default=960)
    f.add_argument("--tiles", type=int, default=0)
    f.add_argument("--confidence", type=float, default=0.15)
    f.add_argument("--bands", type=int, default=4)
    f.add_argument("--no-perspective-check", action="store_true",
                   help="fit for a camera with perspective_check: false (frames are taken in name order)")
    args = ap.parse_args(argv)
    counts = read_counts(args.data / "counts.csv")
    roi_path = args.data / "roi_mask.png"
    roi = cv2.imread(str(roi_path), cv2.IMREAD_GRAYSCALE) if roi_path.exists() else None
    det = PersonDetector(resolve_weights(args.model), DetectorConfig(imgsz=args.imgsz, confidence=args.confidence))
    detector = TiledDetector(det, TileGrid(args.tiles, args.tiles)) if args.tiles else det
    names = sorted(counts)
    dets = detect_folder(args.data, names, detector)
    first = cv2.imread(str(args.data / "frames" / names[0]))
    if not args.no_perspective_check:
        dets = checked_in_order(dets, (first.shape[1], first.shape[0]))
    dets = [in_roi(d, roi) for d in dets]
    images = (cv2.imread(str(args.data / "frames" / n)) for n in names)
    setup = {"model": args.model, "imgsz": args.imgsz, "tiles": args.tiles, "confidence": args.confidence,
             "perspective_check": not args.no_perspective_check}
    cal = CountCalibration.fit(zip(dets, images), [counts[n] for n in names], roi, setup, args.bands,
                               {"fitted_on": f"{args.data.name}: {len(names)} frames"})
    cal.save(args.out)
    print(json.dumps(asdict(cal)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
