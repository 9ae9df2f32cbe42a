"""Decode only what is analysed: the planner's choices on simulated packet sequences."""
import pytest

from streams.decode import DecodePlanner


def simulate(fps: float, gop: int, analysis_fps: float, seconds: float = 20.0):
    """Feed a no-B-frame stream; returns (decoded, handed-off times, planner)."""
    p = DecodePlanner(1.0 / analysis_fps)
    decoded, handed = 0, []
    for i in range(int(fps * seconds)):
        t = i / fps
        if p.should_decode(t, i % gop == 0):
            decoded += 1
            if p.due(t):
                handed.append(t)
    return decoded, handed, p


@pytest.mark.parametrize("fps, gop, analysis", [(25, 12, 2), (25, 25, 1), (10, 5, 2), (25, 50, 0.5), (25, 5, 2)])
def test_keyframe_only_when_keyframes_come_often_enough(fps, gop, analysis):
    decoded, handed, p = simulate(fps, gop, analysis)
    assert p.keyframe_only
    keyframes = fps * 20 / gop
    assert decoded <= keyframes + gop + 1  # keyframes, plus the first GOP (decoded whole: GOP not known yet)
    rate = len(handed) / 20
    assert analysis * 0.9 <= rate <= analysis * 1.1, rate
    assert decoded - gop <= len(handed)  # after the first GOP, nothing is decoded in vain


@pytest.mark.parametrize("fps, gop, analysis", [(25, 25, 2), (25, 50, 2), (10, 10, 2), (25, 50, 1)])
def test_decodes_only_up_to_the_due_frame_in_long_gops(fps, gop, analysis):
    decoded, handed, p = simulate(fps, gop, analysis)
    assert not p.keyframe_only
    rate = len(handed) / 20
    assert analysis * 0.9 <= rate <= analysis * 1.1, rate
    # the last due frame of each GOP is at most one analysis period before the next keyframe,
    # so at most that share of the GOP is decoded
    gop_s = gop / fps
    share = min(1.0, (gop_s - 1 / analysis + 1 / fps) / gop_s) if gop_s > 1 / analysis else 1.0
    assert decoded <= fps * 20 * share + gop + 2, (decoded, share)
    assert decoded < fps * 20  # never everything


def test_analysing_every_frame_decodes_every_frame():
    decoded, handed, _ = simulate(10, 10, 10, seconds=5)
    assert decoded == 50 and len(handed) == 50


def test_clock_jump_back_restarts_the_schedule():
    p = DecodePlanner(0.5)
    for i in range(100):
        if p.should_decode(i * 0.1, i % 5 == 0):
            p.due(i * 0.1)
    assert p.should_decode(0.0, True)  # the camera restarted its clock
    assert p.due(0.0)


def test_missing_timestamps_are_decoded():
    p = DecodePlanner(1.0)
    assert p.should_decode(None, True) and p.should_decode(None, False)
