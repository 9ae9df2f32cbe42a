"""Decode only what is analysed.

Every packet must be read off the network, but most frames of a 25 fps camera
analysed at 2 fps are never looked at. H.264 without B-frames decodes a frame
only from its keyframe forward, so per group of pictures (GOP) we decode from
the keyframe up to the frame that is due, and skip the rest of the GOP. When
keyframes come at least as often as frames are due, that is keyframe-only
decoding. Packet timestamps are known before decoding, which is what makes the
decision possible. With B-frames (reordering) the chain cannot be cut, so
everything is decoded and non-reference frames are skipped by the decoder.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import median


@dataclass
class DecodePlanner:
    """Per camera: which packets to decode, and which decoded frames to hand off.

    ``period`` is 1 / analysis fps. Times are stream seconds (packet/frame pts).
    """

    period: float
    tolerance: float | None = None  # seconds a frame may be early and still count as due; default period/10
    next_due: float | None = None
    last_key: float | None = None
    chain: bool = False  # every packet since the last keyframe was decoded
    _key_planned: bool = False  # the packet just planned is a keyframe chosen for analysis
    _key_gaps: deque = field(default_factory=lambda: deque(maxlen=8))
    decoded: int = 0
    skipped: int = 0

    def __post_init__(self) -> None:
        if self.tolerance is None:
            self.tolerance = self.period / 10

    @property
    def gop(self) -> float | None:
        """Median keyframe interval seen so far (None until two keyframes)."""
        return median(self._key_gaps) if self._key_gaps else None

    @property
    def keyframe_only(self) -> bool:
        gop = self.gop
        return gop is not None and gop <= self.period + self.tolerance

    def should_decode(self, t: float | None, is_key: bool) -> bool:
        """Decide for one packet, before it is decoded."""
        self._key_planned = False
        if t is None:  # no timestamp (first RTSP packets): decoding is the safe choice
            return self._take(True, is_key)
        if self.next_due is not None and self.next_due - t > 2 * self.period + 1.0:
            self.next_due = None  # timestamps jumped back: the camera restarted its clock
        if is_key:
            if self.last_key is not None and t > self.last_key:
                self._key_gaps.append(t - self.last_key)
            self.last_key = t
            gop = self.gop
            if gop is None or self.next_due is None:
                want = True
            elif self.keyframe_only:
                # the keyframe nearest the due time is the frame to analyse
                want = t >= self.next_due - self.tolerance or t + gop - self.next_due > self.next_due - t
                self._key_planned = want
            else:
                # decode from this keyframe only if something falls due before the next one
                want = self.next_due < t + gop - self.tolerance
            return self._take(want, is_key)
        if not self.chain:
            return self._take(False, is_key)  # cut off from its keyframe: cannot decode anyway
        gop = self.gop
        if gop is None or self.next_due is None or self.last_key is None:
            return self._take(True, is_key)
        # keep decoding while a frame is still due inside this GOP
        # (a frame due right at the next keyframe is served by that keyframe)
        return self._take(self.next_due < self.last_key + gop - self.tolerance and t >= self.last_key, is_key)

    def _take(self, decode: bool, is_key: bool) -> bool:
        if is_key:
            self.chain = decode
        elif not decode:
            self.chain = False
        if decode:
            self.decoded += 1
        else:
            self.skipped += 1
        return decode

    def due(self, t: float) -> bool:
        """Whether a decoded frame at ``t`` should be handed to the analyser; advances the schedule."""
        if self._key_planned:  # keyframe-only: the schedule follows the keyframes actually chosen
            self._key_planned = False
            self.next_due = t + self.period
            return True
        if self.next_due is not None and t < self.next_due - self.tolerance:
            return False
        if self.next_due is None or t - self.next_due > self.period:
            self.next_due = t + self.period  # first frame, or far behind: restart the schedule
        else:
            self.next_due += self.period
        return True
