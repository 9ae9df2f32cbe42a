"""bf16 against fp32: the shipped detector's accuracy, box agreement and network speed in both, on one CPU.

OpenVINO, gridwatch's default CPU backend, computes in bf16 where the CPU has
native bf16 (AVX512-BF16 or AMX) and in fp32 elsewhere (e.g. AVX2-only), so the
same release gives slightly different detections on different machines. On a
CPU with native bf16 this runs OpenVINO both ways on the same frames (PETS S2L1
with its ground truth, every frame by default, batches of 8, the two
precisions alternating batch by batch so the neighbours' load hits both alike):
recall and precision at IoU 0.5 (bench/eval.py's matching, raw and with the
perspective check), how many boxes of one are found again in the other, and
network frames per second. Without native bf16 only fp32 runs.

    python bench/precision.py              # ~2 minutes here; writes bench/results/precision.json; last line: JSON
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench import eval as E
from bench.machine import cpu_record, describe, native_bf16
from vision.detections import iou_matrix

ROOT = Path(__file__).resolve().parents[1]
EXPORTS = ROOT / "var" / "cache" / "exports"
BATCH = 8


def detector_backends(confidence: float):
    """The shipped detector on OpenVINO, and OpenVINO backends by the precision they really compile to."""
    from gridwatch.config import DetectorConfig
    from models import resolve_weights
    from models.export import export_model
    from vision.backends.openvino_backend import OpenVinoBackend
    from vision.detector import PersonDetector

    cfg = DetectorConfig(backend="openvino", device="cpu", confidence=confidence, max_batch=BATCH)
    det = PersonDetector(resolve_weights(cfg.model), cfg, export_root=EXPORTS)
    backends = {det.backend.precision: det.backend}
    if native_bf16() and "fp32" not in backends:
        backends["fp32"] = OpenVinoBackend(export_model(det.weights, "openvino", EXPORTS), "cpu", precision="f32")
    return det, backends


def run(det, backends: dict, frames: list[tuple[int, np.ndarray]]) -> tuple[dict, dict]:
    """Detections per precision, and the network's seconds per batch: same batches, the order alternating."""
    dets: dict[str, list] = {p: [] for p in backends}
    seconds: dict[str, list[float]] = {p: [] for p in backends}
    names = list(backends)
    for k in range(0, len(frames), BATCH):
        prepared = det.prepare([img for _, img in frames[k:k + BATCH]])
        for p in (names if (k // BATCH) % 2 == 0 else names[::-1]):
            det.backend = backends[p]  # the rest of the detector (letterbox, NMS) is shared
            t = time.perf_counter()
            inferred = det.infer(prepared)
            seconds[p].append(time.perf_counter() - t)
            dets[p] += [(d.xyxy, d.confidence) for d in det.finish(inferred)]
    return dets, seconds


def agreement(a: list, b: list, conf: float) -> dict:
    """How many of ``a``'s boxes (at ``conf``) ``b`` has again at IoU >= 0.9, and how far their corners moved."""
    found = total = frames_differ = 0
    shifts: list[float] = []
    for (xa, ca), (xb, cb) in zip(a, b):
        xa, xb = xa[ca >= conf], xb[cb >= conf]
        total += len(xa)
        frames_differ += len(xa) != len(xb)
        if len(xa) and len(xb):
            iou = iou_matrix(xa, xb)
            best = iou.argmax(1)
            ok = iou[np.arange(len(xa)), best] >= 0.9
            found += int(ok.sum())
            shifts += np.abs(xa[ok] - xb[best[ok]]).max(1).tolist()
    return {"boxes": total, "found_again_iou_0.9": round(found / max(total, 1), 4),
            "frames_with_other_count": frames_differ, "frames": len(a),
            "corner_shift_px_p50": round(statistics.median(shifts), 3) if shifts else None,
            "corner_shift_px_max": round(max(shifts), 2) if shifts else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "pets-s2l1")
    ap.add_argument("--every", type=int, default=1, help="every n-th frame of the video")
    args = ap.parse_args()
    video, gt_file = args.data / "s2l1_480x360.avi", args.data / "gt.csv"
    if not video.is_file():
        sys.exit(f"no {video}: the PETS S2L1 folder of ../shared/data (or --data)")
    _, conf, _ = E.shipped_detect_setup()
    det, backends = detector_backends(conf)
    frames = [(i, img) for i, _, img in E.video_frames(video, args.every)]
    dets, seconds = run(det, backends, frames)
    index = np.array([i for i, _ in frames])
    gt = E.load_boxes_gt(gt_file)
    wh = frames[0][1].shape[1::-1]
    rows = {p: {"network_fps_batch8": round(BATCH / statistics.median(seconds[p]), 1),
                "raw": E.score_detections(dets[p], index, gt, conf),
                "shipped": E.score_detections(E.perspective_checked(dets[p], conf, wh), index, gt, 0.0)}
            for p in backends}
    result = {"machine": describe(), "cpu": cpu_record(), "backend": "openvino", "video": video.name,
              "frames": len(frames), "every": args.every, "confidence": conf, "by_precision": rows}
    if {"bf16", "fp32"} <= set(dets):
        result["bf16_against_fp32"] = agreement(dets["fp32"], dets["bf16"], conf)
    else:
        result["not_measured"] = "bf16: this CPU has no native bf16, so OpenVINO computes in fp32 only"
    out = ROOT / "bench" / "results" / "precision.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
