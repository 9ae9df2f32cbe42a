"""Make the bundle that bench/gpu/run.py needs on a GPU machine without ultralytics or a network.

Runs here, on the CPU: the ultralytics ONNX export (dynamic batch and size, from
the verified weights; plus an FP16 copy), a TorchScript trace (the torch path,
for a GPU image without ultralytics), real frames from the footage, model GFLOPs
per input shape, and reference detections made on this CPU with ONNX Runtime
through ``PersonDetector``, which the GPU results are checked against; and the
conflict monitor's pose model (yolo11n-pose, ONNX fp16) with a real
crop around the most confident person of every frame, to time pose against
detection on the GPU.

    python bench/gpu/prepare.py                   # -> var/gpu-bundle/ (about 42 MB)

then see docs/inference.md ("GPU check") for the command on the GPU machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("YOLO_OFFLINE", "1")

SHARED = ROOT.parent / "shared" / "data"
EXPORTS = ROOT / "var" / "cache" / "exports"


def real_frames(per_clip: int) -> list:
    """Frames of every clip there is (three resolutions when ../shared/data is present)."""
    import av

    from gridwatch.demo import fetch_vtest

    clips = [SHARED / "clips" / "plaza_overhead.avi", SHARED / "pets-s2l1" / "s2l1_480x360.avi",
             fetch_vtest(ROOT / ".cache" / "footage")]
    out = []
    for clip in [c for c in clips if c is not None and Path(c).is_file()]:
        with av.open(str(clip)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i % 7 == 0:
                    out.append(f.to_ndarray(format="bgr24"))
                if len(out) % per_clip == 0 and i % 7 == 0:
                    break
    if not out:
        sys.exit("no footage: neither ../shared/data nor vtest.avi")
    return out


def person_crops(frames: list, detections: list) -> list:
    """Per frame with a person: the crop the conflict monitor would pose, around its most confident person."""
    from vision.conflict.observe import crop_window

    out = []
    for f, d in zip(frames, detections):
        if len(d):
            x1, y1, x2, y2 = crop_window(d.xyxy[[int(d.confidence.argmax())]], (f.shape[1], f.shape[0]))
            out.append(f[y1:y2, x1:x2].copy())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "gpu-bundle")
    ap.add_argument("--model", default="yolov10n.pt")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--frames-per-clip", type=int, default=8)
    args = ap.parse_args()

    import numpy as np
    import onnx
    import torch
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops

    from gridwatch.config import DetectorConfig
    from models import export_model, resolve_weights
    from models.weights import sha256_of
    from vision.batching import Letterbox
    from vision.detector import PersonDetector

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    weights = resolve_weights(args.model)
    onnx_path = export_model(weights, "onnx", EXPORTS, args.imgsz)
    shutil.copyfile(onnx_path, out / "model.onnx")
    half = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    onnx.save(half, str(out / "model-fp16.onnx"))

    model = YOLO(str(weights)).model.fuse(verbose=False).eval()
    head = model.model[-1]
    head.end2end = False  # the one-to-many head + NMS, as every gridwatch backend runs it
    head.export, head.dynamic = True, True  # raw (B, 84, anchors) output; anchors from each input's shape
    with torch.inference_mode():
        traced = torch.jit.trace(model, torch.zeros(1, 3, args.imgsz, args.imgsz), strict=False, check_trace=False)
    traced.save(str(out / "model.torchscript"))

    frames = real_frames(args.frames_per_clip)
    np.savez_compressed(out / "frames.npz", *frames)
    shapes = sorted({Letterbox.fit(f.shape[:2], args.imgsz).canvas_hw for f in frames})
    model = YOLO(str(weights)).model.fuse(verbose=False)
    gflops = {f"{h}x{w}": get_flops(model, [h, w]) for h, w in shapes}

    det = PersonDetector(weights, DetectorConfig(model=args.model, imgsz=args.imgsz, device="cpu",
                                                 backend="onnxruntime"), export_root=EXPORTS)
    found = [det.detect([f])[0] for f in frames]
    reference = [{"xyxy": d.xyxy.round(3).tolist(), "confidence": d.confidence.round(4).tolist()} for d in found]
    meta = {"model": args.model, "weights_sha256": sha256_of(weights), "imgsz": args.imgsz, "confidence": 0.25,
            "iou": 0.7, "frames": len(frames), "shapes": [list(s) for s in shapes], "gflops_per_frame": gflops,
            "reference": "PersonDetector, onnxruntime CPU fp32, one frame at a time",
            "made_with": {"torch": torch.__version__, "ultralytics": __import__("ultralytics").__version__}}
    pose_weights = resolve_weights("yolo11n-pose.pt")
    pose_onnx = export_model(pose_weights, "onnx", EXPORTS)
    onnx.save(convert_float_to_float16(onnx.load(str(pose_onnx)), keep_io_types=True), str(out / "pose-fp16.onnx"))
    crops = person_crops(frames, found)
    np.savez_compressed(out / "pose_crops.npz", *crops)
    meta["pose"] = {"model": "yolo11n-pose.pt", "weights_sha256": sha256_of(pose_weights), "imgsz": 256,
                    "crops": len(crops), "crop": "vision.conflict.observe.crop_window around the frame's most "
                    "confident person, as the conflict monitor crops a close group"}
    (out / "reference.json").write_text(json.dumps(reference))
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    print(f"bundle: {out} ({size:.1f} MB, {len(frames)} frames in shapes {shapes})")


if __name__ == "__main__":
    main()
