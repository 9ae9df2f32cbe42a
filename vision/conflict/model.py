"""The trained conflict classifier, stored as plain JSON (no pickle: readable, diffable, safe to load).

Two shapes are supported, both exported from scikit-learn by
``models/conflict/train.py``: a logistic regression on standardised features,
and a small gradient-boosted tree ensemble (``GradientBoostingClassifier``),
whose trees are walked here in numpy so the runtime needs no scikit-learn
object and no pickle.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .features import FEATURE_NAMES

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

    def __post_init__(self) -> None:
        if tuple(self.features) != FEATURE_NAMES:
            raise ValueError(f"model features {list(self.features)} differ from the code's {list(FEATURE_NAMES)}; "
                             "retrain with models/conflict/train.py")

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
            out = np.full(len(x), float(p["init"]))
            for t in p["trees"]:
                out += p["learning_rate"] * _walk(t, x)
            return out
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
        d = json.loads(Path(path).read_text())
        return ConflictModel(d["kind"], tuple(d["features"]), d["params"], d["window_s"], d["sample_fps"],
                             d.get("threshold", 0.5), d.get("hold_windows", 1), d.get("meta", {}))


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
