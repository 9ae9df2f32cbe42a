"""The trained conflict classifier, stored as plain JSON (no pickle: readable, diffable, safe to load).

Three shapes are supported. Two are exported from scikit-learn by
``models/conflict/train.py``: a logistic regression on standardised features,
and a small gradient-boosted tree ensemble (``GradientBoostingClassifier``),
whose trees are walked here in numpy so the runtime needs no scikit-learn
object and no pickle. The third (``kind: "motion"``, from
``models/conflict/train_motion.py``) is a small convolutional network on each
observation's motion image (``observe.motion_image``), its weights in an
``.npz`` file next to the JSON (checksummed there), run here in numpy, and
fused with such trees on the window features where that measured better.
``ConflictModel.score_window`` is the one entry point for all three.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from models.weights import sha256_of

from .features import FEATURE_NAMES, window_features
from .observe import MOTION_CHANNELS, MOTION_IMAGE_HW, Observation

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "conflict" / "conflict-v3.json"


@dataclass
class ConflictModel:
    """Window features -> probability of a fight; with the settings it was trained under."""

    kind: str  # "logistic" | "trees"
    features: tuple[str, ...]
    params: dict
    window_s: float  # seconds of observations per decision
    sample_fps: float  # analysis rate it was trained at
    threshold: float = 0.5  # probability that counts as a fight (chosen by cross-validation)
    hold_windows: int = 1  # consecutive windows above threshold before an alert
    meta: dict = field(default_factory=dict)
    net: "MotionNet | None" = field(default=None, repr=False, compare=False)  # kind "motion": the loaded weights

    def __post_init__(self) -> None:
        if tuple(self.features) != FEATURE_NAMES:
            raise ValueError(f"model features {list(self.features)} differ from the code's {list(FEATURE_NAMES)}; "
                             "retrain with models/conflict/train.py")
        if self.kind == "motion" and self.net is None:
            raise ValueError("a motion model needs its network: load it with ConflictModel.load(path)")

    def score_window(self, observations: Sequence[Observation]) -> float:
        """Fight probability of one window of consecutive observations of a zone (what the monitor asks)."""
        if self.kind != "motion":
            return float(self.proba(window_features(observations))[0])
        p = self.params
        z = p["w_motion"] * self.net.decision_window(observations)
        if p["w_motion"] < 1.0:
            z += (1.0 - p["w_motion"]) * float(_trees(p["trees"], self._log(window_features(observations)[None]))[0])
        return float(1.0 / (1.0 + np.exp(-z)))

    def _log(self, x: np.ndarray) -> np.ndarray:
        # speeds and ratios are heavy-tailed: the model sees log1p of their magnitude, sign kept
        return np.sign(x) * np.log1p(np.abs(x))

    def decision(self, x: np.ndarray) -> np.ndarray:
        x = self._log(np.atleast_2d(np.asarray(x, np.float64)))
        p = self.params
        if self.kind == "logistic":
            z = (x - np.asarray(p["mean"])) / np.asarray(p["scale"])
            return z @ np.asarray(p["coef"]) + p["intercept"]
        if self.kind == "trees":
            return _trees(p, x)
        if self.kind == "motion":
            raise ValueError("a motion model scores observations, not feature vectors: use score_window")
        raise ValueError(f"unknown model kind {self.kind!r}")

    def proba(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision(x)))

    def to_json(self) -> dict:
        return {"kind": self.kind, "features": list(self.features), "params": self.params,
                "window_s": self.window_s, "sample_fps": self.sample_fps, "threshold": self.threshold,
                "hold_windows": self.hold_windows, "meta": self.meta}

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @staticmethod
    def load(path: Path = DEFAULT_MODEL) -> "ConflictModel":
        """The JSON, and for a motion model its weights file (next to it), refused if its checksum differs."""
        d = json.loads(Path(path).read_text())
        net = None
        if d["kind"] == "motion":
            spec = d["params"]["net"]
            net = MotionNet.load(Path(path).resolve().parent / spec["file"], spec["sha256"])
        return ConflictModel(d["kind"], tuple(d["features"]), d["params"], d["window_s"], d["sample_fps"],
                             d.get("threshold", 0.5), d.get("hold_windows", 1), d.get("meta", {}), net)


def motion_input(observations: Sequence[Observation]) -> np.ndarray:
    """(T, C, H, W) float32 network input of a window: speed and change 0..1, flow directions -1..1, skeletons 0..1.

    An observation without a motion image (cached before it existed, or made by hand) counts as no motion.
    """
    out = np.zeros((len(observations), len(MOTION_CHANNELS), *MOTION_IMAGE_HW), np.float32)
    for k, ob in enumerate(observations):
        img = ob.motion_image
        if img.ndim == 3:
            out[k] = img
        else:
            out[k, 1:3] = 128.0
    out /= 255.0
    out[:, 1:3] = (out[:, 1:3] * 255.0 - 128.0) / 127.0
    return out


class MotionNet:
    """The motion model's forward pass in numpy (the runtime needs no torch graph): per frame four 3x3 convolutions
    (ReLU), global max and mean pooling, a projection; over the window the max, the mean and the largest
    frame-to-frame change of those embeddings; a linear head. ``train_motion.torch_net`` is the same network.

    The weights file may hold several such networks (``m0.``, ``m1.``, ... prefixes: trained with different seeds);
    their log-odds are averaged. A frame's embeddings are kept for the next windows (``MEMO`` frames, the process's
    cameras together): a window slides one frame per analysed frame, so each frame is embedded once, not once per
    window it is in.
    """

    CONVS = (("conv0", 2), ("conv1", 2), ("conv2", 2), ("conv3", 1))  # (name, stride); padding 1 everywhere
    MEMO = 1024  # frames whose embeddings are kept: 8 windows' worth for 128 zones, ~16 MB of motion images

    def __init__(self, weights: dict[str, np.ndarray]):
        import threading
        from collections import OrderedDict

        members: dict[str, dict[str, np.ndarray]] = {}
        for k, v in weights.items():
            prefix, _, name = k.partition(".")
            members.setdefault(prefix, {})[name] = np.asarray(v, np.float32)
        self.members = [members[m] for m in sorted(members, key=lambda m: int(m[1:]))]
        self._memo: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def load(path: Path, sha256: str | None = None) -> "MotionNet":
        if sha256 is not None and (got := sha256_of(path)) != sha256:
            raise ValueError(f"{path}: checksum {got} differs from the model's {sha256}; the weights were changed")
        with np.load(path, allow_pickle=False) as z:
            return MotionNet({k: z[k] for k in z.files})

    @property
    def n_params(self) -> int:
        return int(sum(v.size for m in self.members for v in m.values()))

    def embed(self, x: np.ndarray, use_torch: bool | None = None) -> np.ndarray:
        """(T, C, H, W) -> (members, T, E) per-frame embeddings.

        The convolutions run in torch where it is installed (a project dependency; 3-4x faster than numpy on one
        frame), else in numpy; the two agree to float32 rounding (tested).
        """
        if use_torch is None:
            use_torch = self._torch() is not None
        out = []
        for k, w in enumerate(self.members):
            h = self._convs_torch(x, k) if use_torch else self._convs_numpy(x, w)
            pooled = np.concatenate([h.max(axis=(2, 3)), h.mean(axis=(2, 3))], axis=1)
            out.append(np.maximum(pooled @ w["proj.weight"].T + w["proj.bias"], 0.0))
        return np.stack(out)

    def _convs_numpy(self, x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
        for name, stride in self.CONVS:
            x = np.maximum(_conv3x3(x, w[f"{name}.weight"], w[f"{name}.bias"], stride), 0.0)
        return x

    def _torch(self):
        """torch and the members' conv weights as tensors, made once; None without torch."""
        if not hasattr(self, "_tw"):
            try:
                import torch
            except ImportError:
                self._tw = None
            else:
                self._tw = (torch, [{k: torch.from_numpy(v) for k, v in m.items()} for m in self.members])
        return self._tw

    def _convs_torch(self, x: np.ndarray, k: int) -> np.ndarray:
        torch, tw = self._torch()
        with torch.no_grad():
            h = torch.from_numpy(np.ascontiguousarray(x, np.float32))
            for name, stride in self.CONVS:
                h = torch.relu(torch.nn.functional.conv2d(h, tw[k][f"{name}.weight"], tw[k][f"{name}.bias"], stride, 1))
            return h.numpy()

    def head(self, e: np.ndarray) -> float:
        """Log-odds from (members, T, E) embeddings of one window: the members' mean."""
        z = []
        for w, em in zip(self.members, e):
            change = np.abs(np.diff(em, axis=0)).max(axis=0) if len(em) > 1 else np.zeros(em.shape[1], np.float32)
            v = np.concatenate([em.max(axis=0), em.mean(axis=0), change])
            z.append(float(v @ w["head.weight"][0] + w["head.bias"][0]))
        return float(np.mean(z))

    def decision(self, x: np.ndarray) -> float:
        """Log-odds of a fight for one window (T, C, H, W), T >= 1."""
        return self.head(self.embed(x))

    def decision_window(self, observations: Sequence[Observation]) -> float:
        """``decision(motion_input(observations))``, embedding only the frames not seen in an earlier window."""
        embs = []
        for ob in observations:
            key = id(ob.motion_image)
            with self._lock:
                hit = self._memo.get(key)
            if hit is not None and hit[0] is ob.motion_image:
                embs.append(hit[1])
                continue
            e = self.embed(motion_input([ob]))[:, 0]
            with self._lock:
                self._memo[key] = (ob.motion_image, e)  # the array is held: its id is not reused while memoised
                while len(self._memo) > self.MEMO:
                    self._memo.popitem(last=False)
            embs.append(e)
        return self.head(np.stack(embs, axis=1))


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """torch.nn.Conv2d(kernel 3, padding 1, ``stride``) as one matrix product over the unfolded input."""
    n, c, h, wd = x.shape
    idx, ho, wo = _unfold_index(h, wd, stride)
    cols = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))).reshape(n, c, -1)[:, :, idx].reshape(n, c * 9, ho * wo)
    return (np.matmul(w.reshape(len(w), -1), cols) + b[:, None]).reshape(n, len(w), ho, wo)


@lru_cache(maxsize=64)
def _unfold_index(h: int, w: int, stride: int) -> tuple[np.ndarray, int, int]:
    """Flat indices into the padded (h + 2) x (w + 2) image of each output pixel's 3x3 neighbourhood, tap-major."""
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    base = (np.arange(ho)[:, None] * stride * (w + 2) + np.arange(wo)[None, :] * stride).ravel()
    taps = np.array([dy * (w + 2) + dx for dy in range(3) for dx in range(3)])
    return taps[:, None] + base[None, :], ho, wo


def _trees(p: dict, x: np.ndarray) -> np.ndarray:
    """Log-odds of a gradient-boosted tree ensemble (``export_sklearn``'s shape) on log-scaled features."""
    out = np.full(len(x), float(p["init"]))
    for t in p["trees"]:
        out += p["learning_rate"] * _walk(t, x)
    return out


def _walk(tree: dict, x: np.ndarray) -> np.ndarray:
    """Leaf values of one regression tree (scikit-learn's arrays: left, right, feature, threshold, value)."""
    left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
    feat, thr, val = np.asarray(tree["feature"]), np.asarray(tree["threshold"]), np.asarray(tree["value"])
    node = np.zeros(len(x), np.int64)
    while True:
        inner = left[node] >= 0
        if not inner.any():
            return val[node]
        n = node[inner]
        go_left = x[inner, feat[n]] <= thr[n]
        node[inner] = np.where(go_left, left[n], right[n])


def export_sklearn(clf, kind: str, scaler=None) -> dict:
    """Parameters of a fitted scikit-learn model in the JSON shape ``ConflictModel`` reads."""
    if kind == "logistic":
        return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "coef": clf.coef_[0].tolist(),
                "intercept": float(clf.intercept_[0])}
    trees = []
    for est in clf.estimators_[:, 0]:
        t = est.tree_
        trees.append({"left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                      "value": t.value[:, 0, 0].tolist()})
    prior = clf.init_.class_prior_[1] if hasattr(clf.init_, "class_prior_") else 0.5
    return {"init": float(np.log(prior / (1 - prior))), "learning_rate": float(clf.learning_rate), "trees": trees}
