"""Evidence clips: a ring buffer of recent analysed frames per camera, encoded to H.264 MP4 off the analysis loop.

The analysis loop only puts a frame reference on a bounded queue (``push``); a
worker thread scales it down and JPEG-compresses it into the camera's ring
(492 cameras x 5 s of raw full-HD frames would be tens of GB; as 640-wide JPEGs
it is a few hundred MB), and clips are encoded by a second thread. When the
queue is full a frame is dropped from the ring, never waited for.
"""
from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from gridwatch.config import ClipConfig

from .evidence import EvidenceStore

log = logging.getLogger(__name__)


@dataclass
class _Request:
    camera_id: str
    start: float
    end: float
    on_done: Callable[[str], None]
    frames: list[tuple[float, bytes]] = field(default_factory=list)


def encode_mp4(frames: list[tuple[float, np.ndarray]]) -> bytes:
    """H.264 (libx264, yuv420p, even dimensions) in an MP4 with the index first (+faststart): plays in browsers.

    Frames keep their capture times (variable frame rate, 1 ms time base), so a clip of a
    3 fps analysis stream lasts as long as what it shows.
    """
    if not frames:
        raise ValueError("a clip needs at least one frame")
    h, w = frames[0][1].shape[:2]
    w, h = w - w % 2, h - h % 2
    t0 = frames[0][0]
    # a real file, not memory: +faststart moves the index to the front in a second pass over the file
    with tempfile.TemporaryDirectory(prefix="gw-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        _write_mp4(path, frames, w, h, t0)
        return path.read_bytes()


def _write_mp4(path: Path, frames: list[tuple[float, np.ndarray]], w: int, h: int, t0: float) -> None:
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "veryfast", "crf": "26"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        last = -1
        for ts, image in frames:
            pts = max(int(round((ts - t0) * 1000)), last + 1)  # strictly increasing
            last = pts
            img = image[:h, :w] if image.shape[:2] != (h, w) else image
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


class _RingShard(threading.Thread):
    """The rings of some of the cameras (a camera always lands on the same shard, so its frames stay in order)."""

    def __init__(self, index: int, cfg: ClipConfig, queue_size: int, quality: int, encode: queue.Queue):
        super().__init__(name=f"clip-ring-{index}", daemon=True)
        self.cfg, self.quality, self.encode = cfg, quality, encode
        self.inbox: queue.Queue = queue.Queue(maxsize=queue_size)
        self.rings: dict[str, deque[tuple[float, bytes]]] = {}
        self.pending: list[_Request] = []
        self.stopping = threading.Event()

    def shrink(self, image: np.ndarray) -> bytes:
        h, w = image.shape[:2]
        if w > self.cfg.max_width:
            nh = int(round(h * self.cfg.max_width / w))
            image = cv2.resize(image, (self.cfg.max_width, nh), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def run(self) -> None:
        while not self.stopping.is_set() or not self.inbox.empty():
            try:
                item = self.inbox.get(timeout=0.25)
            except queue.Empty:
                self.finish_stale(time.time())
                continue
            try:
                if item[0] == "frame":
                    self.add_frame(*item[1:])
                else:
                    self.open(item[1])
            except Exception:  # one bad frame must not end the recorder
                log.exception("clip ring: could not take %s", item[0])

    def add_frame(self, camera_id: str, ts: float, image: np.ndarray) -> None:
        jpeg = self.shrink(image)
        ring = self.rings.setdefault(camera_id, deque())
        ring.append((ts, jpeg))
        while ring and ring[0][0] < ts - self.cfg.pre_s - 1.0:
            ring.popleft()
        still = []
        for req in self.pending:
            if req.camera_id == camera_id and ts >= req.start:
                if ts <= req.end:
                    req.frames.append((ts, jpeg))
                if ts >= req.end:
                    self.encode.put(req)
                    continue
            still.append(req)
        self.pending = still
        self.finish_stale(time.time())

    def open(self, req: _Request) -> None:
        req.frames = [(ts, j) for ts, j in self.rings.get(req.camera_id, ()) if ts >= req.start]
        if req.frames and req.frames[-1][0] >= req.end:
            self.encode.put(req)
        else:
            self.pending.append(req)

    def finish_stale(self, now: float) -> None:
        """A camera that stopped sending frames still gets its clip, with what there is."""
        if any(now > r.end + 2.0 for r in self.pending):
            for r in [r for r in self.pending if now > r.end + 2.0]:
                self.encode.put(r)
            self.pending = [r for r in self.pending if now <= r.end + 2.0]

    def flush(self) -> None:
        for r in self.pending:
            self.encode.put(r)
        self.pending = []


class ClipRecorder:
    """Keeps ``pre_s`` seconds of frames per camera; ``request`` gets a clip from ``pre_s`` before to ``post_s`` after.

    Scaling and JPEG-compressing a full-HD frame costs about 3 ms, so 492 cameras at
    2 fps need about 3 cores: the cameras are spread over ``workers`` ring threads
    (OpenCV releases the GIL while it works).
    """

    def __init__(self, evidence: EvidenceStore, cfg: ClipConfig, queue_size: int = 4096, jpeg_quality: int = 80,
                 workers: int | None = None):
        self.evidence, self.cfg = evidence, cfg
        n = workers or max(1, min(4, (os.cpu_count() or 2) // 2))
        self._encode: queue.Queue = queue.Queue()
        self._shards = [_RingShard(i, cfg, max(queue_size // n, 1), jpeg_quality, self._encode) for i in range(n)]
        self.dropped = 0
        self.clips = 0
        self.failed = 0
        self._encoder = threading.Thread(target=self._encode_loop, name="clip-encode", daemon=True)
        for t in (*self._shards, self._encoder):
            t.start()

    def _shard(self, camera_id: str) -> _RingShard:
        return self._shards[zlib.crc32(camera_id.encode()) % len(self._shards)]

    # --- called from the analysis loop: never blocks -----------------------------------
    def push(self, camera_id: str, ts: float, image: np.ndarray) -> bool:
        try:
            self._shard(camera_id).inbox.put_nowait(("frame", camera_id, ts, image))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def request(self, camera_id: str, ts: float, on_done: Callable[[str], None]) -> None:
        """``on_done(name)`` is called from the encoder thread once the clip is stored."""
        req = _Request(camera_id, ts - self.cfg.pre_s, ts + self.cfg.post_s, on_done)
        inbox = self._shard(camera_id).inbox
        try:
            inbox.put_nowait(("request", req))
        except queue.Full:  # a clip matters more than one ring frame: make room
            try:
                inbox.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            inbox.put(("request", req))

    def _encode_loop(self) -> None:
        while True:
            req = self._encode.get()
            if req is None:
                return
            try:
                if not req.frames:
                    log.warning("no frames for the clip of %s at %.1f", req.camera_id, req.end - self.cfg.post_s)
                    continue
                images = [(ts, cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)) for ts, j in req.frames]
                name = self.evidence.save_bytes(encode_mp4(images), "mp4")
                self.clips += 1
                req.on_done(name)
            except Exception:
                self.failed += 1
                log.exception("clip of %s failed", req.camera_id)

    def close(self, timeout: float = 30.0) -> None:
        """Finish every clip already asked for (with the frames there are), then stop."""
        for shard in self._shards:
            shard.stopping.set()
        for shard in self._shards:
            shard.join(timeout)
            shard.flush()
        self._encode.put(None)
        self._encoder.join(timeout)

    def stats(self) -> dict:
        return {"clips": self.clips, "failed": self.failed, "dropped_frames": self.dropped,
                "cameras": sum(len(s.rings) for s in self._shards), "workers": len(self._shards),
                "pending": sum(len(s.pending) for s in self._shards),
                "queued": sum(s.inbox.qsize() for s in self._shards)}
