"""One analysis flow: the camera's one tracker, zone inertia by its ids, and every rule through one ``Monitor``."""
import time
from pathlib import Path

import numpy as np
import pytest

from gridwatch.config import ConflictRule, CrowdingRule, GatheringRule, LoiteringRule, parse_config
from vision import (
    ActiveHours,
    CameraAnalyser,
    ConflictModel,
    ConflictMonitor,
    CrowdingMonitor,
    Detections,
    Frame,
    GatedMonitor,
    GatheringMonitor,
    Inertia,
    LoiteringMonitor,
    PersonTracker,
    ZoneObservation,
    drive,
)

ROOT = Path(__file__).resolve().parents[1]


def dets(boxes) -> Detections:
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(xyxy, np.full(len(xyxy), 0.9, np.float32), np.zeros(len(xyxy), np.int32))


def at(h: int, m: int, s: float = 0.0) -> float:
    return time.mktime((2026, 5, 1, h, m, 0, 0, 0, -1)) + s


def every_monitor(hours: ActiveHours | None = None) -> list[GatedMonitor]:
    model = ConflictModel.load(ROOT / "models" / "conflict" / "conflict-v3.json")
    return [CrowdingMonitor("c", "z", CrowdingRule(threshold=2, hold_s=0), active_hours=hours),
            GatheringMonitor("c", "z", GatheringRule(rise=2, hold_s=0), active_hours=hours),
            LoiteringMonitor("c", "z", LoiteringRule(dwell_s=1), active_hours=hours),
            ConflictMonitor("c", "z", ConflictRule(enabled=True), model, pose=None, active_hours=hours)]


def test_every_rule_is_a_monitor_of_one_kind_each():
    monitors = every_monitor()
    assert all(isinstance(m, GatedMonitor) for m in monitors)
    assert [m.kind for m in monitors] == ["crowding", "gathering", "loitering", "conflict"]
    for m in monitors:  # the Monitor protocol, which the analyser holds them by
        assert all(callable(getattr(m, name)) for name in ("observe", "stop")) and m.active is False


def test_outside_active_hours_every_rule_ends_its_incident_the_same_way():
    """One stop, in the base: each running incident ends with the same detail, and the rule forgets."""
    hours = ActiveHours(["07:00-08:00"])
    monitors = every_monitor(hours)
    for m in monitors:
        m.gate.active = True  # an incident is running (how each starts is tested per rule)
    img = np.zeros((90, 160, 3), np.uint8)
    ob = ZoneObservation(at(8, 0, 1), 3, (1, 2, 3), img, dets([[10, 10, 20, 40]]), None)
    ends = [drive(m.observe(ob)) for m in monitors]
    assert [(i.kind, i.phase, i.detail) for i in ends] == [
        (k, "end", "outside the zone's active hours") for k in ("crowding", "gathering", "loitering", "conflict")]
    assert all(i.ts == ob.ts and i.count == 3 for i in ends)
    assert ends[0].score == 1.0 and ends[1].score == ends[2].score == ends[3].score == 0.0
    assert not any(m.active for m in monitors)
    assert monitors[3].observer.flow._prev is None  # outside the hours the conflict rule does not even look
    assert [drive(m.observe(ob)) for m in monitors] == [None] * 4  # ended once


def test_the_active_hours_stop_is_written_once():
    sources = [p.read_text() for p in (ROOT / "vision").rglob("*.py")]
    assert sum(s.count("outside the zone's active hours") for s in sources) == 1


def test_inertia_counts_frames_in_the_zone_by_id_and_bridges_one_miss():
    z = Inertia()
    assert z.update(np.array([1, 2])).tolist() == [1, 1]
    assert z.update(np.array([1, 2])).tolist() == [2, 2]
    assert z.update(np.array([1])).tolist() == [3]  # 2 missed once: kept
    assert z.update(np.array([1, 2])).tolist() == [4, 3]  # and back, its run goes on
    assert z.update(np.array([1])).tolist() == [5]
    assert z.update(np.array([1])).tolist() == [6]  # 2 missed twice: gone
    assert z.update(np.array([2, 7])).tolist() == [1, 1]


def test_the_zone_state_carries_the_trackers_ids_and_loitering_dwells_on_them():
    whole = [[0, 0], [1, 0], [1, 1], [0, 1]]
    cfg = parse_config({"grids": [{"id": "g"}], "cameras": [{"id": "c", "url": "rtsp://192.0.2.1/x", "grid": "g",
                        "lat": 0, "lon": 0, "perspective_check": False, "zones": [
                            {"id": "all", "polygon": whole, "loitering": {"dwell_s": 2, "clear_s": 0}},
                            {"id": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "inertia": 1}]}]})
    a = CameraAnalyser(cfg.cameras[0])
    img = np.zeros((200, 400, 3), np.uint8)
    stander, walker = [50, 50, 80, 150], lambda t: [150 + 40 * t, 50, 180 + 40 * t, 150]  # noqa: E731
    got = []
    for k in range(7):
        t = k * 0.5
        got.append(a.analyse(Frame("c", img, 1000.0 + t, k), dets([stander, walker(t)])))
    first, last = got[0], got[-1]
    assert first.zones[0].track_ids == () and first.zones[1].track_ids == (1, 2)  # inertia 2; inertia 1
    assert len(first.tracks) == 0  # nobody confirmed on the first frame
    assert set(last.zones[0].track_ids) == {1, 2} and last.zones[1].track_ids == (1,)  # one id per person, any zone
    assert last.detections.tracker_id.tolist() == [1, 2] and last.tracks.tracker_id.tolist() == [1, 2]
    loitering = [i for r in got for i in r.incidents if i.kind == "loitering"]
    assert [(i.phase, i.ts - 1000.0) for i in loitering] == [("start", 2.5)]  # counted from 0.5 s, 2 s of dwell
    assert set(a.zones[0].loitering.dwell(1003.0)) == {1, 2}  # keyed by the same ids


def test_every_rule_of_a_zone_gets_the_same_observation():
    cfg = parse_config({"grids": [{"id": "g"}], "cameras": [{"id": "c", "url": "rtsp://192.0.2.1/x", "grid": "g",
                        "lat": 0, "lon": 0, "zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                                                       "crowding": {"threshold": 5}, "gathering": {}}]}]})
    a = CameraAnalyser(cfg.cameras[0])
    seen: list[ZoneObservation] = []

    class Spy(GatedMonitor):
        kind = "crowding"

        def judge(self, ob):
            seen.append(ob)
            return None

    a.zones[0].monitors.append(Spy("c", "z", CrowdingRule(threshold=1)))
    img = np.zeros((200, 400, 3), np.uint8)
    for k in range(2):
        a.analyse(Frame("c", img, 1000.0 + k, k), dets([[50, 50, 80, 150]]))
    assert [(ob.count, ob.track_ids) for ob in seen] == [(0, ()), (1, (1,))]
    assert seen[1].image is img and seen[1].mask.shape == (200, 400) and len(seen[1].people) == 1


def test_the_tracker_gives_ids_to_every_person_and_counts_frames_seen():
    tr = PersonTracker()
    tracked, runs = tr.track(0.0, dets([[10, 10, 30, 60], [200, 10, 220, 60]]))
    assert tracked.tracker_id.tolist() == [1, 2] and runs.tolist() == [1, 1]
    tracked, runs = tr.track(0.5, dets([[205, 10, 225, 60], [12, 10, 32, 60], [400, 10, 420, 60]]))
    assert tracked.tracker_id.tolist() == [2, 1, 3] and runs.tolist() == [2, 2, 1]


def test_the_zones_benchmark_counts_as_the_zone_analyser_does():
    """``bench/eval.py zones`` measures the shipped way (tracker, then inertia) with the runtime's own parts."""
    from bench.eval import zone_counts

    cfg = parse_config({"grids": [{"id": "g"}], "cameras": [{"id": "c", "url": "rtsp://192.0.2.1/x", "grid": "g",
                        "lat": 0, "lon": 0, "perspective_check": False,
                        "zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]}]})
    a = CameraAnalyser(cfg.cameras[0])
    img = np.zeros((200, 400, 3), np.uint8)
    rng = np.random.default_rng(0)
    frames = []
    for k in range(12):
        boxes = [[20 + 15 * k, 40, 50 + 15 * k, 140], [300 - 10 * k, 50, 330 - 10 * k, 150]]  # two walkers
        if k % 4 != 1:
            boxes.append([150, 60, 175, 140])  # one who stands, missed now and then
        if k % 5 == 3:
            x = rng.uniform(0, 380)
            boxes.append([x, 100, x + 20, 140])  # a one-frame false box
        frames.append((1000.0 + 0.5 * k, dets(boxes)))
    runtime = [a.analyse(Frame("c", img, ts, k), d).zones[0].count for k, (ts, d) in enumerate(frames)]
    bench = [len(c["tracker"]) for c in zone_counts(frames, lambda d: np.ones(len(d), bool), 2, 2.0)]
    assert bench == runtime and max(runtime) == 3


@pytest.mark.slow
def test_eval_zones_on_pets_the_tracker_counts_better_than_bytetrack(shared_data, tmp_path):
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "bench" / "eval.py"), "zones", "--data",
                          str(shared_data / "pets-s2l1"), "--fps", "2", "--results", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])["by_rate"]["2fps"]
    assert r["tracker"]["count_mae"] < 0.6 < 2.0 < r["bytetrack"]["count_mae"]  # measured: 0.40 and 4.05
    assert r["tracker"] == r["zone_only"]  # a whole-frame zone: the camera's tracker links as the zone's would
