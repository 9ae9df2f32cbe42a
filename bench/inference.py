"""Inference benchmark: gridwatch's batched, pipelined detector loop against naive ultralytics predict.

Simulated cameras hold real footage (``../shared/data``: the 1280x720 plaza and
the 480x360 PETS walkway; else Debian's 768x576 vtest), decoded beforehand so
only inference is measured. Each camera offers a new frame every 40 ms, far more
than the CPU can analyse, so both sides run saturated.

- baseline: ``YOLO(weights).predict(frame)`` on one frame at a time, camera after camera;
- gridwatch: the real ``InferenceLoop`` (dynamic batcher, three-stage pipeline,
  a ``CameraAnalyser`` per camera: tracking included) on ``PersonDetector``.

Both run in this process, interleaved round by round (the machine is shared and
noisy); fps are medians over rounds. The floor line puts the achieved FLOP rate
(model FLOPs per frame x fps) against the device's peak, measured with a large
matmul in fp32, and in bf16 only where the CPU has native bf16 (AVX512-BF16 or
AMX): that is where OpenVINO computes in bf16, and elsewhere a bf16 matmul is
emulated and takes minutes. Every row records the precision its backend really
ran in, and the summary the CPU's features (``bench.machine``).

    python bench/inference.py --quick        # < 1 minute; last line: JSON
    python bench/inference.py                # more rounds, every backend, a batch sweep (docs/inference.md)

Results go to bench/results/inference[-quick].json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from bench.machine import cpu_record, describe, native_bf16

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_OFFLINE", "1")

SHARED = ROOT.parent / "shared" / "data"
EXPORTS = ROOT / "var" / "cache" / "exports"
CAMERA_PERIOD_S = 0.04  # each simulated camera offers a frame every 40 ms (25 fps)


def footage(per_clip: int) -> tuple[list[str], dict[str, list]]:
    """Decoded BGR frames per clip: the shared footage when present, else vtest."""
    import av

    clips = [SHARED / "clips" / "plaza_overhead.avi", SHARED / "pets-s2l1" / "s2l1_480x360.avi"]
    clips = [c for c in clips if c.is_file()]
    if not clips:
        from gridwatch.demo import fetch_vtest

        vt = fetch_vtest(ROOT / ".cache" / "footage")
        if vt is None:
            sys.exit("no footage: neither ../shared/data nor vtest.avi (apt-get download opencv-doc)")
        clips = [vt]
    out = {}
    for clip in clips:
        imgs = []
        with av.open(str(clip)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i % 3 == 0:
                    imgs.append(f.to_ndarray(format="bgr24"))
                if len(imgs) == per_clip:
                    break
        out[clip.name] = imgs
    return [c.name for c in clips], out


def machine() -> str:
    import torch

    return describe(torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)


def peak_dtypes() -> dict[str, object]:
    """The precisions worth a peak here: fp32, and bf16 where the CPU computes it natively.

    Without native bf16 nothing runs in bf16 (OpenVINO then picks f32), and torch's
    emulated bf16 matmul takes minutes per call on such a CPU (measured on an AVX2-only EPYC).
    """
    import torch

    return {"fp32": torch.float32, **({"bf16": torch.bfloat16} if native_bf16() else {})}


def peak_gflops(seconds: float = 1.5) -> dict[str, float]:
    """Measured peak of this device: GFLOP/s of the fastest 2048^3 matmul with all cores, per ``peak_dtypes``.

    The fastest of many runs, because neighbours' load only ever slows a run down.
    """
    import torch

    out = {}
    n = 2048
    for name, dtype in peak_dtypes().items():
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        runs, t0 = 0, time.perf_counter()
        best = float("inf")
        while time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t)
            runs += 1
        out[name] = 2 * n**3 / best / 1e9
    return out


def gflops_per_frame(weights: Path, shapes: list[tuple[int, int]]) -> float:
    """Model GFLOPs per frame at each camera's letterboxed input shape (ultralytics' thop count), averaged."""
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops

    model = YOLO(str(weights)).model.fuse(verbose=False)  # as it runs: conv+bn fused (ultralytics' own count)
    return statistics.mean(get_flops(model, list(s)) for s in shapes)


class Cameras:
    """N simulated cameras: each puts its clip's next frame into its slot every CAMERA_PERIOD_S."""

    def __init__(self, n: int, clips: list[str], frames: dict[str, list]):
        from streams import FrameSlot

        self.wake = threading.Event()
        self.ids = [f"cam-{i:03d}" for i in range(n)]
        self.clip_of = {cid: frames[clips[i % len(clips)]] for i, cid in enumerate(self.ids)}
        self.slots = {cid: FrameSlot(self.wake) for cid in self.ids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from streams import Frame

        seq = 0
        while not self._stop.is_set():
            now = time.time()
            for k, cid in enumerate(self.ids):
                imgs = self.clip_of[cid]
                self.slots[cid].put(Frame(cid, imgs[(seq + k) % len(imgs)], now, seq))
            seq += 1
            self._stop.wait(CAMERA_PERIOD_S)

    def __enter__(self) -> "Cameras":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_baseline(model, cams: Cameras, imgsz: int, conf: float, seconds: float) -> dict:
    """Naive: predict on one frame at a time, camera after camera (newest frame of each)."""
    n, lat = 0, []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for cid in cams.ids:
            f = cams.slots[cid].take()
            if f is None:
                continue
            model.predict(f.image, imgsz=imgsz, conf=conf, classes=[0], device="cpu", verbose=False)
            lat.append(time.time() - f.ts)
            n += 1
    wall = time.perf_counter() - t0
    return {"fps": n / wall, "frames": n, "latency_p50_ms": 1000 * statistics.median(lat) if lat else None}


def run_gridwatch(detector, cams: Cameras, policy, seconds: float, warmup: float = 1.0) -> dict:
    from gridwatch.config import parse_config
    from gridwatch.runtime import InferenceLoop
    from vision.analyser import CameraAnalyser

    # the URLs are never opened (the frames come from Cameras); rtsp:// passes the config's URL check as it is
    cfg = parse_config({"grids": [{"id": "g", "name": "G"}],
                        "cameras": [{"id": c, "url": f"rtsp://127.0.0.1/{c}", "grid": "g", "lat": 0, "lon": 0,
                                     "fps": 25} for c in cams.ids]})
    analysers = {c.id: CameraAnalyser(c) for c in cfg.cameras}
    loop = InferenceLoop(cams.slots, cams.wake, detector, analysers, lambda a: None, policy)
    loop.start()
    time.sleep(warmup)
    n0, t0 = loop.frames, time.perf_counter()
    b0 = loop.batches
    time.sleep(seconds)
    n1, wall, b1 = loop.frames, time.perf_counter() - t0, loop.batches
    stats = loop.stats()
    loop.stop()
    if stats["error"]:
        raise RuntimeError(stats["error"])
    return {"fps": (n1 - n0) / wall, "frames": n1 - n0, "mean_batch": (n1 - n0) / max(b1 - b0, 1),
            "latency_p50_ms": stats["latency_p50_ms"], "latency_p95_ms": stats["latency_p95_ms"],
            "stage_p50_ms": {k: stats[f"{k}_p50_ms"] for k in ("prepare", "infer", "finish")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds of 4 s, the default backend only")
    ap.add_argument("--model", default="yolov10n.pt")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=20.0)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    seconds = args.seconds or (4.0 if args.quick else 10.0)

    from tqdm import tqdm
    from ultralytics import YOLO

    from gridwatch.config import DetectorConfig
    from models import resolve_weights
    from vision.backends import available_backends, choose_backend
    from vision.batching import BatchPolicy, Letterbox
    from vision.detector import PersonDetector

    weights = resolve_weights(args.model)
    clips, frames = footage(per_clip=30)
    shapes = [Letterbox.fit(frames[c][0].shape[:2], args.imgsz).canvas_hw for c in clips]
    main_backend = choose_backend(args.backend, "cpu")
    backends = [main_backend] if args.quick else [main_backend] + [b for b in available_backends("cpu")
                                                                     if b != main_backend]
    batch_sweep = [] if args.quick else [1, 4, 16]
    detectors = {b: PersonDetector(weights, DetectorConfig(model=args.model, imgsz=args.imgsz, device="cpu",
                                                           backend=b, max_batch=64), export_root=EXPORTS)
                 for b in backends}
    baseline_model = YOLO(str(weights))
    policy = BatchPolicy(args.max_batch, args.max_wait_ms / 1000, 5.0)
    variants = [(b, args.max_batch) for b in backends] + [(main_backend, m) for m in batch_sweep
                                                          if m != args.max_batch]
    peak_before = peak_gflops()  # measured before and after the runs; the higher counts
    runs: dict[str, list[dict]] = {"baseline": []}
    with Cameras(args.cameras, clips, frames) as cams:
        run_baseline(baseline_model, cams, args.imgsz, 0.25, 1.0)  # warm-up
        for k in tqdm(range(rounds), desc="rounds (baseline and gridwatch variants, order alternating)",
                      file=sys.stderr):
            order = ["baseline", *variants]
            for v in (order if k % 2 == 0 else order[::-1]):  # alternate, so a drift in load hits both sides
                if v == "baseline":
                    runs["baseline"].append(run_baseline(baseline_model, cams, args.imgsz, 0.25, seconds))
                else:
                    pol = BatchPolicy(v[1], policy.max_wait_s, policy.max_age_s)
                    runs.setdefault(f"{v[0]}@{v[1]}", []).append(run_gridwatch(detectors[v[0]], cams, pol, seconds))
    gflops = gflops_per_frame(weights, shapes)
    peak = {k: max(v, peak_before[k]) for k, v in peak_gflops().items()}

    def med(key: str, field: str = "fps") -> float:
        return statistics.median(r[field] for r in runs[key])

    base_fps = med("baseline")

    def paired(key: str) -> float:
        """Median over rounds of (variant fps / baseline fps in the same round): robust to the neighbours' load."""
        return statistics.median(r["fps"] / b["fps"] for r, b in zip(runs[key], runs["baseline"]))
    precision = {b: getattr(d.backend, "precision", "fp32") for b, d in detectors.items()}  # as compiled here
    table = {}
    for key in runs:
        fps = med(key)
        table[key] = {"fps": round(fps, 2), "ratio": round(paired(key), 2),
                      "precision": "fp32" if key == "baseline" else precision[key.split("@")[0]],
                      "fps_per_round": [round(r["fps"], 2) for r in runs[key]],
                      "latency_p50_ms": round(med(key, "latency_p50_ms"), 1),
                      **({"mean_batch": round(med(key, "mean_batch"), 2),
                          "latency_p95_ms": round(med(key, "latency_p95_ms"), 1),
                          "stage_p50_ms": runs[key][-1]["stage_p50_ms"]} if key != "baseline" else {})}
    head = f"{main_backend}@{args.max_batch}"
    gw_fps = table[head]["fps"]
    peak_name = precision[main_backend] if precision[main_backend] in peak else "fp32"
    peak_used = peak[peak_name]
    summary = {
        "machine": machine(), "cpu": cpu_record(), "model": args.model, "imgsz": args.imgsz,
        "backend": main_backend, "precision": precision[main_backend], "precision_by_backend": precision,
        "input_shapes": {c: list(s) for c, s in zip(clips, shapes)}, "clips": clips,
        "cameras": args.cameras, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
        "rounds": rounds, "seconds_per_run": seconds,
        "baseline": "ultralytics YOLO.predict, one frame at a time, camera after camera (torch fp32)",
        "baseline_fps": round(base_fps, 2), "gridwatch_fps": gw_fps, "speedup": round(paired(head), 2),
        "speedup_is": "median over rounds of gridwatch fps / baseline fps in the same round",
        "gflops_per_frame": round(gflops, 2), "peak_gflops": {k: round(v, 1) for k, v in peak.items()},
        **({} if "bf16" in peak else {"peak_not_measured": "bf16: this CPU has no native bf16 (AVX512-BF16 or "
                                                            "AMX); a bf16 matmul is emulated there, minutes a call"}),
        "floor": {
            "achieved_gflops": round(gflops * gw_fps, 1),
            "share_of_peak": round(gflops * gw_fps / peak_used, 3),
            "peak_used": peak_name,
            "fps_ceiling_at_peak": round(peak_used / gflops, 1),
            "baseline_share_of_fp32_peak": round(gflops * base_fps / peak["fp32"], 3),
        },
    }
    out = {"summary": summary, "runs": table}
    name = "inference-quick.json" if args.quick else "inference.json"
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / name).write_text(json.dumps(out, indent=2) + "\n")
    for key, row in table.items():
        print(f"{key:>18}: {row['fps']:6.2f} fps  x{row['ratio']:.2f}  {row['precision']}  "
              f"p50 {row['latency_p50_ms']} ms"
              + (f"  batch {row['mean_batch']}" if "mean_batch" in row else ""), file=sys.stderr)
    f = summary["floor"]
    print(f"floor: {gflops:.2f} GFLOP/frame x {gw_fps:.1f} fps = {f['achieved_gflops']} GFLOP/s, "
          f"{100 * f['share_of_peak']:.1f}% of the measured {f['peak_used']} peak "
          f"({peak_used:.0f} GFLOP/s; ceiling {f['fps_ceiling_at_peak']} fps)", file=sys.stderr)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
