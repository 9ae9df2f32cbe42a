"""Train the conflict classifier shipped as models/conflict/conflict-v3.json.

    python models/conflict/train.py --data ../shared/data/fight-dev [--out models/conflict/conflict-v3.json]

Each clip is sampled at ``SAMPLE_FPS``, run through the shipped person detector
(yolov10n at 640, confidence 0.25) and ``vision.conflict.Observer`` (pose on
crops of close groups, optical flow), exactly as the runtime does; sliding
windows of ``WINDOW_S`` seconds become feature vectors (``window_features``,
the runtime's code). The model is chosen by cross-validation grouped by source
video (the data folder's ``sources.csv``; blocks of neighbouring clip numbers
where there is none), then refitted on every clip. The per-clip observations are cached in var/cache/conflict.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision.conflict.features import FEATURE_NAMES, window_features
from vision.conflict.model import ConflictModel, export_sklearn
from vision.conflict.observe import Observation, pack_observations, unpack_observations

ROOT = Path(__file__).resolve().parents[2]

SAMPLE_FPS = 5.0
WINDOW_S = 1.5
BLOCK = 10  # clip numbers per CV group: fi031 and nofi038 share block 3
CACHE = ROOT / "var" / "cache" / "conflict"
OBSERVER_VERSION = "obs-v5"  # bump when observe.py changes what it measures


@dataclass(frozen=True)
class Clip:
    path: Path
    label: int  # 1 fight, 0 no fight
    number: int

    @property
    def group(self) -> int:
        return self.number // BLOCK


def list_clips(data: Path) -> list[Clip]:
    """``fight/*.mp4`` (label 1) and ``noFight/*.mp4`` (label 0); a clip's number is the digits in its name."""
    out = []
    for sub, label in (("fight", 1), ("noFight", 0)):
        folder = Path(data) / sub
        if not folder.is_dir():
            raise SystemExit(f"{folder} is missing: --data must hold fight/*.mp4 and noFight/*.mp4")
        for p in sorted(folder.glob("*.mp4")):
            m = re.search(r"(\d+)", p.stem)
            out.append(Clip(p, label, int(m.group(1)) if m else 0))
    if not out:
        raise SystemExit(f"no clips under {data}/fight or {data}/noFight")
    return out


def sampled_frames(path: Path, fps: float = SAMPLE_FPS):
    """(seconds, BGR image) at about ``fps``: every k-th decoded frame, with its real timestamp."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = float(s.average_rate or 25)
        stride = max(1, int(round(rate / fps)))
        for i, frame in enumerate(c.decode(s)):
            if i % stride == 0:
                ts = float(frame.pts * s.time_base) if frame.pts is not None else i / rate
                yield ts, frame.to_ndarray(format="bgr24")


class ClipObserver:
    """Detector + pose + flow over a clip: the runtime's pieces, built once, cached per clip."""

    def __init__(self, device: str = "cpu"):
        from gridwatch.config import DetectorConfig
        from models import resolve_weights
        from vision.conflict.observe import CropPose
        from vision.detector import PersonDetector

        self.detector = PersonDetector(resolve_weights("yolov10n.pt"), DetectorConfig(device=device))
        self.pose = CropPose(resolve_weights("yolo11n-pose.pt"), device=device)
        self.detect_s = 0.0

    def observe(self, path: Path) -> list[Observation]:
        from vision.conflict.observe import Observer

        observer = Observer(self.pose)
        out = []
        for ts, img in sampled_frames(path):
            t0 = time.perf_counter()
            people = self.detector.detect([img])[0]
            self.detect_s += time.perf_counter() - t0
            out.append(observer.observe(ts, img, people))
        return out


def clip_key(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]


def observations(clips: list[Clip], observer_factory=ClipObserver) -> list[list[Observation]]:
    from tqdm import tqdm

    CACHE.mkdir(parents=True, exist_ok=True)
    obs, observer = [], None
    for clip in tqdm(clips, desc="observe clips", unit="clip", file=sys.stderr):
        f = CACHE / f"{clip_key(clip.path)}-{OBSERVER_VERSION}-{SAMPLE_FPS:g}.npz"
        if f.exists():
            with np.load(f) as z:
                obs.append(unpack_observations({k: z[k] for k in z.files}))
            continue
        observer = observer or observer_factory()
        o = observer.observe(clip.path)
        np.savez_compressed(f.with_suffix(".tmp.npz"), **pack_observations(o))
        f.with_suffix(".tmp.npz").replace(f)
        obs.append(o)
    return obs


def windows(obs: list[Observation], window_s: float = WINDOW_S) -> list[tuple[float, list[Observation]]]:
    """(end time, observations) of every full window: the runtime decides once per analysed frame."""
    out = []
    for k in range(len(obs)):
        w = [o for o in obs[: k + 1] if o.ts > obs[k].ts - window_s - 1e-6]
        if obs[k].ts - w[0].ts >= 0.75 * window_s:
            out.append((obs[k].ts, w))
    return out


def window_matrix(obs_per_clip: list[list[Observation]]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Features of every window, the clip index of each row, and each clip's window end times."""
    rows, owner, ends = [], [], []
    for ci, obs in enumerate(obs_per_clip):
        ws = windows(obs)
        ends.append(np.array([t for t, _ in ws]))
        for _, w in ws:
            rows.append(window_features(w))
            owner.append(ci)
    return np.asarray(rows), np.asarray(owner), ends


def fit(kind: str, X: np.ndarray, y: np.ndarray, seed: int = 0, weights: np.ndarray | None = None):
    """A fitted sklearn classifier on log-scaled features, and its exported JSON parameters. ``weights``: per row
    (a site's own windows count more than the base data's, ``gridwatch.learning``)."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    Xl = np.sign(X) * np.log1p(np.abs(X))
    if kind == "logistic":
        scaler = StandardScaler().fit(Xl)
        clf = LogisticRegression(C=0.3, max_iter=2000).fit(scaler.transform(Xl), y, sample_weight=weights)
        return export_sklearn(clf, kind, scaler)
    clf = GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8,
                                     min_samples_leaf=20, random_state=seed).fit(Xl, y, sample_weight=weights)
    return export_sklearn(clf, kind)


def clip_decisions(model: ConflictModel, X: np.ndarray, owner: np.ndarray, ends: list[np.ndarray],
                   n_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: whether the alert fires (``hold_windows`` windows in a row above threshold) and when (s, NaN if not)."""
    p = model.proba(X) if len(X) else np.zeros(0)
    fired, when = np.zeros(n_clips, bool), np.full(n_clips, np.nan)
    for ci in range(n_clips):
        run = 0
        for t, pi in zip(ends[ci], p[owner == ci]):
            run = run + 1 if pi >= model.threshold else 0
            if run >= model.hold_windows:
                fired[ci], when[ci] = True, t
                break
    return fired, when


def scores(y: np.ndarray, fired: np.ndarray) -> dict:
    tp = int((fired & (y == 1)).sum())
    fp = int((fired & (y == 0)).sum())
    fn = int((~fired & (y == 1)).sum())
    prec, rec = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"accuracy": float((fired == (y == 1)).mean()), "precision": prec, "recall": rec,
            "f1": 2 * prec * rec / max(prec + rec, 1e-9), "tp": tp, "fp": fp, "fn": fn,
            "tn": int((~fired & (y == 0)).sum())}


def make_model(kind: str, params: dict, threshold: float, hold: int, meta: dict | None = None) -> ConflictModel:
    return ConflictModel(kind, FEATURE_NAMES, params, WINDOW_S, SAMPLE_FPS, threshold, hold, meta or {})


def read_sources(data: Path) -> dict[str, str] | None:
    """``sources.csv`` (clip,source): the source video of each clip, or None when the folder has none."""
    import csv

    path = Path(data) / "sources.csv"
    if not path.exists():
        return None
    with open(path) as f:
        return {row["clip"].strip(): row["source"].strip() for row in csv.DictReader(f)}


def source_groups(clips: list[Clip], data: Path | None = None) -> tuple[np.ndarray, str]:
    """Each clip's cross-validation group: its source video (``sources.csv`` of ``data``, default the clips'
    folder), so that no source is both trained and scored on; without a sources.csv, its block of ``BLOCK`` clip
    numbers (neighbours often share a source, but a block does not keep a source out of training: a weaker
    estimate)."""
    folder = data if data is not None else clips[0].path.parent.parent if clips else None
    sources = read_sources(folder) if folder is not None else None
    if sources is None:
        return np.array([c.group for c in clips]), f"blocks of {BLOCK} clip numbers (no sources.csv)"
    missing = [c.path.stem for c in clips if c.path.stem not in sources]
    if missing:
        raise SystemExit(f"sources.csv names no source for {len(missing)} clips, e.g. {missing[:3]}")
    return np.unique([sources[c.path.stem] for c in clips], return_inverse=True)[1], "source video (sources.csv)"


def cross_validate(clips: list[Clip], X, owner, ends, kind: str, folds: int = 5, threshold: float = 0.5,
                   hold: int = 2, groups: np.ndarray | None = None) -> dict:
    """Grouped K-fold, by source video (``source_groups``; ``groups`` to give others): every fold's clips come from
    source videos unseen in training."""
    from sklearn.model_selection import GroupKFold

    y_clip = np.array([c.label for c in clips])
    grouped_by = "given groups"
    if groups is None:
        groups, grouped_by = source_groups(clips)
    folds = min(folds, len(set(groups.tolist())))  # a small folder: one fold per group
    if folds < 2:
        raise SystemExit(f"cross-validation needs clips from 2 groups (source videos) or more; "
                         f"all {len(clips)} clips are in one")
    fired, when = np.zeros(len(clips), bool), np.full(len(clips), np.nan)
    for train_c, test_c in GroupKFold(n_splits=folds).split(np.zeros(len(clips)), y_clip, groups):
        tr = np.isin(owner, train_c)
        model = make_model(kind, fit(kind, X[tr], y_clip[owner[tr]]), threshold, hold)
        te = np.isin(owner, test_c)
        remap = {c: k for k, c in enumerate(test_c)}
        f, w = clip_decisions(model, X[te], np.array([remap[o] for o in owner[te]]), [ends[c] for c in test_c],
                              len(test_c))
        fired[test_c], when[test_c] = f, w
    out = scores(y_clip, fired)
    hit = when[(y_clip == 1) & fired]
    out["alert_s_median"] = float(np.median(hit)) if len(hit) else None
    out["alert_s_max"] = float(np.max(hit)) if len(hit) else None
    out["alert_within_2s"] = float((hit <= 2.0).mean()) if len(hit) else None
    out["folds"], out["groups"], out["grouped_by"] = folds, int(len(set(groups.tolist()))), grouped_by
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fight-dev")
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "conflict" / "conflict-v3.json")
    ap.add_argument("--kind", choices=["logistic", "trees"], default="trees")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--hold", type=int, default=1)
    args = ap.parse_args()
    clips = list_clips(args.data)
    obs = observations(clips)
    X, owner, ends = window_matrix(obs)
    cv = cross_validate(clips, X, owner, ends, args.kind, threshold=args.threshold, hold=args.hold)
    y = np.array([c.label for c in clips])
    params = fit(args.kind, X, y[owner])
    meta = {"trained_on": f"{args.data.name}: {int(y.sum())} fight + {int((y == 0).sum())} no-fight clips",
            "windows": int(len(X)), "cv": cv, "detector": "yolov10n.pt@640 conf 0.25",
            "pose": "yolo11n-pose.pt @256 on the fastest-moving crop of a close group or moving region, 1 per frame, "
                    "on the detector's inference core (OpenVINO on a CPU)",
            "observer": OBSERVER_VERSION, "trained": time.strftime("%Y-%m-%d")}
    make_model(args.kind, params, args.threshold, args.hold, meta).save(args.out)
    print(json.dumps({"model": str(args.out.relative_to(ROOT)), **cv}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
