"""What one frame tells about possible conflict: who is where, their pose, and how their pixels move.

Pose runs only on people who stand close together (nobody fights alone at a
distance), on crops enlarged to the pose model's input size: in a full
surveillance frame yolo11n-pose misses most small people, in a crop around a
close group it finds them. Motion is dense optical flow on a small grey copy of
the frame, read inside each person's box. The training script and the runtime
``ConflictMonitor`` both go through ``Observer`` (one piece of code).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..detections import Detections

N_KP = 17  # COCO keypoints
CLOSE_H = 1.5  # two people are "close" when their centres are within this many mean body heights
FLOW_WIDTH = 320  # optical flow runs on a grey copy this wide: cheap, and enough for body-sized motion


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


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


class CropPose:
    """yolo11n-pose on enlarged crops of close groups; all crops of a frame in one batched call."""

    def __init__(self, weights: Path, imgsz: int = 320, device: str = "cpu", max_crops: int = 4):
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO

        self.model = YOLO(str(weights))
        self.imgsz, self.device, self.max_crops = imgsz, device, max_crops
        self.calls = 0
        self.seconds = 0.0  # model time, for the "extra cost over detection" budget

    def estimate(self, image: np.ndarray, xyxy: np.ndarray, groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, 17, 3) in frame pixels for the people in ``groups``, and which of them got a pose."""
        import time

        from scipy.optimize import linear_sum_assignment

        kp = np.zeros((len(xyxy), N_KP, 3), np.float32)
        got = np.zeros(len(xyxy), bool)
        groups = sorted(groups, key=len, reverse=True)[: self.max_crops]
        if not groups:
            return kp, got
        h, w = image.shape[:2]
        wins = [crop_window(xyxy[g], (w, h)) for g in groups]
        crops = [np.ascontiguousarray(image[y1:y2, x1:x2]) for x1, y1, x2, y2 in wins]
        t0 = time.perf_counter()
        results = self.model.predict(crops, imgsz=self.imgsz, conf=0.2, classes=[0], device=self.device, verbose=False)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        for g, (x1, y1, _, _), r in zip(groups, wins, results):
            if r.keypoints is None or len(r.boxes) == 0:
                continue
            off = np.array([x1, y1, x1, y1], np.float32)
            pboxes = r.boxes.xyxy.cpu().numpy() + off
            pkp = r.keypoints.data.cpu().numpy().copy()
            pkp[..., 0] += x1
            pkp[..., 1] += y1
            iou = _iou(xyxy[g], pboxes)
            rows, cols = linear_sum_assignment(-iou)
            for a, b in zip(rows, cols):
                if iou[a, b] >= 0.3 and not got[g[a]]:
                    kp[g[a]], got[g[a]] = pkp[b], True
        return kp, got


class FlowMeter:
    """Farneback optical flow between consecutive analysed frames, read per person box."""

    def __init__(self, width: int = FLOW_WIDTH):
        self.width = width
        self._prev: np.ndarray | None = None
        self._prev_ts = 0.0

    def _grey(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        return cv2.cvtColor(cv2.resize(image, (self.width, max(int(round(h * self.width / w)), 8)),
                                       interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)

    def remember(self, ts: float, image: np.ndarray) -> None:
        self._prev, self._prev_ts = self._grey(image), ts

    def measure(self, ts: float, image: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        scale = self.width / image.shape[1]
        grey = self._grey(image)
        prev, dt = self._prev, ts - self._prev_ts
        self._prev, self._prev_ts = grey, ts
        nan = np.full(len(xyxy), np.nan, np.float32)
        if prev is None or prev.shape != grey.shape or dt <= 0:
            return nan, nan.copy(), float("nan")
        flow = cv2.calcOpticalFlowFarneback(prev, grey, None, 0.5, 3, 13, 3, 5, 1.1, 0)
        mag = np.linalg.norm(flow, axis=2)
        scene = float(np.median(mag)) / grey.shape[0] / dt
        speed, chaos = nan.copy(), nan.copy()
        for k, (x1, y1, x2, y2) in enumerate(np.round(xyxy * scale).astype(int)):
            x1, y1 = max(x1, 0), max(y1, 0)
            x2, y2 = min(x2, grey.shape[1]), min(y2, grey.shape[0])
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            f = flow[y1:y2, x1:x2].reshape(-1, 2)
            m = mag[y1:y2, x1:x2].mean()
            speed[k] = m / max(y2 - y1, 1) / dt
            chaos[k] = 1.0 - np.linalg.norm(f.mean(axis=0)) / (m + 1e-6)
        return speed, chaos, scene


class Observer:
    """Per camera zone: turns (timestamp, frame, people) into an ``Observation``; pose model may be shared."""

    def __init__(self, pose: CropPose | None):
        self.pose = pose
        self.flow = FlowMeter()

    def observe(self, ts: float, image: np.ndarray, people: Detections) -> Observation:
        xyxy = people.xyxy.astype(np.float32)
        groups = groups_of(len(xyxy), close_pairs(xyxy))
        if self.pose is not None and groups:
            kp, got = self.pose.estimate(image, xyxy, groups)
        else:
            kp, got = np.zeros((len(xyxy), N_KP, 3), np.float32), np.zeros(len(xyxy), bool)
        if groups:
            speed, chaos, scene = self.flow.measure(ts, image, xyxy)
        else:  # nobody close together: skip the flow (the costliest part of a quiet frame), keep the frame
            self.flow.remember(ts, image)
            speed, chaos, scene = np.full(len(xyxy), np.nan, np.float32), np.full(len(xyxy), np.nan, np.float32), np.nan
        return Observation(ts, image.shape[0], xyxy, kp, got, speed, chaos, scene)


def pack_observations(obs: list[Observation]) -> dict[str, np.ndarray]:
    """Observations as flat arrays (npz), so the training script can cache a clip's costly part."""
    sizes = np.array([len(o.xyxy) for o in obs], np.int64)
    cat = lambda name, shape, dt: (np.concatenate([getattr(o, name) for o in obs]) if obs  # noqa: E731
                                   else np.zeros(shape, dt))
    return {"offsets": np.concatenate([[0], np.cumsum(sizes)]), "ts": np.array([o.ts for o in obs]),
            "frame_h": np.array([o.frame_h for o in obs], np.int64),
            "scene_flow": np.array([o.scene_flow for o in obs]), "xyxy": cat("xyxy", (0, 4), np.float32),
            "keypoints": cat("keypoints", (0, N_KP, 3), np.float32), "has_pose": cat("has_pose", (0,), bool),
            "flow_mag": cat("flow_mag", (0,), np.float32), "flow_chaos": cat("flow_chaos", (0,), np.float32)}


def unpack_observations(z: dict[str, np.ndarray]) -> list[Observation]:
    o = z["offsets"]
    return [Observation(float(z["ts"][i]), int(z["frame_h"][i]), *(z[k][o[i]:o[i + 1]] for k in
                        ("xyxy", "keypoints", "has_pose", "flow_mag", "flow_chaos")), float(z["scene_flow"][i]))
            for i in range(len(o) - 1)]
