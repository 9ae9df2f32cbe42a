"""The conflict classifier: JSON export exact, one feature code for training and runtime, real clips."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridwatch.config import ConflictRule
from vision.conflict import FEATURE_NAMES, ConflictModel, Observation, window_features
from vision.conflict.model import export_sklearn
from vision.conflict.monitor import ConflictMonitor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models" / "conflict"))
import train  # noqa: E402  models/conflict/train.py


def fake_clip(n: int = 12, fps: float = 5.0, jitter: float = 30.0, seed: int = 0) -> list[Observation]:
    """Two people side by side; ``jitter`` px of random box and keypoint motion per frame."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        boxes = np.array([[100, 100, 150, 250], [140, 100, 190, 250]], np.float32) + rng.normal(0, jitter, (2, 4))
        boxes[:, [0, 2]] = np.sort(boxes[:, [0, 2]], axis=1)
        boxes[:, [1, 3]] = np.sort(boxes[:, [1, 3]], axis=1)
        kp = np.zeros((2, 17, 3), np.float32)
        for p in range(2):
            kp[p, :, 0] = rng.uniform(boxes[p, 0], boxes[p, 2], 17)
            kp[p, :, 1] = np.linspace(boxes[p, 1], boxes[p, 3], 17)
            kp[p, :, 2] = 0.9
        speed = np.abs(rng.normal(jitter / 50, 0.1, 2)).astype(np.float32)
        out.append(Observation(k / fps, 360, boxes.astype(np.float32), kp, np.ones(2, bool), speed,
                               np.full(2, 0.5, np.float32), 0.01, 0.05, 0.4))
    return out


@pytest.mark.parametrize("kind", ["logistic", "trees"])
def test_json_export_matches_scikit_learn(kind):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, len(FEATURE_NAMES))) * rng.uniform(0.1, 5, len(FEATURE_NAMES))
    y = (X[:, 0] + X[:, 5] ** 2 > 1).astype(int)
    Xl = np.sign(X) * np.log1p(np.abs(X))
    if kind == "logistic":
        scaler = StandardScaler().fit(Xl)
        clf = LogisticRegression().fit(scaler.transform(Xl), y)
        expected = clf.decision_function(scaler.transform(Xl))
        params = export_sklearn(clf, kind, scaler)
    else:
        clf = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(Xl, y)
        expected = clf.decision_function(Xl)
        params = export_sklearn(clf, kind)
    model = ConflictModel(kind, FEATURE_NAMES, json.loads(json.dumps(params)), 1.0, 5.0)
    assert np.allclose(model.decision(X), expected, atol=1e-9)


def test_model_with_other_features_is_refused():
    with pytest.raises(ValueError, match="retrain"):
        ConflictModel("logistic", ("a", "b"), {}, 1.0, 5.0)


def test_runtime_monitor_scores_the_windows_training_saw():
    model = ConflictModel.load()
    obs = fake_clip(14)
    monitor = ConflictMonitor("c", "z", ConflictRule(enabled=True), model, pose=None)
    runtime = []
    for ob in obs:
        monitor.push(ob)
        runtime.append((ob.ts, monitor.score))
    trained = {round(t, 6): float(model.proba(window_features(w))[0]) for t, w in train.windows(obs, model.window_s)}
    assert trained  # full windows exist
    for t, score in runtime:
        assert score == pytest.approx(trained.get(round(t, 6), 0.0))


def test_monitor_hysteresis_and_cooldown():
    model = ConflictModel.load()
    rule = ConflictRule(enabled=True, min_score=0.5, clear_score=0.3, clear_s=0.5, cooldown_s=10.0)
    m = ConflictMonitor("c", "z", rule, model, pose=None)
    m._score = lambda: scores.pop(0)  # drive the rule with known scores (the classifier is tested above)
    scores = [0.9, 0.9, 0.4, 0.4, 0.4, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9]
    phases = []
    for k, ob in enumerate(fake_clip(len(scores))):
        inc = m.push(ob)
        phases.append(inc.phase if inc else None)
    hold = model.hold_windows
    assert phases[hold - 1] == "start" and phases.count("start") == 1  # the second burst is inside the cooldown
    assert phases.index("end") == 8  # 0.4 is between clear and min: no end; below 0.3 from 1.0 s, ends 0.5 s later


@pytest.mark.slow
def test_eval_fight_runs_the_shipped_detector_on_clips(shared_data, tmp_path):
    """bench/eval.py fight on a folder of the fight-dev layout (2 + 2 clips): real detector, pose and classifier."""
    src = shared_data / "fight-dev"
    for sub, names in (("fight", ["fi005.mp4", "fi006.mp4"]), ("noFight", ["nofi007.mp4", "nofi008.mp4"])):
        (tmp_path / sub).mkdir()
        for n in names:
            (tmp_path / sub / n).symlink_to(src / sub / n)
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "eval.py"), "fight", "--data", str(tmp_path),
                          "--results", str(tmp_path / "results")], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "conflict monitor" in out.stderr  # the progress bar
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["clips"] == 4 and {"accuracy", "precision", "recall", "f1"} <= set(r)
    assert r["tp"] + r["fn"] == 2 and r["fp"] + r["tn"] == 2
