"""Live view over WebRTC (aiortc): the camera's own H.264 passed through to the browser.

One RTSP connection per watched camera, shared by all its viewers through a
``MediaRelay``; nothing is re-encoded when the camera sends H.264 over RTSP
(the browser takes it as it is). Local files (demo without an RTSP server) are
decoded and re-encoded, since aiortc can only pass through Annex-B H.264.

Boxes in step with the picture: the pipeline's overlay of a frame carries
``ts``, the wall time its packet arrived from the camera (``streams.Frame.ts``).
This server reads the same live stream, so each packet is stamped the same way
when it arrives (``CameraFeed``) and sent with an RTP timestamp made from that
wall time: ``rtp = (origin + round(ts * 90000)) mod 2**32``. ``origin`` is the
sender's random timestamp offset, learnt once the first frame went out and
told to the page on its ``clock`` data channel; the page reads each displayed
frame's RTP timestamp (``requestVideoFrameCallback``), turns it back into
``ts`` and draws the overlay analysed closest to it (api/static/live.html).
Files read here and by the pipeline are two unrelated timelines: their boxes
cannot be matched, and the page says so by drawing only overlays it can pair.

ICE is limited to the addresses in the config (``live.ice_addresses``) with no
STUN server by default, so no candidate leaves the machine's chosen networks.

The source is opened only after ``streams.urls.check_source`` (RTSP, or a video
file inside ``settings.media_dirs``) and with its FFmpeg whitelists.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import aioice.ice
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer, MediaRelay
from aiortc.mediastreams import MediaStreamError

from gridwatch.config import Camera
from streams.urls import UnsafeSource, check_source, mask_url_field

log = logging.getLogger(__name__)

RTP_RATE = 90000  # the RTP clock of video
WALL_TIME_BASE = Fraction(1, RTP_RATE)


def limit_ice_to(addresses: list[str]) -> None:
    """Make aioice offer exactly these host addresses.

    aioice gathers every interface's address but leaves out 127.0.0.1, which is
    the one a single-machine deployment needs; it has no option for either, so
    its address lookup is replaced (process-wide: every peer connection of this
    API shares one ICE policy, set from the config at start-up).
    """
    chosen = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [
        a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


class CameraFeed(MediaStreamTrack):
    """A camera's H.264 packets as they arrive over RTSP, each stamped with the wall time it arrived.

    A thread demuxes (no decoding) and stamps a packet right after it is read, as the pipeline's
    ``streams.CameraReader`` stamps the frames it analyses, then sets its ``pts`` to that time in
    90 kHz units: what the RTP sender turns into the frame's RTP timestamp. The thread runs from the
    open on (so a packet's stamp is when it arrived, not when a viewer first asked), hands packets on
    once the track is read, and ends with the stream (the track then ends, and the next viewer opens
    the camera again) or on ``stop()``.
    """

    kind = "video"

    def __init__(self, container, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] = time.time):
        super().__init__()
        self.container, self.loop, self.clock = container, loop, clock
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=50)  # 5 s at 10 fps: a stalled loop drops, never hoards
        self._wanted = False
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._read, name="live-feed", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, target: str, options: dict[str, str], timeout: float,
             loop: asyncio.AbstractEventLoop) -> "CameraFeed":
        container = av.open(target, options=options, timeout=timeout)
        if not container.streams.video or container.streams.video[0].codec_context.name != "h264":
            container.close()
            raise LookupError("the stream has no H.264 video to pass through")
        return cls(container, loop)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        self._wanted = True
        packet = await self._queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        return packet

    def _put(self, packet) -> None:
        if packet is not None and not self._wanted:
            return  # nobody reads yet: the next viewer starts at the live moment, not at stale packets
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(packet)

    def _hand(self, packet) -> None:
        try:
            self.loop.call_soon_threadsafe(self._put, packet)
        except RuntimeError:  # the event loop is closed: the API is shutting down
            self._quit.set()

    def _read(self) -> None:
        stream = self.container.streams.video[0]
        last = 0
        try:
            for packet in self.container.demux(stream):
                if self._quit.is_set():
                    break
                if packet.size == 0:
                    continue
                stamp = max(round(self.clock() * RTP_RATE), last + 1)  # strictly increasing RTP time
                last = stamp
                packet.pts = packet.dts = stamp
                packet.time_base = WALL_TIME_BASE
                self._hand(packet)
        except Exception as err:  # the camera went away: the track ends, the next viewer reopens it
            log.info("live feed ended: %s", err)
        finally:
            try:
                self.container.close()
            except Exception:
                pass
            self._hand(None)

    def stop(self) -> None:
        super().stop()
        self._quit.set()

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


class FromKeyframe(MediaStreamTrack):
    """A viewer's copy of a passed-through stream that starts at a keyframe, and learns its RTP clock.

    A viewer who joins mid-GOP would otherwise get frames that reference a
    picture it never saw (grey or green smears until the next keyframe); without
    re-encoding, waiting for the camera's next keyframe is the only clean start.

    ``on_origin(origin)`` is called once the RTP timestamp origin of this viewer's sender is known:
    the sender stamps a frame ``origin + pts`` (mod 2**32), and when it asks for the next frame it has
    sent every packet of the last one, so its last RTP timestamp minus that frame's pts is the origin.
    """

    kind = "video"

    def __init__(self, source: MediaStreamTrack, on_origin: Callable[[int], None] | None = None):
        super().__init__()
        self.source = source
        self.started = False
        self.sender: RTCRtpSender | None = None
        self.origin: int | None = None
        self.on_origin = on_origin
        self._last_pts: int | None = None
        self._candidate: int | None = None

    def _learn_origin(self) -> None:
        if self.origin is not None or self._last_pts is None or self.sender is None:
            return
        # aiortc keeps the offset in _run_rtp's locals; its last RTP timestamp (for RTCP sender reports) is here
        rtp = getattr(self.sender, "_RTCRtpSender__rtp_timestamp", None)
        if not rtp:
            return
        origin = (rtp - self._last_pts) % 2**32
        if origin != self._candidate:  # believed when two frames in a row agree (none was dropped unsent between)
            self._candidate = origin
            return
        self.origin = origin
        if self.on_origin is not None:
            self.on_origin(origin)

    async def recv(self):
        self._learn_origin()
        while True:
            packet = await self.source.recv()
            if self.started or getattr(packet, "is_keyframe", True):
                self.started = True
                if getattr(packet, "time_base", None) == WALL_TIME_BASE:
                    self._last_pts = packet.pts
                return packet

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class Viewer:
    """One browser's peer connection: its ``clock`` data channel gets the RTP origin once known."""

    def __init__(self, pc: RTCPeerConnection):
        self.pc = pc
        self.channel = None
        self.origin: int | None = None

        @pc.on("datachannel")
        def _channel(channel) -> None:
            if channel.label == "clock":
                self.channel = channel
                channel.on("open", self._tell)
                self._tell()

    def set_origin(self, origin: int) -> None:
        self.origin = origin
        self._tell()

    def _tell(self) -> None:
        if self.channel is None or self.origin is None or self.channel.readyState != "open":
            return
        self.channel.send(json.dumps({"rtp_origin": self.origin, "rtp_rate": RTP_RATE, "server_time": time.time()}))


class LiveViews:
    """WebRTC sessions for the cameras of one config."""

    def __init__(self, ice_addresses: list[str], stun_servers: list[str] | None = None,
                 media_dirs: Iterable[Path] = ()):
        limit_ice_to(ice_addresses)
        self.media_dirs = list(media_dirs)  # where local video files may come from (settings.media_dirs)
        self.ice = RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in (stun_servers or [])])
        self.relay = MediaRelay()
        self.players: dict[str, MediaStreamTrack] = {}  # camera id -> its shared video (a CameraFeed, or a file's player)
        self.peers: set[RTCPeerConnection] = set()
        self._lock = asyncio.Lock()

    async def _source(self, cam: Camera, media_dirs: Iterable[Path]) -> tuple[MediaStreamTrack, bool]:
        """The camera's shared video; (track, passthrough)."""
        url = cam.view_url or cam.url
        try:
            source = check_source(url, media_dirs, field="view_url" if cam.view_url else "url")
        except UnsafeSource as err:  # the router answers LookupError with 502
            raise LookupError(f"camera {cam.id}'s {err}") from None
        rtsp = source.kind == "rtsp"
        async with self._lock:
            track = self.players.get(cam.id)
            if track is None or track.readyState == "ended":
                log.info("live view of %s from %s", cam.id, mask_url_field(url))
                if rtsp:
                    track = await asyncio.to_thread(CameraFeed.open, source.target, source.options, 5,
                                                    asyncio.get_running_loop())
                else:
                    player = await asyncio.to_thread(MediaPlayer, source.target, options=source.options, timeout=5,
                                                     decode=True, loop=True)
                    if player.video is None:
                        raise LookupError(f"camera {cam.id} has no video stream")
                    track = player.video
                self.players[cam.id] = track
        return track, rtsp

    async def answer(self, cam: Camera, sdp: str, kind: str,
                     media_dirs: Iterable[Path] | None = None) -> RTCSessionDescription:
        """Answer a browser's offer with the camera's video, send-only (and its clock, when it asks for one).

        ``media_dirs``: the running config's ``settings.media_dirs`` (default: those given at construction).
        """
        source, passthrough = await self._source(cam, self.media_dirs if media_dirs is None else media_dirs)
        pc = RTCPeerConnection(self.ice)
        self.peers.add(pc)
        viewer = Viewer(pc)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                self.peers.discard(pc)

        relayed = self.relay.subscribe(source, buffered=False)
        track = FromKeyframe(relayed, viewer.set_origin) if passthrough else relayed
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if passthrough:
            track.sender = transceiver.sender
            # must be set before the remote description is applied, or VP8 is negotiated (and re-encoding)
            h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
            transceiver.setCodecPreferences(h264)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in list(self.peers)), return_exceptions=True)
        self.peers.clear()
        for track in self.players.values():  # stop the readers' threads before the event loop goes
            await asyncio.to_thread(track.stop)
            if isinstance(track, CameraFeed):
                await asyncio.to_thread(track.join)
        self.players.clear()
