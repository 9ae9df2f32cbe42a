"""Camera intake against a real GStreamer RTSP server: frames flow, faults are seen, recovery happens."""
import time
from contextlib import contextmanager

import numpy as np
import pytest
from conftest import wait_for

from gridwatch.harness import RtspServer, make_h264_clip, make_resolution_change_clip
from streams import Backoff, CameraReader, FrameSlot
from vision.detections import Frame

# every fault test runs a healthy neighbour whose frame rate is measured

@pytest.fixture(scope="module")
def cam_clip(vtest, tmp_path_factory):
    """A camera-like substream: 640x360, 10 fps, a keyframe every second, 4 s of real pedestrians."""
    return make_h264_clip(vtest, tmp_path_factory.mktemp("cam") / "cam.mp4", 640, 360, 10, 10, 4)


@contextmanager
def healthy_neighbour(clip, fps: float = 5.0):
    """Another camera on its own server; yields a function giving its analysed fps since a mark."""
    with RtspServer({"ok": clip}, passthrough=True) as server:
        reader = CameraReader("neighbour", server.url("ok"), fps=fps, slot=FrameSlot())
        reader.start()
        try:
            assert wait_for(lambda: reader.health.frames_analysed >= 3, 15), reader.health
            t0, n0 = time.monotonic(), reader.health.frames_analysed

            def rate() -> float:
                """Its analysed rate since the fault began, over at least 3 s (shorter windows are too coarse).

                The fault tests ask for at least 85% of the configured 5 fps.
                """
                time.sleep(max(0.0, 3.0 - (time.monotonic() - t0)))
                return (reader.health.frames_analysed - n0 + 1) / (time.monotonic() - t0)
            yield rate
        finally:
            reader.stop()


def test_slot_keeps_only_the_newest_and_counts_drops():
    slot = FrameSlot()
    for i in range(5):
        slot.put(Frame("c", np.zeros((2, 2, 3), np.uint8), float(i), i))
    got = slot.take()
    assert got.seq == 4 and slot.dropped == 4
    assert slot.take() is None


def test_backoff_is_capped_with_jitter_and_resets():
    b = Backoff(base=0.5, cap=8)
    delays = [b.next_delay() for _ in range(10)]
    assert 0.4 <= delays[0] <= 0.6
    assert all(d <= 8 * 1.2 for d in delays) and max(delays) >= 8 * 0.8
    b.reset()
    assert b.next_delay() <= 0.6


def test_file_is_sampled_at_the_analysis_rate(vtest):
    slot = FrameSlot()
    reader = CameraReader("file", str(vtest), fps=4, slot=slot, media_dirs=[vtest.parent])
    reader.start()
    got = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:
        if (f := slot.take()) is not None:
            got.append(f)
        time.sleep(0.02)
    reader.stop()
    h = reader.health
    # vtest plays at 10 fps: ~30 frames decoded in 3 s, ~12 handed over at 4 fps
    assert 20 <= h.frames_in <= 40, h
    assert 8 <= len(got) <= 14, len(got)
    assert got[0].image.shape == (576, 768, 3) and got[0].image.dtype == np.uint8
    assert [f.seq for f in got] == sorted(f.seq for f in got)


def test_rtsp_frames_then_server_killed_then_back(vtest, cam_clip, rtsp_ok):
    with healthy_neighbour(cam_clip) as rate:
        _killed_then_back(vtest, rate)


def _killed_then_back(vtest, rate):
    server = RtspServer({"cam": vtest}).start()
    slot = FrameSlot()
    reader = CameraReader("cam", server.url("cam"), fps=5, slot=slot)
    reader.start()
    try:
        assert wait_for(lambda: reader.health.frames_analysed >= 5, 15), reader.health
        assert reader.health.state == "online"
        server.stop()  # SIGKILL: PyAV's demuxer just ends
        assert wait_for(lambda: reader.health.state in ("offline", "connecting"), 10), reader.health
        assert wait_for(lambda: reader.health.reconnects >= 1, 10)
        before = reader.health.frames_analysed
        server = RtspServer({"cam": vtest}, port=server.port).start()  # the camera comes back
        assert wait_for(lambda: reader.health.frames_analysed >= before + 5, 40), reader.health
        assert reader.health.state == "online" and reader.health.last_error is None
        assert rate() >= 4.25
    finally:
        reader.stop()
        server.stop()


def test_refused_connection_is_offline_with_the_error(cam_clip, rtsp_ok):
    import socket

    # a port held bound but not listening refuses every connection, and no other test's server can take it meanwhile
    # (a port merely found free once was, in one CI run, reused by an authenticating test server: "unauthorized")
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    with held, healthy_neighbour(cam_clip) as rate:
        reader = CameraReader("gone", f"rtsp://127.0.0.1:{held.getsockname()[1]}/x", fps=1, slot=FrameSlot())
        reader.start()
        try:
            assert wait_for(lambda: reader.health.reconnects >= 1, 10)
            assert reader.health.state in ("offline", "connecting") and reader.health.frames_in == 0
            assert "refused" in (reader.health.last_error or "").lower()
            assert rate() >= 4.25
        finally:
            reader.stop()


def test_wrong_password_is_unauthorized_and_never_shown(vtest, cam_clip, rtsp_ok):
    with RtspServer({"cam": vtest}, user="admin", password="right-one") as server, \
            healthy_neighbour(cam_clip) as rate:
        bad = f"rtsp://admin:wrong-one@127.0.0.1:{server.port}/cam"
        reader = CameraReader("locked", bad, fps=1, slot=FrameSlot())
        good = CameraReader("open", server.url("cam"), fps=2, slot=FrameSlot())
        reader.start()
        good.start()
        try:
            assert wait_for(lambda: reader.health.state == "unauthorized", 15), reader.health
            assert "wrong-one" not in str(reader.snapshot_health())
            time.sleep(3.0)
            # no tight retry loop against a locked camera: one quick retry (a single refusal may be a busy server),
            # then the long wait
            assert reader.health.reconnects <= 2
            assert wait_for(lambda: good.health.frames_analysed >= 2, 15), good.health  # right password works
            assert rate() >= 4.25
        finally:
            reader.stop()
            good.stop()


def test_hung_server_times_out_and_other_cameras_keep_flowing(vtest, cam_clip, rtsp_ok):
    hung = RtspServer({"cam": vtest}).start()
    a = CameraReader("hung", hung.url("cam"), fps=5, slot=FrameSlot(), read_timeout=3.0)
    a.start()
    try:
        with healthy_neighbour(cam_clip) as rate:
            assert wait_for(lambda: a.health.frames_analysed >= 3, 15)
            hung.pause()  # SIGSTOP: sockets stay open, nothing arrives
            assert wait_for(lambda: a.health.reconnects >= 1, 15), a.health  # the read timeout fired
            assert rate() >= 4.25
    finally:
        hung.resume()
        a.stop()
        hung.stop()


def test_server_loops_clips_so_a_demo_camera_never_ends(short_clip, rtsp_ok):
    with RtspServer({"loop": short_clip}) as looping, RtspServer({"once": short_clip}, loop=False) as once:
        a = CameraReader("loop", looping.url("loop"), fps=5, slot=FrameSlot())
        b = CameraReader("once", once.url("once"), fps=5, slot=FrameSlot())
        a.start()
        b.start()
        try:
            time.sleep(7.5)  # two and a half plays of the 3 s clip
            assert a.health.reconnects == 0 and a.health.state == "online", a.health
            assert a.health.frames_in >= 55 and a.health.frames_analysed >= 25, a.health
            assert b.health.reconnects >= 1  # the same clip played once ends its stream
        finally:
            a.stop()
            b.stop()


def test_wrong_path_is_offline_with_404(cam_clip, rtsp_ok):
    with RtspServer({"cam": cam_clip}, passthrough=True) as server, healthy_neighbour(cam_clip) as rate:
        reader = CameraReader("wrong", server.url("nope"), fps=2, slot=FrameSlot())
        reader.start()
        try:
            assert wait_for(lambda: reader.health.reconnects >= 2, 15), reader.health
            h = reader.health
            assert h.state in ("offline", "connecting") and h.frames_in == 0
            assert "404" in h.last_error or "not found" in h.last_error.lower(), h.last_error
            assert rate() >= 4.25
        finally:
            reader.stop()


def test_corrupt_and_truncated_data_do_not_stop_the_camera(vtest, cam_clip, rtsp_ok, tmp_path):
    raw = make_h264_clip(vtest, tmp_path / "cam.h264", 640, 360, 10, 10, 4, container="h264")
    data = bytearray(raw.read_bytes())
    rng = np.random.default_rng(7)
    for start in (len(data) // 3, len(data) // 2):  # two bursts of garbage in the middle
        data[start:start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.h264"
    bad.write_bytes(bytes(data[:-1500]))  # and cut off mid-frame at the end
    with RtspServer({"bad": bad}, passthrough=True, loop=False) as server, healthy_neighbour(cam_clip) as rate:
        slot = FrameSlot()
        reader = CameraReader("bad", server.url("bad"), fps=10, slot=slot)
        reader.start()
        try:
            assert wait_for(lambda: reader.health.reconnects >= 1, 20), reader.health  # the clip ended
            h = reader.health
            # frames kept coming through the damage: most of the 40 frames were decoded
            assert h.frames_in >= 25, h
            assert rate() >= 4.25
        finally:
            reader.stop()


def test_resolution_change_mid_stream(vtest, cam_clip, rtsp_ok, tmp_path):
    # the camera's encoder is reconfigured: 640x360 for 2 s, then 320x240
    both = make_resolution_change_clip(vtest, tmp_path / "both.ts", [(640, 360), (320, 240)], 10, 10, 2)
    with RtspServer({"cam": both}, passthrough=True, loop=False) as server, healthy_neighbour(cam_clip) as rate:
        slot = FrameSlot()
        reader = CameraReader("cam", server.url("cam"), fps=10, slot=slot)
        reader.start()
        shapes = set()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and reader.health.reconnects == 0:
                if (f := slot.take()) is not None:
                    shapes.add(f.image.shape)
                time.sleep(0.02)
        finally:
            reader.stop()
        assert shapes == {(360, 640, 3), (240, 320, 3)}, shapes
        assert rate() >= 4.25


def test_flapping_camera_backs_off_and_comes_back(cam_clip, rtsp_ok):
    from gridwatch.harness import free_port

    port = free_port()
    with healthy_neighbour(cam_clip) as rate:
        reader = CameraReader("flap", f"rtsp://127.0.0.1:{port}/cam", fps=5, slot=FrameSlot())
        reader.start()
        try:
            for _ in range(4):  # up 2 s, down 1.5 s
                with RtspServer({"cam": cam_clip}, port=port, passthrough=True):
                    time.sleep(2.0)
                time.sleep(1.5)
            attempts = reader.health.reconnects
            assert 3 <= attempts <= 20, attempts  # it noticed every drop, without a tight loop
            with RtspServer({"cam": cam_clip}, port=port, passthrough=True):
                n = reader.health.frames_analysed
                assert wait_for(lambda: reader.health.frames_analysed >= n + 5, 40), reader.health
                assert reader.health.state == "online"
                states = [h["state"] for h in reader.snapshot_health()["history"]]
                # (the history keeps the last 20 changes; the retries fill it, so early onlines may be gone)
                assert states[-1] == "online" and states.count("online") >= 2 and "offline" in states
            assert rate() >= 4.25
        finally:
            reader.stop()


def test_recovers_from_twenty_server_restarts(cam_clip, rtsp_ok):
    with healthy_neighbour(cam_clip) as rate:
        assert _twenty_restarts(cam_clip) == 20
        assert rate() >= 4.25


def _twenty_restarts(cam_clip) -> int:
    server = RtspServer({"cam": cam_clip}, passthrough=True).start()
    reader = CameraReader("cam", server.url("cam"), fps=5, slot=FrameSlot())
    reader.start()
    recovered = 0
    try:
        assert wait_for(lambda: reader.health.frames_analysed >= 2, 15)
        for cycle in range(20):
            server.stop()
            assert wait_for(lambda: reader.health.state != "online", 10), f"cycle {cycle}: no disconnect seen"
            server = RtspServer({"cam": cam_clip}, port=server.port, passthrough=True).start()
            n = reader.health.frames_analysed
            assert wait_for(lambda: reader.health.frames_analysed >= n + 2, 20), f"cycle {cycle}: {reader.health}"
            recovered += 1
    finally:
        reader.stop()
        server.stop()
    return recovered


def test_decoding_stays_on_the_cpu_without_a_gpu():
    from pathlib import Path

    from streams.reader import pick_hwaccel

    assert pick_hwaccel("cpu") is None
    expected = "cuda" if Path("/dev/nvidiactl").exists() else None
    assert pick_hwaccel("auto") == expected
