"""Evidence clips: a ring buffer of recent analysed frames per camera, encoded to H.264 MP4 off the analysis loop.

The analysis loop only puts a frame reference on a bounded queue (``push``); a
worker thread scales it down and JPEG-compresses it into the camera's ring
(492 cameras x 5 s of raw full-HD frames would be tens of GB; as 640-wide JPEGs
it is a few hundred MB), and clips are encoded by a second thread. When the
queue is full a frame is dropped from the ring, never waited for.
"""
from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
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


class ClipRecorder:
    """Keeps ``pre_s`` seconds of frames per camera; ``request`` gets a clip from ``pre_s`` before to ``post_s`` after."""

    def __init__(self, evidence: EvidenceStore, cfg: ClipConfig, queue_size: int = 4096, jpeg_quality: int = 80):
        self.evidence, self.cfg, self.quality = evidence, cfg, jpeg_quality
        self._in: queue.Queue = queue.Queue(maxsize=queue_size)
        self._rings: dict[str, deque[tuple[float, bytes]]] = {}
        self._pending: list[_Request] = []
        self._encode: queue.Queue = queue.Queue()
        self.dropped = 0
        self.clips = 0
        self.failed = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ingest_loop, name="clip-ring", daemon=True),
                         threading.Thread(target=self._encode_loop, name="clip-encode", daemon=True)]
        for t in self._threads:
            t.start()

    # --- called from the analysis loop: never blocks -----------------------------------
    def push(self, camera_id: str, ts: float, image: np.ndarray) -> bool:
        try:
            self._in.put_nowait(("frame", camera_id, ts, image))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def request(self, camera_id: str, ts: float, on_done: Callable[[str], None]) -> None:
        """``on_done(name)`` is called from the encoder thread once the clip is stored."""
        req = _Request(camera_id, ts - self.cfg.pre_s, ts + self.cfg.post_s, on_done)
        try:
            self._in.put_nowait(("request", req))
        except queue.Full:  # a clip matters more than one ring frame: make room
            try:
                self._in.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            self._in.put(("request", req))

    # --- worker threads ------------------------------------------------------------------
    def _shrink(self, image: np.ndarray) -> bytes:
        h, w = image.shape[:2]
        if w > self.cfg.max_width:
            nh = int(round(h * self.cfg.max_width / w))
            image = cv2.resize(image, (self.cfg.max_width, nh), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def _ingest_loop(self) -> None:
        while not self._stop.is_set() or not self._in.empty():
            try:
                item = self._in.get(timeout=0.25)
            except queue.Empty:
                self._finish_stale(time.time())
                continue
            try:
                if item[0] == "frame":
                    self._add_frame(*item[1:])
                else:
                    self._open(item[1])
            except Exception:  # one bad frame must not end the recorder
                log.exception("clip ring: could not take %s", item[0])

    def _add_frame(self, camera_id: str, ts: float, image: np.ndarray) -> None:
        jpeg = self._shrink(image)
        ring = self._rings.setdefault(camera_id, deque())
        ring.append((ts, jpeg))
        while ring and ring[0][0] < ts - self.cfg.pre_s - 1.0:
            ring.popleft()
        still = []
        for req in self._pending:
            if req.camera_id == camera_id and ts >= req.start:
                if ts <= req.end:
                    req.frames.append((ts, jpeg))
                if ts >= req.end:
                    self._encode.put(req)
                    continue
            still.append(req)
        self._pending = still
        self._finish_stale(time.time())

    def _open(self, req: _Request) -> None:
        req.frames = [(ts, j) for ts, j in self._rings.get(req.camera_id, ()) if ts >= req.start]
        if req.frames and req.frames[-1][0] >= req.end:
            self._encode.put(req)
        else:
            self._pending.append(req)

    def _finish_stale(self, now: float) -> None:
        """A camera that stopped sending frames still gets its clip, with what there is."""
        stale = [r for r in self._pending if now > r.end + 2.0]
        if stale:
            self._pending = [r for r in self._pending if r not in stale]
            for r in stale:
                self._encode.put(r)

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
        self._stop.set()
        self._threads[0].join(timeout)
        for r in self._pending:
            self._encode.put(r)
        self._pending = []
        self._encode.put(None)
        self._threads[1].join(timeout)

    def stats(self) -> dict:
        return {"clips": self.clips, "failed": self.failed, "dropped_frames": self.dropped,
                "cameras": len(self._rings), "pending": len(self._pending), "queued": self._in.qsize()}
