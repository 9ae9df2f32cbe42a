"""Frames of many cameras into network batches: letterboxing and the dynamic batcher.

The batcher follows DeepStream's nvstreammux: a batch goes when it is full or
when its oldest frame has waited ``max_wait_s`` (batched-push-timeout). It never
waits for a particular camera (a dead one simply has no frame), serves frames
oldest-first so no camera starves, keeps only the newest frame per camera, and
drops frames older than ``max_age_s`` instead of analysing the past.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

import cv2
import numpy as np

if TYPE_CHECKING:  # only a type here: bench/gpu/run.py loads this file alone, without the streams package
    from streams.frame import Frame

PAD_VALUE = 114  # ultralytics' letterbox grey


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How one frame fits the network input (as ultralytics' ``LetterBox(auto=True)``), and back."""

    src_hw: tuple[int, int]
    canvas_hw: tuple[int, int]
    new_wh: tuple[int, int]
    ratio: float
    left: int
    top: int

    @classmethod
    def fit(cls, src_hw: tuple[int, int], imgsz: int, stride: int = 32) -> "Letterbox":
        """The smallest stride-multiple canvas around the frame scaled to fit ``imgsz``."""
        h, w = src_hw
        r = min(imgsz / h, imgsz / w)
        nw, nh = max(round(w * r), 1), max(round(h * r), 1)
        dw, dh = (imgsz - nw) % stride / 2, (imgsz - nh) % stride / 2
        top, bottom = round(dh - 0.1), round(dh + 0.1)
        left, right = round(dw - 0.1), round(dw + 0.1)
        return cls((h, w), (nh + top + bottom, nw + left + right), (nw, nh), r, left, top)

    def paste(self, image: np.ndarray, canvas: np.ndarray) -> None:
        """Resize ``image`` into ``canvas`` (canvas_hw, already filled with the pad value)."""
        nw, nh = self.new_wh
        resized = image if (image.shape[1], image.shape[0]) == (nw, nh) else cv2.resize(
            image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        canvas[self.top:self.top + nh, self.left:self.left + nw] = resized

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes in canvas pixels -> boxes in the source frame, clipped to it."""
        return self.points_to_source(xyxy.reshape(-1, 2, 2)).reshape(-1, 4)

    def points_to_source(self, points: np.ndarray) -> np.ndarray:
        """Points (..., 2 or more: x, y, anything else kept) in canvas pixels -> in the source frame, clipped to it."""
        out = points.astype(np.float32, copy=True)
        h, w = self.src_hw
        out[..., 0] = np.clip((out[..., 0] - self.left) / self.ratio, 0, w)
        out[..., 1] = np.clip((out[..., 1] - self.top) / self.ratio, 0, h)
        return out


def make_canvas(images: list[np.ndarray], boxes: list[Letterbox]) -> np.ndarray:
    """BGR uint8 frames of one canvas shape -> the letterboxed batch, uint8 (B, H, W, 3) BGR.

    Backends take this and convert on their side: OpenVINO inside its graph, torch on
    its device (a quarter of the bytes to upload), ONNX Runtime with ``to_blob``.
    """
    h, w = boxes[0].canvas_hw
    canvas = np.full((len(images), h, w, 3), PAD_VALUE, np.uint8)
    for i, (img, box) in enumerate(zip(images, boxes)):
        box.paste(img, canvas[i])
    return canvas


def to_blob(canvas: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) BGR -> float32 (B, 3, H, W) RGB in [0, 1], as ultralytics feeds its networks."""
    blob = np.empty((canvas.shape[0], 3, *canvas.shape[1:3]), np.float32)
    np.divide(canvas.transpose(0, 3, 1, 2)[:, ::-1], 255, out=blob, casting="unsafe")
    return blob


def make_blob(images: list[np.ndarray], boxes: list[Letterbox]) -> np.ndarray:
    """BGR uint8 frames of one canvas shape -> float32 RGB (B, 3, H, W) in [0, 1]."""
    return to_blob(make_canvas(images, boxes))


def buckets(boxes: list[Letterbox], max_batch: int) -> list[list[int]]:
    """Indices grouped by canvas shape (a batch needs one shape), in chunks of at most ``max_batch``.

    Each frame keeps the canvas it would get alone, so a batched result equals the
    one-frame result.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, b in enumerate(boxes):
        groups.setdefault(b.canvas_hw, []).append(i)
    return [idx[s:s + max_batch] for idx in groups.values() for s in range(0, len(idx), max_batch)]


def fit_batch_to_memory(max_batch: int, free_bytes: int, fixed_bytes: int, per_frame_bytes: int,
                        reserve: float = 0.2) -> int:
    """The largest batch (<= ``max_batch``, >= 1) whose memory fits ``free_bytes`` less a reserve."""
    usable = free_bytes * (1 - reserve) - fixed_bytes
    if per_frame_bytes <= 0:
        return max_batch
    return int(max(1, min(max_batch, usable // per_frame_bytes)))


class FrameSource(Protocol):
    def take(self) -> Frame | None: ...


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_batch: int = 16
    max_wait_s: float = 0.02
    max_age_s: float = 2.0


@dataclass
class BatcherStats:
    batches: int = 0
    frames: int = 0
    full: int = 0  # batches that went because they were full
    timed_out: int = 0  # ... because the oldest frame had waited max_wait
    stale: int = 0  # frames dropped as older than max_age
    replaced: int = 0  # pending frames replaced by a newer one of the same camera


class DynamicBatcher:
    """Collects the newest frame of every camera into batches (see the module's docstring)."""

    def __init__(self, slots: Mapping[str, FrameSource], wake: threading.Event, policy: BatchPolicy,
                 clock: Callable[[], float] = time.time):
        self.slots, self.wake, self.policy, self.clock = slots, wake, policy, clock
        self._ids = list(slots)
        self._start = 0  # scan start, rotated so ties between cameras are broken fairly
        self._pending: dict[str, tuple[float, Frame]] = {}  # camera -> (first seen waiting, newest frame)
        self.stats = BatcherStats()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def watch(self, ids: Iterable[str]) -> None:
        """Scan these cameras from now on (a camera added or removed while running); a gone one's frame is dropped."""
        self._ids = list(ids)
        for cid in [c for c in self._pending if c not in self._ids]:
            del self._pending[cid]

    def poll(self) -> None:
        """Move every new frame from the slots into the pending set (newest per camera wins)."""
        now = self.clock()
        n = len(self._ids)
        for k in range(n):
            cid = self._ids[(self._start + k) % n]
            frame = self.slots[cid].take()
            if frame is None:
                continue
            if cid in self._pending:
                self.stats.replaced += 1
                self._pending[cid] = (self._pending[cid][0], frame)  # keeps its place in the queue
            else:
                self._pending[cid] = (now, frame)
        self._start = (self._start + 1) % max(n, 1)

    def _drop_stale(self, now: float) -> None:
        for cid in [c for c, (_, f) in self._pending.items() if now - f.ts > self.policy.max_age_s]:
            del self._pending[cid]
            self.stats.stale += 1

    def due_in(self, now: float) -> float | None:
        """Seconds until the pending batch must go (0: now); None when nothing is pending."""
        if not self._pending:
            return None
        if len(self._pending) >= self.policy.max_batch:
            return 0.0
        oldest = min(seen for seen, _ in self._pending.values())
        return max(0.0, oldest + self.policy.max_wait_s - now)

    def take_batch(self) -> list[Frame]:
        """The batch as it is now: up to ``max_batch`` frames, longest-waiting first."""
        now = self.clock()
        self._drop_stale(now)
        order = sorted(self._pending, key=lambda c: self._pending[c][0])[:self.policy.max_batch]
        full = len(self._pending) >= self.policy.max_batch
        frames = [self._pending.pop(c)[1] for c in order]
        if frames:
            self.stats.batches += 1
            self.stats.frames += len(frames)
            self.stats.full += full
            self.stats.timed_out += not full
        return frames

    def next_batch(self, stop: threading.Event, idle_s: float = 0.5) -> list[Frame]:
        """Blocks until a batch is due, then returns it; [] when ``stop`` is set."""
        while not stop.is_set():
            self.wake.clear()  # before polling: a frame put after this sets it again
            self.poll()
            self._drop_stale(self.clock())
            due = self.due_in(self.clock())
            if due == 0.0:
                return self.take_batch()
            self.wake.wait(idle_s if due is None else due)
        return []
