"""Zone geometry and the rules' state machines, fed observations with explicit timestamps."""
import numpy as np

from gridwatch.config import ConflictRule, CrowdingRule
from vision import ConflictMonitor, CrowdingMonitor, Detections, PolygonZone


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
    return [(ts, inc.phase) for ts, n in series if (inc := monitor.update(ts, n)) is not None]


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
           if (inc := m.update(ts, n)) is not None]
    assert got == [(0, "start", 3), (2, "update", 5), (4, "update", 6)]


def test_conflict_fires_on_close_erratic_people_not_on_calm_walkers():
    rule = ConflictRule(enabled=True, hold_s=0.5, min_score=0.5)
    rng = np.random.default_rng(0)
    calm, scuffle = ConflictMonitor("c", "z", rule), ConflictMonitor("c", "z", rule)
    calm_out, scuffle_out = [], []
    for k in range(20):
        t = k * 0.2
        # two people walking side by side at a steady pace
        x = 100 + 20 * t
        calm_out.append(calm.update(t, dets([[x, 100, x + 40, 200], [x + 45, 100, x + 85, 200]], [1, 2])))
        # two people at the same spot, boxes jerking around by up to half a body
        j = rng.uniform(-50, 50, size=(2, 4))
        boxes = np.array([[100, 100, 140, 200], [130, 100, 170, 200]]) + j
        scuffle_out.append(scuffle.update(t, dets(boxes, [1, 2])))
    assert all(i is None for i in calm_out)
    fired = [i for i in scuffle_out if i is not None]
    assert fired and fired[0].kind == "conflict" and fired[0].phase == "start"


def test_conflict_needs_two_people():
    m = ConflictMonitor("c", "z", ConflictRule(enabled=True, hold_s=0))
    rng = np.random.default_rng(1)
    for k in range(20):
        assert m.update(k * 0.2, dets([[100, 100, 140, 200] + rng.uniform(-50, 50, 4)], [1])) is None
