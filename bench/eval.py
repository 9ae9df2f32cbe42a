"""Accuracy of gridwatch's analytics on real footage: ``detect``, ``count``, ``fight`` and ``zones``.

    python bench/eval.py detect --data ../shared/data/pets-s2l1
    python bench/eval.py count  --data ../shared/data/mall-train
    python bench/eval.py fight  --data ../shared/data/fight-dev [--cv [--variants] [--no-pose]]
    python bench/eval.py fight  --calm VIDEO|FOLDER... [--fps 10] [--false-alarms-per-hour 2]
    python bench/eval.py fight  --operating-points --data ../shared/data/fight-dev --calm VIDEO|FOLDER...
    python bench/eval.py zones  --data ../shared/data/pets-s2l1 [--subzones]   (or --data ../shared/data/mall-train)

Each command runs what gridwatch ships, unchanged, on any folder of the same
layout (nothing is fitted on ``--data`` except in ``fight --cv``), shows a
progress bar, writes ``bench/results/eval_<command>.json`` (and plots under
``docs/img/`` with ``--plots``) and prints the results as a JSON object on its
last line. Model outputs are cached under ``var/cache/eval`` keyed by the file's
content hash, so re-runs only redo the cheap part.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from bench.machine import cpu_record
from vision.detections import iou_matrix  # one IoU for the harness and the detector

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "var" / "cache" / "eval"
RESULTS = ROOT / "bench" / "results"
IMG = ROOT / "docs" / "img"


# --------------------------------------------------------------------------- common


def machine() -> dict:
    """Where a result was made; ``cpu_features`` tells whether the detector computed in bf16 (docs/accuracy.md)."""
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "device": "cuda" if torch.cuda.is_available() else "cpu", "cpu_features": cpu_record()}


def file_key(path: Path) -> str:
    """Content hash, so a cached result follows the footage, not its name."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


def cached(name: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """npz cache under var/cache/eval; ``name`` must encode every input that changes the result."""
    path = CACHE / f"{name}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    out = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **out)
    tmp.replace(path)
    return out


def video_frames(path: Path, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, seconds, BGR image) of every ``every``-th frame; PyAV because OpenCV 5 wheels lack some codecs."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if i % every == 0:
                ts = float(frame.pts * stream.time_base) if frame.pts is not None else i / float(stream.average_rate)
                yield i, ts, frame.to_ndarray(format="bgr24")


def pack(dets: list) -> dict[str, np.ndarray]:
    """Ragged per-frame detections as flat arrays + offsets (npz-friendly)."""
    sizes = np.array([len(d) for d in dets], np.int64)
    xyxy = np.concatenate([d.xyxy for d in dets]) if dets else np.zeros((0, 4), np.float32)
    conf = np.concatenate([d.confidence for d in dets]) if dets else np.zeros((0,), np.float32)
    return {"offsets": np.concatenate([[0], np.cumsum(sizes)]), "xyxy": xyxy.astype(np.float32),
            "conf": conf.astype(np.float32)}


def unpack(z: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    o = z["offsets"]
    return [(z["xyxy"][o[i]:o[i + 1]], z["conf"][o[i]:o[i + 1]]) for i in range(len(o) - 1)]


def write_result(command: str, result: dict, folder: Path = RESULTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"eval_{command}.json").write_text(json.dumps(result, indent=2) + "\n")


# --------------------------------------------------------------------------- detect


@dataclass(frozen=True)
class DetectSetup:
    """One way of running a model: weights, input size and whether frames are also tiled."""

    model: str
    imgsz: int
    tiles: int = 0  # 0: full frame only; n: also n x n overlapping tiles

    @property
    def name(self) -> str:
        return f"{Path(self.model).stem}@{self.imgsz}" + (f"+tiles{self.tiles}x{self.tiles}" if self.tiles else "")

    @staticmethod
    def parse(text: str) -> "DetectSetup":
        """``yolov10n.pt@960`` or ``yolov10n.pt@640+tiles2``."""
        model, _, rest = text.partition("@")
        size, _, tiles = rest.partition("+tiles")
        return DetectSetup(model, int(size or 640), int(tiles or 0))


def build_detector(setup: DetectSetup, confidence: float):
    from gridwatch.config import DetectorConfig
    from models import resolve_weights
    from vision.detector import PersonDetector
    from vision.tiling import TiledDetector, TileGrid

    det = PersonDetector(resolve_weights(setup.model), DetectorConfig(imgsz=setup.imgsz, confidence=confidence,
                                                                        device="cpu" if not _cuda() else "auto"))
    return TiledDetector(det, TileGrid(setup.tiles, setup.tiles)) if setup.tiles else det


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


RAW_CONF = 0.05  # cache everything above this; thresholds are applied afterwards


def detections_for_video(video: Path, setup: DetectSetup, every: int) -> list[tuple[np.ndarray, np.ndarray]]:
    key = f"det-{file_key(video)}-{setup.name}-e{every}-c{RAW_CONF}"

    def compute():
        det = build_detector(setup, RAW_CONF)
        frames = list(video_frames(video, every))
        out = []
        for _, _, img in tqdm(frames, desc=f"detect {setup.name}", unit="frame", file=sys.stderr):
            out += det.detect([img])
        return pack(out) | {"index": np.array([i for i, _, _ in frames])}

    z = cached(key, compute)
    return unpack(z)


def load_boxes_gt(path: Path) -> dict[int, np.ndarray]:
    """gt.csv: frame, id, x1, y1, x2, y2 -> {frame: (N, 4)}."""
    out: dict[int, list] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            out.setdefault(int(row["frame"]), []).append([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def match_counts(pred: np.ndarray, conf: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> tuple[int, int, int]:
    """(true positives, predictions, ground-truth boxes) with greedy matching in confidence order (VOC/COCO style)."""
    order = np.argsort(-conf)
    pred = pred[order]
    iou = iou_matrix(pred, gt)
    used = np.zeros(len(gt), bool)
    tp = 0
    for i in range(len(pred)):
        if len(gt) == 0:
            break
        cand = np.where(~used, iou[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= thr:
            used[j] = True
            tp += 1
    return tp, len(pred), len(gt)


def score_detections(dets: list[tuple[np.ndarray, np.ndarray]], index: np.ndarray, gt: dict[int, np.ndarray],
                     conf: float, min_height: float = 0.0) -> dict:
    tp = npred = ngt = 0
    for i, (xyxy, c) in zip(index.tolist(), dets):
        keep = (c >= conf) & ((xyxy[:, 3] - xyxy[:, 1]) >= min_height)
        a, b, g = match_counts(xyxy[keep], c[keep], gt.get(i, np.zeros((0, 4), np.float32)))
        tp, npred, ngt = tp + a, npred + b, ngt + g
    return {"recall": tp / max(ngt, 1), "precision": tp / max(npred, 1), "tp": tp, "predictions": npred, "gt": ngt}


DEFAULT_SETUPS = ("yolov10n.pt@640", "yolov10n.pt@960")


def shipped_detect_setup() -> tuple[DetectSetup, float, bool]:
    """What gridwatch ships for person detection: the config model's defaults (detector, and a camera's check)."""
    from gridwatch.config import Camera, DetectorConfig

    d = DetectorConfig()
    check = Camera.model_fields["perspective_check"].default
    return DetectSetup(d.model, d.imgsz), d.confidence, check


def detections_above(xyxy: np.ndarray, conf: np.ndarray, threshold: float):
    """A frame's cached boxes at or above ``threshold``, as the detector would have returned them."""
    from vision.detections import Detections

    keep = conf >= threshold
    return Detections(xyxy[keep], conf[keep], np.zeros(int(keep.sum()), np.int32))


def perspective_checked(dets: list[tuple[np.ndarray, np.ndarray]], conf: float, wh: tuple[int, int]
                        ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The boxes above ``conf`` that a camera's PerspectiveCheck lets through, frame by frame in time order."""
    from vision.perspective import checked_in_order

    frames = (detections_above(x, c, conf) for x, c in dets)
    return [(d.xyxy, d.confidence) for d in checked_in_order(frames, wh)]


def cmd_detect(args) -> dict:
    data = Path(args.data)
    videos = sorted(p for p in data.iterdir() if p.suffix.lower() in (".avi", ".mp4", ".mkv", ".mov"))
    if not videos or not (data / "gt.csv").exists():
        raise SystemExit(f"{data}: expected one video (.avi/.mp4) and gt.csv (frame,id,x1,y1,x2,y2)")
    video, gt = videos[0], load_boxes_gt(data / "gt.csv")
    wh = next(video_frames(video))[2].shape[1::-1]
    ship, ship_conf, ship_check = shipped_detect_setup()
    setups = [DetectSetup.parse(s) for s in (args.setups or DEFAULT_SETUPS)]
    if ship not in setups:
        setups.insert(0, ship)
    rows, dets_by = [], {}
    for s in setups:
        t0 = time.perf_counter()
        z_dets = dets_by[s.name] = detections_for_video(video, s, args.every)
        index = np.arange(0, len(z_dets) * args.every, args.every)
        for conf in sorted({ship_conf, *args.conf}):
            rows.append({"setup": s.name, "confidence": conf, "perspective_check": False,
                         **score_detections(z_dets, index, gt, conf)})
            rows.append({"setup": s.name, "confidence": conf, "perspective_check": True,
                         **score_detections(perspective_checked(z_dets, conf, wh), index, gt, 0.0)})
        log(f"{s.name}: {time.perf_counter() - t0:.1f}s")
    if args.plots:
        curves = {}
        for s in setups:
            z_dets = dets_by[s.name]
            index = np.arange(0, len(z_dets) * args.every, args.every)
            grid = np.arange(0.1, 0.8, 0.05)
            curves[s.name] = [score_detections(z_dets, index, gt, c) for c in grid]
            curves[f"{s.name} + perspective check"] = [
                score_detections(perspective_checked(z_dets, c, wh), index, gt, 0.0) for c in grid]
        plot_pr(curves, IMG / f"detect_{data.name}.png")
    main_row = next(r for r in rows if r["setup"] == ship.name and r["confidence"] == ship_conf
                    and r["perspective_check"] == ship_check)
    return {"command": "detect", "data": str(data), "video": video.name, "frames_every": args.every,
            "shipped": {"setup": ship.name, "confidence": ship_conf, "perspective_check": ship_check},
            "recall": main_row["recall"],
            "precision": main_row["precision"], "iou": 0.5, "table": rows, "machine": machine()}


def plot_pr(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=80)
    for name, pts in curves.items():
        ax.plot([p["recall"] for p in pts], [p["precision"] for p in pts], ".-", label=name)
    ax.axvline(0.95, color="grey", lw=0.5)
    ax.set_xlim(0.8, 0.97)
    ax.set_ylim(0.6, 1.0)
    ax.axhline(0.90, color="grey", lw=0.5)
    ax.set_xlabel("recall (IoU 0.5)")
    ax.set_ylabel("precision")
    ax.set_title("confidence 0.10 ... 0.75", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- count


def folder_detections(data: Path, names: list[str], setup: DetectSetup) -> list[tuple[np.ndarray, np.ndarray]]:
    """Detections (above RAW_CONF) of frames/<name>, cached by the frames' names and sizes."""
    import cv2

    h = hashlib.sha256()
    for n in names:
        h.update(f"{n}:{(data / 'frames' / n).stat().st_size}".encode())
    key = f"count-{h.hexdigest()[:16]}-{setup.name}-c{RAW_CONF}"

    def compute():
        det = build_detector(setup, RAW_CONF)
        out = []
        for n in tqdm(names, desc=f"detect {setup.name}", unit="frame", file=sys.stderr):
            img = cv2.imread(str(data / "frames" / n))
            if img is None:
                raise SystemExit(f"{data / 'frames' / n}: not a readable image")
            out += det.detect([img])
        return pack(out)

    return unpack(cached(key, compute))



def calibrated_detections(data: Path, cal) -> tuple[dict[str, float], list[str], np.ndarray | None, list]:
    """A counted frame folder (frames/, counts.csv, roi_mask.png) detected with the setup a calibration was fitted
    for: (counts, frame names in order, the ROI mask or None, detections above its confidence)."""
    import cv2

    from vision.counting import read_counts

    counts = read_counts(data / "counts.csv")
    names = sorted(counts)
    roi_path = data / "roi_mask.png"
    roi = cv2.imread(str(roi_path), cv2.IMREAD_GRAYSCALE) if roi_path.exists() else None
    setup = DetectSetup(cal.detector["model"], int(cal.detector["imgsz"]), int(cal.detector.get("tiles", 0)))
    raw = folder_detections(data, names, setup)
    return counts, names, roi, [detections_above(x, c, cal.detector.get("confidence", 0.0)) for x, c in raw]


def cmd_count(args) -> dict:
    import cv2

    from vision.counting import CountCalibration, in_roi
    from vision.perspective import checked_in_order

    data = Path(args.data)
    if not (data / "counts.csv").exists() or not (data / "frames").is_dir():
        raise SystemExit(f"{data}: expected frames/ and counts.csv (frame,count), like mall-train/")
    cal = CountCalibration.load(args.calibration)
    counts, names, roi, dets = calibrated_detections(data, cal)
    true = np.array([counts[n] for n in names])
    if cal.detector.get("perspective_check", False):  # as the camera runs it: frames in name order
        first = cv2.imread(str(data / "frames" / names[0]))
        dets = checked_in_order(dets, (first.shape[1], first.shape[0]))
    dets = [in_roi(d, roi) for d in dets]
    est = np.array([cal.estimate_float(d, cv2.imread(str(data / "frames" / n)), roi) for d, n in zip(dets, names)])
    plain = np.array([len(d) for d in dets])  # the boxes the calibration is given (after the check), counted as is
    err, perr = est - true, plain - true
    result = {"command": "count", "data": str(data), "frames": len(names), "calibration": str(args.calibration),
              "detector": cal.detector, "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
              "bias": float(err.mean()), "uncalibrated_mae": float(np.abs(perr).mean()),
              "uncalibrated_rmse": float(np.sqrt((perr ** 2).mean())), "mean_true_count": float(true.mean()),
              "machine": machine()}
    if args.plots:
        plot_counts(true, est, plain, IMG / f"count_{data.name}.png", result)
        result["plot"] = str((IMG / f"count_{data.name}.png").relative_to(ROOT))
        k = int(np.argmax(true))
        img = cv2.imread(str(data / "frames" / names[k]))
        shown = dets[k]
        if roi is not None:
            contours, _ = cv2.findContours((roi > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(img, contours, -1, (0, 0, 255), 2)
        for x1, y1, x2, y2 in shown.xyxy.astype(int):
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 200, 0), 1)
        title = f"{names[k]}: true {true[k]:.0f}, detections {len(shown)}, calibrated {est[k]:.1f}"
        cv2.rectangle(img, (0, 0), (img.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(img, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.imwrite(str(IMG / f"count_{data.name}_example.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return result


def plot_counts(true, est, plain, path: Path, r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3), dpi=80)
    ax.plot(true, "k-", lw=1, label="true")
    ax.plot(est, "C0-", lw=1, label=f"calibrated (MAE {r['mae']:.2f})")
    ax.plot(plain, "C3-", lw=0.8, alpha=0.7, label=f"detections (MAE {r['uncalibrated_mae']:.2f})")
    ax.set_xlabel("frame")
    ax.set_ylabel("people in ROI")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- fight


def _train_module():
    """models/conflict/train.py: the clip reading, observation cache and CV the classifier came from.

    Imported on first use: it pulls in scikit-learn, which ``detect`` and ``count`` do not need.
    """
    from models.conflict import train

    return train


def cmd_fight(args) -> dict:
    from gridwatch.config import ConflictRule

    T = _train_module()
    sources = calm_sources(args.calm, args.fps) if args.calm else []
    if not args.data and not sources:
        raise SystemExit("fight needs --data (a folder of fight/ and noFight/ clips) or --calm footage, or both")
    if args.operating_points and not (args.data and sources):
        raise SystemExit("--operating-points needs --data (for the cross-validation) and --calm footage")
    result: dict = {"command": "fight"}
    if args.data:
        clips = T.list_clips(Path(args.data))
        y = np.array([c.label for c in clips])
        obs = observations_without_pose(T, clips) if args.no_pose else T.observations(clips)
        if args.cv or args.operating_points:
            result, cv_parts = fight_cv(args, T, clips, obs, y)
            if args.operating_points:
                result["operating_points"] = operating_points(args, T, clips, obs, y, cv_parts, sources)
        else:
            from vision.conflict.model import ConflictModel

            model = ConflictModel.load(args.model)
            fired, when = np.zeros(len(clips), bool), np.full(len(clips), np.nan)
            for i, o in enumerate(tqdm(obs, desc="conflict monitor", unit="clip", file=sys.stderr)):
                starts = alert_starts(model, o)
                if starts:
                    fired[i], when[i] = True, starts[0]
            out = T.scores(y, fired)
            if args.plots:
                fight_examples(T, clips, obs, fired, when, y, IMG / f"fight_{Path(args.data).name}_examples.jpg")
            result = {"command": "fight", "mode": "shipped model and rule, unchanged (in-sample on its training "
                      "clips when --data is fight-dev)", "model": str(args.model), **out, **timing(when, fired, y)}
        if args.cost:
            result["cost"] = conflict_cost(T, clips[:: max(1, len(clips) // args.cost)][: args.cost], args.plaza)
        result.update({"clips": len(clips), "data": str(args.data)})
    if sources:
        rule = ConflictRule(enabled=True, false_alarms_per_hour=args.false_alarms_per_hour)
        calm = calm_alerts(T, sources, args.model, rule, evidence=Path(args.results) / "calm_alerts")
        result["calm"] = calm
        result.update({k: calm[k] for k in ("alerts_per_hour", "alerts_per_hour_upper95", "hours")})
        result.setdefault("mode", "calm footage: false alarms of the shipped model and rule")
    result.update({"sample_fps": T.SAMPLE_FPS, "machine": machine()})
    return result


# --------------------------------------------------------------------------- zones (which tracker counts a zone)


class ByteTrackBaseline:
    """ByteTrack as ultralytics ships it, set up as gridwatch ran it until ``vision.tracker.PersonTracker``
    replaced it: the baseline of ``zones``. Only confirmed tracks come out, with their Kalman-smoothed boxes."""

    def __init__(self, fps: float, lost_s: float = 3.0, high: float = 0.25, low: float = 0.1):
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import IterableSimpleNamespace

        self._tracker = BYTETracker(IterableSimpleNamespace(
            tracker_type="bytetrack", track_high_thresh=high, track_low_thresh=low, new_track_thresh=high,
            track_buffer=max(int(round(lost_s * fps)), 1), match_thresh=0.8, fuse_score=True))

    def update(self, d):
        out = self._tracker.update(_BoxesView(d.xyxy.astype(np.float32), d.confidence.astype(np.float32),
                                              d.class_id.astype(np.float32)))
        if len(out) == 0:
            empty = d[np.zeros(len(d), bool)]
            empty.tracker_id = np.zeros((0,), np.int64)
            return empty
        tracked = d[out[:, 7].astype(np.int64)]
        tracked.xyxy = out[:, :4].astype(np.float32)
        tracked.tracker_id = out[:, 4].astype(np.int64)
        return tracked


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


ZONE_WAYS = ("detections", "tracker", "zone_only", "bytetrack")


def zone_counts(frames, in_zone: Callable, inertia: int, fps: float) -> Iterator[dict]:
    """Per analysed frame, the people a zone counts, four ways (``ZONE_WAYS``):

    - ``detections``: every detection in the zone (no inertia, no ids);
    - ``tracker`` (shipped, ``ZoneAnalyser``): the camera's ``PersonTracker``, then the zone's ``Inertia``;
    - ``zone_only``: the same linking run on the zone's people alone (the former per-zone ``ZonePresence``);
    - ``bytetrack``: ByteTrack's confirmed tracks (``ByteTrackBaseline``), then the same ``Inertia``.

    ``frames``: (seconds, the camera's detections after its perspective check); ``in_zone``: Detections -> mask.
    """
    from vision.tracker import PersonTracker
    from vision.zones import Inertia

    camera, zone_runs, zone_only = PersonTracker(), Inertia(), PersonTracker()
    byte, byte_runs = ByteTrackBaseline(fps), Inertia()
    for ts, d in frames:
        tracked, _ = camera.track(ts, d)
        people = tracked[in_zone(tracked)]
        alone, runs = zone_only.track(ts, d[in_zone(d)])
        tracks = byte.update(d)
        tracks = tracks[in_zone(tracks)]
        yield {"detections": d[in_zone(d)], "tracker": people[zone_runs.update(people.tracker_id) >= inertia],
               "zone_only": alone[runs >= inertia], "bytetrack": tracks[byte_runs.update(tracks.tracker_id) >= inertia]}


def _ids_per_person(gt_ids: dict[int, set]) -> float:
    return float(np.mean([len(v) for v in gt_ids.values()])) if gt_ids else float("nan")


def _count_scores(err: list) -> dict:
    e = np.asarray(err, np.float64)
    return {"count_mae": float(np.abs(e).mean()), "count_bias": float(e.mean())}


PETS_SUBZONES = {"left half": [(0, 0), (0.5, 0), (0.5, 1), (0, 1)], "lower part": [(0, 0.55), (1, 0.55), (1, 1), (0, 1)],
                 "centre": [(0.25, 0.25), (0.75, 0.25), (0.75, 0.9), (0.25, 0.9)]}


def zones_on_video(args, data: Path) -> dict:
    """A video + gt.csv (pets-s2l1 layout): a whole-frame zone at each analysis rate, scored against gt.csv's boxes
    (count, boxes matching nobody, ids per person); with ``--subzones`` also smaller zones, counted by the feet."""
    from vision.perspective import PerspectiveCheck
    from vision.zones import PolygonZone

    video = sorted(p for p in data.iterdir() if p.suffix.lower() in (".avi", ".mp4"))[0]
    gt_rows: dict[int, list] = {}
    with open(data / "gt.csv") as f:
        for row in csv.DictReader(f):
            gt_rows.setdefault(int(row["frame"]), []).append(
                (int(row["id"]), [float(row[k]) for k in ("x1", "y1", "x2", "y2")]))
    ship, conf, ship_check = shipped_detect_setup()
    dets = detections_for_video(video, ship, 1)
    wh = next(video_frames(video))[2].shape[1::-1]
    native = float(args.native_fps)

    def frames(step: int):
        check = PerspectiveCheck() if ship_check else None
        for i in range(0, len(dets), step):
            d = detections_above(*dets[i], conf)
            yield i / native, check(d, wh) if check is not None else d

    def gt_boxes(i: int) -> np.ndarray:
        return np.array([b for _, b in gt_rows.get(i, [])], np.float32).reshape(-1, 4)

    by_rate, sub = {}, {}
    for fps in args.fps:
        step = max(1, int(round(native / fps)))
        err: dict[str, list] = {w: [] for w in ZONE_WAYS}
        fp = dict.fromkeys(ZONE_WAYS, 0)
        ids: dict[str, dict[int, set]] = {w: {} for w in ZONE_WAYS[1:]}
        whole = lambda d: np.ones(len(d), bool)  # noqa: E731
        for i, counted in zip(range(0, len(dets), step), zone_counts(frames(step), whole, args.inertia, fps)):
            g, gb = gt_rows.get(i, []), gt_boxes(i)
            for way, people in counted.items():
                err[way].append(len(people) - len(gb))
                iou = iou_matrix(people.xyxy, gb)
                fp[way] += int((iou.max(axis=1) < 0.5).sum()) if len(gb) else len(people)
                if way in ids and len(gb) and len(people):
                    for k, (gid, _) in enumerate(g):
                        j = int(np.argmax(iou[:, k]))
                        if iou[j, k] >= 0.5:
                            ids[way].setdefault(gid, set()).add(int(people.tracker_id[j]))
        by_rate[f"{fps:g}fps"] = {way: {**_count_scores(e), "unmatched_boxes": fp[way],
                                        **({"ids_per_person": _ids_per_person(ids[way])} if way in ids else {})}
                                  for way, e in err.items()}
        if not args.subzones:
            continue
        for name, polygon in PETS_SUBZONES.items():
            zone = PolygonZone(name, polygon)
            for min_conf in (0.0, 0.4):
                def in_zone(d, zone=zone, min_conf=min_conf):
                    return zone.mask(d, wh) & (d.confidence >= min_conf)

                err = {w: [] for w in ZONE_WAYS}
                for i, counted in zip(range(0, len(dets), step), zone_counts(frames(step), in_zone, args.inertia, fps)):
                    gb = gt_boxes(i)
                    truth = int(zone.contains(np.stack([(gb[:, 0] + gb[:, 2]) / 2, gb[:, 3]], 1) / np.array(wh)).sum())
                    for way, people in counted.items():
                        err[way].append(len(people) - truth)
                sub.setdefault(f"{fps:g}fps", {})[f"{name}, min_confidence {min_conf:g}"] = {
                    way: _count_scores(e) for way, e in err.items()}
    return {"video": video.name, "setup": ship.name, "confidence": conf, "perspective_check": ship_check,
            "zone": "the whole frame", "by_rate": by_rate, **({"subzones": sub} if sub else {})}


def zones_on_frames(args, data: Path) -> dict:
    """Frames + counts.csv (mall-train layout): the ROI as the zone (a person is in it by the head, as ``count``
    scores), the frames in name order at ``--frames-fps``; the count as is and through the count calibration."""
    import cv2

    from vision.counting import CountCalibration, in_roi
    from vision.detections import Detections
    from vision.perspective import checked_in_order

    cal = CountCalibration.load(args.calibration)
    counts, names, roi, dets = calibrated_detections(data, cal)
    first = cv2.imread(str(data / "frames" / names[0]))
    if cal.detector.get("perspective_check", False):
        dets = checked_in_order(dets, (first.shape[1], first.shape[0]))
    true = np.array([counts[n] for n in names], np.float64)
    fps = float(args.frames_fps)

    def in_zone(d: Detections) -> np.ndarray:  # in_roi's test, as a mask
        marked = Detections(d.xyxy, d.confidence, d.class_id, np.arange(len(d)))
        return np.isin(np.arange(len(d)), in_roi(marked, roi).tracker_id)

    plain: dict[str, list] = {w: [] for w in ZONE_WAYS}
    calibrated: dict[str, list] = {w: [] for w in ZONE_WAYS}
    frames = ((k / fps, d) for k, d in enumerate(dets))
    for n, counted in tqdm(zip(names, zone_counts(frames, in_zone, args.inertia, fps)), total=len(names),
                           desc="zones", unit="frame", file=sys.stderr):
        img = cv2.imread(str(data / "frames" / n))
        for way, people in counted.items():
            plain[way].append(len(people))
            calibrated[way].append(cal.estimate_float(people, img, roi))
    return {"fps": fps, "calibration": str(args.calibration), "detector": cal.detector, "frames": len(names),
            "zone": "the ROI, by the head", "mean_true_count": float(true.mean()),
            "ways": {w: {**_count_scores(np.array(plain[w]) - true),
                         "calibrated": _count_scores(np.array(calibrated[w]) - true)} for w in ZONE_WAYS}}


def cmd_zones(args) -> dict:
    """Which tracker counts a zone better at the runtime's analysis rates, with the zone's inertia
    (``zone_counts``): on a video + gt.csv (PETS) or on frames + counts.csv (Mall)."""
    data = Path(args.data)
    frames_layout = (data / "counts.csv").exists() and (data / "frames").is_dir()
    if not frames_layout and not (data / "gt.csv").exists():
        raise SystemExit(f"{data}: expected a video and gt.csv (pets-s2l1 layout) or frames/ and counts.csv (mall-train)")
    out = zones_on_frames(args, data) if frames_layout else zones_on_video(args, data)
    return {"command": "zones", "data": str(data), "inertia": args.inertia, "ways": list(ZONE_WAYS), **out,
            "machine": machine()}


SKELETON = [(5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14),
            (14, 16), (0, 5), (0, 6)]


def fight_examples(T, clips, obs, fired, when, y, path: Path, per_kind: int = 2) -> None:
    """Frames at which the monitor fired (or, for clips it let pass, the middle): boxes, keypoints, verdict."""
    import cv2

    picks = ([i for i in range(len(clips)) if y[i] == 1 and fired[i]][:per_kind]
             + [i for i in range(len(clips)) if y[i] == 0 and not fired[i]][:per_kind])
    tiles = []
    for i in picks:
        o = obs[i]
        k = int(np.argmin([abs(ob.ts - o[0].ts - when[i]) for ob in o])) if fired[i] else len(o) // 2
        img = [im for j, (_, im) in enumerate(T.sampled_frames(clips[i].path)) if j == k][0]
        verdict = f"ALERT at {when[i]:.1f}s" if fired[i] else "no alert"
        img = draw_observation(img, o[k], f"{clips[i].path.stem} ({'fight' if y[i] else 'no fight'}): {verdict}",
                               width=400)
        tiles.append(cv2.copyMakeBorder(img, 0, 300 - img.shape[0], 0, 0, cv2.BORDER_CONSTANT) if img.shape[0] < 300
                     else img[:300])
    if tiles:
        rows = [np.hstack(tiles[j:j + 2]) for j in range(0, len(tiles) - len(tiles) % 2, 2)]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 80])


def out_of_fold_scores(T, clips: list, X: np.ndarray, owner: np.ndarray, groups: np.ndarray, kind: str,
                       columns: np.ndarray | None = None, folds: int = 5) -> tuple[np.ndarray, int]:
    """Every window's score from the model fitted on the other folds (GroupKFold over ``groups``), and the number
    of folds. ``columns``: the features a variant uses (the others are zeroed, which both model kinds ignore)."""
    from sklearn.model_selection import GroupKFold

    y = np.array([c.label for c in clips])
    folds = min(folds, len(set(groups.tolist())))
    if folds < 2:
        raise SystemExit(f"cross-validation needs clips from 2 groups or more; all {len(clips)} clips are in one")
    if columns is not None:
        X = np.where(np.isin(np.arange(X.shape[1]), columns), X, 0.0)
    p = np.zeros(len(X))
    for train_c, test_c in GroupKFold(n_splits=folds).split(np.zeros(len(clips)), y, groups):
        tr, te = np.isin(owner, train_c), np.isin(owner, test_c)
        p[te] = T.make_model(kind, T.fit(kind, X[tr], y[owner[tr]]), 0.5, 1).proba(X[te])
    return p, folds


class ReplayScores:
    """A stand-in for the classifier that the monitor asks through ``score_window``: each window's score computed
    beforehand (cross-validation's out-of-fold scores; the shipped model's, computed once for a grid of operating
    points), looked up by the window's end time. Window length and rate are the real model's."""

    def __init__(self, model, by_end: dict[float, float]):
        self.by_end = by_end
        self.window_s, self.sample_fps = model.window_s, model.sample_fps
        self.threshold, self.hold_windows = model.threshold, model.hold_windows

    def score_window(self, window: list) -> float:
        return self.by_end.get(round(window[-1].ts, 6), 0.0)


def window_scores(T, model, obs: list) -> dict[float, float]:
    """The model's score of every full window of one camera's observations, by the window's end time."""
    from vision.conflict.features import window_features

    score = getattr(model, "score_window", None) or (lambda w: float(model.proba(window_features(w))[0]))
    return {round(t, 6): float(score(w)) for t, w in T.windows(obs, model.window_s)}


def run_monitor(rule, scorer, obs: list, point=None) -> tuple[list[dict], np.ndarray, object]:
    """The shipped ``ConflictMonitor`` over one camera's observations (pose already in them): the incidents it
    starts (seconds into the footage, score, threshold in force, detail), its persistent score per observation,
    and the monitor itself as it ended (its calibration)."""
    from vision.conflict.monitor import ConflictMonitor

    mon = ConflictMonitor("eval", "zone", rule, scorer, pose=None, point=point)
    starts, persistent = [], []
    for k, ob in enumerate(obs):
        threshold = mon.min_score
        inc = mon.push(ob)
        persistent.append(mon.persistent)
        if inc is not None and inc.phase == "start":
            starts.append({"at_s": round(ob.ts - obs[0].ts, 3), "index": k, "score": round(inc.score, 3),
                           "persistent": round(mon.persistent, 3), "threshold": round(threshold, 3),
                           "people": inc.count, "detail": inc.detail})
    return starts, np.asarray(persistent), mon


def alert_starts(model, obs: list) -> list[float]:
    """Seconds into the footage at which the shipped monitor (default rule) starts incidents."""
    from gridwatch.config import ConflictRule

    return [s["at_s"] for s in run_monitor(ConflictRule(enabled=True), model, obs)[0]]


def clip_decisions(rule, scorers: list, obs: list[list], point=None) -> tuple[np.ndarray, np.ndarray]:
    """Per clip (each its own camera): whether the monitor fired and when (s after the clip's start, NaN if not)."""
    fired, when = np.zeros(len(obs), bool), np.full(len(obs), np.nan)
    for i, (scorer, o) in enumerate(zip(scorers, obs)):
        starts = run_monitor(rule, scorer, o, point)[0] if o else []
        if starts:
            fired[i], when[i] = True, starts[0]["at_s"]
    return fired, when


def timing(when: np.ndarray, fired: np.ndarray, y: np.ndarray) -> dict:
    hit = when[fired & (y == 1)]
    return {"alert_s_median": float(np.median(hit)) if len(hit) else None,
            "alert_s_max": float(np.max(hit)) if len(hit) else None,
            "alert_within_2s": float((hit <= 2.0).mean()) if len(hit) else None}


def cv_variants() -> dict[str, tuple[str, np.ndarray | None]]:
    """The model variants that docs/accuracy.md compares, all on the shipped observations: (kind, feature columns)."""
    from vision.conflict.features import FEATURE_NAMES

    zone = np.array([k for k, n in enumerate(FEATURE_NAMES) if n.split("_")[0] in
                     ("speed", "top5", "hof", "dspeed")])
    return {"v3 features, trees (shipped)": ("trees", None), "v3 features, logistic regression": ("logistic", None),
            "v1's 40 pair and region features, trees": ("trees", np.arange(40)),
            "the 22 zone-motion features alone, trees": ("trees", zone)}


def fight_cv(args, T, clips, obs, y) -> tuple[dict, tuple]:
    """Cross-validation grouped by source video (or clip-number blocks): every variant through the raw rule
    (``--threshold``, ``--hold`` windows in a row) and through the shipped control stage (default rule)."""
    from gridwatch.config import ConflictRule
    from vision.conflict.model import ConflictModel

    groups, grouped_by = T.source_groups(clips, Path(args.data))
    X, owner, ends = T.window_matrix(obs)
    shipped = ConflictModel.load(args.model)
    raw_rule = ConflictRule(enabled=True, min_score=args.threshold)
    variants = cv_variants() if args.variants else {f"v3 features, {args.kind}": (args.kind, None)}
    rows, oof = {}, {}
    for name, (kind, columns) in tqdm(variants.items(), desc="cross-validation", unit="variant", file=sys.stderr):
        p, folds = out_of_fold_scores(T, clips, X, owner, groups, kind, columns)
        oof[name] = p
        scorers = [ReplayScores(shipped, {round(t, 6): float(s) for t, s in zip(ends[i], p[owner == i])})
                   for i in range(len(clips))]
        raw_scorers = [ReplayScores(_with_hold(shipped, args.hold), s.by_end) for s in scorers]
        row = {"kind": kind, "features": "all" if columns is None else len(columns)}
        for way, rule, sc in (("control", ConflictRule(enabled=True), scorers), ("raw", raw_rule, raw_scorers)):
            fired, when = clip_decisions(rule, sc, obs)
            row[way] = {**T.scores(y, fired), **timing(when, fired, y)}
        rows[name] = row
    main = rows[next(iter(rows))]
    point = ConflictRule(enabled=True).operating_point
    return {"command": "fight", "mode": f"cross-validation, {folds} folds grouped by {grouped_by}"
            + (", observations without pose" if args.no_pose else ""),
            "grouped_by": grouped_by, "groups": int(len(set(groups.tolist()))), "folds": folds, "kind": args.kind,
            "control": {"min_score": point.min_score, "k": point.k, "n": point.n, "vetoes": True},
            "raw": {"min_score": args.threshold, "windows_in_a_row": args.hold},
            **main["control"], "variants": rows}, (X, owner, ends, groups, oof)


def _with_hold(model, hold: int):
    """The same model's settings with another number of windows in a row (the raw rule's ``--hold``)."""
    import copy

    m = copy.copy(model)
    m.hold_windows = hold
    return m


# --------------------------------------------------------------------------- fight: calm footage

VIDEO_EXT = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".ts", ".webm")
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class CalmSource:
    """One camera's calm footage: a video, or a folder of frames taken at ``fps``."""

    path: Path
    fps: float | None = None  # frame folders only

    @property
    def name(self) -> str:
        return self.path.name


def calm_sources(paths: list[Path], fps: float | None) -> list[CalmSource]:
    """Videos, folders of videos, and frame folders (images in name order, taken at ``fps``), each one camera."""
    out: list[CalmSource] = []
    for p in map(Path, paths):
        if p.is_file():
            if p.suffix.lower() not in VIDEO_EXT:
                raise SystemExit(f"{p}: not a video ({', '.join(VIDEO_EXT)}) nor a folder")
            out.append(CalmSource(p))
        elif p.is_dir():
            images = [f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXT]
            if images:
                if not fps:
                    raise SystemExit(f"{p}: a folder of frames needs --fps (the rate its frames were taken at)")
                out.append(CalmSource(p, float(fps)))
            out += calm_sources(sorted(f for f in p.iterdir() if f.is_dir() or f.suffix.lower() in VIDEO_EXT), fps)
        else:
            raise SystemExit(f"{p}: no such file or folder")
    return out


def folder_observations(T, folder: Path, fps: float) -> list:
    """Observations of a frame folder at the model's analysis rate (frames thinned as the runtime thins a
    faster camera), by the shipped detector and pose; cached like the clips'."""
    import cv2

    from vision.conflict.observe import Observer, pack_observations, unpack_observations

    if fps < 0.75 * T.SAMPLE_FPS:
        raise SystemExit(f"{folder}: frames at {fps:g} fps; the conflict rule needs {T.SAMPLE_FPS:g} or more")
    names = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXT)
    h = hashlib.sha256()
    for n in names:
        h.update(f"{n}:{(folder / n).stat().st_size}".encode())
    path = T.CACHE / f"frames-{h.hexdigest()[:20]}-{fps:g}-{T.OBSERVER_VERSION}-{T.SAMPLE_FPS:g}.npz"
    if path.exists():
        with np.load(path) as z:
            return unpack_observations({k: z[k] for k in z.files})
    stride = max(1, int(round(fps / T.SAMPLE_FPS)))
    clip_observer, out = T.ClipObserver(), []
    observer = Observer(clip_observer.pose)
    for i in tqdm(range(0, len(names), stride), desc=f"observe {folder.name}", unit="frame", file=sys.stderr):
        img = cv2.imread(str(folder / names[i]))
        if img is None:
            raise SystemExit(f"{folder / names[i]}: not a readable image")
        out.append(observer.observe(i / fps, img, clip_observer.detector.detect([img])[0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path.with_suffix(".tmp.npz"), **pack_observations(out))
    path.with_suffix(".tmp.npz").replace(path)
    return out


def observations_without_pose(T, clips: list) -> list[list]:
    """The clips observed as the runtime observes a zone with pose switched off (``ConflictMonitor(pose=None)``):
    detector and flow only; cached apart from the shipped observations (``--no-pose``)."""
    from vision.conflict.observe import Observer, pack_observations, unpack_observations

    out, observer = [], None
    for clip in tqdm(clips, desc="observe clips without pose", unit="clip", file=sys.stderr):
        path = CACHE / "conflict-no-pose" / f"{T.clip_key(clip.path)}-{T.OBSERVER_VERSION}-{T.SAMPLE_FPS:g}.npz"
        if path.exists():
            with np.load(path) as z:
                out.append(unpack_observations({k: z[k] for k in z.files}))
            continue
        observer = observer or T.ClipObserver()
        zone = Observer(None)
        o = [zone.observe(ts, img, observer.detector.detect([img])[0]) for ts, img in T.sampled_frames(clip.path)]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path.with_suffix(".tmp.npz"), **pack_observations(o))
        path.with_suffix(".tmp.npz").replace(path)
        out.append(o)
    return out


def source_observations(T, src: CalmSource) -> list:
    return folder_observations(T, src.path, src.fps) if src.fps else T.observations([T.Clip(src.path, 0, 0)])[0]


def source_frame(T, src: CalmSource, ts: float) -> np.ndarray | None:
    """The analysed frame at ``ts`` seconds (the observation's own timestamp)."""
    import cv2

    if src.fps:
        names = sorted(f.name for f in src.path.iterdir() if f.suffix.lower() in IMAGE_EXT)
        k = int(round(ts * src.fps))
        return cv2.imread(str(src.path / names[k])) if 0 <= k < len(names) else None
    return next((img for t, img in T.sampled_frames(src.path) if abs(t - ts) < 1e-3), None)


def draw_observation(img: np.ndarray, ob, title: str, width: int = 640) -> np.ndarray:
    """The evidence an operator would look at: the people found, their pose, and the verdict on top."""
    import cv2

    img = img.copy()
    for (x1, y1, x2, y2) in ob.xyxy.astype(int):
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 200, 0), 2)
    for kp, got in zip(ob.keypoints, ob.has_pose):
        if got:
            for a, b in SKELETON:
                if kp[a, 2] > 0.3 and kp[b, 2] > 0.3:
                    cv2.line(img, tuple(kp[a, :2].astype(int)), tuple(kp[b, :2].astype(int)), (0, 255, 255), 2)
    img = cv2.resize(img, (width, int(width * img.shape[0] / img.shape[1])))
    cv2.rectangle(img, (0, 0), (width, 20), (0, 0, 0), -1)
    cv2.putText(img, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def poisson_upper95(events: int, hours: float) -> float:
    """One-sided 95 % upper bound of a Poisson rate per hour (Garwood: chi2(0.95, 2n + 2) / 2 / hours)."""
    from scipy.stats import chi2

    return float(chi2.ppf(0.95, 2 * events + 2) / 2 / max(hours, 1e-12))


def footage_seconds(obs: list) -> float:
    """Seconds of footage the observations cover (one analysed frame's interval added for the last one)."""
    if not obs:
        return 0.0
    ts = np.array([o.ts for o in obs])
    step = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
    return float(ts[-1] - ts[0] + step)


def calm_alerts(T, sources: list[CalmSource], model_path: Path, rule=None, evidence: Path | None = None) -> dict:
    """False alarms on footage with no fight in it: the shipped monitor over each camera's footage as the runtime
    runs it (thinned to the model's rate, from a cold start: the first window, the persistence and the camera's
    calibration all warm up on the footage itself), alerts per camera-hour with a Poisson 95 % upper bound, and each
    alert's time and evidence (an annotated frame under ``evidence``)."""
    import cv2

    from gridwatch.config import ConflictRule
    from vision.conflict.model import ConflictModel

    model = ConflictModel.load(model_path)
    rule = rule or ConflictRule(enabled=True)
    per = []
    for src in tqdm(sources, desc="calm footage", unit="camera", file=sys.stderr):
        obs = source_observations(T, src)
        starts, _, mon = run_monitor(rule, model, obs) if obs else ([], None, None)
        if evidence is not None:  # this camera's evidence from an earlier run (another rule) would mislead
            for old in evidence.glob(f"{src.path.stem}_*s.jpg"):
                old.unlink()
        cal = getattr(mon, "calibration", None)
        for s in starts:
            ob = obs[s.pop("index")]
            if evidence is not None:
                img = source_frame(T, src, ob.ts)
                if img is not None:
                    evidence.mkdir(parents=True, exist_ok=True)
                    out = evidence / f"{src.path.stem}_{s['at_s']:07.1f}s.jpg"
                    title = (f"{src.name} {s['at_s']:.1f}s: score {s['score']:.2f}, {s['persistent']:.2f} "
                             f">= {s['threshold']:.2f}, {s['people']} people")
                    cv2.imwrite(str(out), draw_observation(img, ob, title), [cv2.IMWRITE_JPEG_QUALITY, 80])
                    s["evidence"] = str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out)
        per.append({"video": src.name, "path": str(src.path), **({"fps": src.fps} if src.fps else {}),
                    "seconds": round(footage_seconds(obs), 2), "analysed_frames": len(obs),
                    "alerts": len(starts), "at_s": [s["at_s"] for s in starts], "alert_details": starts,
                    "calibrated_threshold": cal.threshold() if cal is not None else None,
                    "calibration_s": round(cal.seconds, 1) if cal is not None else None})
    hours = sum(p["seconds"] for p in per) / 3600
    n = sum(p["alerts"] for p in per)
    return {"videos": per, "alerts": n, "hours": hours, "alerts_per_hour": n / max(hours, 1e-12),
            "alerts_per_hour_upper95": poisson_upper95(n, hours), "model": str(model_path),
            "rule": {"false_alarms_per_hour_asked": rule.target_per_hour,
                     "operating_point": rule.operating_point._asdict(), "vetoes": rule.vetoes,
                     "calibrate": rule.calibrate, "calibrate_s": rule.calibrate_s}
            if rule.min_score is None else {"min_score": rule.min_score}}


# --------------------------------------------------------------------------- fight: operating points


def operating_points(args, T, clips, obs, y, cv_parts, sources: list[CalmSource]) -> dict:
    """A grid of thresholds and persistences, each a row: recall and precision under source-grouped CV, and calm
    footage's alerts per hour counted (with its 95 % bound) and extrapolated from the score tail
    (``CalmCalibration.rate_at`` pooled over the cameras); with the vetoes and, for comparison, without."""
    from gridwatch.config import ConflictRule
    from gridwatch.config.rules import ConflictPoint
    from vision.conflict.model import ConflictModel
    from vision.conflict.monitor import CalmCalibration

    X, owner, ends, groups, oof = cv_parts
    shipped = ConflictModel.load(args.model)
    p = oof[next(iter(oof))]
    cv_scorers = [ReplayScores(shipped, {round(t, 6): float(s) for t, s in zip(ends[i], p[owner == i])})
                  for i in range(len(clips))]
    calm_obs = [source_observations(T, s) for s in sources]
    calm_scorers = [ReplayScores(shipped, window_scores(T, shipped, o)) for o in calm_obs]
    hours = [footage_seconds(o) / 3600 for o in calm_obs]
    rows = []
    grid = [(t, k, n, v) for v in (True, False) for n in (6,) for k in (1, 2, 3) for t in args.grid]
    for t, k, n, vetoes in tqdm(grid, desc="operating points", unit="point", file=sys.stderr):
        point = ConflictPoint(0.0, t, k, n, 0.0, 0.0)
        rule = ConflictRule(enabled=True, vetoes=vetoes, calibrate=False)
        fired, when = clip_decisions(rule, cv_scorers, obs, point)
        alerts, tail, calibrated = 0, 0.0, 0
        for o, sc, h in zip(calm_obs, calm_scorers, hours):
            starts, persistent, _ = run_monitor(rule, sc, o, point)
            alerts += len(starts)
            calibrated += len(run_monitor(ConflictRule(enabled=True, vetoes=vetoes), sc, o, point)[0])
            cal = CalmCalibration(1.0, T.SAMPLE_FPS, min_s=0.0)
            for v in persistent:
                cal.add(v)
            tail += cal.rate_at(t) * h
        hsum = sum(hours)
        rows.append({"min_score": t, "k": k, "n": n, "vetoes": vetoes, **T.scores(y, fired),
                     **timing(when, fired, y), "calm_alerts": alerts, "calm_alerts_per_hour": alerts / hsum,
                     "calm_alerts_per_hour_upper95": poisson_upper95(alerts, hsum),
                     "calm_tail_estimate_per_hour": tail / hsum, "calm_alerts_calibrated": calibrated,
                     "calm_alerts_calibrated_per_hour": calibrated / hsum,
                     "expected_false_alarms_per_hour": max(alerts / hsum, tail / hsum)})
    return {"rows": rows, "calm_hours": sum(hours), "calm": [s.name for s in sources]}


def conflict_cost(T, clips, plaza: Path | None) -> dict:
    """Model time of pose (the conflict monitor's extra) over model time of detection, uncached, same process, in
    the steady state (an untimed first pass builds every input shape, as a running camera has), interleaved as at
    run time; then the recorded pose requests replayed back to back: on the inference core against ultralytics'
    own pose predict on the same crops (the way it ran before), and as 8 cameras' requests per call (``drive_all``,
    the inference loop) against one call each."""
    from ultralytics import YOLO

    from vision.steps import PoseRequest

    def timed(videos: list[Path], desc: str) -> dict:
        ob = T.ClipObserver()
        for v in videos:  # warm-up: first calls build the models and each new input shape
            ob.observe(v)
        ob.detect_s, ob.pose.seconds = 0.0, 0.0
        asked, run = [], ob.pose.run

        def recording(image, windows):
            asked.append(PoseRequest(ob.pose, image, windows))
            return run(image, windows)

        ob.pose.run = recording
        for v in tqdm(videos, desc=f"cost: {desc}", unit="video", file=sys.stderr):
            ob.observe(v)
        ob.pose.run = run  # recorded: the comparisons below replay the same requests
        detect_s, pose_s = ob.detect_s, ob.pose.seconds  # before the replays add to them
        crops = [np.ascontiguousarray(r.image[y1:y2, x1:x2]) for r in asked
                 for x1, y1, x2, y2 in r.windows[: ob.pose.max_crops]]
        reference = YOLO(str(ob.pose.detector.weights))

        def predict(crop):
            reference.predict(crop, imgsz=ob.pose.imgsz, conf=0.2, classes=[0], device=ob.pose.device, verbose=False)

        for c in crops:  # warm-up, as above
            predict(c)
        t0 = time.perf_counter()
        for c in crops:
            predict(c)
        base = time.perf_counter() - t0
        t0 = time.perf_counter()
        for r in asked:
            ob.pose.run(r.image, r.windows)
        one_each = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in range(0, len(asked), 8):
            ob.pose.run_many(asked[k:k + 8])
        eight = time.perf_counter() - t0
        return {"pose_one_call_each_s": one_each, "pose_8_cameras_per_call_s": eight,
                "pose_batching_speedup": one_each / max(eight, 1e-9),
                "pose_speedup_over_ultralytics": base / max(one_each, 1e-9),  # both replayed back to back
                "videos": len(videos), "detect_s": detect_s, "pose_s": pose_s, "pose_crops": len(crops),
                "pose_over_detection": pose_s / max(detect_s, 1e-9), "pose_backend": ob.pose.detector.backend_name,
                "ultralytics_pose_s": base}

    out = {"fight_clips": timed([c.path for c in clips], "fight clips")}
    if plaza is not None and Path(plaza).exists():
        out["ordinary_scene"] = {"video": Path(plaza).name, **timed([Path(plaza)], "plaza")}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect", help="person detection on a video + gt.csv (pets-s2l1 layout)")
    d.add_argument("--data", required=True)
    d.add_argument("--every", type=int, default=1, help="score every n-th frame")
    d.add_argument("--setups", nargs="*", help="e.g. yolov10n.pt@640 yolov10n.pt@960 yolov10n.pt@640+tiles2")
    d.add_argument("--conf", nargs="*", type=float, default=[0.25, 0.35, 0.5])
    d.add_argument("--plots", action="store_true", help="write docs/img/detect_<folder>.png (precision-recall)")
    c = sub.add_parser("count", help="crowd counting on frames + counts.csv (mall-train layout)")
    c.add_argument("--data", required=True)
    c.add_argument("--calibration", type=Path, default=ROOT / "models" / "counting" / "mall.json")
    c.add_argument("--plots", action="store_true", help="write docs/img/count_<folder>.png")
    f = sub.add_parser("fight", help="conflict detection on fight/*.mp4 + noFight/*.mp4 (fight-dev layout) and "
                       "false alarms on calm footage")
    f.add_argument("--data", help="fight/ + noFight/ clips (and sources.csv: clip,source for source-grouped CV)")
    f.add_argument("--cv", action="store_true", help="train and score with cross-validation grouped by source "
                   "video (sources.csv; clip-number blocks without one) instead")
    f.add_argument("--variants", action="store_true", help="--cv: every model variant docs/accuracy.md compares")
    f.add_argument("--no-pose", action="store_true", help="--cv: observations made with pose switched off")
    f.add_argument("--model", type=Path, default=ROOT / "models" / "conflict" / "conflict-v3.json")
    f.add_argument("--kind", choices=["logistic", "trees"], default="trees", help="--cv: classifier")
    f.add_argument("--threshold", type=float, default=0.5, help="--cv: the raw rule's probability threshold")
    f.add_argument("--hold", type=int, default=1, help="--cv: the raw rule's windows in a row")
    f.add_argument("--plots", action="store_true", help="write docs/img/fight_<folder>_examples.jpg")
    f.add_argument("--cost", type=int, default=0, help="also time pose vs detection on this many clips, uncached")
    f.add_argument("--plaza", type=Path, default=None, help="--cost: an ordinary busy scene to time too")
    f.add_argument("--calm", type=Path, nargs="*", default=[],
                   help="footage with no fight in it (videos, folders of videos, frame folders with --fps), one "
                        "camera each: the alerts the shipped monitor raises per camera-hour, with evidence")
    f.add_argument("--fps", type=float, default=None, help="--calm frame folders: the rate their frames were taken at")
    f.add_argument("--false-alarms-per-hour", type=float, default=None,
                   help="--calm: the zone sensitivity to run the rule at (default: the rule's default)")
    f.add_argument("--operating-points", action="store_true",
                   help="with --data and --calm: a grid of thresholds and persistences, each with its CV recall and "
                        "calm alerts per hour (eval_fight_operating_points.json)")
    f.add_argument("--grid", type=float, nargs="*", default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
                   help="--operating-points: the thresholds")
    z = sub.add_parser("zones", help="zone counts with inertia: the shipped tracker vs ByteTrack (pets or mall layout)")
    z.add_argument("--data", required=True)
    z.add_argument("--inertia", type=int, default=2, help="analysed frames in a row in the zone before a person counts")
    z.add_argument("--fps", nargs="*", type=float, default=[1, 2, 5], help="video: analysis rates")
    z.add_argument("--native-fps", type=float, default=10.0, help="video: its frame rate")
    z.add_argument("--subzones", action="store_true", help="video: also three smaller zones, without and with a "
                   "minimum confidence of 0.4")
    z.add_argument("--frames-fps", type=float, default=2.0, help="frames/: the rate they were taken at (Mall: under 2)")
    z.add_argument("--calibration", type=Path, default=ROOT / "models" / "counting" / "mall.json",
                   help="frames/: the count calibration (also sets the detector, as in count)")
    for p in (d, c, f, z):
        p.add_argument("--results", type=Path, default=RESULTS, help="folder for eval_<command>_<data>.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = {"detect": cmd_detect, "count": cmd_count, "fight": cmd_fight, "zones": cmd_zones}[args.command](args)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    name = args.command + ("_operating_points" if getattr(args, "operating_points", False) else
                           "_cv" if getattr(args, "cv", False) else "") + ("_no_pose" if getattr(args, "no_pose", False) else "")
    name += f"_{Path(args.data).name}" if args.data else "_calm"
    write_result(name, result, args.results)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
