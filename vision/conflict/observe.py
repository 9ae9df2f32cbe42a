"""What one frame tells about possible conflict: who is where, their pose, and how their pixels move.

Pose runs only where people stand close together or something moves fast, and
only on the fastest-moving such crop of a frame (it is the costly part), enlarged
to the pose model's input size: in a full surveillance frame yolo11n-pose misses
most small people, in a crop around a close group it finds them. Motion is dense optical flow on a small grey copy of
the frame, read inside each person's box. The training script and the runtime
``ConflictMonitor`` both go through ``Observer`` (one piece of code).

Observing is a generator of steps (``observe_steps``, ``vision.steps``): it yields a
``PoseRequest`` where it needs pose and gets the answer sent back, so the inference
loop can batch the pose of a whole batch of cameras (``steps.drive_all``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..detections import Detections, assign, iou_matrix
from ..steps import PoseRequest, PoseResults, Steps, drive

N_KP = 17  # COCO keypoints
CLOSE_H = 1.5  # two people are "close" when their centres are within this many mean body heights
FLOW_WIDTH = 320  # optical flow runs on a grey copy this wide: cheap, and enough for body-sized motion
MOTION_STATS: tuple[str, ...] = (
    "speed_p50", "speed_p90", "speed_p99", "top5_share", *(f"hof_{k}" for k in range(8)), "hof_entropy",
    "dspeed_mean", "dspeed_p90", "dspeed_burst",
)
# the learned motion model's input per analysed frame (``motion_image``): small, so it costs nothing beside detection
MOTION_IMAGE_HW = (48, 64)
MOTION_CHANNELS: tuple[str, ...] = ("speed", "flow_x", "flow_y", "change", "skeleton")
MOTION_FULL_SCALE = 4.0  # frame heights per second that map to the top of the uint8 range (sqrt-compressed)
SKELETON = ((5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14),
            (14, 16), (0, 5), (0, 6))


@dataclass(slots=True)
class Observation:
    """One analysed frame: per-person boxes, keypoints (x, y, conf; zeros when pose did not run) and motion."""

    ts: float
    frame_h: int
    xyxy: np.ndarray  # (N, 4) pixels
    keypoints: np.ndarray  # (N, 17, 3) pixels + confidence
    has_pose: np.ndarray  # (N,) bool
    flow_mag: np.ndarray  # (N,) mean flow speed in the box, body heights per second; NaN on the first frame
    flow_chaos: np.ndarray  # (N,) 1 - |mean flow| / mean |flow|: 0 a rigid walk, 1 limbs going every way
    scene_flow: float  # median flow speed of the whole frame, frame heights per second (camera shake, crowds)
    moving_area: float = float("nan")  # fraction of the frame moving faster than FlowMeter.MOVING
    moving_speed: float = float("nan")  # median speed there, frame heights per second
    motion: np.ndarray = dataclasses.field(default_factory=lambda: np.full(len(MOTION_STATS), np.nan, np.float32))  # flow_stats
    # (C, H, W) uint8 ``motion_image``; empty where it was not made (observations cached before it existed)
    motion_image: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.uint8))


def close_pairs(xyxy: np.ndarray, close_h: float = CLOSE_H) -> list[tuple[int, int]]:
    if len(xyxy) < 2:
        return []
    c = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
    h = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1.0)
    d = np.linalg.norm(c[:, None] - c[None], axis=2) / ((h[:, None] + h[None]) / 2)
    i, j = np.nonzero(np.triu(d < close_h, 1))
    return list(zip(i.tolist(), j.tolist()))


def groups_of(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected groups of close people (union-find), only those of two or more."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        parent[find(a)] = find(b)
    out: dict[int, list[int]] = {}
    for k in {x for p in pairs for x in p}:
        out.setdefault(find(k), []).append(k)
    return [sorted(g) for g in out.values()]


def crop_window(xyxy: np.ndarray, frame_wh: tuple[int, int], pad: float = 0.25) -> tuple[int, int, int, int]:
    """The union box of a group, padded by ``pad`` of its size so that flailing arms stay inside."""
    x1, y1 = xyxy[:, 0].min(), xyxy[:, 1].min()
    x2, y2 = xyxy[:, 2].max(), xyxy[:, 3].max()
    pw, ph = (x2 - x1) * pad, (y2 - y1) * pad
    w, h = frame_wh
    return (int(max(0, x1 - pw)), int(max(0, y1 - ph)), int(min(w, x2 + pw)), int(min(h, y2 + ph)))


class CropPose:
    """yolo11n-pose on enlarged crops.

    It runs on the detector's own inference core (``PersonDetector``: the same letterbox, backends and NMS), so on
    a CPU it gets OpenVINO like the detector (measured against ultralytics' predict in docs/accuracy.md); the
    torch backend gives ultralytics' predict's boxes and keypoints exactly (tested).
    """

    def __init__(self, weights: Path, imgsz: int = 256, device: str = "cpu", max_crops: int = 1,
                 backend: str = "auto", export_dir: Path | None = None):
        from gridwatch.config import DetectorConfig
        from vision.backends import choose_backend
        from vision.detector import PersonDetector, pick_device

        device = pick_device(device)
        backend = choose_backend(backend, device)
        # OpenVINO builds each new (batch, height, width) input once, ~120 ms and ~20 MB each (measured), and crops
        # come in ~15 canvas shapes: one crop per request keeps that at 15 builds, where batches of any size would
        # multiply it (batching 8 cameras' crops measured no faster on a CPU anyway: 0.82-1.05x)
        cfg = DetectorConfig(imgsz=imgsz, confidence=0.2, device=device, backend=backend,
                             **({"max_batch": 1} if backend == "openvino" else {}))
        self.detector = PersonDetector(weights, cfg, export_root=export_dir)
        self.imgsz, self.device, self.max_crops = imgsz, self.detector.device, max_crops
        self.calls = 0
        self.seconds = 0.0  # model time, for the "extra cost over detection" budget

    def run(self, image: np.ndarray, windows: list[tuple[int, int, int, int]]) -> PoseResults:
        """Per window: people boxes (M, 4), keypoints (M, 17, 3) in frame pixels, and box confidences (M,)."""
        return self.run_many([PoseRequest(self, image, windows)])[0]

    def run_many(self, requests: list[PoseRequest]) -> list[PoseResults]:
        """Many frames' requests (up to ``max_crops`` windows each) in one batched detector call."""
        import time

        jobs = [(r, list(r.windows[: self.max_crops])) for r in requests]
        crops = [np.ascontiguousarray(r.image[y1:y2, x1:x2]) for r, wins in jobs for x1, y1, x2, y2 in wins]
        if not crops:
            return [[] for _ in requests]
        t0 = time.perf_counter()
        found = iter(self.detector.detect(crops))
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        out = []
        for _, wins in jobs:
            per: PoseResults = []
            for (x1, y1, _, _), d in zip(wins, found):
                kp = d.keypoints if d.keypoints is not None else np.zeros((len(d), N_KP, 3), np.float32)
                kp = kp.astype(np.float32, copy=True)
                kp[..., 0] += x1
                kp[..., 1] += y1
                per.append((d.xyxy.astype(np.float32) + np.array([x1, y1, x1, y1], np.float32), kp,
                            d.confidence.astype(np.float32)))
            out.append(per)
        return out


@dataclass(slots=True)
class FlowField:
    """Dense optical flow between two analysed frames, on the small grey copy."""

    flow: np.ndarray  # (h, w, 2) pixels of the small copy
    speed: np.ndarray  # (h, w) frame heights per second
    scale: float  # small copy pixels per frame pixel
    dt: float
    change: np.ndarray | None = None  # (h, w) |grey difference| to the previous analysed frame, 0..255


class FlowMeter:
    """Farneback optical flow between consecutive analysed frames (one small grey copy kept per zone)."""

    MOVING = 0.3  # frame heights per second: faster than a walk at any usual distance from a camera

    def __init__(self, width: int = FLOW_WIDTH):
        self.width = width
        self._prev: np.ndarray | None = None
        self._prev_ts = 0.0

    def _grey(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        return cv2.cvtColor(cv2.resize(image, (self.width, max(int(round(h * self.width / w)), 8)),
                                       interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)

    def field(self, ts: float, image: np.ndarray) -> FlowField | None:
        grey = self._grey(image)
        prev, dt = self._prev, ts - self._prev_ts
        self._prev, self._prev_ts = grey, ts
        if prev is None or prev.shape != grey.shape or dt <= 0:
            return None
        flow = cv2.calcOpticalFlowFarneback(prev, grey, None, 0.5, 3, 13, 3, 5, 1.1, 0)
        return FlowField(flow, np.linalg.norm(flow, axis=2) / grey.shape[0] / dt, self.width / image.shape[1], dt,
                         cv2.absdiff(grey, prev))


def flow_stats(field: FlowField | None, prev_speed: np.ndarray | None, mask: np.ndarray | None = None) -> np.ndarray:
    """How the whole zone moves, regardless of who the detector found (``MOTION_STATS``; NaN without a field).

    Speed percentiles and how much of the motion energy sits in the fastest 5 %
    of pixels; the orientation histogram of moving pixels, sorted largest bin
    first (how one-directional the motion is, not which way: a crowd walking
    to the exit is one peak, a scuffle is flat); and how the speed at each pixel
    changed since the previous analysed frame (the "violent flows" cue of
    Hassner et al. 2012: fights start and stop, walks keep their pace).
    """
    out = np.full(len(MOTION_STATS), np.nan, np.float32)
    if field is None:
        return out
    speed = field.speed
    inside = None
    if mask is not None:
        inside = cv2.resize(mask.astype(np.uint8), speed.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        if not inside.any():
            return out
    v = speed[inside] if inside is not None else speed.ravel()
    srt = np.sort(v)
    k = max(1, int(0.05 * len(srt)))
    out[0:3] = np.percentile(v, [50, 90, 99])
    out[3] = srt[-k:].sum() / (srt.sum() + 1e-9)
    moving = speed > FlowMeter.MOVING
    if inside is not None:
        moving &= inside
    if moving.sum() >= 10:
        ang = np.arctan2(field.flow[..., 1][moving], field.flow[..., 0][moving]) % (2 * np.pi)
        hof = np.histogram(ang, bins=8, range=(0, 2 * np.pi), weights=speed[moving])[0]
        hof = np.sort(hof / (hof.sum() + 1e-9))[::-1]
        out[4:12] = hof
        out[12] = -(hof * np.log(hof + 1e-9)).sum()
    else:
        out[4:13] = 0.0
    if prev_speed is not None and prev_speed.shape == speed.shape:
        d = np.abs(speed - prev_speed)
        d = d[inside] if inside is not None else d.ravel()
        out[13] = d.mean()
        out[14] = np.percentile(d, 90)
        out[15] = (d > 2 * d.mean() + 1e-6).mean()
    return out


def _compress(v: np.ndarray, full: float) -> np.ndarray:
    """Signed sqrt of ``v / full`` clipped to -1..1: slow walks keep resolution, flailing limbs do not saturate."""
    return np.sign(v) * np.sqrt(np.clip(np.abs(v) / full, 0.0, 1.0))


def motion_image(field: FlowField | None, frame_wh: tuple[int, int], keypoints: np.ndarray, has_pose: np.ndarray,
                 mask: np.ndarray | None = None, hw: tuple[int, int] = MOTION_IMAGE_HW) -> np.ndarray:
    """The learned motion model's view of one analysed frame: (``MOTION_CHANNELS``, H, W) uint8.

    Flow speed and direction (frame heights per second), the grey-level change
    since the previous analysed frame, and the skeletons pose found, drawn as
    lines: motion seen whether or not the detector found the people (after
    Garcia-Cobo & SanMiguel, CVIU 2023, who feed skeleton images and frame
    differences to a small network). Zero outside the zone's mask; a frame
    without a previous one has no motion (flow channels at their zero, 128).
    """
    h, w = hw
    out = np.zeros((len(MOTION_CHANNELS), h, w), np.uint8)
    out[1:3] = 128
    if field is not None:
        gh = field.speed.shape[0]
        small = cv2.resize(np.dstack([field.speed, field.flow / (gh * field.dt)]).astype(np.float32), (w, h),
                           interpolation=cv2.INTER_AREA)
        out[0] = np.round(255 * _compress(small[..., 0], MOTION_FULL_SCALE))
        out[1:3] = np.round(128 + 127 * _compress(small[..., 1:].transpose(2, 0, 1), MOTION_FULL_SCALE))
        if field.change is not None:
            ch = cv2.resize(field.change, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
            out[3] = np.round(255 * np.sqrt(ch / 255.0))
    fw, fh = frame_wh
    canvas = np.zeros((h, w), np.uint8)
    sx, sy = w / fw, h / fh
    for kp in keypoints[np.asarray(has_pose, bool)]:
        for a, b in SKELETON:
            if kp[a, 2] >= 0.3 and kp[b, 2] >= 0.3:
                cv2.line(canvas, (int(kp[a, 0] * sx), int(kp[a, 1] * sy)), (int(kp[b, 0] * sx), int(kp[b, 1] * sy)),
                         255, 1)
    out[4] = canvas
    if mask is not None:
        inside = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        out[:, ~inside] = 0
        out[1:3, ~inside] = 128
    return out


def box_motion(field: FlowField | None, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per box: mean flow speed in body heights per second, and disorder 1 - |mean flow| / mean |flow|."""
    speed = np.full(len(xyxy), np.nan, np.float32)
    chaos = np.full(len(xyxy), np.nan, np.float32)
    if field is None:
        return speed, chaos
    H, W = field.speed.shape
    for k, (x1, y1, x2, y2) in enumerate(np.round(xyxy * field.scale).astype(int)):
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        f = field.flow[y1:y2, x1:x2].reshape(-1, 2)
        m = np.linalg.norm(f, axis=1).mean()
        speed[k] = field.speed[y1:y2, x1:x2].mean() * H / (y2 - y1)
        chaos[k] = 1.0 - np.linalg.norm(f.mean(axis=0)) / (m + 1e-6)
    return speed, chaos


def motion_window(field: FlowField | None, frame_wh: tuple[int, int], mask: np.ndarray | None = None,
                  min_area: float = 0.005) -> tuple[tuple[int, int, int, int] | None, float, float]:
    """The box around the largest fast-moving blob (frame pixels, padded), its area fraction and median speed.

    A fight moves fast where the detector often sees nobody (bodies tangled,
    blurred, lying down); this is where pose gets a second look.
    """
    if field is None:
        return None, float("nan"), float("nan")
    moving = (field.speed > FlowMeter.MOVING).astype(np.uint8)
    if mask is not None:
        moving &= cv2.resize(mask.astype(np.uint8), moving.shape[::-1], interpolation=cv2.INTER_NEAREST)
    moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    area = float(moving.mean())
    if n < 2:
        return None, area, 0.0
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, a = stats[k]
    if a < min_area * moving.size:
        return None, area, float(np.median(field.speed[moving > 0]))
    box = np.array([[x, y, x + w, y + h]], np.float32) / field.scale
    return crop_window(box, frame_wh, pad=0.3), area, float(np.median(field.speed[moving > 0]))


def _assign(dets: np.ndarray, poses: np.ndarray) -> list[tuple[int, int]]:
    iou = iou_matrix(dets, poses)
    return assign(-iou, iou >= 0.3)


class Observer:
    """Per camera zone: turns (timestamp, frame, people) into an ``Observation``; the pose model may be shared.

    Pose runs on crops of close groups and, when something moves fast, on the
    fast-moving region; people pose finds there that the detector missed join
    the observation.
    """

    MIN_FAST = 0.05  # a crop gets pose only when this fraction of it moves faster than FlowMeter.MOVING

    def __init__(self, pose: CropPose | None, motion: bool = True):
        """``motion``: make the learned model's motion image (``motion_image``); a monitor whose model does not read
        it passes False and saves its cost on every analysed frame."""
        self.pose, self.motion = pose, motion
        self.flow = FlowMeter()
        self._prev_speed: np.ndarray | None = None

    def pose_windows(self, candidates: list[tuple[int, int, int, int]], field: FlowField | None
                     ) -> list[tuple[int, int, int, int]]:
        """The crops worth a pose run: only where something moves fast, the fastest first (pose is the costly part)."""
        if field is None or not candidates:
            return []
        scored = []
        for win in candidates:
            x1, y1, x2, y2 = (np.array(win) * field.scale).astype(int)
            patch = field.speed[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
            fast = float((patch > FlowMeter.MOVING).mean()) if patch.size else 0.0
            if fast >= self.MIN_FAST:
                scored.append((fast, win))
        return [w for _, w in sorted(scored, reverse=True)]

    def observe(self, ts: float, image: np.ndarray, people: Detections, mask: np.ndarray | None = None
                ) -> Observation:
        return drive(self.observe_steps(ts, image, people, mask))

    def observe_steps(self, ts: float, image: np.ndarray, people: Detections, mask: np.ndarray | None = None
                      ) -> Steps[Observation]:
        """``observe`` as steps: yields the frame's pose request (if pose is worth running), then returns."""
        h, w = image.shape[:2]
        xyxy = people.xyxy.astype(np.float32)
        field = self.flow.field(ts, image)
        stats = flow_stats(field, self._prev_speed, mask)
        self._prev_speed = field.speed if field is not None else None
        groups = groups_of(len(xyxy), close_pairs(xyxy))
        motion, area, mspeed = motion_window(field, (w, h), mask)
        windows = self.pose_windows([crop_window(xyxy[g], (w, h)) for g in groups] + ([motion] if motion else []),
                                    field)
        kp = np.zeros((len(xyxy), N_KP, 3), np.float32)
        got = np.zeros(len(xyxy), bool)
        if self.pose is not None and windows:
            results = yield PoseRequest(self.pose, image, windows)
            boxes = np.concatenate([r[0] for r in results]) if results else np.zeros((0, 4), np.float32)
            kps = np.concatenate([r[1] for r in results]) if results else np.zeros((0, N_KP, 3), np.float32)
            conf = np.concatenate([r[2] for r in results]) if results else np.zeros(0, np.float32)
            used = np.zeros(len(boxes), bool)
            for a, b in _assign(xyxy, boxes):
                kp[a], got[a], used[b] = kps[b], True, True
            # people only pose saw (in the moving region or a group crop): keep them, once (NMS among themselves)
            extra = np.nonzero(~used & (conf >= 0.35))[0]
            extra = extra[np.argsort(-conf[extra])]
            keep: list[int] = []
            for e in extra:
                others = np.concatenate([xyxy, boxes[keep]]) if keep else xyxy
                if len(others) == 0 or iou_matrix(boxes[[e]], others).max() < 0.3:
                    keep.append(int(e))
            if keep:
                xyxy = np.concatenate([xyxy, boxes[keep]])
                kp = np.concatenate([kp, kps[keep]])
                got = np.concatenate([got, np.ones(len(keep), bool)])
        speed, chaos = box_motion(field, xyxy)
        scene = float(np.median(field.speed)) if field is not None else float("nan")
        return Observation(ts, h, xyxy, kp, got, speed, chaos, scene, area, mspeed, stats,
                           motion_image(field, (w, h), kp, got, mask) if self.motion else np.zeros((0,), np.uint8))


def pack_observations(obs: list[Observation]) -> dict[str, np.ndarray]:
    """Observations as flat arrays (npz), so the training script can cache a clip's costly part."""
    sizes = np.array([len(o.xyxy) for o in obs], np.int64)
    cat = lambda name, shape, dt: (np.concatenate([getattr(o, name) for o in obs]) if obs  # noqa: E731
                                   else np.zeros(shape, dt))
    return {"offsets": np.concatenate([[0], np.cumsum(sizes)]), "ts": np.array([o.ts for o in obs]),
            "frame_h": np.array([o.frame_h for o in obs], np.int64),
            "scene_flow": np.array([o.scene_flow for o in obs]), "moving_area": np.array([o.moving_area for o in obs]),
            "moving_speed": np.array([o.moving_speed for o in obs]),
            "motion": np.array([o.motion for o in obs], np.float32).reshape(len(obs), len(MOTION_STATS)),
            "xyxy": cat("xyxy", (0, 4), np.float32),
            "keypoints": cat("keypoints", (0, N_KP, 3), np.float32), "has_pose": cat("has_pose", (0,), bool),
            "flow_mag": cat("flow_mag", (0,), np.float32), "flow_chaos": cat("flow_chaos", (0,), np.float32),
            **({"motion_image": np.stack([o.motion_image for o in obs])}
               if obs and all(o.motion_image.ndim == 3 for o in obs) else {})}


def unpack_observations(z: dict[str, np.ndarray]) -> list[Observation]:
    """``pack_observations`` undone; caches made before ``motion_image`` existed unpack without it."""
    o = z["offsets"]
    img = z.get("motion_image")
    return [Observation(float(z["ts"][i]), int(z["frame_h"][i]), *(z[k][o[i]:o[i + 1]] for k in
                        ("xyxy", "keypoints", "has_pose", "flow_mag", "flow_chaos")), float(z["scene_flow"][i]),
                        float(z["moving_area"][i]), float(z["moving_speed"][i]), z["motion"][i],
                        *([img[i]] if img is not None else []))
            for i in range(len(o) - 1)]
