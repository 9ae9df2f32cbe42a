"""GPU check of gridwatch's batched detector: correctness, then throughput, on one H100/H200 in < 8 minutes.

Needs only what the GPU image has (torch + CUDA, onnxruntime, numpy, opencv; no
ultralytics, no network) and the bundle from ``bench/gpu/prepare.py``. It loads
gridwatch's own ``vision/batching.py`` (letterbox, dynamic batcher, memory fit)
by path, so the letterbox and batching code measured here is the product's.

Runners: ONNX Runtime's CUDA provider on the ultralytics ONNX export (fp32 with
TF32 off, and fp16), with IO binding on torch tensors; and the TorchScript trace
(fp32, fp16), standing in for the torch backend where ultralytics is absent.

Checks (exit status 1 when one fails; a runner that cannot start is reported, not failed):
  - every runner: a batch equals one frame at a time (fp32: same counts, boxes
    within 1 px; fp16: within tolerance);
  - every runner agrees with the CPU reference made by ``prepare.py``
    (counts within 1 per frame, >= 95% of boxes found again at IoU >= 0.9);
  - letterboxing on the GPU agrees with the CPU letterbox.
Then: network fps per batch size, the batch that fits the free memory, the
district scenario (492 cameras at 2 fps through the dynamic batcher and a
three-stage pipeline: upload+letterbox, network, NMS), the floor (FLOPs per
frame x fps against a measured matmul peak), and the conflict monitor's pose
(yolo11n-pose on real person crops at 256) against detection per camera frame,
with one crop per camera (every camera's zone moving fast: the upper bound),
batched by canvas shape as the inference loop batches it, and one call per crop. Results: JSON to ``--out`` and, as
the last line, to stdout.

    python bench/gpu/run.py --bundle var/gpu-bundle --out "$OUT/inference-gpu.json"
    python bench/gpu/run.py --bundle var/gpu-bundle --smoke     # on a CPU: the same code, tiny sizes
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import queue
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
STRIDES = (8, 16, 32)
T0 = time.monotonic()


def load_batching():
    """gridwatch's vision/batching.py alone (its package would import the whole product)."""
    spec = importlib.util.spec_from_file_location("gw_batching", ROOT / "vision" / "batching.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gw_batching"] = mod
    spec.loader.exec_module(mod)
    return mod


B = load_batching()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- post-processing (as ultralytics' NMS)

def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    try:
        import torchvision

        return torchvision.ops.nms(boxes, scores, iou)
    except Exception:  # no torchvision in the image: IoU matrix on the device, greedy pass on the host
        order = scores.argsort(descending=True)
        b = boxes[order]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        lt = torch.maximum(b[:, None, :2], b[None, :, :2])
        rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(2)
        over = (inter / (area[:, None] + area[None, :] - inter) > iou).cpu().numpy()
        keep, dead = [], np.zeros(len(b), bool)
        for i in range(len(b)):
            if not dead[i]:
                keep.append(i)
                dead |= over[i]
        return order[torch.as_tensor(keep, device=order.device, dtype=torch.long)]


def nms_person(raw: torch.Tensor, conf: float, iou: float, max_det: int = 300) -> list[torch.Tensor]:
    """(B, 4 + classes, anchors) -> per frame (n, 5) xyxy + score of persons, as ultralytics (class = argmax)."""
    out = []
    for p in raw.float():
        scores, cls = p[4:].max(0)
        keep = (scores > conf) & (cls == 0)
        xywh, s = p[:4, keep].T, scores[keep]
        xyxy = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
        k = _nms(xyxy, s, iou)[:max_det]
        out.append(torch.cat([xyxy[k], s[k, None]], 1))
    return out


def to_source(det: torch.Tensor, box) -> np.ndarray:
    d = det.cpu().numpy()
    return np.concatenate([box.to_source(d[:, :4].astype(np.float32)), d[:, 4:5]], 1)


# ---------------------------------------------------------------- pre-processing

def cpu_blob(images, boxes, device) -> torch.Tensor:
    """The product's letterbox on the host, then one pinned upload."""
    t = torch.from_numpy(B.make_blob(images, boxes))
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def gpu_blob(images, boxes, device) -> torch.Tensor:
    """Upload uint8 frames, letterbox on the GPU (bilinear, half-pixel centres like cv2.INTER_LINEAR)."""
    h, w = boxes[0].canvas_hw
    out = torch.full((len(images), 3, h, w), B.PAD_VALUE / 255, dtype=torch.float32, device=device)
    for i, (img, box) in enumerate(zip(images, boxes)):
        t = torch.from_numpy(img)
        t = t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t
        t = t.permute(2, 0, 1).flip(0)[None].float()  # BGR HWC -> RGB CHW
        nw, nh = box.new_wh
        if (nw, nh) != (img.shape[1], img.shape[0]):
            t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False).round_().clamp_(0, 255)
        out[i, :, box.top:box.top + nh, box.left:box.left + nw] = t[0] / 255
    return out


# ---------------------------------------------------------------- runners

def anchors(h: int, w: int) -> int:
    return sum((h // s) * (w // s) for s in STRIDES)


class OrtRunner:
    """ONNX Runtime, CUDA provider, IO binding straight on torch CUDA tensors (no host round trip)."""

    def __init__(self, path: Path, device: torch.device, tf32: bool):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers() and device.type == "cuda":
            raise RuntimeError(f"onnxruntime {ort.__version__} has no CUDA provider: {ort.get_available_providers()}")
        self.device = device
        opts = {"device_id": device.index or 0, "cudnn_conv_algo_search": "HEURISTIC",
                "arena_extend_strategy": "kSameAsRequested", "use_tf32": int(tf32)}
        providers = [("CUDAExecutionProvider", opts)] if device.type == "cuda" else ["CPUExecutionProvider"]
        try:
            self.sess = ort.InferenceSession(str(path), providers=providers)
        except Exception:  # an older onnxruntime without use_tf32
            opts.pop("use_tf32")
            self.sess = ort.InferenceSession(str(path), providers=providers)
        if device.type == "cuda" and "CUDAExecutionProvider" not in self.sess.get_providers():
            raise RuntimeError(f"CUDA provider did not load: {self.sess.get_providers()}")
        self.channels = self.sess.get_outputs()[0].shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return torch.from_numpy(self.sess.run(None, {"images": x.numpy()})[0])
        x = x.contiguous()
        n, _, h, w = x.shape
        out = torch.empty((n, self.channels, anchors(h, w)), dtype=torch.float32, device=self.device)
        io = self.sess.io_binding()
        io.bind_input("images", "cuda", self.device.index or 0, np.float32, tuple(x.shape), x.data_ptr())
        io.bind_output("output0", "cuda", self.device.index or 0, np.float32, tuple(out.shape), out.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # ORT runs on its own stream: the input must be there
        self.sess.run_with_iobinding(io)  # returns when the outputs are written
        return out


class TorchScriptRunner:
    """The TorchScript trace made by prepare.py (torch's own kernels; fp16 like gridwatch's torch backend on CUDA)."""

    def __init__(self, path: Path, device: torch.device, half: bool):
        self.device, self.half = device, half
        self.model = torch.jit.load(str(path), map_location=device).eval()
        if half:
            self.model.half()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x.half() if self.half else x)
        return (y[0] if isinstance(y, (list, tuple)) else y).float()


def seconds_per_call(fn, device, seconds: float) -> float:
    fn()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    sync(device)
    return (time.perf_counter() - t0) / n


def pose_cost(runner, device, crops: list, imgsz: int, cameras: int, detection_fps: float, conf: float,
              seconds: float) -> dict:
    """One crop per camera: pose per crop, batched by canvas shape and one call each, over detection per frame."""
    boxes = [B.Letterbox.fit(c.shape[:2], imgsz) for c in crops]
    pick = [i % len(crops) for i in range(cameras)]
    groups = B.buckets([boxes[i] for i in pick], cameras)
    blobs = [cpu_blob([crops[pick[j]] for j in g], [boxes[pick[j]] for j in g], device) for g in groups]
    singles = [cpu_blob([c], [b], device) for c, b in zip(crops, boxes)]
    with torch.inference_mode():
        found = sum(int((runner(x)[0, 4] > conf).any()) for x in singles)  # the person score row
        batched = seconds_per_call(lambda: [runner(x) for x in blobs], device, seconds) / cameras
        one = seconds_per_call(lambda: [runner(x) for x in singles], device, seconds) / len(singles)
    det_ms = 1000 / detection_fps
    return {"cameras": cameras, "shape_buckets": len(groups), "crops_with_a_person": f"{found}/{len(singles)}",
            "pose_ms_per_crop_batched": round(batched * 1000, 3), "pose_ms_per_crop_one_each": round(one * 1000, 3),
            "detection_ms_per_frame": round(det_ms, 3),
            "pose_over_detection_batched": round(batched * 1000 / det_ms, 3),
            "pose_over_detection_one_each": round(one * 1000 / det_ms, 3)}


# ---------------------------------------------------------------- checks

def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def compare(got: list[np.ndarray], ref: list[np.ndarray], strict: bool) -> dict:
    """strict: same counts and boxes within 1 px; else counts within 1, >= 95% of boxes at IoU >= 0.9."""
    count_diff = max(abs(len(g) - len(r)) for g, r in zip(got, ref))
    matched = total = 0
    max_px = 0.0
    for g, r in zip(got, ref):
        total += len(r)
        if len(g) and len(r):
            m = iou_matrix(r, g)
            best = m.argmax(1)
            ok = m.max(1) >= 0.9
            matched += int(ok.sum())
            if ok.any():
                max_px = max(max_px, float(np.abs(r[ok, :4] - g[best[ok], :4]).max()))
    share = matched / max(total, 1)
    passed = (count_diff == 0 and share == 1.0 and max_px <= 1.0) if strict else (count_diff <= 1 and share >= 0.95)
    return {"ok": bool(passed), "strict": strict, "max_count_diff": count_diff, "boxes": total,
            "matched_share": round(share, 4), "max_px": round(max_px, 3)}


def detect(runner, images, batching, device, conf, iou, imgsz, pre=cpu_blob) -> list[np.ndarray]:
    boxes = [batching.Letterbox.fit(im.shape[:2], imgsz) for im in images]
    out: list[np.ndarray | None] = [None] * len(images)
    for idx in batching.buckets(boxes, 10**6):
        raw = runner(pre([images[i] for i in idx], [boxes[i] for i in idx], device))
        for i, d in zip(idx, nms_person(raw, conf, iou)):
            out[i] = to_source(d, boxes[i])
    return out


# ---------------------------------------------------------------- throughput

def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network_fps(runner, device, shape, batch: int, seconds: float) -> float:
    x = torch.rand((batch, 3, *shape), device=device)
    runner(x)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        runner(x)
        n += batch
    sync(device)
    return n / (time.perf_counter() - t0)


FREE_AT_START: list[int] = []  # device memory free before any runner existed (set in main)


def held_bytes(runner, device, n: int, shape) -> int:
    """Device memory in use at the peak of a batch of ``n``.

    torch: its allocator's peak (freed blocks go back to its cache). ONNX Runtime:
    its arena only grows (extend strategy kSameAsRequested), so what the device lost
    since the start is its peak (plus the other runners' weights: a fixed part).
    """
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    runner(torch.zeros((n, 3, *shape), device=device))
    sync(device)
    if isinstance(runner, TorchScriptRunner):
        return torch.cuda.max_memory_allocated(device)
    return FREE_AT_START[0] - torch.cuda.mem_get_info(device)[0]


def memory_per_frame(runner, device, shape, lo: int = 32, hi: int = 96) -> dict:
    """Fixed + per-frame device memory of a runner, and the largest batch that fits the device."""
    if device.type != "cuda":
        return {}
    a, b = held_bytes(runner, device, lo, shape), held_bytes(runner, device, hi, shape)
    per_frame = max((b - a) // (hi - lo), 1)
    fixed = max(a - lo * per_frame, 0)
    fits = B.fit_batch_to_memory(4096, FREE_AT_START[0], fixed, per_frame)
    return {"per_frame_mb": round(per_frame / 2**20, 2), "fixed_mb": round(fixed / 2**20, 1),
            "free_at_start_gb": round(FREE_AT_START[0] / 2**30, 1), "fits_batch": fits, "measured_at": [lo, hi]}


@dataclass
class Frame:
    camera_id: str
    image: np.ndarray
    ts: float
    seq: int


class Slot:
    """Newest frame only, as streams.FrameSlot (not imported: it needs PyAV)."""

    def __init__(self, wake: threading.Event):
        self._lock, self._frame, self._wake = threading.Lock(), None, wake

    def put(self, f: Frame) -> None:
        with self._lock:
            self._frame = f
        self._wake.set()

    def take(self):
        with self._lock:
            f, self._frame = self._frame, None
            return f


def district(runner, device, images, cameras: int, fps: float, seconds: float, max_batch: int,
             max_wait_s: float, conf: float, iou: float, imgsz: int) -> dict:
    """Cameras at ``fps`` through the dynamic batcher and a three-stage pipeline (as gridwatch's InferenceLoop)."""
    wake = threading.Event()
    slots = {f"cam-{i:03d}": Slot(wake) for i in range(cameras)}
    batcher = B.DynamicBatcher(slots, wake, B.BatchPolicy(max_batch, max_wait_s, 2.0))
    stop = threading.Event()
    ahead = threading.Semaphore(1)
    q_net: queue.Queue = queue.Queue()
    q_post: queue.Queue = queue.Queue(maxsize=1)
    lat: list[float] = []
    done = [0, 0]  # frames, batches

    def feed():
        seq = 0
        ids = list(slots)
        while not stop.is_set():
            t = time.time()
            for k, cid in enumerate(ids):  # cameras spread over the period, as real ones are
                slots[cid].put(Frame(cid, images[(seq + k) % len(images)], time.time(), seq))
                if k % 50 == 49:
                    time.sleep(max(0.0, (t + (k + 1) / len(ids) / fps) - time.time()))
            seq += 1
            stop.wait(max(0.0, t + 1 / fps - time.time()))

    def net():
        while (item := q_net.get()) is not None:
            ahead.release()
            frames, work = item
            q_post.put((frames, [(idx, bx, runner(x)) for idx, bx, x in work]))
        q_post.put(None)

    def post():
        while (item := q_post.get()) is not None:
            frames, work = item
            for idx, bx, raw in work:
                for i, d in zip(idx, nms_person(raw, conf, iou)):
                    to_source(d, bx[i])
            now = time.time()
            lat.extend(now - f.ts for f in frames)
            done[0] += len(frames)
            done[1] += 1

    threads = [threading.Thread(target=f, daemon=True) for f in (feed, net, post)]
    for t in threads:
        t.start()
    t_start, measured_from = time.perf_counter(), None
    n0 = b0 = 0
    while time.perf_counter() - t_start < seconds + 2:
        if measured_from is None and time.perf_counter() - t_start > 2:  # 2 s warm-up
            measured_from, n0, b0 = time.perf_counter(), done[0], done[1]
            lat.clear()
        if not ahead.acquire(timeout=0.5):
            continue
        frames = batcher.next_batch(stop)
        boxes = [B.Letterbox.fit(f.image.shape[:2], imgsz) for f in frames]
        work = [(idx, boxes, gpu_blob([frames[i].image for i in idx], [boxes[i] for i in idx], device))
                for idx in B.buckets(boxes, max_batch)]
        q_net.put((frames, work))
    stop.set()
    wall = time.perf_counter() - measured_from
    n, b = done[0] - n0, done[1] - b0
    q_net.put(None)
    for t in threads[1:]:
        t.join(30)
    lat.sort()
    pct = lambda q: round(1000 * lat[min(int(len(lat) * q), len(lat) - 1)], 1) if lat else None  # noqa: E731
    return {"cameras": cameras, "camera_fps": fps, "offered_fps": cameras * fps, "achieved_fps": round(n / wall, 1),
            "mean_batch": round(n / max(b, 1), 1), "latency_p50_ms": pct(0.5), "latency_p95_ms": pct(0.95),
            "stale_dropped": batcher.stats.stale, "max_batch": max_batch, "max_wait_ms": 1000 * max_wait_s}


def peak_tflops(device, seconds: float, n: int) -> dict:
    out = {}
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)
        sync(device)
        best, t_end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            for _ in range(5):
                torch.mm(a, b)
            sync(device)
            best = min(best, (time.perf_counter() - t) / 5)
        out[name] = round(2 * n**3 / best / 1e12, 4)
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "var" / "gpu-bundle")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="run on the CPU with tiny sizes (checks the script itself)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop measuring (not checking) after this")
    args = ap.parse_args()

    smoke = args.smoke
    if not smoke and not torch.cuda.is_available():
        print("no CUDA device; use --smoke to run this script on a CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu" if smoke else "cuda:0")
    try:
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls") and not smoke:
            ort.preload_dlls()  # CUDA/cuDNN libraries of the installed torch/nvidia wheels
        ort_info = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except Exception as err:  # noqa: BLE001
        ort_info = {"error": f"{type(err).__name__}: {err}"}
    if device.type == "cuda":
        FREE_AT_START.append(torch.cuda.mem_get_info(device)[0])
    meta = json.loads((args.bundle / "meta.json").read_text())
    conf, iou, imgsz = meta["confidence"], meta["iou"], meta["imgsz"]
    npz = np.load(args.bundle / "frames.npz")
    images = [npz[k] for k in sorted(npz.files, key=lambda k: int(k.split("_")[1]))]
    reference = [np.concatenate([np.asarray(r["xyxy"], np.float32).reshape(-1, 4),
                                 np.asarray(r["confidence"], np.float32).reshape(-1, 1)], 1)
                 for r in json.loads((args.bundle / "reference.json").read_text())]
    if smoke:
        images, reference = images[::4], reference[::4]
    env = {"device": torch.cuda.get_device_name(0) if not smoke else f"CPU ({platform.machine()}, smoke)",
           "torch": torch.__version__, "cuda": torch.version.cuda, "onnxruntime": ort_info,
           "python": platform.python_version(), "frames": len(images), "bundle": meta}
    log(f"{env['device']}; torch {torch.__version__}; onnxruntime {ort_info}")

    makers = {
        "ort-fp32": lambda: OrtRunner(args.bundle / "model.onnx", device, tf32=False),
        "ort-fp16": lambda: OrtRunner(args.bundle / "model-fp16.onnx", device, tf32=False),
        "torchscript-fp32": lambda: TorchScriptRunner(args.bundle / "model.torchscript", device, half=False),
        "torchscript-fp16": lambda: TorchScriptRunner(args.bundle / "model.torchscript", device, half=True),
    }
    runners, checks, unavailable = {}, {}, {}
    for name, make in makers.items():
        try:
            runners[name] = make()
            log(f"{name}: ready")
        except Exception as err:  # noqa: BLE001
            unavailable[name] = f"{type(err).__name__}: {err}"[:500]
            log(f"{name}: unavailable: {unavailable[name]}")

    # ---- correctness
    for name, r in runners.items():
        strict = name.endswith("fp32")
        try:
            single = [detect(r, [im], B, device, conf, iou, imgsz)[0] for im in images]
            batched = detect(r, images, B, device, conf, iou, imgsz)
            checks[f"{name}: batch == one frame"] = compare(batched, single, strict)
            checks[f"{name}: agrees with CPU reference"] = compare(single, reference, strict=False)
        except Exception as err:  # noqa: BLE001
            checks[f"{name}: ran"] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:500]}
        log(f"{name}: " + ", ".join(f"{k.split(': ')[1]} {'ok' if v['ok'] else 'FAILED'}"
                                    for k, v in checks.items() if k.startswith(name)))
    first = next((n for n in ("ort-fp32", "torchscript-fp32") if n in runners), None)
    if first:
        on_gpu = detect(runners[first], images, B, device, conf, iou, imgsz, pre=gpu_blob)
        on_cpu = detect(runners[first], images, B, device, conf, iou, imgsz, pre=cpu_blob)
        checks["letterbox on the device agrees with the CPU letterbox"] = compare(on_gpu, on_cpu, strict=False)
    if not runners:
        checks["some runner ran on the device"] = {"ok": False, "unavailable": unavailable}

    # ---- throughput (stops measuring when the budget is spent; the checks above always ran)
    def time_left() -> bool:
        return time.monotonic() - T0 < args.budget_s

    shape = tuple(meta["shapes"][0])  # the 16:9 canvas (384x640) when the plaza clip is in the bundle
    sweep = [1, 2] if smoke else [1, 8, 32, 64, 128, 256]
    secs = 0.3 if smoke else 1.5
    network, memory = {}, {}
    for name, r in runners.items():
        if not all(v["ok"] for k, v in checks.items() if k.startswith(name)):
            continue  # only correct runners are worth timing
        memory[name] = memory_per_frame(r, device, shape) if time_left() else {}
        network[name] = {}
        for b in sweep:
            if not time_left():
                break
            try:
                network[name][b] = round(network_fps(r, device, shape, b, secs), 1)
            except Exception as err:  # noqa: BLE001  (out of memory at a large batch: that is the answer)
                network[name][b] = f"{type(err).__name__}: {str(err)[:200]}"
                break
        log(f"{name}: network fps by batch {network[name]}; memory {memory[name]}")

    def best_batch(name: str) -> tuple[int, float]:
        ok = {b: v for b, v in network.get(name, {}).items() if isinstance(v, float)}
        return max(ok.items(), key=lambda kv: kv[1]) if ok else (1, 0.0)

    fastest = max(network, key=lambda n: best_batch(n)[1]) if network else None
    scenarios = []
    if fastest and time_left():
        r = runners[fastest]
        fit = memory.get(fastest, {}).get("fits_batch", 64)
        mb = min(best_batch(fastest)[0], fit, 8 if smoke else 256)
        for cams, fps in ([(6, 2.0)] if smoke else [(492, 2.0), (492, 10.0)]):
            if not time_left():
                break
            scenarios.append(district(r, device, images, cams, fps, 2.0 if smoke else 10.0, mb, 0.02,
                                      conf, iou, imgsz) | {"runner": fastest})
            log(f"district: {scenarios[-1]}")
    pose = {}
    if fastest and (args.bundle / "pose_crops.npz").exists() and time_left():
        z = np.load(args.bundle / "pose_crops.npz")
        crops = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
        try:
            pose_runner = OrtRunner(args.bundle / "pose-fp16.onnx", device, tf32=False)
            fit = memory.get(fastest, {}).get("fits_batch", 64)
            cams = min(best_batch(fastest)[0], fit, 8 if smoke else 256)
            pose = pose_cost(pose_runner, device, crops, meta["pose"]["imgsz"], cams, best_batch(fastest)[1], conf,
                             0.3 if smoke else 1.5) | {"runner": "ort-fp16", "detection_runner": fastest}
            checks["pose finds a person in most person crops"] = {
                "ok": int(pose["crops_with_a_person"].split("/")[0]) >= 0.8 * len(crops),
                "found": pose["crops_with_a_person"]}
        except Exception as err:  # noqa: BLE001
            pose = {"error": f"{type(err).__name__}: {err}"[:500]}
        log(f"pose: {pose}")
    peak = peak_tflops(device, 0.3 if smoke else 1.5, 512 if smoke else 8192) if time_left() else {}
    gflops = statistics.mean(meta["gflops_per_frame"].values())
    floor = {}
    if fastest and peak.get("fp16" if fastest.endswith("fp16") else "fp32"):
        fps = best_batch(fastest)[1]
        use = "fp16" if fastest.endswith("fp16") else "fp32"
        floor = {"runner": fastest, "gflops_per_frame": round(gflops, 2), "network_fps": fps,
                 "achieved_tflops": round(gflops * fps / 1000, 2), "peak_used": use, "peak_tflops": peak[use],
                 "share_of_peak": round(gflops * fps / 1000 / peak[use], 3),
                 "fps_ceiling_at_peak": round(peak[use] * 1000 / gflops, 0)}

    ok = bool(runners) and all(v["ok"] for v in checks.values())
    result = {"ok": ok, "env": env, "unavailable": unavailable, "checks": checks, "network_fps": network,
              "network_input": list(shape), "memory": memory, "district": scenarios, "peak_tflops": peak,
              "floor": floor, "pose": pose, "elapsed_s": round(time.monotonic() - T0, 1)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in checks.items():
        log(f"check {'ok    ' if v['ok'] else 'FAILED'} {k}: {v}")
    summary = {"ok": ok, "device": env["device"], "model": meta["model"], "imgsz": imgsz,
               "fastest": fastest, "best": dict(zip(("batch", "fps"), best_batch(fastest))) if fastest else None,
               "district": scenarios, "floor": floor, "pose": pose, "failed": [k for k, v in checks.items() if not v["ok"]]}
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
