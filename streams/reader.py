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
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

import av
import numpy as np

from .decode import DecodePlanner
from .frame import Frame
from .urls import RTSP_OPTIONS, check_source, is_file_url, mask_text, url_secrets

log = logging.getLogger(__name__)

CameraState = Literal["connecting", "online", "stalled", "offline", "unauthorized", "stopped"]

__all__ = ["RTSP_OPTIONS", "Backoff", "CameraHealth", "CameraReader", "FrameSlot", "StreamEnded", "pick_hwaccel"]


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
    """What an operator and /metrics see of one camera; plain counters, read without locks."""

    camera_id: str
    state: CameraState = "connecting"
    since: float = field(default_factory=time.time)
    frames_in: int = 0  # decoded
    frames_analysed: int = 0  # handed to the analyser (sampled)
    frames_dropped: int = 0  # handed over but replaced before the analyser took them
    frames_skipped: int = 0  # packets never decoded (not needed for analysis)
    packets: int = 0
    decode_errors: int = 0
    decode_cpu_s: float = 0.0  # CPU seconds spent decoding and converting, this camera's thread
    reconnects: int = 0
    last_frame_ts: float | None = None
    last_error: str | None = None
    width: int | None = None
    height: int | None = None
    decode_mode: str = "unknown"  # keyframes | until-due | all
    hwaccel: str = "cpu"
    fps_in: float = 0.0
    fps_analysed: float = 0.0
    history: deque = field(default_factory=lambda: deque(maxlen=20))  # (state, since) transitions

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "history"}
        d["history"] = [{"state": s, "since": t} for s, t in self.history]
        return d


def pick_hwaccel(requested: str = "auto") -> str | None:
    """NVDEC through FFmpeg's CUDA hwaccel when an NVIDIA GPU is present, else None (CPU).

    PyAV lists 'cuda' as available whenever FFmpeg was built with it, GPU or not,
    so the device node is what decides.
    """
    if requested == "cpu":
        return None
    from av.codec.hwaccel import hwdevices_available

    has_gpu = Path("/dev/nvidiactl").exists() and "cuda" in hwdevices_available()
    if requested == "auto":
        return "cuda" if has_gpu else None
    return requested


class StreamEnded(Exception):
    """The stream stopped delivering: a killed server ends PyAV's demuxer quietly, without an error."""


class CameraReader(threading.Thread):
    """Reads one camera until ``stop()``; reconnects forever with capped backoff.

    ``fps`` is the analysis rate: frames are sampled on their timestamps so the
    analyser gets ``fps`` frames per second of video whatever the camera sends.
    Local files are paced at their own frame rate, so they behave like a camera;
    they are opened only from ``media_dirs`` (``streams.urls.check_source``, asked at every connect).
    """

    STALL_S = 3.0  # no frame for this long while connected: stalled
    UNAUTHORIZED_RETRY_S = 60.0  # a wrong password does not get better by hammering the camera

    def __init__(self, camera_id: str, url: str, fps: float, slot: FrameSlot,
                 open_timeout: float = 5.0, read_timeout: float = 5.0, loop_files: bool = True,
                 max_side: int | None = 1280, hwaccel: str = "auto", clock: Callable[[], float] = time.time,
                 media_dirs: Iterable[Path] = ()):
        super().__init__(name=f"reader-{camera_id}", daemon=True)
        self.camera_id, self.url, self.fps, self.slot = camera_id, url, fps, slot
        self.media_dirs = list(media_dirs)
        self._secrets = url_secrets(url)  # masked in every error and log line, even where no URL parser sees them
        self.timeouts = (open_timeout, read_timeout)
        self.loop_files = loop_files
        self.max_side = max_side  # frames are shrunk to this long side while converting (the model sees 640)
        self.is_file = is_file_url(url)
        self.health = CameraHealth(camera_id)
        self.health.history.append((self.health.state, self.health.since))
        self.hwaccel = pick_hwaccel(hwaccel)
        self.backoff = Backoff()
        self._refusals = 0
        self._stop_event = threading.Event()
        self._clock = clock
        self._seq = 0
        self._rate_mark = (clock(), 0, 0)

    # --- public -----------------------------------------------------------------
    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def snapshot_health(self) -> dict:
        """Health now; also updates the rates (frames per second since the previous snapshot)."""
        h = self.health
        h.frames_dropped = self.slot.dropped
        now = self._clock()
        t0, n_in, n_an = self._rate_mark
        if now - t0 >= 0.5:
            h.fps_in = (h.frames_in - n_in) / (now - t0)
            h.fps_analysed = (h.frames_analysed - n_an) / (now - t0)
            self._rate_mark = (now, h.frames_in, h.frames_analysed)
        if h.state == "online" and h.last_frame_ts and now - h.last_frame_ts > self.STALL_S:
            self._set_state("stalled")
        return h.as_dict()

    # --- internals ----------------------------------------------------------------
    def _set_state(self, state: CameraState, error: str | None = None) -> None:
        h = self.health
        if state == "online":
            self._refusals = 0  # refusals in a row
        if error is not None:
            h.last_error = self._mask(error)
        if h.state != state:
            log.info("camera %s: %s -> %s%s", self.camera_id, h.state, state, f" ({h.last_error})" if error else "")
            h.state, h.since = state, self._clock()
            h.history.append((state, h.since))

    def _mask(self, text: str) -> str:
        return mask_text(text, self._secrets)

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
                delay = self._refused()
            except av.error.FFmpegError as err:
                msg = f"{type(err).__name__}: {err}"
                if "401" in msg or "Unauthorized" in msg:
                    self._set_state("unauthorized", msg)
                    delay = self._refused()
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

    def _refused(self) -> float | None:
        """The wait after the camera refused us: the long one only when it refuses twice in a row.

        An overloaded RTSP server (or one restarting) may answer a single connect with EPERM or 401; a camera that
        moved to this worker in a failover must not sit out a minute for that. A wrong password refuses every time.
        """
        self._refusals += 1
        return self.UNAUTHORIZED_RETRY_S if self._refusals >= 2 else None

    def _open(self):
        """Open the camera; the URL is checked again at every connect (a media dir's symlink may have changed)."""
        source = check_source(self.url, self.media_dirs)
        if self.hwaccel and source.kind == "rtsp":
            from av.codec.hwaccel import HWAccel

            try:
                return av.open(source.target, options=source.options, timeout=self.timeouts,
                               hwaccel=HWAccel(self.hwaccel, allow_software_fallback=True))
            except (av.error.FFmpegError, ValueError, RuntimeError) as err:
                if isinstance(err, (av.error.HTTPError, ConnectionError, av.error.TimeoutError, PermissionError)):
                    raise  # the camera's problem, not the decoder's
                log.warning("camera %s: %s decoding unavailable (%s); using the CPU", self.camera_id, self.hwaccel,
                            self._mask(str(err)))
                self.hwaccel = None
        return av.open(source.target, options=source.options, timeout=self.timeouts)

    MAX_CONSECUTIVE_DECODE_ERRORS = 50

    def _read_once(self) -> None:
        with self._open() as container:
            stream = container.streams.video[0]
            cc = stream.codec_context
            # one decoding thread per camera: hundreds of cameras already use every core, and
            # FFmpeg's per-decoder frame threads would multiply memory and latency
            cc.thread_count = 1
            self.health.hwaccel = self.hwaccel or "cpu"
            tb = float(stream.time_base) if stream.time_base else 0.0
            planner = DecodePlanner(1.0 / self.fps)
            h = self.health
            wall0 = pts0 = None
            errors = 0
            reorders = False
            # the per-packet path runs ~25 times a second for every camera: keep it lean
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's flush packet
                received = self._clock()
                h.packets += 1
                pts = packet.pts
                t = pts * tb if pts is not None and tb else None
                is_key = packet.is_keyframe
                if is_key:
                    if self._stop_event.is_set():
                        return
                    reorders = bool(cc.has_b_frames)
                    if reorders:
                        # frames come out of order: the chain cannot be cut; the decoder skips unreferenced ones
                        cc.skip_frame = "NONREF" if self.fps * 2 <= (stream.average_rate or 25) else "DEFAULT"
                    h.decode_mode = "all" if reorders or planner.gop is None else (
                        "keyframes" if planner.keyframe_only else "until-due")
                if self.is_file and t is not None:  # pace a file like a live camera
                    if wall0 is None:
                        wall0, pts0 = received, t
                    ahead = (t - pts0) - (received - wall0)
                    if ahead > 0 and self._stop_event.wait(ahead):
                        return
                if not reorders and not planner.should_decode(t, is_key):
                    h.frames_skipped += 1
                    continue
                if self._stop_event.is_set():
                    return
                cpu0 = time.thread_time()
                try:
                    frames = packet.decode()
                    errors = 0
                except (av.error.InvalidDataError, av.error.UndefinedError) as err:
                    # corrupt data: skip the packet, keep the connection; give up only if it persists
                    h.decode_errors += 1
                    errors += 1
                    h.last_error = self._mask(f"decode error: {err}")
                    if errors >= self.MAX_CONSECUTIVE_DECODE_ERRORS:
                        raise
                    continue
                for frame in frames:
                    self._on_frame_decoded(frame.width, frame.height)
                    ft = frame.time if frame.time is not None else t
                    if ft is None or planner.due(ft):
                        self._hand_off(self._to_bgr(frame), received)
                h.decode_cpu_s += time.thread_time() - cpu0

    def _to_bgr(self, frame) -> np.ndarray:
        """BGR for the analyser, shrunk on the way if larger than ``max_side`` (one swscale pass)."""
        w, h = frame.width, frame.height
        if self.max_side and max(w, h) > self.max_side:
            scale = self.max_side / max(w, h)
            w, h = int(round(w * scale / 2)) * 2, int(round(h * scale / 2)) * 2
            return frame.to_ndarray(format="bgr24", width=w, height=h, interpolation="FAST_BILINEAR")
        return frame.to_ndarray(format="bgr24")

    def _on_frame_decoded(self, width: int, height: int) -> None:
        h = self.health
        h.frames_in += 1
        h.last_frame_ts = self._clock()
        h.width, h.height = width, height
        if h.state != "online":
            self._set_state("online")
            h.last_error = None
            self.backoff.reset()

    def _hand_off(self, image: np.ndarray, received: float) -> None:
        self._seq += 1
        self.health.frames_analysed += 1
        self.slot.put(Frame(self.camera_id, image, received, self._seq))
