"""Count calibration on real Mall frames: a detector that misses far people, corrected per band."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision import CountCalibration, Detections
from vision.counting import edge_bands, read_counts
from vision.detections import iou_matrix

ROOT = Path(__file__).resolve().parents[1]


def mall(shared_data: Path):
    d = shared_data / "mall-train"
    counts = read_counts(d / "counts.csv")
    heads = json.loads((d / "heads.json").read_text())
    return d, counts, heads, cv2.imread(str(d / "roi_mask.png"), cv2.IMREAD_GRAYSCALE)


def far_blind_detector(points: list, rng) -> Detections:
    """Boxes from the annotated heads, as a nano detector sees them: most far (upper) people missed."""
    keep = [p for p in points if rng.random() < (0.25 if p[1] < 160 else 0.6 if p[1] < 300 else 0.95)]
    xyxy = np.array([[x - 8, y - 2, x + 8, y + 45] for x, y in keep], np.float32).reshape(-1, 4)
    return Detections(xyxy, np.full(len(xyxy), 0.5, np.float32), np.zeros(len(xyxy), np.int32))


def test_calibration_recovers_counts_a_detector_misses(shared_data):
    d, counts, heads, roi = mall(shared_data)
    rng = np.random.default_rng(0)
    names = sorted(counts)[::10]  # 80 frames: fit on the first 40, score on the last 40
    frames = [(far_blind_detector(heads[n], rng), cv2.imread(str(d / "frames" / n))) for n in names]
    true = np.array([counts[n] for n in names])
    cal = CountCalibration.fit(frames[:40], list(true[:40]), roi, {"confidence": 0.25}, bands=4)
    est = np.array([cal.estimate(det, img, roi) for det, img in frames[40:]])
    raw = np.array([len(det) for det, _ in frames[40:]])
    raw_mae, mae = np.abs(raw - true[40:]).mean(), np.abs(est - true[40:]).mean()
    assert raw_mae > 8  # the simulated detector under-counts badly ...
    assert mae < raw_mae / 3 and mae < 4.5  # ... the calibration brings it close (misses are random: not to zero)


def test_calibration_round_trip_and_bad_file(tmp_path):
    cal = CountCalibration([0, 0.5, 1], [1.5, 1.0], [0.0, 0.0], 2.0, {"confidence": 0.3})
    cal.save(tmp_path / "c.json")
    again = CountCalibration.load(tmp_path / "c.json")
    img = np.zeros((100, 100, 3), np.uint8)
    people = Detections(np.array([[10, 10, 20, 40], [10, 60, 20, 90], [50, 60, 60, 90]], np.float32),
                        np.array([0.9, 0.9, 0.1], np.float32), np.zeros(3, np.int32))
    # one far (x1.5) and one near (x1.0) above confidence 0.3, plus 2: 4.5 -> 4 (round half to even)
    assert again.estimate(people, img) == round(2 + 1.5 + 1.0)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="refit it"):
        CountCalibration.load(tmp_path / "bad.json")


def test_fit_refuses_too_few_frames():
    img = np.zeros((60, 80, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 10 counted frames"):
        CountCalibration.fit([(Detections(), img)] * 3, [1, 2, 3], None, {}, bands=4)


def test_edges_only_count_inside_the_mask():
    img = np.zeros((480, 640, 3), np.uint8)
    cv2.rectangle(img, (100, 300), (200, 400), (255, 255, 255), -1)  # an object in the lower half
    mask = np.zeros((480, 640), np.uint8)
    assert edge_bands(img, None, [0, 0.5, 1])[1] > 0
    assert edge_bands(img, mask, [0, 0.5, 1]).sum() == 0


@pytest.mark.slow
def test_eval_count_runs_the_shipped_calibration(shared_data, tmp_path):
    """bench/eval.py count on 12 Mall frames (a folder of the same layout): the shipped calibration beats raw counts."""
    src, counts, _, _ = mall(shared_data)
    names = sorted(counts)[::67][:12]
    (tmp_path / "frames").mkdir()
    for n in names:
        (tmp_path / "frames" / n).symlink_to(src / "frames" / n)
    (tmp_path / "counts.csv").write_text("frame,count\n" + "".join(f"{n},{int(counts[n])}\n" for n in names))
    (tmp_path / "roi_mask.png").symlink_to(src / "roi_mask.png")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "eval.py"), "count", "--data", str(tmp_path),
                          "--results", str(tmp_path / "results")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["frames"] == 12 and r["mae"] < 4.0 and r["mae"] < r["uncalibrated_mae"] / 2
    assert (tmp_path / "results" / f"eval_count_{tmp_path.name}.json").exists()


def test_tiles_cover_the_frame_with_overlap():
    from vision import TileGrid

    wins = TileGrid(2, 2, overlap=0.25).windows(640, 480)
    assert wins[0] == (0, 0, 640, 480)  # the full frame first
    cover = np.zeros((480, 640), int)
    for x1, y1, x2, y2 in wins[1:]:
        cover[y1:y2, x1:x2] += 1
    assert cover.min() == 1 and cover.max() == 4  # every pixel seen; the middle by all four tiles


@pytest.mark.slow
def test_tiled_detector_finds_at_least_what_the_full_frame_finds(vtest):
    """Real yolov10n on PETS frames: tiles add small people and never leave a duplicate of a merged person."""
    import av

    from gridwatch.config import DetectorConfig
    from models import resolve_weights
    from vision import PersonDetector, TiledDetector, TileGrid

    with av.open(str(vtest)) as c:
        frames = [f.to_ndarray(format="bgr24") for i, f in zip(range(200), c.decode(video=0)) if i % 100 == 0]
    plain = PersonDetector(resolve_weights("yolov10n.pt"), DetectorConfig(device="cpu"))
    tiled = TiledDetector(plain, TileGrid(2, 2)).detect(frames)
    for img, full, more in zip(frames, plain.detect(frames), tiled):
        assert len(more) >= len(full) >= 2
        assert (more.xyxy[:, [0, 2]] <= img.shape[1] + 1).all() and (more.xyxy[:, [1, 3]] <= img.shape[0] + 1).all()
        iou = iou_matrix(more.xyxy, more.xyxy)
        np.fill_diagonal(iou, 0)
        assert iou.max(initial=0) < 0.5  # duplicates from overlapping tiles were merged

