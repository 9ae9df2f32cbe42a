"""One picture from a camera, now: the admin's "test" button and the zone editor's background.

What a failure says is kept coarse on purpose: the admin's test reaches any
host the server can, so "refused", "timed out" and "no RTSP server there" all
read the same (else it is a port scanner). Only a wrong password and a source
that is not a video get their own message. The detail goes to the server's log.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Literal

import av
import numpy as np

from .urls import Source, check_source, mask_text, mask_url_field, url_secrets

FailureKind = Literal["unreachable", "unauthorized", "not_video"]

MESSAGES: dict[FailureKind, str] = {
    "unreachable": "no picture: the camera could not be reached or did not answer as an RTSP camera; "
                   "check the host, port and path",
    "unauthorized": "no picture: the camera refused the user name or password (RTSP 401); check them",
    "not_video": "no picture: the source opened but gave no video picture; check that it is a video stream or file",
}


class SnapshotError(RuntimeError):
    """The source gave no picture. ``str()`` is safe to show (one of ``MESSAGES``); ``detail`` is for the log."""

    def __init__(self, url: str, kind: FailureKind, detail: str):
        self.kind = kind
        self.detail = mask_text(detail, url_secrets(url))
        super().__init__(f"{mask_url_field(url)}: {MESSAGES[kind]}")


def _kind(source: Source, err: Exception) -> FailureKind:
    """Sort a failure into what may be told: a wrong password, not a video, or (anything else) unreachable."""
    if isinstance(err, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)) or "401 Unauthorized" in str(err):
        return "unauthorized"
    if source.kind == "file":
        return "not_video"  # inside a media dir: missing, unreadable or not a video container
    return "unreachable"


def grab(url: str, media_dirs: Iterable[Path] = (), timeout_s: float = 8.0) -> np.ndarray:
    """The first decodable frame of ``url`` (RTSP, or a video file in ``media_dirs``) as BGR.

    Raises ``streams.urls.UnsafeSource`` for a URL that may not be opened, ``SnapshotError`` for one that gave no picture.
    """
    source = check_source(url, media_dirs)
    # an RTSP server whose stream is still starting can answer with a description FFmpeg cannot use yet
    # ("Invalid data", seen on a loaded machine just after the server started): one more try, half a second on
    attempts = 2 if source.kind == "rtsp" else 1
    for attempt in range(attempts):
        try:
            with av.open(source.target, options=source.options, timeout=(timeout_s, timeout_s)) as container:
                if not container.streams.video:
                    raise SnapshotError(url, "not_video", "no video stream")
                for frame in container.decode(video=0):
                    return frame.to_ndarray(format="bgr24")
        except SnapshotError:
            raise
        except av.error.InvalidDataError as err:
            if attempt + 1 < attempts:
                time.sleep(0.5)
                continue
            raise SnapshotError(url, _kind(source, err), f"{type(err).__name__}: {err}") from None
        except (av.error.FFmpegError, OSError, ValueError, RuntimeError, StopIteration) as err:
            raise SnapshotError(url, _kind(source, err), f"{type(err).__name__}: {err}") from None
        break
    raise SnapshotError(url, "not_video" if source.kind == "file" else "unreachable",
                        "the stream ended before a picture arrived")
