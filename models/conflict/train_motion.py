"""Train the learned motion classifier shipped as models/conflict/conflict-v4.json (+ its weights, .npz).

    python models/conflict/train_motion.py observe --phases 0 1 3 4   # detector + pose, cached in var/cache/conflict-motion
    python models/conflict/train_motion.py train --phases 0 1 3 4 --epochs 30 --seeds 3   # CV, fit, write v4

(v4 was made in two steps that give the same result: ``train ... --cv-only --results CV.json``, then
``train ... --fit-only`` and ``train ... --cv-results CV.json --weights models/conflict/conflict-v4-motion.npz``.)

Every clip of ``fight-dev`` and every calm video (PETS S2.L1, the plaza, ``calm/one_by_one_person.mp4``) goes
through the runtime's own pieces at ``SAMPLE_FPS`` (yolov10n, yolo11n-pose on crops, ``vision.conflict.Observer``),
which now also keeps a small motion image per analysed frame (``observe.motion_image``: flow speed and direction,
grey-level change, skeletons). A network of a few tens of thousands of weights (``vision.conflict.model.MotionNet``) learns a
fight probability per window from those images; it is measured with cross-validation grouped by source video
(``fight-dev/sources.csv``; each calm video is a group of its own), clip-level decisions as the monitor makes them,
against v3's features and trees on the same folds, and fused with them where that measures better.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.conflict.train import scores
from vision.conflict.observe import Observation, Observer, pack_observations, unpack_observations

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "var" / "cache" / "conflict-motion"
SAMPLE_FPS = 5.0
OBSERVER_VERSION = "obs-v5m1"  # obs-v5 (train.py) plus motion_image; bump when observe.py changes what it measures
CALM_VIDEOS = ("pets-s2l1/s2l1_480x360.avi", "clips/plaza_overhead.avi", "calm/one_by_one_person.mp4")


@dataclass(frozen=True)
class Source:
    """A clip or calm video with its label and the group that cross-validation keeps together."""

    path: Path
    label: int  # 1 fight, 0 no fight
    group: str  # fight-dev: the source video; calm videos: their own name
    calm: bool = False  # one of CALM_VIDEOS (not a fight-dev clip)

    @property
    def name(self) -> str:
        return self.path.stem


def list_sources(data: Path = DATA) -> list[Source]:
    """fight-dev clips grouped by ``sources.csv``, then the calm videos that exist."""
    fd = data / "fight-dev"
    with open(fd / "sources.csv") as f:
        src = {r["clip"]: r["source"] for r in csv.DictReader(f)}
    out = []
    for sub, label in (("fight", 1), ("noFight", 0)):
        for p in sorted((fd / sub).glob("*.mp4")):
            if p.stem not in src:
                raise SystemExit(f"{p.name} has no row in {fd / 'sources.csv'}")
            out.append(Source(p, label, src[p.stem]))
    out += [Source(data / v, 0, "calm:" + Path(v).stem, True) for v in CALM_VIDEOS if (data / v).exists()]
    return out


def phased_frames(path: Path, fps: float = SAMPLE_FPS, phase: int = 0, reorder: bool = False):
    """(seconds, BGR image) at about ``fps``, starting ``phase`` frames in (``train.sampled_frames`` for phase 0).

    ``reorder``: frames put back in presentation order and timed by their pts (PyAV hands the H.264-in-AVI calm
    videos over in decode order, and reports the plaza's rate as 50 where 341 frames span 27 s).
    """
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = float(s.average_rate or 25)
        frames = enumerate(c.decode(s))
        if reorder:
            frames = _in_pts_order(frames, float(s.time_base))
            first = [next(frames) for _ in range(16)]
            rate = 1.0 / float(np.median(np.diff([ts for _, (ts, _) in first])))
            frames = _chain(first, frames)
        stride = max(1, int(round(rate / fps)))
        for i, item in frames:
            if i >= phase and (i - phase) % stride == 0:
                if reorder:
                    ts, frame = item
                else:
                    frame = item
                    ts = float(frame.pts * s.time_base) if frame.pts is not None else i / rate
                yield ts, frame.to_ndarray(format="bgr24")


def _in_pts_order(frames, time_base: float, depth: int = 16):
    """(index, (seconds, frame)) in pts order, through a reorder buffer of ``depth`` frames."""
    import heapq

    heap: list = []
    k = 0
    for n, (_, f) in enumerate(frames):
        heapq.heappush(heap, (f.pts, n, f))
        if len(heap) > depth:
            pts, _, g = heapq.heappop(heap)
            yield k, (pts * time_base, g)
            k += 1
    while heap:
        pts, _, g = heapq.heappop(heap)
        yield k, (pts * time_base, g)
        k += 1


def _chain(first: list, rest):
    yield from first
    yield from rest


def file_key(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]


class Pipeline:
    """The runtime's detector and pose, built once (``train.ClipObserver``'s settings)."""

    def __init__(self) -> None:
        from gridwatch.config import DetectorConfig
        from models import resolve_weights
        from vision.conflict.observe import CropPose
        from vision.detector import PersonDetector

        self.detector = PersonDetector(resolve_weights("yolov10n.pt"), DetectorConfig(device="cpu"))
        self.pose = CropPose(resolve_weights("yolo11n-pose.pt"), device="cpu")

    def observe(self, path: Path, phase: int = 0, reorder: bool = False) -> list[Observation]:
        observer = Observer(self.pose)
        return [observer.observe(ts, img, self.detector.detect([img])[0])
                for ts, img in phased_frames(path, phase=phase, reorder=reorder)]


def cache_path(src: Source, phase: int) -> Path:
    return CACHE / f"{file_key(src.path)}-{OBSERVER_VERSION}-{SAMPLE_FPS:g}-p{phase}.npz"


def load_observations(src: Source, phase: int = 0, pipeline: Pipeline | None = None) -> list[Observation] | None:
    """Cached observations of one source at one phase; computed (and cached) when ``pipeline`` is given."""
    f = cache_path(src, phase)
    if f.exists():
        with np.load(f) as z:
            return unpack_observations({k: z[k] for k in z.files})
    if pipeline is None:
        return None
    obs = pipeline.observe(src.path, phase, reorder=src.calm)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.name + f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **pack_observations(obs))
    tmp.replace(f)
    return obs


def cmd_observe(args) -> int:
    from tqdm import tqdm

    sources = list_sources(args.data)
    pipeline = None
    for phase in args.phases:
        todo = [s for s in sources if not cache_path(s, phase).exists() and (phase == 0 or not s.calm or args.calm_phases)]
        for s in tqdm(todo, desc=f"observe phase {phase}", unit="clip", file=sys.stderr):
            pipeline = pipeline or Pipeline()
            load_observations(s, phase, pipeline)
    return 0


# --------------------------------------------------------------------------- data


@dataclass
class Unit:
    """A batchable piece of one source at one phase: its frames' motion images and its full windows."""

    source: int  # index into the sources list
    phase: int
    frames: np.ndarray  # (F, C, H, W) uint8
    windows: np.ndarray  # (W, L) frame indices, padded with 0
    mask: np.ndarray  # (W, L) bool
    ends: np.ndarray  # (W,) window end times, seconds into the source


def window_spans(obs: list[Observation], window_s: float) -> list[tuple[int, int]]:
    """(first, last) observation index of every full window: ``train.windows``' rule, as index ranges."""
    ts = np.array([o.ts for o in obs])
    out = []
    for k in range(len(obs)):
        a = int(np.searchsorted(ts, ts[k] - window_s - 1e-6, side="right"))
        if ts[k] - ts[a] >= 0.75 * window_s:
            out.append((a, k))
    return out


def make_units(src: int, phase: int, obs: list[Observation], window_s: float, per_unit: int = 12) -> list[Unit]:
    """Windows in groups of ``per_unit`` with just the frames they need (a long calm video becomes many units)."""
    spans = window_spans(obs, window_s)
    if not spans or any(o.motion_image.ndim != 3 for o in obs):
        return []
    img = np.stack([o.motion_image for o in obs])
    length = max(b - a + 1 for a, b in spans)
    out = []
    for k in range(0, len(spans), per_unit):
        part = spans[k:k + per_unit]
        lo, hi = part[0][0], part[-1][1] + 1
        idx = np.zeros((len(part), length), np.int64)
        mask = np.zeros((len(part), length), bool)
        for r, (a, b) in enumerate(part):
            idx[r, : b - a + 1] = np.arange(a, b + 1) - lo
            mask[r, : b - a + 1] = True
        out.append(Unit(src, phase, img[lo:hi], idx, mask, np.array([obs[b].ts - obs[0].ts for _, b in part])))
    return out


# --------------------------------------------------------------------------- network


def torch_net(widths: tuple[int, ...] = (12, 24, 32, 48), emb: int = 32, dropout: float = 0.2):
    """``vision.conflict.model.MotionNet`` in torch, for training (same parameter names, same arithmetic)."""
    import torch
    from torch import nn

    from vision.conflict.model import MotionNet
    from vision.conflict.observe import MOTION_CHANNELS

    class TorchMotionNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = (len(MOTION_CHANNELS), *widths)
            for (name, stride), cin, cout in zip(MotionNet.CONVS, chans[:-1], chans[1:]):
                setattr(self, name, nn.Conv2d(cin, cout, 3, stride, 1))
            self.proj = nn.Linear(2 * widths[-1], emb)
            self.head = nn.Linear(3 * emb, 1)
            self.drop = nn.Dropout(dropout)

        def embed(self, x: "torch.Tensor") -> "torch.Tensor":
            for name, _ in MotionNet.CONVS:
                x = torch.relu(getattr(self, name)(x))
            return torch.relu(self.proj(torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], 1)))

        def forward(self, x: "torch.Tensor", idx: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
            """Frames (F, C, H, W), windows (W, L) into them with a mask: log-odds per window."""
            e = self.embed(x)[idx]  # (W, L, E), all >= 0
            m = mask[..., None].to(e.dtype)
            mx = (e * m).amax(1)
            mean = (e * m).sum(1) / m.sum(1)
            both = m[:, 1:] * m[:, :-1]
            change = ((e[:, 1:] - e[:, :-1]).abs() * both).amax(1) if e.shape[1] > 1 else torch.zeros_like(mx)
            return self.head(self.drop(torch.cat([mx, mean, change], 1)))[:, 0]

    return TorchMotionNet()


def decode(frames: np.ndarray, flip: bool = False) -> np.ndarray:
    """uint8 motion images -> the network's float input (``model.motion_input``'s scaling); optionally mirrored."""
    x = frames.astype(np.float32) / 255.0
    x[:, 1:3] = (frames[:, 1:3].astype(np.float32) - 128.0) / 127.0
    if flip:
        x = x[..., ::-1].copy()
        x[:, 1] = -x[:, 1]  # mirrored: horizontal flow changes sign
    return x


@dataclass(frozen=True)
class Recipe:
    """How a network is trained (the CV and the final fit use the same one)."""

    epochs: int = 30
    batch: int = 16
    lr: float = 3e-3
    calm_share: float = 0.3  # calm-video windows per epoch, as a share of the fight-dev no-fight windows
    mil: bool = True  # loss on each clip's highest window (the alert fires on any window), not on every window
    augment: bool = True  # mirror, play backwards, speed scale, zoom
    seeds: int = 1  # networks averaged (log-odds)


def augmented(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Decoded frames of one unit as another camera might show them: mirrored, backwards in time (flow negated),
    nearer or farther (a zoom, speeds scaled to match) and with a different speed scale."""
    import cv2

    if rng.random() < 0.5:
        x = x[..., ::-1].copy()
        x[:, 1] = -x[:, 1]
    if rng.random() < 0.3:
        x = x[::-1].copy()
        x[:, 1:3] = -x[:, 1:3]
    gain = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    if rng.random() < 0.5:  # zoom in on a random part: things look bigger and move more frame heights per second
        c = rng.uniform(0.7, 1.0)
        f, ch, h, w = x.shape
        hh, ww = int(round(h * c)), int(round(w * c))
        y0, x0 = rng.integers(0, h - hh + 1), rng.integers(0, w - ww + 1)
        crop = x[:, :, y0:y0 + hh, x0:x0 + ww].reshape(f * ch, hh, ww).transpose(1, 2, 0)
        x = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_LINEAR)
        x = x.reshape(h, w, f, ch).transpose(2, 3, 0, 1).copy()
        x[:, 4] = (x[:, 4] > 0.25).astype(np.float32)
        gain /= c
    x[:, :4] = np.clip(x[:, :4] * np.sqrt(gain), -1.0, 1.0)  # the channels are sqrt-compressed speeds
    return x


def batch_tensors(units: list, flips: list[bool], rng: np.random.Generator | None = None):
    """One batch: all frames of the units stacked, window indices shifted into the stack (``rng``: augmented)."""
    import torch

    xs, idx, mask, off = [], [], [], 0
    for u, f in zip(units, flips):
        xs.append(augmented(decode(u.frames), rng) if rng is not None else decode(u.frames, f))
        idx.append(u.windows + off)
        mask.append(u.mask)
        off += len(u.frames)
    length = max(i.shape[1] for i in idx)
    pad = lambda a, v: np.pad(a, ((0, 0), (0, length - a.shape[1])), constant_values=v)  # noqa: E731
    return (torch.from_numpy(np.ascontiguousarray(np.concatenate(xs))),
            torch.from_numpy(np.concatenate([pad(i, 0) for i in idx])),
            torch.from_numpy(np.concatenate([pad(m, False) for m in mask])))


def train_net(units: list[Unit], labels: np.ndarray, calm: np.ndarray, recipe: Recipe, seed: int = 0,
              desc: str = "train"):
    """Fit a fresh network on ``units`` (label per unit). Each epoch sees every fight-dev clip once, at a random
    phase, and calm-video units worth ``calm_share`` of the no-fight windows."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = torch_net()
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs)
    by_clip: dict[int, list[int]] = {}
    for k, u in enumerate(units):
        if not calm[k]:
            by_clip.setdefault(u.source, []).append(k)
    calm_units = np.nonzero(calm)[0]
    n_neg = sum(len(units[v[0]].windows) for c, v in by_clip.items() if labels[v[0]] == 0)
    n_pos = sum(len(units[v[0]].windows) for c, v in by_clip.items() if labels[v[0]] == 1)
    bar = tqdm(range(recipe.epochs), desc=desc, unit="epoch", file=sys.stderr, leave=False)
    for _ in bar:
        # one phase per clip (a clip's phases are the same event seen a few frames apart)
        picks = [int(rng.choice([k for k in v if units[k].phase == ph]))
                 for v in by_clip.values() for ph in [rng.choice(sorted({units[k].phase for k in v}))]]
        if len(calm_units):
            want, got = recipe.calm_share * n_neg, 0
            for k in rng.permutation(calm_units):
                if got >= want:
                    break
                picks.append(int(k))
                got += len(units[k].windows)
        picks = [picks[i] for i in rng.permutation(len(picks))]
        net.train()
        total = 0.0
        for b in range(0, len(picks), recipe.batch):
            ks = picks[b:b + recipe.batch]
            chosen = [units[k] for k in ks]
            x, idx, mask = batch_tensors(chosen, list(rng.random(len(chosen)) < 0.5),
                                         rng if recipe.augment else None)
            z = net(x, idx, mask)
            if recipe.mil:  # one bag per unit: its highest window decides
                sizes = [len(u.windows) for u in chosen]
                z = torch.stack([part.max() for part in torch.split(z, sizes)])
                y = torch.tensor([float(labels[k]) for k in ks])
                pos = sum(int(labels[v[0]] == 1) for v in by_clip.values())
                neg = len(by_clip) - pos + (len(calm_units) and 1)
            else:
                y = torch.from_numpy(np.concatenate([np.full(len(u.windows), labels[k], np.float32)
                                                     for u, k in zip(chosen, ks)]))
                pos, neg = n_pos, n_neg
            w = torch.where(y > 0, 0.5 * (pos + neg) / max(pos, 1), 0.5 * (pos + neg) / max(neg, 1))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        sched.step()
        bar.set_postfix(loss=f"{total / max(1, -(-len(picks) // recipe.batch)):.3f}")
    return net


def predict(net, units: list[Unit]) -> list[np.ndarray]:
    """Log-odds per window of each unit (no dropout, no mirroring)."""
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for u in units:
            x, idx, mask = batch_tensors([u], [False])
            out.append(net(x, idx, mask).numpy().astype(np.float64))
    return out


# --------------------------------------------------------------------------- cross-validation


def calm_alarms(p: np.ndarray, ends: np.ndarray, threshold: float, clear_s: float = 5.0,
                cooldown_s: float = 30.0) -> dict:
    """On a calm video: the share of windows over the threshold, and incidents per hour as the default rule gates
    them (start at the threshold, end after ``clear_s`` below threshold - 0.2, then ``cooldown_s`` before another)."""
    starts, active, below_since, ready = 0, False, None, -np.inf
    for pi, t in zip(p, ends):
        if not active:
            if pi >= threshold and t >= ready:
                starts, active, below_since = starts + 1, True, None
        elif pi < threshold - 0.2:
            below_since = t if below_since is None else below_since
            if t - below_since >= clear_s:
                active, ready = False, t + cooldown_s
        else:
            below_since = None
    hours = max(float(ends[-1] - ends[0]) if len(ends) > 1 else 0.0, 1.0) / 3600
    return {"windows_over": float((p >= threshold).mean()) if len(p) else 0.0, "incidents": starts,
            "seconds": round(hours * 3600, 1), "incidents_per_hour": starts / hours}


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def evaluate(sources: list[Source], z: dict[int, np.ndarray], ends: dict[int, np.ndarray], fold_of: np.ndarray,
             threshold: float) -> dict:
    """Pooled and per-fold clip scores on fight-dev (out-of-fold log-odds per window), and calm-video alarms."""
    dev = [i for i, s in enumerate(sources) if not s.calm]
    y = np.array([sources[i].label for i in dev])
    fired = np.array([bool(len(z[i]) and (sigmoid(z[i]) >= threshold).any()) for i in dev])
    out = scores(y, fired)
    out["per_fold"] = [{"fold": int(f), **scores(y[fold_of[dev] == f], fired[fold_of[dev] == f])}
                       for f in sorted(set(fold_of[dev].tolist()))]
    out["calm"] = {sources[i].name: calm_alarms(sigmoid(z[i]), ends[i], threshold) for i, s in enumerate(sources)
                   if s.calm}
    peak = np.array([float(z[i].max()) if len(z[i]) else -np.inf for i in dev])
    out["clip_auc"] = float(_auc(peak, y))
    out["missed"] = [sources[i].name for i, f in zip(dev, fired) if sources[i].label == 1 and not f]
    out["false_alarms"] = [sources[i].name for i, f in zip(dev, fired) if sources[i].label == 0 and f]
    return out


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic): how well the clip's highest window separates fights, at any
    threshold."""
    from scipy.stats import rankdata

    r = rankdata(score)
    npos, nneg = int((y == 1).sum()), int((y == 0).sum())
    return float((r[y == 1].sum() - npos * (npos + 1) / 2) / max(npos * nneg, 1))


def load_everything(sources: list[Source], phases: list[int]) -> dict[tuple[int, int], list[Observation]]:
    from tqdm import tqdm

    out = {}
    for i, s in enumerate(tqdm(sources, desc="load cache", unit="source", file=sys.stderr)):
        for ph in phases:
            obs = load_observations(s, ph)
            if obs is not None:
                out[(i, ph)] = obs
            elif ph == 0:
                raise SystemExit(f"{s.path} has no cached observations: run `train_motion.py observe` first")
    return out


def run_cv(args, recipe: Recipe, sources: list[Source], obs: dict, units: list[Unit]) -> dict:
    """Source-grouped CV of the network (``recipe``) and of v3's recipe (features + trees, retrained per fold) on
    the same folds; pooled and per-fold clip scores of each and of their log-odds averages."""
    from sklearn.model_selection import GroupKFold

    from models.conflict import train as T

    window_s = T.WINDOW_S
    labels = np.array([s.label for s in sources])
    u_src = np.array([u.source for u in units])
    u_phase = np.array([u.phase for u in units])
    u_label = labels[u_src]
    u_calm = np.array([s.calm for s in sources])[u_src]
    # v3's features on the same windows (phase 0): its recipe is retrained per fold for the comparison
    feats, ends = {}, {}
    for i in range(len(sources)):
        ws = T.windows(obs[(i, 0)], window_s)
        feats[i] = np.array([T.window_features(w) for _, w in ws]).reshape(len(ws), -1)
        ends[i] = np.array([t for t, _ in ws])
    groups = np.array([s.group for s in sources])
    folds = list(GroupKFold(n_splits=args.folds).split(np.zeros(len(sources)), labels, groups))
    fold_of = np.zeros(len(sources), np.int64)
    for f, (_, te) in enumerate(folds):
        fold_of[te] = f
    zm: dict[int, np.ndarray] = {}
    zt: dict[int, np.ndarray] = {}
    t0 = time.perf_counter()
    for f, (tr, te) in enumerate(folds):
        tr_u = np.isin(u_src, tr)
        sub = [units[k] for k in np.nonzero(tr_u)[0]]
        nets = [train_net(sub, u_label[tr_u], u_calm[tr_u], recipe, seed=args.seed + 10 * f + r,
                          desc=f"fold {f + 1}/{len(folds)} net {r + 1}") for r in range(recipe.seeds)]
        for i in te:
            parts = [units[k] for k in np.nonzero((u_src == i) & (u_phase == 0))[0]]
            zm[i] = (np.mean([np.concatenate(predict(n, parts)) for n in nets], axis=0) if parts else np.zeros(0))
        dev_tr = [i for i in tr if not sources[i].calm]
        X = np.concatenate([feats[i] for i in dev_tr])
        y = np.concatenate([np.full(len(feats[i]), labels[i]) for i in dev_tr])
        trees = T.make_model("trees", T.fit("trees", X, y, seed=args.seed), 0.5, 1)
        for i in te:
            zt[i] = trees.decision(feats[i]) if len(feats[i]) else np.zeros(0)
        log(f"fold {f + 1}: {time.perf_counter() - t0:.0f}s; motion {json.dumps(_short(evaluate_subset(sources, zm, te)))}"
            f" trees {json.dumps(_short(evaluate_subset(sources, zt, te)))}")
    results = {"folds": args.folds, "recipe": dataclasses.asdict(recipe), "phases": sorted({int(p) for p in u_phase}),
               "groups": {f: sorted({str(groups[i]) for i in te}) for f, (_, te) in enumerate(folds)},
               "threshold": args.threshold, "fusions": {}}
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):
        z = {i: w * zm[i] + (1 - w) * zt[i] for i in zm}
        name = {0.0: "v3_recipe_trees", 1.0: "motion_net"}.get(w, f"fusion_w{w:g}")
        results["fusions"][name] = {"w_motion": w, **evaluate(sources, z, ends, fold_of, args.threshold)}
        results["fusions"][name]["threshold_sweep"] = {
            f"{t:.2f}": _short(evaluate(sources, z, ends, fold_of, t)) for t in np.arange(0.3, 0.81, 0.05)}
        log(f"{name}: {json.dumps(_short(results['fusions'][name]))}")
    # the shipped combination: the best cross-validated accuracy (then F1) among the motion net and the fusions
    best = max((k for k in results["fusions"] if k != "v3_recipe_trees"),
               key=lambda k: (results["fusions"][k]["accuracy"], results["fusions"][k]["f1"]))
    results["chosen"] = best
    results["beats_v3_recipe"] = bool(results["fusions"][best]["accuracy"] > results["fusions"]["v3_recipe_trees"]["accuracy"]
                                      and results["fusions"][best]["f1"] >= results["fusions"]["v3_recipe_trees"]["f1"])
    results["cv_wall_s"] = round(time.perf_counter() - t0, 1)
    oof = CACHE / f"oof-{Path(args.results).stem}.npz"  # out-of-fold log-odds per window, for later analysis
    np.savez(oof, **{f"m{i}": zm[i] for i in zm}, **{f"t{i}": zt[i] for i in zt})
    return results


def cmd_train(args) -> int:
    import torch

    from models.conflict import train as T
    from models.weights import sha256_of
    from vision.conflict.model import ConflictModel

    torch.set_num_threads(1)
    recipe = Recipe(epochs=args.epochs, mil=not args.window_loss, augment=not args.no_augment, seeds=args.seeds,
                    calm_share=args.calm_share)
    sources = list_sources(args.data)
    window_s = T.WINDOW_S
    obs = load_everything(sources, args.phases)
    labels = np.array([s.label for s in sources])
    calm_src = np.array([s.calm for s in sources])
    units: list[Unit] = []
    for (i, ph), o in obs.items():
        units += make_units(i, ph, o, window_s)
    u_src = np.array([u.source for u in units])
    u_label = labels[u_src]
    u_calm = calm_src[u_src]
    if args.cv_results:
        results = json.loads(Path(args.cv_results).read_text())
    elif not args.fit_only:
        results = run_cv(args, recipe, sources, obs, units)
    if args.cv_only:
        Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({k: _short(v) for k, v in results["fusions"].items()}))
        return 0
    # the shipped networks: every source, every phase, the same recipe, ``seeds`` of them averaged
    out_json = Path(args.out)
    npz = out_json.with_name(out_json.stem + "-motion.npz")
    if args.weights:  # networks fitted earlier with --fit-only (same recipe), not refitted
        nets = torch_nets(_numpy_net(args.weights))
        if Path(args.weights).resolve() != npz.resolve():
            shutil.copy(args.weights, npz)
    else:
        nets = [train_net(units, u_label, u_calm, recipe, seed=args.seed + 100 + r, desc=f"final fit {r + 1}")
                for r in range(recipe.seeds)]
        weights = {f"m{r}.{k}": v.detach().numpy().astype(np.float32) for r, n in enumerate(nets)
                   for k, v in n.state_dict().items()}
        np.savez(npz, **weights)
        if args.fit_only:
            print(json.dumps({"weights": str(npz), "sha256": sha256_of(npz)}))
            return 0
    best = results["chosen"]
    w_best = results["fusions"][best]["w_motion"]
    v3 = json.loads((ROOT / "models" / "conflict" / "conflict-v3.json").read_text())
    params = {"net": {"file": npz.name, "sha256": sha256_of(npz), "n_params": _numpy_net(npz).n_params,
                      "input": "observe.motion_image, (speed, flow_x, flow_y, change, skeleton) x 48 x 64"},
              "w_motion": w_best, **({"trees": v3["params"]} if w_best < 1 else {})}
    meta = {"trained_on": f"fight-dev: {int((labels[~calm_src] == 1).sum())} fight + "
                          f"{int((labels[~calm_src] == 0).sum())} no-fight clips; calm videos as negatives: "
                          + ", ".join(s.path.name for s in sources if s.calm),
            "phases": results["phases"], "recipe": dataclasses.asdict(recipe),
            "trees": "conflict-v3.json's, unchanged" if w_best < 1 else None,
            "cv": _short(results["fusions"][best]),
            "cv_v3_recipe_same_folds": _short(results["fusions"]["v3_recipe_trees"]),
            "cv_grouping": f"GroupKFold({results['folds']}) by fight-dev/sources.csv source; each calm video its own "
                           "group", "observer": OBSERVER_VERSION,
            "trained": time.strftime("%Y-%m-%d")}
    model = ConflictModel("motion", T.FEATURE_NAMES, params, window_s, SAMPLE_FPS, args.threshold, 1, meta,
                          net=_numpy_net(npz))
    model.save(out_json)
    results["model"] = str(out_json.relative_to(ROOT)) if out_json.is_relative_to(ROOT) else str(out_json)
    results["weights_sha256"] = params["net"]["sha256"]
    results["n_params"] = params["net"]["n_params"]
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    check = ConflictModel.load(out_json)  # round trip: the numpy forward agrees with torch on real windows
    i = int(np.nonzero(~calm_src)[0][0])
    ws = T.windows(obs[(i, 0)], window_s)
    parts = [u for u in units if u.source == i and u.phase == 0]
    tz = np.mean([np.concatenate(predict(n, parts)) for n in nets], axis=0)

    nz = np.array([check.net.decision_window(w) for _, w in ws])
    results["numpy_vs_torch_max_abs"] = float(np.abs(nz - tz).max())
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    log(f"numpy vs torch: {results['numpy_vs_torch_max_abs']:.2e}")
    print(json.dumps({"chosen": best, **_short(results["fusions"][best]),
                      "v3_recipe": _short(results["fusions"]["v3_recipe_trees"])}))
    return 0


def torch_nets(net) -> list:
    """The members of a numpy ``MotionNet`` as torch networks (eval mode)."""
    import torch

    out = []
    for member in net.members:
        n = torch_net()
        n.load_state_dict({k: torch.from_numpy(v) for k, v in member.items()})
        out.append(n.eval())
    return out


def _numpy_net(npz: Path):
    from vision.conflict.model import MotionNet

    return MotionNet.load(npz)


def _short(r: dict) -> dict:
    keep = ("accuracy", "precision", "recall", "f1", "tp", "fp", "fn", "tn", "clip_auc")
    out = {k: round(r[k], 3) if isinstance(r[k], float) else r[k] for k in keep if k in r}
    if "calm" in r:
        out["calm_windows_over"] = {k: round(v["windows_over"], 3) for k, v in r["calm"].items()}
        out["calm_incidents_per_hour"] = {k: round(v["incidents_per_hour"], 1) for k, v in r["calm"].items()}
    return out


def evaluate_subset(sources: list[Source], z: dict[int, np.ndarray], idx) -> dict:
    dev = [i for i in idx if not sources[i].calm]
    y = np.array([sources[i].label for i in dev])
    fired = np.array([bool(len(z[i]) and (sigmoid(z[i]) >= 0.5).any()) for i in dev])
    return scores(y, fired)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    o = sub.add_parser("observe", help="run detector + pose + observer over every source (cached)")
    o.add_argument("--data", type=Path, default=DATA)
    o.add_argument("--phases", type=int, nargs="*", default=[0])
    o.add_argument("--calm-phases", action="store_true", help="also observe the calm videos at phases other than 0")
    t = sub.add_parser("train", help="source-grouped CV against v3's recipe, then fit and write the model")
    t.add_argument("--data", type=Path, default=DATA)
    t.add_argument("--phases", type=int, nargs="*", default=[0, 1, 2, 3, 4], help="cached phases to train on")
    t.add_argument("--folds", type=int, default=5)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threshold", type=float, default=0.5)
    t.add_argument("--seeds", type=int, default=1, help="networks averaged (per fold, and shipped)")
    t.add_argument("--calm-share", type=float, default=0.3)
    t.add_argument("--window-loss", action="store_true", help="loss on every window instead of each clip's highest")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--cv-only", action="store_true", help="stop after cross-validation (no model written)")
    t.add_argument("--fit-only", action="store_true", help="only fit the shipped networks and write their weights")
    t.add_argument("--cv-results", type=Path, help="a --cv-only run's results (same recipe) instead of running CV")
    t.add_argument("--weights", type=Path, help="a --fit-only run's weights instead of fitting them again")
    t.add_argument("--out", type=Path, default=ROOT / "models" / "conflict" / "conflict-v4.json")
    t.add_argument("--results", type=Path, default=ROOT / "models" / "conflict" / "v4-motion-cv.json")
    args = ap.parse_args(argv)
    if args.command == "observe":
        t0 = time.perf_counter()
        rc = cmd_observe(args)
        print(json.dumps({"command": args.command, "wall_s": round(time.perf_counter() - t0, 1)}))
        return rc
    return cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())
