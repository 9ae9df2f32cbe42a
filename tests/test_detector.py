"""The detector on real footage: one batch equals one frame at a time; people are found."""
import av
import numpy as np
import pytest

from gridwatch.config import DetectorConfig
from models import resolve_weights
from vision import PersonDetector
from vision.detections import iou_matrix


@pytest.fixture(scope="module")
def detector():
    return PersonDetector(resolve_weights("yolov10n.pt"), DetectorConfig(imgsz=640, device="cpu"))


def frames(path, every: int, limit: int) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(f.to_ndarray(format="bgr24"))
            if len(out) == limit:
                break
    return out


def test_one_batch_equals_one_frame_at_a_time(detector, vtest):
    images = frames(vtest, every=25, limit=6)
    batched = detector.detect(images)
    single = [detector.detect([im])[0] for im in images]
    for b, s in zip(batched, single):
        assert len(b) == len(s) and len(b) >= 2
        order_b, order_s = np.lexsort(b.xyxy.T[::-1]), np.lexsort(s.xyxy.T[::-1])
        assert np.abs(b.xyxy[order_b] - s.xyxy[order_s]).max() <= 1.0
        assert set(b.class_id.tolist()) == {0}  # persons only


def test_finds_pets_pedestrians(detector, shared_data):
    """PETS S2L1 (ground truth boxes): recall at IoU 0.5 on every 20th frame."""
    import csv

    folder = shared_data / "pets-s2l1"
    gt: dict[int, list] = {}
    with open(folder / "gt.csv") as f:
        for row in csv.DictReader(f):
            gt.setdefault(int(row["frame"]), []).append([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
    images = frames(folder / "s2l1_480x360.avi", every=20, limit=40)
    hits = total = 0
    for k, dets in enumerate(detector.detect(images)):
        truth = np.asarray(gt.get(k * 20, []), np.float32).reshape(-1, 4)
        total += len(truth)
        if len(truth) and len(dets):
            hits += int((iou_matrix(truth, dets.xyxy).max(axis=1) >= 0.5).sum())
    assert total > 100
    assert hits / total >= 0.85, f"recall {hits / total:.2f}"
