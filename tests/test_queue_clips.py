"""Evidence clips from real footage: ring buffer per camera, H.264 MP4 that browsers play, attached to the case."""
import time

import av
import cv2
import numpy as np
import pytest
from conftest import wait_for

from alerts import AlertPublisher, EvidenceStore
from alerts.clips import ClipRecorder, encode_mp4
from gridwatch.config import ClipConfig, parse_config
from vision.analyser import Analysis
from vision.detections import Detections, Frame, Incident


def footage(path, n: int, every: int = 3) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    while len(out) < n:
        ok, img = cap.read()
        assert ok, "footage ended early"
        if i % every == 0:
            out.append(img)
        i += 1
    cap.release()
    return out


def atoms(data: bytes) -> list[str]:
    """Top-level MP4 boxes in file order."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        out.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size < 8:
            break
        pos += size
    return out


def probe(path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return {"codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt, "w": s.codec_context.width,
                "h": s.codec_context.height, "n": len(frames), "span": float(frames[-1].time - frames[0].time)}




def test_clip_from_5s_before_to_5s_after_plays_in_browsers(vtest, tmp_path):
    evidence = EvidenceStore(tmp_path / "ev")
    rec = ClipRecorder(evidence, ClipConfig(pre_s=5, post_s=5, max_width=640))
    frames = footage(vtest, 45)  # 768x576 pedestrians, analysed at 10/3 fps
    t0 = time.time()
    done = []
    for i, img in enumerate(frames):
        ts = t0 + i * 0.3
        assert rec.push("cam-1", ts, img)
        if i == 20:  # the alert, 6 s in
            rec.request("cam-1", ts, done.append)
    assert wait_for(lambda: done, 20), f"no clip: {rec.stats()}"
    rec.close()
    path = evidence.path(done[0])
    assert path is not None and done[0].endswith(".mp4")
    data = path.read_bytes()
    assert atoms(data).index("moov") < atoms(data).index("mdat")  # +faststart: playable while downloading
    got = probe(path)
    assert got["codec"] == "h264" and got["pix_fmt"] == "yuv420p"
    assert (got["w"], got["h"]) == (640, 480)  # scaled to max_width, even
    inside = [i for i in range(len(frames)) if t0 + 6.0 - 5 <= t0 + i * 0.3 <= t0 + 6.0 + 5]
    assert inside[0] == 4 and inside[-1] == 36  # 5 s before the alert's frame, 5 s after
    assert got["n"] == len(inside) and got["span"] == pytest.approx(9.6, abs=0.05)
    # what it shows is the footage: the clip's frame at the alert matches the alert's frame
    with av.open(str(path)) as c:
        middle = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)][inside.index(20)]
    expect = cv2.resize(frames[20], (640, 480), interpolation=cv2.INTER_AREA)
    assert np.abs(middle.astype(int) - expect.astype(int)).mean() < 8


def test_odd_sized_frames_give_even_dimensions(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (241, 321, 3), np.uint8)
    data = encode_mp4([(0.0, img), (0.5, img), (1.0, img)])
    (tmp_path / "c.mp4").write_bytes(data)
    got = probe(tmp_path / "c.mp4")
    assert (got["w"], got["h"]) == (320, 240) and got["n"] == 3 and got["span"] == pytest.approx(1.0, abs=0.01)


def test_a_full_queue_drops_ring_frames_instead_of_waiting(tmp_path):
    rec = ClipRecorder(EvidenceStore(tmp_path / "ev"), ClipConfig(), queue_size=4)
    big = np.zeros((2160, 3840, 3), np.uint8)
    t = time.perf_counter()
    results = [rec.push("cam-1", time.time(), big) for _ in range(200)]
    assert time.perf_counter() - t < 0.5  # never waits on the recorder
    assert not all(results) and rec.stats()["dropped_frames"] > 0
    rec.close()


def test_publisher_attaches_snapshot_then_clip_without_the_loop_waiting(vtest, store, tmp_path):
    cfg = parse_config({
        "grids": [{"id": "g-1"}],
        "cameras": [{"id": "cam-1", "name": "Walkway", "url": "rtsp://192.0.2.1/s", "grid": "g-1", "lat": 31.2,
                     "lon": 121.4, "zones": [{"id": "z1", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                                              "crowding": {"threshold": 4}}]}],
        "alerts": {"clip": {"pre_s": 2, "post_s": 2}},
        "settings": {"data_dir": str(tmp_path)},
    }).resolve_paths(tmp_path)
    evidence = EvidenceStore(cfg.alerts.evidence_dir)
    pub = AlertPublisher(cfg, store, evidence)
    t0 = time.time()
    case = None
    for i, img in enumerate(footage(vtest, 24)):
        ts = t0 + i * 0.3
        incidents = (Incident("crowding", "start", "cam-1", "z1", ts, 9, 1.0, "9 people for 3s"),) if i == 10 else ()
        got = pub.handle(Analysis(Frame("cam-1", img, ts, i), Detections(), Detections(), (), incidents))
        if incidents:
            case = got[0]
            assert case.snapshot and case.clip is None  # the clip is not waited for
            assert case.priority == 2 and case.level == "high"  # 9 people, threshold 4: over twice
    assert case is not None
    clip = wait_for(lambda: store.get(case.id).clip, 20)
    assert clip and evidence.path(clip) is not None and evidence.media_type(clip) == "video/mp4"
    assert probe(evidence.path(clip))["n"] == 13  # frames 4..16: 2 s before the alert's frame 10, 2 s after
    history = store.get(case.id).history
    assert [h.action for h in history] == ["create", "evidence"] and history[1].clip == clip
    snap = cv2.imread(str(evidence.path(case.snapshot)))
    assert snap.shape == (576, 768, 3)
    pub.close()


def test_clips_are_served_for_browsers_with_range_requests(api):
    img = np.full((240, 320, 3), 90, np.uint8)
    name = api.evidence.save_bytes(encode_mp4([(i / 3, img) for i in range(6)]), "mp4")
    r = api.get(f"/api/evidence/{name}")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    part = api.get(f"/api/evidence/{name}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100 and part.content == r.content[:100]


def test_publisher_ranks_a_density_zone_against_its_derived_threshold(store, tmp_path):
    """A zone with density and area_m2 has no written threshold: the crowd's priority comes from the derived one."""
    cfg = parse_config({
        "grids": [{"id": "g-1"}],
        "cameras": [{"id": "cam-1", "url": "rtsp://192.0.2.1/s", "grid": "g-1", "lat": 31.2, "lon": 121.4,
                     "zones": [{"id": "z1", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "area_m2": 2.0,
                                "crowding": {"density": 2.0}}]}],
        "alerts": {"clip": {"enabled": False}},
        "settings": {"data_dir": str(tmp_path)},
    }).resolve_paths(tmp_path)
    assert cfg.cameras[0].zones[0].crowding.threshold is None  # derived: 4 people
    pub = AlertPublisher(cfg, store, EvidenceStore(cfg.alerts.evidence_dir))
    img = np.zeros((120, 160, 3), np.uint8)
    inc = Incident("crowding", "start", "cam-1", "z1", time.time(), 9, 1.0, "9 people")
    case = pub.handle(Analysis(Frame("cam-1", img, inc.ts, 0), Detections(), Detections(), (), (inc,)))[0]
    assert (case.priority, case.level) == (2, "high")  # 9 people against 4: over twice
    pub.close()
