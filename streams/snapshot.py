"""One picture from a camera, now: the admin's "test" button and the zone editor's background."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np

from gridwatch.config import mask_url

from .reader import RTSP_OPTIONS


class SnapshotError(RuntimeError):
    """The camera could not give a picture; the message says why (password masked)."""


def grab(url: str, timeout_s: float = 8.0) -> np.ndarray:
    """The first decodable frame of ``url`` (RTSP or a local file) as BGR."""
    is_file = urlsplit(url).scheme in ("", "file")
    try:
        if is_file:
            path = urlsplit(url).path if url.startswith("file:") else url
            if not Path(path).is_file():
                raise SnapshotError(f"no such video file: {path}")
            container = av.open(path, timeout=timeout_s)
        else:
            container = av.open(url, options=RTSP_OPTIONS, timeout=(timeout_s, timeout_s))
        with container:
            for frame in container.decode(video=0):
                return frame.to_ndarray(format="bgr24")
    except SnapshotError:
        raise
    except (av.error.FFmpegError, OSError) as err:
        raise SnapshotError(f"{mask_url(url)}: {type(err).__name__}: {mask_url(str(err))}") from None
    raise SnapshotError(f"{mask_url(url)}: the stream ended before a picture arrived")
