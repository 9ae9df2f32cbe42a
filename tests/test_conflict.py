"""The conflict classifier: JSON export exact, one feature code for training and runtime, real clips."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridwatch.config import ConflictRule
from models.conflict import train
from vision.conflict import FEATURE_NAMES, ConflictModel, Observation, window_features
from vision.conflict.model import export_sklearn
from vision.conflict.monitor import ConflictMonitor

ROOT = Path(__file__).resolve().parents[1]


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
    for ob in fake_clip(len(scores)):
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
    calm = [str(tmp_path / "noFight" / n) for n in ("nofi007.mp4", "nofi008.mp4")]
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "eval.py"), "fight", "--data", str(tmp_path),
                          "--results", str(tmp_path / "results"), "--calm", *calm],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "conflict monitor" in out.stderr  # the progress bar
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["clips"] == 4 and {"accuracy", "precision", "recall", "f1"} <= set(r)
    assert r["tp"] + r["fn"] == 2 and r["fp"] + r["tn"] == 2
    # the calm-footage count runs the same monitor: on the no-fight clips it finds exactly their false alarms
    assert [v["video"] for v in r["calm"]["videos"]] == ["nofi007.mp4", "nofi008.mp4"]
    assert r["calm"]["alerts"] == r["fp"]


def test_scene_motion_tells_one_way_walking_from_a_scuffle():
    """flow_stats on made flow fields: a crowd walking one way vs limbs going every way, a steady pace vs a burst."""
    from vision.conflict.observe import MOTION_STATS, FlowField, flow_stats

    h, w = 90, 160
    rng = np.random.default_rng(0)

    def field(flow):
        return FlowField(flow.astype(np.float32), np.linalg.norm(flow, axis=2) / h / 0.2, 1.0, 0.2)

    walk = np.zeros((h, w, 2))
    walk[..., 0] = 8.0  # everyone to the right, 8 px per frame: 0.44 frame heights per second, "moving"
    ang = rng.uniform(0, 2 * np.pi, (h, w))
    scuffle = np.stack([np.cos(ang), np.sin(ang)], axis=2) * 8.0
    s_walk, s_fight = flow_stats(field(walk), None), flow_stats(field(scuffle), None)
    name = {n: k for k, n in enumerate(MOTION_STATS)}
    assert s_walk[name["hof_0"]] > 0.99 and s_walk[name["hof_entropy"]] < 0.01
    assert s_fight[name["hof_0"]] < 0.2 and s_fight[name["hof_entropy"]] > 0.95 * np.log(8)
    assert np.isnan(s_walk[name["dspeed_mean"]])  # no previous frame yet
    steady = flow_stats(field(walk), field(walk).speed)
    burst = walk.copy()
    burst[30:60, 60:100] *= 4  # one region suddenly moves four times as fast
    sudden = flow_stats(field(burst), field(walk).speed)
    assert steady[name["dspeed_mean"]] == 0 and sudden[name["dspeed_mean"]] > 0.1
    assert sudden[name["dspeed_burst"]] > 0.05 and sudden[name["top5_share"]] > steady[name["top5_share"]]
    # only the zone counts: a mask on the still half of a half-moving frame sees no motion
    half = walk.copy()
    half[:, : w // 2] = 0
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 2] = 1
    assert flow_stats(field(half), None, mask)[name["speed_p99"]] == 0
    assert flow_stats(field(half), None)[name["speed_p99"]] > 0.4
    assert np.isnan(flow_stats(None, None)).all()


def test_a_faster_camera_is_thinned_to_the_models_rate():
    """At 10 analysed frames/s the monitor observes every other frame: the features keep their trained meaning."""
    from vision import Detections
    from vision.rules import ZoneObservation
    from vision.steps import drive

    model = ConflictModel.load(ROOT / "models" / "conflict" / "conflict-v3.json")
    mon = ConflictMonitor("cam", "z", ConflictRule(enabled=True), model, pose=None)
    img = np.zeros((120, 160, 3), np.uint8)
    seen = []
    for k in range(30):  # 3 s at 10 fps
        drive(mon.observe(ZoneObservation(k / 10, 0, image=img, people=Detections())))
        seen.append(mon._window[-1].ts)
    assert model.sample_fps == 5.0
    assert sorted(set(seen)) == [k / 10 for k in range(0, 30, 2)]  # 0.0, 0.2, 0.4 ...: 5 per second


def test_a_batch_of_cameras_runs_pose_together_and_observes_the_same(shared_data):
    """``drive_all`` (the inference loop's way): the cameras' pose crops of one round go to the model in one call,
    and every camera observes what it observes alone."""
    from gridwatch.config import DetectorConfig
    from models import resolve_weights
    from vision.conflict.observe import CropPose, Observer
    from vision.detector import PersonDetector
    from vision.steps import drive_all

    clips = [c for c in train.list_clips(shared_data / "fight-dev") if c.label == 1][:6]
    frames = [list(train.sampled_frames(c.path)) for c in clips]
    det = PersonDetector(resolve_weights("yolov10n.pt"), DetectorConfig(device="cpu", backend="torch"))
    people = [[det.detect([img])[0] for _, img in f] for f in frames]
    weights = resolve_weights("yolo11n-pose.pt")
    alone_pose, together_pose = CropPose(weights, backend="torch"), CropPose(weights, backend="torch")
    alone, together = [Observer(alone_pose) for _ in clips], [Observer(together_pose) for _ in clips]
    n = min(len(f) for f in frames)
    posed = 0
    for k in range(n):
        single = [o.observe(*frames[i][k], people[i][k]) for i, o in enumerate(alone)]
        batched = drive_all([o.observe_steps(*frames[i][k], people[i][k]) for i, o in enumerate(together)])
        for a, b in zip(single, batched):
            assert a.xyxy.shape == b.xyxy.shape and np.abs(a.xyxy - b.xyxy).max(initial=0) <= 1.0
            assert (a.has_pose == b.has_pose).all()
            assert np.abs(a.keypoints[..., :2] - b.keypoints[..., :2]).max(initial=0) <= 1.0
            posed += int(a.has_pose.sum())
    assert posed >= 10  # pose ran on people in these fights: the comparison is not vacuous
    assert together_pose.calls <= n < alone_pose.calls  # one call per round, not one per camera


def test_one_failing_analysis_does_not_stop_the_others():
    """``drive_all``: a camera's steps that raise get the exception as their result; the rest finish."""
    from vision.steps import drive_all

    def fine(n):
        return n
        yield  # a generator that needs no pose

    def broken():
        raise ValueError("bad calibration")
        yield

    out = drive_all([fine(1), broken(), fine(3)])
    assert out[0] == 1 and out[2] == 3
    assert isinstance(out[1], ValueError) and "bad calibration" in str(out[1])
