"""Dynamic batching and the pipelined inference loop, on real frame slots, real footage and the real model.

Timing assertions leave wide margins: the machine is shared and noisy.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_detector import frames

from gridwatch.config import DetectorConfig, parse_config
from gridwatch.runtime import InferenceLoop
from models import resolve_weights
from streams import Frame, FrameSlot
from vision.analyser import CameraAnalyser
from vision.batching import BatchPolicy, DynamicBatcher, Letterbox, fit_batch_to_memory, make_blob
from vision.detector import PersonDetector

EXPORTS = Path(__file__).resolve().parents[1] / "var" / "cache" / "exports"


@pytest.fixture(scope="module")
def images(vtest) -> list[np.ndarray]:
    return frames(vtest, every=10, limit=12)


def fleet(n: int) -> tuple[dict[str, FrameSlot], threading.Event]:
    wake = threading.Event()
    return {f"cam-{i}": FrameSlot(wake) for i in range(n)}, wake


def put(slots, cid: str, image: np.ndarray, seq: int = 0, ts: float | None = None) -> None:
    slots[cid].put(Frame(cid, image, time.time() if ts is None else ts, seq))


@pytest.mark.parametrize("size", [(576, 768), (720, 1280), (360, 480), (1080, 1920), (500, 333)])
def test_letterbox_is_ultralytics_letterbox(images, size):
    """Same canvas, same pixels as ultralytics' LetterBox(auto=True), so every backend sees what predict sees."""
    from ultralytics.data.augment import LetterBox

    img = cv2.resize(images[0], size[::-1])
    ref = LetterBox((640, 640), auto=True, stride=32)(image=img)
    box = Letterbox.fit(img.shape[:2], 640)
    assert box.canvas_hw == ref.shape[:2]
    blob = make_blob([img], [box])[0]
    assert np.array_equal((blob * 255).round().astype(np.uint8).transpose(1, 2, 0)[:, :, ::-1], ref)
    # a box around the whole picture maps back onto the whole frame
    nw, nh = box.new_wh
    whole = np.array([[box.left, box.top, box.left + nw, box.top + nh]], np.float32)
    assert np.abs(box.to_source(whole) - [0, 0, size[1], size[0]]).max() <= 1.0


def test_full_batch_goes_at_once(images):
    slots, wake = fleet(4)
    batcher = DynamicBatcher(slots, wake, BatchPolicy(max_batch=4, max_wait_s=30.0))
    for cid in slots:
        put(slots, cid, images[0])
    t0 = time.monotonic()
    batch = batcher.next_batch(threading.Event())
    assert len(batch) == 4 and time.monotonic() - t0 < 5.0
    assert batcher.stats.full == 1


def test_partial_batch_goes_after_max_wait(images):
    slots, wake = fleet(4)
    batcher = DynamicBatcher(slots, wake, BatchPolicy(max_batch=4, max_wait_s=0.3))
    put(slots, "cam-2", images[0])
    t0 = time.monotonic()
    batch = batcher.next_batch(threading.Event())
    waited = time.monotonic() - t0
    assert [f.camera_id for f in batch] == ["cam-2"]
    assert 0.25 <= waited < 5.0
    assert batcher.stats.timed_out == 1


def test_frames_arriving_while_waiting_join_the_batch(images):
    slots, wake = fleet(3)
    batcher = DynamicBatcher(slots, wake, BatchPolicy(max_batch=3, max_wait_s=30.0))
    put(slots, "cam-0", images[0])
    later = threading.Timer(0.2, lambda: [put(slots, c, images[1]) for c in ("cam-1", "cam-2")])
    later.start()
    batch = batcher.next_batch(threading.Event())
    later.join()
    assert sorted(f.camera_id for f in batch) == ["cam-0", "cam-1", "cam-2"]


def test_dead_camera_never_holds_a_batch_and_no_camera_starves(images):
    """10 live cameras feeding fast, one dead, batches of 3: batches keep coming, every live camera is served."""
    slots, wake = fleet(11)
    live = [c for c in slots if c != "cam-10"]
    stop = threading.Event()

    def feed():
        seq = 0
        while not stop.is_set():
            for cid in live:
                put(slots, cid, images[seq % len(images)], seq)
            seq += 1
            time.sleep(0.01)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    batcher = DynamicBatcher(slots, wake, BatchPolicy(max_batch=3, max_wait_s=0.05))
    served: list[list[str]] = []
    try:
        for _ in range(40):
            served.append([f.camera_id for f in batcher.next_batch(threading.Event())])
    finally:
        stop.set()
        feeder.join()
    assert all(1 <= len(b) <= 3 for b in served)
    assert "cam-10" not in {c for b in served for c in b}
    # oldest-first: with 10 cameras and 3 per batch, each camera is served at least once every 5 batches
    for cid in live:
        hits = [i for i, b in enumerate(served) if cid in b]
        gaps = np.diff([-1] + hits + [len(served)])
        assert len(hits) >= 6 and gaps.max() <= 5, (cid, hits)


def test_stale_frames_are_dropped_newest_frame_wins(images):
    slots, wake = fleet(2)
    batcher = DynamicBatcher(slots, wake, BatchPolicy(max_batch=4, max_wait_s=0.0, max_age_s=1.0))
    put(slots, "cam-0", images[0], seq=1, ts=time.time() - 5.0)  # its packet arrived 5 s ago
    put(slots, "cam-1", images[0], seq=1)
    batcher.poll()
    put(slots, "cam-1", images[1], seq=2)  # a newer frame of a camera already waiting replaces it
    batcher.poll()
    batch = batcher.take_batch()
    assert [(f.camera_id, f.seq) for f in batch] == [("cam-1", 2)]
    assert batcher.stats.stale == 1 and batcher.stats.replaced == 1


def test_batch_fits_memory():
    gib = 2**30
    assert fit_batch_to_memory(64, free_bytes=10 * gib, fixed_bytes=gib, per_frame_bytes=gib // 2) == 14
    assert fit_batch_to_memory(8, free_bytes=80 * gib, fixed_bytes=gib, per_frame_bytes=gib // 2) == 8
    assert fit_batch_to_memory(8, free_bytes=gib, fixed_bytes=2 * gib, per_frame_bytes=gib) == 1


@pytest.fixture(scope="module")
def detector() -> PersonDetector:
    return PersonDetector(resolve_weights("yolov10n.pt"), DetectorConfig(device="cpu", max_batch=4),
                          export_root=EXPORTS)


def test_pipelined_loop_analyses_every_live_camera_with_the_detectors_results(detector, images):
    """5 cameras at 5 fps and one dead one through the real loop: each frame's people are those detect() finds."""
    cfg = parse_config({"grids": [{"id": "g", "name": "G"}],
                        "cameras": [{"id": f"cam-{i}", "url": "rtsp://192.0.2.1/x", "grid": "g", "lat": 0, "lon": 0, "fps": 5}
                                    for i in range(6)]})
    slots, wake = fleet(6)
    analyses = []
    lock = threading.Lock()

    def sink(a):
        with lock:
            analyses.append(a)

    loop = InferenceLoop(slots, wake, detector, {c.id: CameraAnalyser(c) for c in cfg.cameras}, sink,
                         BatchPolicy(max_batch=4, max_wait_s=0.05, max_age_s=3.0))
    loop.start()
    try:
        for seq in range(8):
            for i in range(5):  # cam-5 is dead
                put(slots, f"cam-{i}", images[(seq + i) % len(images)], seq)
            time.sleep(0.2)
        deadline = time.time() + 30
        while time.time() < deadline and not any(a.frame.seq == 7 for a in analyses):
            time.sleep(0.1)
    finally:
        loop.stop()
    stats = loop.stats()
    assert stats["error"] is None
    cams = {a.frame.camera_id for a in analyses}
    assert cams == {f"cam-{i}" for i in range(5)}
    assert stats["max_batch"] == 4 and 1 <= stats["mean_batch"] <= 4
    # per camera, frames come out in order (the tracker needs time order)
    for cid in cams:
        seqs = [a.frame.seq for a in analyses if a.frame.camera_id == cid]
        assert seqs == sorted(seqs)
    sample = analyses[:: max(1, len(analyses) // 6)]
    reference = detector.detect([a.frame.image for a in sample])
    for a, ref in zip(sample, reference):
        assert len(a.detections) == len(ref)
        order = lambda d: d.xyxy[np.lexsort(d.xyxy.T[::-1])]  # noqa: E731
        assert np.abs(order(a.detections) - order(ref)).max() <= 1.0


def test_a_camera_whose_analysis_fails_does_not_take_the_batch_with_it(detector, images):
    """One camera's analysis raising (say, a broken calibration) loses that frame only; the error shows in stats."""
    cfg = parse_config({"grids": [{"id": "g", "name": "G"}],
                        "cameras": [{"id": f"cam-{i}", "url": "rtsp://192.0.2.1/x", "grid": "g", "lat": 0, "lon": 0, "fps": 5}
                                    for i in range(3)]})

    class Broken(CameraAnalyser):
        def analyse_steps(self, frame, detections):
            raise RuntimeError("calibration file unreadable")
            yield

    analysers = {c.id: (Broken if c.id == "cam-1" else CameraAnalyser)(c) for c in cfg.cameras}
    slots, wake = fleet(3)
    delivered = []
    loop = InferenceLoop(slots, wake, detector, analysers, delivered.append, BatchPolicy(max_batch=4))
    for i in range(3):
        put(slots, f"cam-{i}", images[i], 0)
    assert loop.run_once() == 3  # all three in one batch
    assert sorted(a.frame.camera_id for a in delivered) == ["cam-0", "cam-2"]
    assert "calibration file unreadable" in loop.stats()["error"]
