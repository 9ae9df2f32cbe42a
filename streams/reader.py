"""One reader per camera: PyAV over RTSP (TCP) or a local file, newest-frame hand-off.

The reader owns the connection and the decoding; the analyser only ever sees
the newest sampled frame (``FrameSlot``), so a slow analyser drops old frames
instead of falling behind, and one camera's trouble never blocks another's.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal
from urllib.parse import urlsplit

import av
import numpy as np

from gridwatch.config import mask_url
from vision.detections import Frame

log = logging.getLogger(__name__)

CameraState = Literal["connecting", "online", "stalled", "offline", "unauthorized", "stopped"]

RTSP_OPTIONS = {
    "rtsp_transport": "tcp",
    "timeout": "3000000",  # µs; the socket-level timeout of FFmpeg's RTSP demuxer
    "analyzeduration": "500000",  # open in ~0.6 s instead of ~2.8 s (measured)
    "probesize": "65536",
}


class FrameSlot:
    """Holds only the newest frame; a frame replaced before it was taken counts as dropped."""

    def __init__(self, notify: threading.Event | None = None):
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._notify = notify
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
        if self._notify is not None:
            self._notify.set()

    def take(self) -> Frame | None:
        with self._lock:
            frame, self._frame = self._frame, None
            return frame


@dataclass
class Backoff:
    """Capped exponential backoff with jitter, reset once frames flow again."""

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class CameraHealth:
    camera_id: str
    state: CameraState = "connecting"
    since: float = field(default_factory=time.time)
    frames_in: int = 0
    frames_analysed: int = 0  # frames handed to the analyser (sampled)
    frames_dropped: int = 0
    reconnects: int = 0
    last_frame_ts: float | None = None
    last_error: str | None = None
    width: int | None = None
    height: int | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class StreamEnded(Exception):
    """The stream stopped delivering: a killed server ends PyAV's demuxer quietly, without an error."""


class CameraReader(threading.Thread):
    """Reads one camera until ``stop()``; reconnects forever with capped backoff.

    ``fps`` is the analysis rate: frames are sampled on their timestamps so the
    analyser gets ``fps`` frames per second of video whatever the camera sends.
    Local files are paced at their own frame rate, so they behave like a camera.
    """

    STALL_S = 3.0  # no frame for this long while connected: stalled
    UNAUTHORIZED_RETRY_S = 60.0  # a wrong password does not get better by hammering the camera

    def __init__(self, camera_id: str, url: str, fps: float, slot: FrameSlot,
                 open_timeout: float = 5.0, read_timeout: float = 5.0, loop_files: bool = True,
                 clock: Callable[[], float] = time.time):
        super().__init__(name=f"reader-{camera_id}", daemon=True)
        self.camera_id, self.url, self.fps, self.slot = camera_id, url, fps, slot
        self.timeouts = (open_timeout, read_timeout)
        self.loop_files = loop_files
        self.is_file = urlsplit(url).scheme in ("", "file")
        self.health = CameraHealth(camera_id)
        self.backoff = Backoff()
        self._stop_event = threading.Event()
        self._clock = clock
        self._seq = 0

    # --- public -----------------------------------------------------------------
    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def snapshot_health(self) -> dict:
        h = self.health
        h.frames_dropped = self.slot.dropped
        if h.state == "online" and h.last_frame_ts and self._clock() - h.last_frame_ts > self.STALL_S:
            self._set_state("stalled")
        return h.as_dict()

    # --- internals ----------------------------------------------------------------
    def _set_state(self, state: CameraState, error: str | None = None) -> None:
        h = self.health
        if error is not None:
            h.last_error = mask_url(error)
        if h.state != state:
            log.info("camera %s: %s -> %s%s", self.camera_id, h.state, state, f" ({h.last_error})" if error else "")
            h.state, h.since = state, self._clock()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._set_state("connecting")
            delay = None
            try:
                self._read_once()
                if self.is_file and self.loop_files:
                    delay = 0.0  # a file played to its end: start it again at once
                else:
                    raise StreamEnded("stream ended (server closed or killed)")
            except StreamEnded as err:
                self._set_state("offline", str(err))
            except (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError, PermissionError) as err:
                self._set_state("unauthorized", f"{type(err).__name__}: {err}")
                delay = self.UNAUTHORIZED_RETRY_S
            except av.error.FFmpegError as err:
                msg = f"{type(err).__name__}: {err}"
                if "401" in msg or "Unauthorized" in msg:
                    self._set_state("unauthorized", msg)
                    delay = self.UNAUTHORIZED_RETRY_S
                else:
                    self._set_state("offline", msg)
            except (OSError, ValueError) as err:  # refused, no such file, bad data
                self._set_state("offline", f"{type(err).__name__}: {err}")
            except Exception as err:  # never let one camera's surprise kill its thread silently
                log.exception("camera %s: unexpected error", self.camera_id)
                self._set_state("offline", f"{type(err).__name__}: {err}")
            if self._stop_event.is_set():
                break
            self.health.reconnects += 1
            self._stop_event.wait(self.backoff.next_delay() if delay is None else delay)
        self._set_state("stopped")

    def _open(self):
        if self.is_file:
            path = urlsplit(self.url).path if self.url.startswith("file:") else self.url
            if not Path(path).is_file():
                raise FileNotFoundError(f"no such video file: {path}")
            return av.open(path, timeout=self.timeouts)
        return av.open(self.url, options=RTSP_OPTIONS, timeout=self.timeouts)

    def _read_once(self) -> None:
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            period = 1.0 / self.fps
            next_due: float | None = None
            wall0 = pts0 = None
            t = 0.0
            for packet in container.demux(stream):
                if self._stop_event.is_set():
                    return
                for frame in packet.decode():
                    t = frame.time if frame.time is not None else t  # the first RTSP frame may lack a pts
                    if next_due is not None and next_due - t > 2 * period + 1.0:
                        next_due = None  # timestamps jumped back (camera restarted its clock)
                    if self.is_file:  # pace a file like a live camera
                        if wall0 is None:
                            wall0, pts0 = self._clock(), t
                        ahead = (t - pts0) - (self._clock() - wall0)
                        if ahead > 0 and self._stop_event.wait(ahead):
                            return
                    self._on_frame_decoded(frame.width, frame.height)
                    if next_due is not None and t < next_due:
                        continue  # not analysed: never converted to BGR
                    next_due = t + period if next_due is None or t - next_due > period else next_due + period
                    self._hand_off(frame.to_ndarray(format="bgr24"))

    def _on_frame_decoded(self, width: int, height: int) -> None:
        h = self.health
        h.frames_in += 1
        h.last_frame_ts = self._clock()
        h.width, h.height = width, height
        if h.state != "online":
            self._set_state("online")
            h.last_error = None
            self.backoff.reset()

    def _hand_off(self, image: np.ndarray) -> None:
        self._seq += 1
        self.health.frames_analysed += 1
        self.slot.put(Frame(self.camera_id, image, self._clock(), self._seq))
