"""Camera-like H.264 clips made from any footage: the size, rate and GOP of a real camera's stream.

Used by the tests and the ingest benchmark to stand in for cameras, served by
the RTSP server in passthrough mode.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streams.urls import check_source


def make_h264_clip(source: Path | str | None, dest: Path | str, width: int, height: int, fps: int, gop: int,
                   seconds: float, container: str = "mp4") -> Path:
    """Re-encode ``source`` (or a moving test pattern when None) as H.264 with no B-frames.

    ``container`` "mp4" or "h264" (an Annex-B elementary stream, which can be
    concatenated with another to change resolution mid-stream).
    """
    dest = Path(dest)
    n = int(round(fps * seconds))
    frames = _frames(source, width, height, n)
    fmt = {"mp4": "mp4", "h264": "h264"}[container]
    with av.open(str(dest), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=fps,
                                options={"preset": "veryfast", "tune": "zerolatency", "bf": "0",
                                         "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dest


def _frames(source, width: int, height: int, n: int):
    if source is None:
        for i in range(n):
            img = np.full((height, width, 3), 40, np.uint8)
            x = (i * 7) % max(width - 40, 1)
            img[height // 3: height // 3 + 40, x:x + 40] = (40, 200, 240)
            yield img
        return
    # the caller names the footage (tests, benchmarks): its own folder is the media dir, and the one check
    # still refuses URLs (concat:, http:, ...) and non-video demuxers
    src = check_source(str(source), [Path(source).resolve().parent], field="source")
    produced = 0
    while produced < n:  # loop the source when it is shorter than asked
        with av.open(src.target, options=src.options) as c:
            for f in c.decode(video=0):
                yield f.to_ndarray(format="bgr24", width=width, height=height)
                produced += 1
                if produced >= n:
                    return


def make_resolution_change_clip(source: Path | str | None, dest: Path | str, sizes: list[tuple[int, int]],
                                fps: int, gop: int, seconds_each: float) -> Path:
    """An MPEG-TS H.264 stream whose picture size changes, as when a camera's encoder is reconfigured.

    Each part comes from its own encoder; all parts go into one stream with
    continuous timestamps, the new SPS in-band (MPEG-TS carries it in the stream).
    """
    dest = Path(dest)
    n = int(round(fps * seconds_each))
    with av.open(str(dest), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=fps)  # the one output stream; its encoder is not used
        stream.width, stream.height, stream.pix_fmt = sizes[0][0], sizes[0][1], "yuv420p"
        offset = 0
        for width, height in sizes:
            enc = av.CodecContext.create("libx264", "w")
            enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
            enc.framerate = fps
            enc.options = {"preset": "veryfast", "tune": "zerolatency", "bf": "0", "g": str(gop),
                           "keyint_min": str(gop), "sc_threshold": "0"}
            enc.time_base = Fraction(1, fps)
            frames = list(_frames(source, width, height, n))
            packets = []
            for i, img in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(img, format="bgr24")
                vf.pts = i
                packets += enc.encode(vf)
            packets += enc.encode(None)
            for p in packets:
                p.stream = stream
                p.time_base = Fraction(1, fps)
                p.pts = (p.pts or 0) + offset
                p.dts = (p.dts if p.dts is not None else p.pts - offset) + offset
                out.mux(p)
            offset += n
    return dest
