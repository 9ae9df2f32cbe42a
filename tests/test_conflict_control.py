"""The conflict rule's false-alarm control (persistence, vetoes, per-camera calibration), its sensitivity setting,
and the evaluation's honest parts (source-grouped CV, calm footage with a Poisson bound)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from bench.eval import CalmSource, calm_sources, poisson_upper95
from gridwatch.config import ConflictRule
from gridwatch.config.rules import CONFLICT_OPERATING_POINTS, ConflictPoint, conflict_point
from models.conflict import train
from vision.conflict import Observation
from vision.conflict.monitor import CalmCalibration, ConflictMonitor, Persistence, SceneVeto

ROOT = Path(__file__).resolve().parents[1]
FPS = 5.0


def person(x: float, y: float = 100.0, h: float = 150.0) -> list[float]:
    return [x, y, x + h / 3, y + h]


def obs(ts: float, boxes: list[list[float]]) -> Observation:
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    return Observation(ts, 360, xyxy, np.zeros((n, 17, 3), np.float32), np.zeros(n, bool),
                       np.full(n, 0.5, np.float32), np.full(n, 0.5, np.float32), 0.01, 0.05, 0.4)


def scuffle(n: int, seed: int = 0) -> list[Observation]:
    """Two people close together, pushing each other about (no common direction)."""
    rng = np.random.default_rng(seed)
    return [obs(k / FPS, [np.add(person(100), rng.normal(0, 8, 4)).tolist(),
                          np.add(person(140), rng.normal(0, 8, 4)).tolist()]) for k in range(n)]


class Scores:
    """A classifier stand-in through the interface the monitor asks (``score_window``): scores in order."""

    window_s, sample_fps, threshold, hold_windows = 1.5, FPS, 0.5, 1

    def __init__(self, scores: list[float]):
        self.scores, self.calls = list(scores), 0

    def score_window(self, window: list[Observation]) -> float:
        self.calls += 1
        return self.scores.pop(0) if self.scores else 0.0


def starts(monitor: ConflictMonitor, observations: list[Observation]) -> list[int]:
    out = []
    for k, ob in enumerate(observations):
        inc = monitor.push(ob)
        if inc is not None and inc.phase == "start":
            out.append(k)
    return out


# --------------------------------------------------------------------------- persistence


def test_persistence_is_k_of_the_last_n():
    p = Persistence(2, 4)
    got = [p.push(s) for s in [0.9, 0.1, 0.1, 0.1, 0.8, 0.2, 0.7, 0.1, 0.1, 0.1]]
    # the 2nd highest of the last 4: one high window is never enough, two within 4 windows are, older ones drop out
    assert got == [0.0, 0.1, 0.1, 0.1, 0.1, 0.2, 0.7, 0.7, 0.2, 0.1]
    assert all(g < 0.6 for g in got[:6]) and got[6] >= 0.6
    with pytest.raises(ValueError, match="k <= n"):
        Persistence(4, 2)


def test_the_monitor_alerts_on_k_of_n_high_windows_and_asks_score_window():
    point = ConflictPoint(10.0, 0.6, 3, 6, 0.5, 0.5)
    clip = scuffle(30)
    full = sum(1 for ob in clip if ob.ts - clip[0].ts >= 0.75 * 1.5)  # windows scored once 3/4 of 1.5 s is there
    first = len(clip) - full
    high = [0.9, 0.1, 0.9, 0.1, 0.1, 0.9] + [0.1] * (full - 6)
    model = Scores(high)
    mon = ConflictMonitor("cam", "z", ConflictRule(calibrate=False), model, pose=None, point=point)
    assert starts(mon, clip) == [first + 5]  # the third high window within six
    assert model.calls == full
    spread = Scores([0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9] + [0.1] * full)
    mon = ConflictMonitor("cam", "z", ConflictRule(calibrate=False), spread, pose=None, point=point)
    assert starts(mon, clip) == []  # three high windows, never three within six


# --------------------------------------------------------------------------- vetoes


def walkers(n: int, dx: float, xs: list[float], gap: float = 0.0) -> list[Observation]:
    return [obs(k / FPS, [person(x + dx * k + gap * i * k) for i, x in enumerate(xs)]) for k in range(n)]


def test_vetoes_name_the_scene_cue():
    v = SceneVeto()
    assert v.why([obs(k / FPS, []) for k in range(8)]) == "nobody in the zone"
    assert v.why([obs(k / FPS, [person(100)]) for k in range(8)]) == "a single person"
    assert v.why([obs(k / FPS, [person(10), person(500)]) for k in range(8)]) == "nobody close to anybody"
    # three people side by side walking right at ~1 body height per second: a group going one way
    assert v.why(walkers(8, 30.0, [100, 140, 180])) == "a crowd moving one way"
    # the same people walking towards each other, and a scuffle: no veto
    assert v.why([obs(k / FPS, [person(100 + 30 * k), person(260 - 30 * k)]) for k in range(6)]) is None
    assert v.why(scuffle(8)) is None
    # close for one frame of the window is enough to let the classifier speak
    apart = [obs(k / FPS, [person(10), person(500)]) for k in range(7)] + [obs(1.4, [person(100), person(130)])]
    assert v.why(apart) is None


def test_a_veto_sliding_along_a_camera_judges_each_window_as_afresh():
    """The veto remembers each pair of frames while it is in the window: that must not change a verdict."""
    rng = np.random.default_rng(7)
    clip = [obs(k / FPS, [person(100 + 30 * k + rng.normal(0, 20 * (k // 10 % 2))),
                          person(140 + 30 * k + rng.normal(0, 20 * (k // 10 % 2))),
                          person(180 + 30 * k)]) for k in range(40)]
    sliding, verdicts = SceneVeto(), set()
    for k in range(8, len(clip)):
        window = clip[k - 8:k]
        verdicts.add(got := sliding.why(window))
        assert got == SceneVeto().why(window)
    assert verdicts == {None, "a crowd moving one way"}  # both verdicts occur: the comparison is not vacuous


def test_a_vetoed_window_cannot_raise_an_alert():
    point = ConflictPoint(10.0, 0.5, 1, 6, 0.5, 0.5)
    lone = [obs(k / FPS, [person(100 + 3 * (k % 2))]) for k in range(20)]
    mon = ConflictMonitor("cam", "z", ConflictRule(calibrate=False), Scores([0.99] * 20), pose=None, point=point)
    assert starts(mon, lone) == [] and mon.vetoed == "a single person" and mon.score == 0.99
    mon = ConflictMonitor("cam", "z", ConflictRule(calibrate=False, vetoes=False), Scores([0.99] * 20), pose=None,
                          point=point)
    assert len(starts(mon, lone)) == 1  # the same scores without the vetoes


# --------------------------------------------------------------------------- calibration


def logistic_scores(n: int, loc: float, scale: float, seed: int) -> np.ndarray:
    """Scores whose logits have exponential tails (logistic): the calibration's tail model holds exactly."""
    z = np.random.default_rng(seed).logistic(loc, scale, n)
    return 1 / (1 + np.exp(-z))


def upcrossings_per_hour(scores: np.ndarray, threshold: float, fps: float = FPS) -> float:
    above = scores >= threshold
    return (int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))) / (len(scores) / fps / 3600)


def test_calibration_finds_the_threshold_for_a_rate_it_never_saw():
    """Ten minutes of a camera's calm scores set a threshold whose false alarms, counted over 40 more hours of the
    same camera, come out near the target, though ten minutes hold none at that rate."""
    learn = logistic_scores(int(600 * FPS), -3.0, 0.8, seed=1)
    later = logistic_scores(int(40 * 3600 * FPS), -3.0, 0.8, seed=2)
    thresholds = {}
    for target in (2.0, 20.0):
        cal = CalmCalibration(target, FPS, learn_s=600, min_s=60, cap=0.999)
        for s in learn:
            cal.add(s)
        thresholds[target] = t = cal.threshold()
        assert target / 3 <= upcrossings_per_hour(later, t) <= target * 3
        assert cal.rate_at(t) == pytest.approx(target, rel=0.01)  # the same model both ways
    assert thresholds[2.0] > thresholds[20.0]
    assert not (learn >= thresholds[2.0]).any()  # at 2 an hour: extrapolated, as ten minutes hold none


def test_calibration_learns_only_its_first_minutes_and_is_capped():
    cal = CalmCalibration(2.0, FPS, learn_s=120, min_s=60, cap=0.9)
    for s in logistic_scores(int(59 * FPS), 0.0, 1.0, seed=3):
        cal.add(s)
    assert not cal.ready and cal.threshold() is None
    for s in logistic_scores(int(200 * FPS), 0.0, 1.0, seed=4):
        cal.add(s)
    assert cal.ready and not cal.learning and cal.seconds == 120  # stopped learning at learn_s
    assert cal.threshold() == 0.9  # a camera whose calm scores run this high would want more: the cap holds
    quiet = CalmCalibration(2.0, FPS, min_s=60)
    for _ in range(int(100 * FPS)):
        quiet.add(0.0)  # every window vetoed or empty: nothing to learn a tail from, the operating point stays
    assert quiet.ready and quiet.threshold() is None


def test_a_camera_whose_calm_scores_run_high_raises_its_own_threshold():
    point = ConflictPoint(10.0, 0.6, 1, 6, 0.5, 0.5)
    rule = ConflictRule(calibrate_s=600, clear_s=0, cooldown_s=0)  # incidents end at once: learning goes on
    clip = scuffle(int(300 * FPS))
    scores = logistic_scores(len(clip), 0.0, 0.9, seed=5).tolist()  # calm that scores high here half the time
    mon = ConflictMonitor("cam", "z", rule, Scores(scores), pose=None, point=point)
    raised = []
    for ob in clip:
        mon.push(ob)
        raised.append(mon.min_score)
    k60 = int(60 * FPS)
    assert set(raised[: k60 - 10]) == {0.6}  # warm-up: the operating point's threshold
    assert raised[-1] > 0.8  # then the camera's own
    legacy = ConflictMonitor("cam", "z", ConflictRule(min_score=0.6), Scores(scores), pose=None)
    assert legacy.calibration is None and legacy.veto is None  # a raw min_score runs as it did before


# --------------------------------------------------------------------------- the sensitivity setting


def test_sensitivity_is_a_false_alarm_rate_through_the_measured_table():
    rates = [p.false_alarms_per_hour for p in CONFLICT_OPERATING_POINTS]
    assert rates == sorted(rates, reverse=True)
    # fewer false alarms asked for: never a lower threshold nor a shorter persistence, never more recall
    for a, b in zip(CONFLICT_OPERATING_POINTS, CONFLICT_OPERATING_POINTS[1:]):
        assert (b.min_score, b.k) >= (a.min_score, a.k) and b.recall <= a.recall
    most = CONFLICT_OPERATING_POINTS[0]
    assert conflict_point(most.false_alarms_per_hour * 2) == most
    assert conflict_point(0.01) == CONFLICT_OPERATING_POINTS[-1]
    rule = ConflictRule(false_alarms_per_hour=most.false_alarms_per_hour)
    mon = ConflictMonitor("cam", "z", rule, Scores([]), pose=None)
    assert (mon.base_score, mon.persistence.k, mon.persistence.n) == (most.min_score, most.k, most.n)


def test_the_sensitivity_is_validated_and_old_files_still_load():
    with pytest.raises(ValidationError, match="false_alarms_per_hour"):
        ConflictRule(false_alarms_per_hour=0)
    with pytest.raises(ValidationError, match="false_alarms_per_hour .* or min_score"):
        ConflictRule(false_alarms_per_hour=5, min_score=0.5)
    with pytest.raises(ValidationError, match="clear_score"):
        ConflictRule(false_alarms_per_hour=5, clear_score=0.99)
    old = ConflictRule.model_validate({"enabled": True, "min_score": 0.55, "clear_score": 0.3, "hold_s": 1.0})
    assert old.min_score == 0.55 and old.false_alarms_per_hour is None


# --------------------------------------------------------------------------- the evaluation


def test_poisson_upper_bound():
    assert poisson_upper95(0, 1.0) == pytest.approx(2.996, abs=1e-3)  # the "rule of three"
    assert poisson_upper95(3, 2.0) == pytest.approx(7.754 / 2, abs=1e-3)
    assert poisson_upper95(0, 0.6) <= 5.0 < poisson_upper95(0, 0.5)  # 0.6 h of alert-free footage to show <= 5/h


def test_calm_sources_take_videos_folders_and_frame_folders(tmp_path):
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam1" / "a.mp4").write_bytes(b"")
    frames = tmp_path / "cam2"
    frames.mkdir()
    (frames / "0001.jpg").write_bytes(b"")
    with pytest.raises(SystemExit, match="--fps"):
        calm_sources([tmp_path], None)
    got = calm_sources([tmp_path], 10.0)
    assert got == [CalmSource(tmp_path / "cam1" / "a.mp4"), CalmSource(frames, 10.0)]
    with pytest.raises(SystemExit, match="not a video"):
        calm_sources([frames / "0001.jpg"], 10.0)


def test_source_groups_by_source_video_when_the_folder_names_them(tmp_path):
    for sub in ("fight", "noFight"):
        (tmp_path / sub).mkdir()
    names = {"fight/fi001.mp4": "A", "fight/fi002.mp4": "B", "noFight/nofi001.mp4": "B", "noFight/nofi015.mp4": "A"}
    for n in names:
        (tmp_path / n).write_bytes(b"")
    clips = train.list_clips(tmp_path)
    blocks, how = train.source_groups(clips, tmp_path)
    assert "blocks" in how and len(set(blocks.tolist())) == 2 and blocks[0] == blocks[1]  # fi001, fi002: block 0
    (tmp_path / "sources.csv").write_text("clip,source\n" + "".join(f"{Path(n).stem},{s}\n" for n, s in names.items()))
    groups, how = train.source_groups(clips, tmp_path)
    by_name = dict(zip([c.path.stem for c in clips], groups.tolist()))
    assert "source" in how and by_name["fi001"] == by_name["nofi015"] != by_name["fi002"] == by_name["nofi001"]


def test_real_fight_dev_folds_never_share_a_source(shared_data):
    from sklearn.model_selection import GroupKFold

    data = shared_data / "fight-dev"
    clips = train.list_clips(data)
    groups, how = train.source_groups(clips, data)
    assert "source" in how and len(set(groups.tolist())) == 26
    for tr, te in GroupKFold(5).split(np.zeros(len(clips)), None, groups):
        assert not set(groups[tr]) & set(groups[te])
    blocks = np.array([c.group for c in clips])  # the old grouping let sources into both sides
    leaks = sum(bool(set(groups[np.isin(blocks, blocks[te])]) & set(groups[~np.isin(blocks, blocks[te])]))
                for _, te in GroupKFold(5).split(np.zeros(len(clips)), None, blocks))
    assert leaks > 0


def test_calm_frame_folder_runs_the_shipped_monitor(shared_data, tmp_path):
    """``fight --calm FOLDER --fps``: real frames of a calm walkway through detector, pose and the shipped rule;
    the JSON's last line carries the rate, its Poisson bound and the hours."""
    import av
    import cv2

    frames = tmp_path / "walkway"
    frames.mkdir()
    with av.open(str(shared_data / "pets-s2l1" / "s2l1_480x360.avi")) as c:
        for k, f in enumerate(c.decode(c.streams.video[0])):
            if k >= 30:
                break
            cv2.imwrite(str(frames / f"{k:04d}.jpg"), f.to_ndarray(format="bgr24"))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "eval.py"), "fight", "--calm", str(frames), "--fps",
                          "10", "--results", str(tmp_path / "results")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "calm footage" in out.stderr  # the progress bar
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["hours"] == pytest.approx(3.0 / 3600, rel=0.01)  # 30 frames at 10 fps, analysed at 5
    assert r["calm"]["videos"][0]["analysed_frames"] == 15
    assert r["alerts_per_hour_upper95"] == pytest.approx(poisson_upper95(r["calm"]["alerts"], r["hours"]))
    assert r["alerts_per_hour"] == pytest.approx(r["calm"]["alerts"] / r["hours"])
    assert (tmp_path / "results" / "eval_fight_calm.json").exists()
