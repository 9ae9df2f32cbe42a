"""Zone geometry and the rules' state machines, fed observations with explicit timestamps."""
import time

import numpy as np
import pytest

from gridwatch.config import CrowdingRule, GatheringRule, LoiteringRule, parse_config
from vision import (
    ActiveHours,
    CameraAnalyser,
    CrowdingMonitor,
    Detections,
    Frame,
    Gate,
    GatheringMonitor,
    LoiteringMonitor,
    PersonTracker,
    PolygonZone,
    density_level,
)
from vision.rules import ZoneObservation
from vision.steps import drive


def feed(monitor, ts: float, seen):
    """One observation of a count (or of the ids of the people counted), as ZoneAnalyser makes it."""
    ob = ZoneObservation(ts, seen) if isinstance(seen, int) else ZoneObservation(ts, len(seen), tuple(seen))
    return drive(monitor.observe(ob))


def dets(boxes, ids=None) -> Detections:
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(xyxy, np.full(len(xyxy), 0.9, np.float32), np.zeros(len(xyxy), np.int32),
                      None if ids is None else np.asarray(ids))


def test_person_is_in_zone_by_feet_not_box():
    zone = PolygonZone("z", [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)])  # lower half of a 100x100 frame
    people = dets([[10, 10, 20, 60],   # feet at y=60: inside, though most of the box is outside
                   [30, 0, 40, 45],    # feet at y=45: outside
                   [50, 40, 60, 50]])  # feet exactly on the edge: inside
    assert zone.mask(people, (100, 100)).tolist() == [True, False, True]


def test_concave_zone():
    # an L shape: the notch (upper right) is outside
    zone = PolygonZone("L", [(0, 0), (0.5, 0), (0.5, 0.5), (1, 0.5), (1, 1), (0, 1)])
    pts = np.array([[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]])
    assert zone.contains(pts).tolist() == [True, False, True, True]


def test_pixel_polygon_scales_to_frame():
    zone = PolygonZone("z", [(0, 0), (0.5, 0), (0.5, 1)])
    assert zone.pixel_polygon((640, 360)).tolist() == [[0, 0], [320, 0], [320, 360]]


def run(monitor, series):
    """Feed (ts, count) pairs; return the (ts, phase) of every incident."""
    return [(ts, inc.phase) for ts, n in series if (inc := feed(monitor, ts, n)) is not None]


def test_crowding_needs_the_hold_time():
    m = CrowdingMonitor("c", "z", CrowdingRule(threshold=5, hold_s=3))
    # 5 people for 2.5 s, a dip, then 5 for 3 s: only the second run fires, at its 3rd second
    series = [(0, 5), (1, 5), (2, 5), (2.5, 5), (3, 4), (4, 5), (5, 6), (6, 5), (7, 5)]
    assert run(m, series) == [(7, "start")]


def test_crowding_hysteresis_and_clear_time():
    m = CrowdingMonitor("c", "z", CrowdingRule(threshold=10, hold_s=0, clear_below=7, clear_s=2))
    series = [(0, 10),              # starts
              (1, 8), (2, 7), (3, 9),  # hovering between 7 and 9 keeps it active: no flapping
              (4, 6), (5, 6),       # below 7 for 1 s: not yet
              (6, 9),               # back up: the clear timer restarts
              (7, 5), (8, 5), (9, 5)]  # below 7 for 2 s: ends at 9
    assert run(m, series) == [(0, "start"), (9, "end")]


def test_crowding_update_when_the_crowd_grows():
    m = CrowdingMonitor("c", "z", CrowdingRule(threshold=3, hold_s=0))
    got = [(ts, inc.phase, inc.count) for ts, n in [(0, 3), (1, 3), (2, 5), (3, 4), (4, 6)]
           if (inc := feed(m, ts, n)) is not None]
    assert got == [(0, "start", 3), (2, "update", 5), (4, "update", 6)]


def test_gate_cooldown_delays_rearm():
    g = Gate(hold_s=0, clear_s=1, cooldown_s=10)
    phases = [(t, g.update(t, on, not on)) for t, on in [(0, True), (1, False), (2, False), (3, True), (12, True),
                                                        (13, True)]]
    # starts at 0, ends at 2 (clear for 1 s), the condition at 3 is inside the cooldown, re-arms at 12
    assert [(t, p) for t, p in phases if p] == [(0, "start"), (2, "end"), (12, "start")]


def test_crowding_cooldown_after_end():
    m = CrowdingMonitor("c", "z", CrowdingRule(threshold=3, hold_s=0, clear_s=0, cooldown_s=5))
    assert run(m, [(0, 3), (1, 0), (2, 4), (5, 4), (6, 4)]) == [(0, "start"), (1, "end"), (6, "start")]


def test_density_in_detail_with_levels():
    z = parse_config({"grids": [{"id": "g"}], "cameras": [{"id": "c", "url": "rtsp://h/s", "grid": "g", "lat": 0,
                      "lon": 0, "zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "area_m2": 10,
                                           "crowding": {"hold_s": 0}}]}]}).cameras[0].zones[0]
    assert z.crowding.effective_density == 2.0 and z.crowding.effective_threshold == 20  # default level
    assert z.crowding.density is None and z.crowding.threshold is None  # derived, not written into the user's fields
    m = CrowdingMonitor("c", "z", z.crowding, z.area_m2)
    inc = feed(m, 0, 36)
    assert inc.phase == "start" and "3.6/m²" in inc.detail and "involuntary contact" in inc.detail
    assert density_level(1.0) == "free movement" and density_level(5.5) == "dangerous"


@pytest.mark.parametrize("zone, fix", [
    ({"crowding": {"hold_s": 3}}, "threshold"),
    ({"crowding": {"density": 3.5}}, "area_m2"),
    ({"active_hours": ["7:00-22:00"]}, "HH:MM-HH:MM"),
    ({"conflict": {"min_score": 0.5, "clear_score": 0.7}}, "clear_score"),
])
def test_bad_rule_fields_are_named(zone, fix):
    from gridwatch.config import ConfigError

    cfg = {"grids": [{"id": "g"}], "cameras": [{"id": "c", "url": "rtsp://h/s", "grid": "g", "lat": 0, "lon": 0,
                                                "zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1]], **zone}]}]}
    with pytest.raises(ConfigError) as err:
        parse_config(cfg)
    assert "cameras[0].zones[0]" in str(err.value) and fix in str(err.value)


def test_gathering_fires_on_a_fast_rise_not_on_a_slow_one_or_a_spike():
    rule = GatheringRule(rise=6, within_s=10, hold_s=0, clear_s=2, cooldown_s=0)
    fast, slow, spike = GatheringMonitor("c", "z", rule), GatheringMonitor("c", "z", rule), GatheringMonitor("c", "z", rule)
    fast_series = [(t, 2 if t < 5 else 9) for t in range(15)]
    slow_series = [(t, 2 + t // 10) for t in range(120)]  # +1 person every 10 s
    spike_series = [(t, 12 if t == 5 else 2) for t in range(15)]  # one frame of false detections
    assert run(fast, fast_series)[0] == (6, "start")  # the median of 3 needs two frames of the new count
    assert run(slow, slow_series) == []
    assert run(spike, spike_series) == []


def test_loitering_counts_dwell_per_person():
    m = LoiteringMonitor("c", "z", LoiteringRule(dwell_s=30, clear_s=0))
    got = []
    for t in range(0, 60, 2):
        ids = [1, 2] if t < 20 else [1]  # 2 walks off after 20 s; 1 stays
        ids += [100 + t]  # a passer-by each frame with a new id: never loitering
        if (inc := feed(m, t, ids)) is not None:
            got.append((t, inc.phase))
    assert got == [(30, "start")]
    assert feed(m, 62, [5]) is not None  # the loiterer left: the incident ends


def test_active_hours_wrap_midnight():
    def at(h, m):
        return time.mktime((2026, 5, 1, h, m, 0, 0, 0, -1))

    night = ActiveHours(["22:00-06:00"])
    assert night(at(23, 0)) and night(at(5, 59)) and not night(at(6, 0)) and not night(at(12, 0))
    assert ActiveHours([])(at(12, 0))


def test_tracker_links_a_walker_at_two_fps_and_ignores_a_flicker():
    p = PersonTracker()
    walker = lambda t: [100 + 60 * t, 100, 140 + 60 * t, 200]  # noqa: E731  60 px/s = 0.6 body heights/s
    runs = []
    for k in range(5):
        t = k * 0.5
        boxes = [walker(t)] + ([[400, 300, 420, 340]] if k == 2 else [])  # a one-frame false detection
        r, ids = p.update(t, dets(boxes))
        runs.append(r.tolist())
    assert [r[0] for r in runs] == [1, 2, 3, 4, 5]
    assert runs[2][1] == 1  # the flicker never reaches an inertia of 2


def test_analyser_inertia_filters_and_active_hours():
    cfg = parse_config({"grids": [{"id": "g"}], "cameras": [{"id": "c", "url": "rtsp://h/s", "grid": "g", "lat": 0,
                        "lon": 0, "zones": [
                            {"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "inertia": 2,
                             "min_confidence": 0.5, "min_box_height": 0.1, "crowding": {"threshold": 2, "hold_s": 0}},
                            {"id": "never", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "inertia": 1,
                             "active_hours": ["00:00-00:01"] if time.localtime().tm_hour != 0 else ["12:00-12:01"],
                             "crowding": {"threshold": 1, "hold_s": 0}}]}]})
    a = CameraAnalyser(cfg.cameras[0])
    img = __import__("numpy").zeros((200, 400, 3), "uint8")
    people = Detections(np.array([[10, 50, 40, 150], [100, 50, 130, 150], [200, 50, 230, 150], [300, 180, 305, 190]],
                                 np.float32), np.array([0.9, 0.8, 0.3, 0.9], np.float32), np.zeros(4, np.int32))
    now = time.time()
    first = a.analyse(Frame("c", img, now, 0), people)
    second = a.analyse(Frame("c", img, now + 0.5, 1), people)
    # low confidence (0.3) and tiny (10 px of 200) boxes never count; the other two count from their 2nd frame
    assert [z.count for z in first.zones][0] == 0 and [z.count for z in second.zones][0] == 2
    assert [i.kind for i in second.incidents] == ["crowding"] and second.incidents[0].zone_id == "all"
