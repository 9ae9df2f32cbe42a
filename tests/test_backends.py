"""Every installed backend on real footage: a batch equals one frame at a time, and it agrees with torch.

Torch itself must give what ultralytics' own ``predict`` gives (the benchmark's
baseline). Exports are cached under var/cache/exports, so only the first run pays
for them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_detector import frames

from gridwatch.config import DetectorConfig
from models import export_model, export_path, resolve_weights
from vision.backends import available_backends
from vision.detections import Detections
from vision.detections import iou_matrix as iou
from vision.detector import PersonDetector

EXPORTS = Path(__file__).resolve().parents[1] / "var" / "cache" / "exports"
BACKENDS = available_backends("cpu")
_detectors: dict[str, PersonDetector] = {}


def detector(backend: str) -> PersonDetector:
    if backend not in _detectors:
        cfg = DetectorConfig(imgsz=640, device="cpu", backend=backend, max_batch=8)
        _detectors[backend] = PersonDetector(resolve_weights("yolov10n.pt"), cfg, export_root=EXPORTS)
    return _detectors[backend]


@pytest.fixture(scope="module")
def images(vtest) -> list[np.ndarray]:
    """Real frames in three shapes (768x576, and two rescaled to 16:9 1280x720 and 480x360), so batches mix."""
    base = frames(vtest, every=25, limit=6)
    return base[:4] + [cv2.resize(base[4], (1280, 720)), cv2.resize(base[5], (480, 360))]


def sorted_boxes(d: Detections) -> np.ndarray:
    return d.xyxy[np.lexsort(d.xyxy.T[::-1])]


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_equals_single(backend, images):
    det = detector(backend)
    batched = det.detect(images)
    single = [det.detect([im])[0] for im in images]
    assert len(batched) == len(images)
    for b, s in zip(batched, single):
        assert len(b) == len(s) and len(b) >= 2
        assert np.abs(sorted_boxes(b) - sorted_boxes(s)).max() <= 1.0
        assert set(b.class_id.tolist()) == {0}


def test_torch_equals_ultralytics_predict(images):
    """The reference backend is what ultralytics' predict finds (same letterbox, same NMS)."""
    from ultralytics import YOLO

    model = YOLO(str(resolve_weights("yolov10n.pt")))
    ours = detector("torch").detect(images)
    for im, d in zip(images, ours):
        r = model.predict(im, imgsz=640, conf=0.25, classes=[0], device="cpu", verbose=False)[0].boxes
        ref = r.xyxy.numpy()
        assert len(d) == len(ref)
        assert np.abs(sorted_boxes(d) - ref[np.lexsort(ref.T[::-1])]).max() <= 1.0


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch"])
def test_agrees_with_torch(backend, images):
    """Same people within tolerance: OpenVINO may compute in bf16, so boxes move by a pixel or two."""
    matched = total = 0
    for d, ref in zip(detector(backend).detect(images), detector("torch").detect(images)):
        assert abs(len(d) - len(ref)) <= 1
        total += len(ref)
        if len(d) and len(ref):
            best = iou(ref.xyxy, d.xyxy).max(axis=1)
            matched += int((best >= 0.9).sum())
    assert total >= 20
    assert matched / total >= 0.95, f"{matched}/{total} torch boxes found again at IoU 0.9"


def test_export_is_cached_by_checksum(images):
    """A second export is the cached file, untouched, under the weights' SHA-256."""
    if "onnxruntime" not in BACKENDS:
        pytest.skip("onnxruntime is not installed")
    weights = resolve_weights("yolov10n.pt")
    first = export_model(weights, "onnx", EXPORTS)
    mtime = first.stat().st_mtime_ns
    again = export_model(weights, "onnx", EXPORTS)
    assert again == first and again.stat().st_mtime_ns == mtime
    assert first.parent == export_path(weights, "onnx", EXPORTS)
    assert "55e1563d55db0a2b" in str(first)  # the known checksum of yolov10n.pt


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA device here (GPU paths run only there)")
def test_cuda_batch_fits_memory_and_agrees_with_cpu(images):
    """On a GPU: the batch is lowered to what memory holds, a batch equals one frame, FP16 agrees with the CPU."""
    det = PersonDetector(resolve_weights("yolov10n.pt"), DetectorConfig(device="cuda:0", backend="auto", max_batch=256),
                         export_root=EXPORTS)
    assert det.backend.name == "torch" and 1 <= det.batch_limit <= 256
    batched = det.detect(images)
    for b, s in zip(batched, (det.detect([im])[0] for im in images)):
        assert abs(len(b) - len(s)) <= 1
    matched = total = 0
    for d, ref in zip(batched, detector("torch").detect(images)):
        total += len(ref)
        if len(d) and len(ref):
            matched += int((iou(ref.xyxy, d.xyxy).max(axis=1) >= 0.9).sum())
    assert matched / total >= 0.95


@pytest.fixture(scope="module")
def person_crops(images) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """(frame, crop window) around the three most confident people of each frame, as the conflict observer crops."""
    from vision.conflict.observe import crop_window

    out = []
    for im, d in zip(images, detector("torch").detect(images)):
        for i in np.argsort(-d.confidence)[:3]:
            out.append((im, crop_window(d.xyxy[i:i + 1], (im.shape[1], im.shape[0]))))
    return out


def test_crop_pose_is_ultralytics_pose_on_the_inference_core(person_crops):
    """The conflict monitor's pose runs on PersonDetector: on torch it finds what ultralytics' pose predict finds,
    boxes and keypoints, back in frame pixels."""
    from ultralytics import YOLO

    from vision.conflict.observe import CropPose

    weights = resolve_weights("yolo11n-pose.pt")
    ours, model = CropPose(weights, backend="torch", export_dir=EXPORTS), YOLO(str(weights))
    people = 0
    for im, (x1, y1, x2, y2) in person_crops:
        boxes, kp, conf = ours.run(im, [(x1, y1, x2, y2)])[0]
        r = model.predict(np.ascontiguousarray(im[y1:y2, x1:x2]), imgsz=ours.imgsz, conf=0.2, classes=[0],
                          device="cpu", verbose=False)[0]
        assert len(boxes) == len(r.boxes)
        if not len(boxes):
            continue
        people += len(boxes)
        order = np.argsort(-conf)
        ref_order = np.argsort(-r.boxes.conf.numpy())
        shift = np.array([x1, y1], np.float32)
        assert np.abs(boxes[order] - r.boxes.xyxy.numpy()[ref_order] - np.tile(shift, 2)).max() <= 1.0
        ref_kp = r.keypoints.data.numpy()[ref_order]
        assert np.abs(kp[order][..., :2] - ref_kp[..., :2] - shift).max() <= 1.0
        assert np.abs(kp[order][..., 2] - ref_kp[..., 2]).max() <= 0.01
    assert people >= 10  # the crops hold people: the comparison above is not vacuous


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch"])
def test_crop_pose_agrees_with_torch(backend, person_crops):
    """The other runtimes find the same people and put their joints within a few pixels of torch's."""
    from vision.conflict.observe import CropPose

    weights = resolve_weights("yolo11n-pose.pt")
    ours, ref = CropPose(weights, backend=backend, export_dir=EXPORTS), CropPose(weights, backend="torch")
    matched = total = 0
    for im, window in person_crops:
        (b, kp, _), (rb, rkp, _) = ours.run(im, [window])[0], ref.run(im, [window])[0]
        total += len(rb)
        if len(b) and len(rb):
            m = iou(rb, b)
            for i, j in enumerate(m.argmax(axis=1)):
                if m[i, j] >= 0.9:
                    matched += 1
                    seen = rkp[i, :, 2] > 0.5
                    assert np.abs(kp[j, seen, :2] - rkp[i, seen, :2]).max(initial=0) <= 4.0
    assert total >= 10
    assert matched / total >= 0.9, f"{matched}/{total} torch people found again at IoU 0.9"
