"""Learning from the room: a new conflict model version from the base data plus the site's own verdicts.

Every conflict alert keeps the analysis window it was judged on (``ConflictMonitor.evidence``, written by the
publisher as ``<evidence_dir>/conflict-windows/<incident_id>.json``): the feature vectors of the last n windows, their
scores and vetoes, the threshold in force and the model version. An operator's or grid worker's verdict on the case
labels that window: ``confirmed`` a fight (1), ``false_alarm`` not one (0); ``not_found`` says nothing about the
window and is left out.

``retrain``:

1. reads the conflict cases with a verdict from the store and joins each with its window (by incident id);
2. splits them by time: the oldest 70 % train, the newest 30 % are held back to judge the new version;
3. fits the shipped recipe (``models/conflict/train.py``'s ``fit``: the same trees on the same features) on the base
   data's windows (fight-dev, every window labelled with its clip) plus the site's training windows, each site window
   weighing ``site_weight`` base windows;
4. scores the new version against the running one (a) on the held-back verdicts, each decided as the runtime
   decides it (k-th highest of the last n window scores, vetoed windows 0, at or above the threshold that was in
   force) and (b) on the base data's cross-validation grouped by source video (``train.source_groups``), the site's
   training windows added to every fold's training part, each clip decided by the same rule at the zone default's
   operating point (vetoes on, no calibration);
5. promotes it (sets ``settings.conflict_model``, saves the config file, publishes it to every worker) only when
   it is better on both (``better_on_both``); it is stored as a version either way, so an admin may still activate
   it, and rolling back is activating an older version.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from models.conflict.registry import Registry, activate

if TYPE_CHECKING:
    from alerts.cases import CaseStore
    from gridwatch.config import GridwatchConfig
    from gridwatch.configsync import ConfigChannel
    from vision.conflict.model import ConflictModel

ROOT = Path(__file__).resolve().parents[1]
BASE_DATA = ROOT.parent / "shared" / "data" / "fight-dev"
LABELS = {"confirmed": 1, "false_alarm": 0}
HELD_SHARE = 0.3
SITE_WEIGHT = 5.0
log = logging.getLogger(__name__)


# ---- the site's verdicts ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteVerdict:
    """One resolved conflict case with the window its alert was judged on."""

    incident_id: str
    case_id: str
    ts: float
    verdict: str
    window: dict

    @property
    def label(self) -> int:
        return LABELS[self.verdict]

    def features(self) -> np.ndarray:
        """(m, F) the full windows' feature vectors (what a trees model scores)."""
        rows = [w["features"] for w in self.window.get("windows", []) if w.get("features") is not None]
        return np.asarray(rows, np.float64).reshape(len(rows), -1)


def site_verdicts(store: CaseStore, evidence_dir: Path, scan: int = 100_000) -> tuple[list[SiteVerdict], dict]:
    """The conflict cases resolved ``confirmed`` or ``false_alarm`` whose window was kept, oldest first, and counts of
    what was left out (no window: alerts from before windows were kept, or a window written elsewhere)."""
    from alerts.publisher import read_window
    from vision.conflict.features import FEATURE_NAMES

    out, skipped = [], {"other_verdict": 0, "no_window": 0, "other_features": 0}
    for case in store.list(kind="conflict", limit=scan, scan=scan):
        if case.verdict not in LABELS:
            skipped["other_verdict"] += case.verdict is not None
            continue
        window = read_window(evidence_dir, case.incident_id or "")
        if window is None or not any(w.get("features") for w in window.get("windows", [])):
            skipped["no_window"] += 1
            continue
        if window.get("feature_names") and tuple(window["feature_names"]) != FEATURE_NAMES:
            skipped["other_features"] += 1  # kept by a model with other features: not comparable
            continue
        out.append(SiteVerdict(case.incident_id, case.id, case.ts, case.verdict, window))
    out.sort(key=lambda v: (v.ts, v.incident_id))
    return out, skipped


def split_by_time(verdicts: list[SiteVerdict], held_share: float = HELD_SHARE
                  ) -> tuple[list[SiteVerdict], list[SiteVerdict]]:
    """Oldest ``1 - held_share`` to train, the newest ``held_share`` (at least one) held back."""
    n_held = max(1, int(round(held_share * len(verdicts))))
    return verdicts[:-n_held], verdicts[-n_held:]


def site_rows(verdicts: list[SiteVerdict]) -> tuple[np.ndarray, np.ndarray]:
    """Every kept window of the verdicts as a training row, labelled with its verdict."""
    from vision.conflict.features import FEATURE_NAMES

    X = [v.features() for v in verdicts]
    y = [np.full(len(x), v.label) for v, x in zip(verdicts, X)]
    if not X:
        return np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, int)
    return np.concatenate(X), np.concatenate(y).astype(int)


def persistent_fires(scores: list[float], k: int, threshold: float) -> bool:
    """The monitor's decision on a run of window scores (vetoed or partial windows given as 0): the k-th highest of
    the last n at or above the threshold (``Persistence``)."""
    if len(scores) < k:
        return False
    return sorted(scores, reverse=True)[k - 1] >= threshold


def window_scores(model, v: SiteVerdict) -> list[float]:
    """The scores a (trees or logistic) model gives the kept feature windows of a verdict's alert."""
    ws = v.window.get("windows", [])
    full = [w["features"] for w in ws if w.get("features") is not None]
    p = iter(model.proba(np.asarray(full, np.float64)) if full else ())
    out = []
    for w in ws:
        s = float(next(p)) if w.get("features") is not None else 0.0  # a partial window scores 0 at run time
        out.append(0.0 if w.get("vetoed") else s)
    return out


def held_back_scores(model, verdicts: list[SiteVerdict]) -> dict:
    """How a model decides the held-back verdicts' alerts, each as the runtime would (``persistent_fires`` at the
    threshold that was in force): fights kept, false alarms left."""
    tp = fp = fn = tn = 0
    for v in verdicts:
        w = v.window
        fired = persistent_fires(window_scores(model, v), int(w.get("k", 1)), float(w.get("threshold", 0.5)))
        if v.label:
            tp, fn = tp + fired, fn + (not fired)
        else:
            fp, tn = fp + fired, tn + (not fired)
    n = tp + fp + fn + tn
    return {"verdicts": n, "confirmed": tp + fn, "false_alarms_given": fp + tn, "fights_kept": tp,
            "false_alarms_left": fp, "accuracy": (tp + tn) / n if n else None,
            "recall": tp / (tp + fn) if tp + fn else None}


# ---- the base data ---------------------------------------------------------------------------------------------
@dataclass
class BaseData:
    """The windows of the base clips (fight-dev): features, labels, owning clip, veto per window, clip groups."""

    X: np.ndarray
    owner: np.ndarray  # clip index of each row
    vetoed: np.ndarray  # bool per row: the scene veto would zero this window at run time
    clip_y: np.ndarray
    groups: np.ndarray  # source video of each clip (cross-validation groups)
    grouped_by: str
    names: list[str]

    @property
    def y(self) -> np.ndarray:
        return self.clip_y[self.owner]

    def subset(self, keep_clips: np.ndarray) -> "BaseData":
        """Only these clips (bool per clip): e.g. the sources that are not "the site" (bench/retrain_site.py)."""
        idx = np.nonzero(keep_clips)[0]
        remap = -np.ones(len(self.clip_y), int)
        remap[idx] = np.arange(len(idx))
        rows = keep_clips[self.owner]
        return BaseData(self.X[rows], remap[self.owner[rows]], self.vetoed[rows], self.clip_y[idx], self.groups[idx],
                        self.grouped_by, [self.names[i] for i in idx])


def load_base(data: Path = BASE_DATA, observations: list | None = None) -> BaseData:
    """The base data's windows from its clips' cached observations (``train.observations``; a clip not cached yet is
    observed with the shipped detector and pose, slowly), with their vetoes and source-video groups."""
    from models.conflict import train as T
    from vision.conflict.features import window_features
    from vision.conflict.monitor import SceneVeto

    clips = T.list_clips(Path(data))
    obs = observations if observations is not None else T.observations(clips)
    rows, owner, vetoed = [], [], []
    for ci, o in enumerate(obs):
        veto = SceneVeto()
        for _, w in T.windows(o):
            rows.append(window_features(w))
            owner.append(ci)
            vetoed.append(veto.why(w) is not None)
    groups, grouped_by = T.source_groups(clips)
    return BaseData(np.asarray(rows), np.asarray(owner), np.asarray(vetoed), np.array([c.label for c in clips]),
                    groups, grouped_by, [c.path.stem for c in clips])


# ---- fitting and scoring ---------------------------------------------------------------------------------------
def fit_version(base: BaseData, site_X: np.ndarray, site_y: np.ndarray, parent: ConflictModel | None = None,
                site_weight: float = SITE_WEIGHT, rows: np.ndarray | None = None, meta: dict | None = None,
                seed: int = 0) -> ConflictModel:
    """The shipped recipe (trees) on the base windows (``rows``: a subset of them) plus the site's, site windows
    weighing ``site_weight`` each."""
    from models.conflict import train as T

    rows = np.ones(len(base.X), bool) if rows is None else rows
    X = np.concatenate([base.X[rows], site_X]) if len(site_X) else base.X[rows]
    y = np.concatenate([base.y[rows], site_y]) if len(site_X) else base.y[rows]
    w = np.concatenate([np.ones(int(rows.sum())), np.full(len(site_X), float(site_weight))])
    params = T.fit("trees", X, y, seed=seed, weights=w)
    threshold, hold = (parent.threshold, parent.hold_windows) if parent is not None and parent.kind != "motion" \
        else (0.5, 1)
    return T.make_model("trees", params, threshold, hold, meta)


def operating_point():
    """The zone default's threshold and persistence (what a zone without its own sensitivity runs)."""
    from gridwatch.config import ConflictRule

    return ConflictRule(enabled=True).operating_point


def base_cv(base: BaseData, site_X: np.ndarray, site_y: np.ndarray, site_weight: float = SITE_WEIGHT,
            folds: int = 5, progress=None) -> dict:
    """Cross-validation on the base clips grouped by source video: each fold's model from the other folds' windows
    plus the site's (none: the shipped recipe alone); each held-out clip decided by the runtime's rule at the
    default operating point (k-th highest of the last n scores, vetoed windows 0)."""
    from sklearn.model_selection import GroupKFold

    from models.conflict import train as T

    point = operating_point()
    folds = min(folds, len(set(base.groups.tolist())))
    p = np.zeros(len(base.X))
    for train_c, test_c in GroupKFold(n_splits=folds).split(np.zeros(len(base.clip_y)), base.clip_y, base.groups):
        tr, te = np.isin(base.owner, train_c), np.isin(base.owner, test_c)
        p[te] = fit_version(base, site_X, site_y, site_weight=site_weight, rows=tr).proba(base.X[te])
        if progress is not None:
            progress.update(1)
    p = np.where(base.vetoed, 0.0, p)
    fired = np.zeros(len(base.clip_y), bool)
    for ci in range(len(base.clip_y)):
        s = p[base.owner == ci]
        fired[ci] = any(persistent_fires(list(s[max(0, j - point.n + 1): j + 1]), point.k, point.min_score)
                        for j in range(len(s)))
    return {**T.scores(base.clip_y, fired), "folds": folds, "grouped_by": base.grouped_by,
            "rule": f"{point.k} of {point.n} windows >= {point.min_score:g}, vetoes on"}


def better_on_both(new_held: dict, cur_held: dict, new_cv: dict, cur_cv: dict) -> tuple[bool, str]:
    """The promotion rule, exactly:

    - held-back verdicts: the new version decides strictly more of them right (accuracy) and keeps every confirmed
      fight the running version kept (``fights_kept`` not lower);
    - base cross-validation: F1 strictly higher, or F1 equal with no lower recall (the site's windows must not cost
      the base data its fights: a change that leaves the base decisions unchanged passes, one that loses any does
      not).
    """
    why = []
    held_ok = (new_held["accuracy"] is not None and new_held["accuracy"] > (cur_held["accuracy"] or 0.0)
               and new_held["fights_kept"] >= cur_held["fights_kept"])
    why.append(f"held-back accuracy {_f(new_held['accuracy'])} vs {_f(cur_held['accuracy'])}, fights kept "
               f"{new_held['fights_kept']} vs {cur_held['fights_kept']}: {'better' if held_ok else 'not better'}")
    cv_ok = new_cv["f1"] > cur_cv["f1"] + 1e-9 or (abs(new_cv["f1"] - cur_cv["f1"]) <= 1e-9
                                                   and new_cv["recall"] >= cur_cv["recall"] - 1e-9)
    why.append(f"base CV F1 {_f(new_cv['f1'])} vs {_f(cur_cv['f1'])}, recall {_f(new_cv['recall'])} vs "
               f"{_f(cur_cv['recall'])}: {'better' if cv_ok else 'not better'}")
    return held_ok and cv_ok, "; ".join(why)


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


# ---- retrain ---------------------------------------------------------------------------------------------------
def retrain(cfg: GridwatchConfig, store: CaseStore, *, config_path: Path | None = None,
            channel: ConfigChannel | None = None, min_verdicts: int = 10, promote: Literal["auto", "never"] = "auto",
            base: BaseData | Path | None = None, site_weight: float = SITE_WEIGHT, held_share: float = HELD_SHARE,
            progress: bool = True, actor: str = "gridwatch conflict retrain", registry: Registry | None = None) -> dict:
    """Build, score and (when better on both) promote a new version; returns what was done and the scores."""
    from tqdm import tqdm

    from models.conflict import train as T

    registry = registry or Registry.for_config(cfg)
    current = registry.active(cfg)
    if registry.load(current.name).kind == "motion":
        # a new version is a trees model fitted on the kept feature windows; judged against a motion parent, the
        # base CV would compare it with v3's recipe, not with the model running
        return {"status": "not supported", "current": current.name,
                "why": f"the active version {current.name} is a motion model; retrain rebuilds trees models from the "
                       "kept feature windows: activate a trees version (e.g. conflict-v3) to retrain"}
    verdicts, skipped = site_verdicts(store, cfg.alerts.evidence_dir)
    counts = {"verdicts": len(verdicts), "confirmed": sum(v.label for v in verdicts),
              "false_alarm": sum(1 - v.label for v in verdicts), "skipped": skipped}
    if len(verdicts) < max(min_verdicts, 2):
        return {"status": "not enough verdicts", "current": current.name, **counts, "min_verdicts": min_verdicts}
    train_v, held_v = split_by_time(verdicts, held_share)
    site_X, site_y = site_rows(train_v)
    bar = tqdm(total=4 + 2 * 5, desc="conflict retrain", unit="step", file=sys.stderr, disable=not progress)
    if not isinstance(base, BaseData):
        base = load_base(Path(base) if base is not None else BASE_DATA)
    bar.update(1)
    cur_model = registry.load(current.name)
    parent_cv = (current.scores.get("base_cv") if not current.shipped else None)
    if parent_cv is None or "f1" not in parent_cv:  # a shipped version: its recipe (the base data alone), same folds
        parent_cv = base_cv(base, site_X[:0], site_y[:0], progress=bar)
    else:
        bar.update(5)
    new_cv = base_cv(base, site_X, site_y, site_weight, progress=bar)
    now = time.time()
    meta = {"trained_on": f"base {len(base.clip_y)} clips ({len(base.X)} windows) + site {len(train_v)} verdicts "
                          f"({len(site_X)} windows, weight {site_weight:g})", "parent": current.name,
            "observer": T.OBSERVER_VERSION, "trained": time.strftime("%Y-%m-%d", time.gmtime(now))}
    model = fit_version(base, site_X, site_y, cur_model, site_weight, meta=meta)
    bar.update(1)
    new_held, cur_held = held_back_scores(model, held_v), held_back_scores(cur_model, held_v)
    ok, why = better_on_both(new_held, cur_held, new_cv, parent_cv)
    bar.update(1)
    scores = {"parent": current.name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
              "created_ts": now, "base_cv": new_cv, "parent_base_cv": parent_cv,
              "held_back": {"new": new_held, "current": cur_held,
                            "from": held_v[0].ts if held_v else None, "to": held_v[-1].ts if held_v else None},
              "training": {"base_clips": int(len(base.clip_y)), "base_windows": int(len(base.X)),
                           "site_verdicts": len(train_v), "site_windows": int(len(site_X)),
                           "site_confirmed": int(sum(v.label for v in train_v)),
                           "site_false_alarms": int(sum(1 - v.label for v in train_v)), "site_weight": site_weight},
              "promoted": False, "decision": why}
    version = registry.add(model, scores)
    promoted = False
    if ok and promote == "auto":
        activate(cfg, version.name, channel=channel, config_path=config_path, actor=actor, registry=registry)
        registry.record(version.name, promoted=True)
        promoted = True
    bar.update(1)
    bar.close()
    return {"status": "promoted" if promoted else ("better, not promoted (--promote never)" if ok else "kept current"),
            "version": version.name, "current": current.name, "active": version.name if promoted else current.name,
            "better_on_both": ok, "decision": why, **counts, "held_back": scores["held_back"], "base_cv": new_cv,
            "parent_base_cv": parent_cv, "training": scores["training"]}


# ---- the CLI (gridwatch conflict ...) --------------------------------------------------------------------------
def _store(cfg: GridwatchConfig, stack):
    import redis

    from alerts import CaseStore
    from gridwatch.service import redis_url_for

    client = redis.Redis.from_url(redis_url_for(cfg, stack))
    stack.callback(client.close)
    return CaseStore(client)


def cli(args) -> int:
    """``gridwatch conflict retrain|versions|activate``."""
    from contextlib import ExitStack

    from alerts.redis_server import DataDirInUse
    from gridwatch.config import ConfigError, load_config
    from gridwatch.configsync import ConfigChannel
    from models.conflict.registry import UnknownVersion

    try:
        cfg = load_config(args.config)
        registry = Registry.for_config(cfg)
        if args.conflict_command == "versions":
            active = registry.active_name(cfg)
            for v in registry.versions():
                s = v.summary(active, registry.default)
                cv, held = s["base_cv"] or {}, (s["held_back"] or {}).get("new") or {}
                print(f"{'*' if s['active'] else ' '} {v.name:34s} {'shipped' if v.shipped else 'site':7s} "
                      f"base CV F1 {_f(cv.get('f1'))} recall {_f(cv.get('recall'))}  held-back accuracy "
                      f"{_f(held.get('accuracy'))}  parent {s['parent'] or '-'}")
            return 0
        with ExitStack() as stack:
            store = _store(cfg, stack)
            channel = ConfigChannel(store.r, store.p)
            if args.conflict_command == "activate":
                _, version = activate(cfg, args.version, channel=channel, config_path=Path(args.config),
                                      actor="gridwatch conflict activate", registry=registry)
                print(f"{args.version} is active (config version {version}; saved to {args.config})")
                return 0
            out = retrain(cfg, store, config_path=Path(args.config), channel=channel, min_verdicts=args.min_verdicts,
                          promote=args.promote, base=args.base, registry=registry)
            print(json.dumps(out))
            return 0 if out["status"] != "not enough verdicts" else 3
    except (ConfigError, UnknownVersion) as err:
        print(err, file=sys.stderr)
        return 1
    except DataDirInUse as err:  # the embedded Valkey of a running `gridwatch run`: use its Redis (REDIS_URL)
        print(f"error: {err}", file=sys.stderr)
        return 1
