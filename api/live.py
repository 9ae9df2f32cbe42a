"""Live view over WebRTC (aiortc): the camera's own H.264 passed through to the browser.

One RTSP connection per watched camera, shared by all its viewers through a
``MediaRelay``; nothing is re-encoded when the camera sends H.264 over RTSP
(the browser takes it as it is). Local files (demo without an RTSP server) are
decoded and re-encoded, since aiortc can only pass through Annex-B H.264.

ICE is limited to the addresses in the config (``live.ice_addresses``) with no
STUN server by default, so no candidate leaves the machine's chosen networks.

The source is opened only after ``streams.urls.check_source`` (RTSP, or a video
file inside ``settings.media_dirs``) and with its FFmpeg whitelists.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Iterable

import aioice.ice
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer, MediaRelay

from gridwatch.config import Camera
from streams.urls import UnsafeSource, check_source, mask_url_field

log = logging.getLogger(__name__)


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


class FromKeyframe(MediaStreamTrack):
    """A viewer's copy of a passed-through stream that starts at a keyframe.

    A viewer who joins mid-GOP would otherwise get frames that reference a
    picture it never saw (grey or green smears until the next keyframe); without
    re-encoding, waiting for the camera's next keyframe is the only clean start.
    """

    kind = "video"

    def __init__(self, source: MediaStreamTrack):
        super().__init__()
        self.source = source
        self.started = False

    async def recv(self):
        while True:
            packet = await self.source.recv()
            if self.started or getattr(packet, "is_keyframe", True):
                self.started = True
                return packet

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class LiveViews:
    """WebRTC sessions for the cameras of one config."""

    def __init__(self, ice_addresses: list[str], stun_servers: list[str] | None = None,
                 media_dirs: Iterable[Path] = ()):
        limit_ice_to(ice_addresses)
        self.media_dirs = list(media_dirs)  # where local video files may come from (settings.media_dirs)
        self.ice = RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in (stun_servers or [])])
        self.relay = MediaRelay()
        self.players: dict[str, MediaPlayer] = {}
        self.peers: set[RTCPeerConnection] = set()
        self._lock = asyncio.Lock()

    async def _player(self, cam: Camera, media_dirs: Iterable[Path]) -> tuple[MediaPlayer, bool]:
        """The camera's shared source; (player, passthrough)."""
        url = cam.view_url or cam.url
        try:
            source = check_source(url, media_dirs, field="view_url" if cam.view_url else "url")
        except UnsafeSource as err:  # the router answers LookupError with 502
            raise LookupError(f"camera {cam.id}'s {err}") from None
        rtsp = source.kind == "rtsp"
        async with self._lock:
            player = self.players.get(cam.id)
            if player is None or player.video is None or player.video.readyState == "ended":
                log.info("live view of %s from %s", cam.id, mask_url_field(url))
                player = await asyncio.to_thread(
                    MediaPlayer, source.target, options=source.options, timeout=5, decode=not rtsp, loop=not rtsp)
                self.players[cam.id] = player
        return player, rtsp

    async def answer(self, cam: Camera, sdp: str, kind: str,
                     media_dirs: Iterable[Path] | None = None) -> RTCSessionDescription:
        """Answer a browser's offer with the camera's video, send-only.

        ``media_dirs``: the running config's ``settings.media_dirs`` (default: those given at construction).
        """
        player, passthrough = await self._player(cam, self.media_dirs if media_dirs is None else media_dirs)
        if player.video is None:
            raise LookupError(f"camera {cam.id} has no video stream")
        pc = RTCPeerConnection(self.ice)
        self.peers.add(pc)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                self.peers.discard(pc)

        track = self.relay.subscribe(player.video, buffered=False)
        transceiver = pc.addTransceiver(FromKeyframe(track) if passthrough else track, direction="sendonly")
        if passthrough:
            # must be set before the remote description is applied, or VP8 is negotiated (and re-encoding)
            h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
            transceiver.setCodecPreferences(h264)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in list(self.peers)), return_exceptions=True)
        self.peers.clear()
        for player in self.players.values():  # stop the readers' threads before the event loop goes
            if player.video is not None:
                await asyncio.to_thread(player.video.stop)
        self.players.clear()
