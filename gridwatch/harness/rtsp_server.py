"""A real RTSP server for the demo and the tests: Debian's GStreamer RTSP server.

Runs under the system Python (``/usr/bin/python3``, which has ``gi``), not the
virtual environment: ``python3 rtsp_server.py --port N NAME=FILE ...``.

Each mount is one *live camera*, as a real one is: a single timeline that
every client joins at the current moment (two clients see the same picture at
the same time, whenever each connected). The camera's own pipeline plays the
file in a loop, in real time, into an ``appsink``; each RTSP media (shared by
all its clients) takes the camera's H.264 access units through an ``appsrc``,
starting at the next keyframe. The camera is switched on by its first client
and then runs on its own, watched or not, so the first client sees the clip
from its start and later ones join live. A live source also makes the media
unseekable, so a client's ``PLAY`` with a ``Range`` (FFmpeg sends
``npt=0.000-``) cannot rewind the camera for the others.

``--once`` serves clips rather than cameras: each client gets the clip from
its start (none of it lost while it sets up) and its stream ends with the clip;
what the tests of truncated and changing streams need.

Each file is decoded and encoded to H.264 (no B-frames, short GOP) so any
input the system's GStreamer decodes becomes a camera-like stream.
``--passthrough`` serves H.264 files (MP4, MKV or Annex-B)
as they are, which costs the server almost nothing: what the ingest benchmark
uses. Prints ``READY <port>`` once listening; exits on SIGTERM/SIGINT.
Optional ``--user``/``--password`` require Basic authentication, like a real camera.

Deliberately free of gridwatch imports: it must run outside the venv.
"""
import argparse
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

H264_AU = "video/x-h264,stream-format=byte-stream,alignment=au"


def passthrough_line(path: str) -> str:
    """Play an H.264 file as it is: no decoding, no encoding (what a camera's own encoder does)."""
    low = path.lower()
    demux = ("qtdemux ! " if low.endswith((".mp4", ".mov")) else
             "matroskademux ! " if low.endswith(".mkv") else
             "tsdemux ! " if low.endswith(".ts") else "")  # .h264/.264: an Annex-B elementary stream
    return f'filesrc location="{path}" ! {demux}h264parse name=conv config-interval=-1 ! {H264_AU}'


def encode_line(path: str, fps: int, width: int) -> str:
    scale = f"videoscale ! video/x-raw,width={width},pixel-aspect-ratio=1/1 ! " if width else ""
    return (
        f'filesrc location="{path}" ! decodebin ! videoconvert name=conv ! videorate ! {scale}'
        f"video/x-raw,framerate={fps}/1,format=I420 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bframes=0 threads=1 ! "
        f"video/x-h264,profile=baseline ! h264parse config-interval=-1 ! {H264_AU}"
    )


# what each RTSP media runs: the camera's access units in, RTP out (one media for all of a mount's clients)
MEDIA_LINE = (f"( appsrc name=src is-live=true format=time do-timestamp=true caps={H264_AU} "
              "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )")


class LiveCamera:
    """One mount's timeline: the file played in real time (``appsink sync=true``), fanned out to the medias."""

    def __init__(self, name: str, line: str):
        self.name = name
        self.pipeline = Gst.parse_launch(f"{line} ! appsink name=out sync=true emit-signals=true max-buffers=4")
        self.pipeline.get_by_name("out").connect("new-sample", self._on_sample)
        self._lock = threading.Lock()
        self._outs: dict[object, bool] = {}  # appsrc -> started (it has had a keyframe)
        self.started = self.ended = False
        self._loop_forever()
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)

    def _loop_forever(self) -> None:
        """Rewind the clip at its end so the camera never stops: the EOS is dropped before the
        encoder and a flushing seek to the start is made from the main loop."""
        def rewind():
            self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
            return False

        def on_event(pad, info):
            if info.get_event().type == Gst.EventType.EOS:
                GLib.idle_add(rewind)
                return Gst.PadProbeReturn.DROP
            return Gst.PadProbeReturn.OK

        self.pipeline.get_by_name("conv").get_static_pad("sink").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_event)

    def _on_message(self, bus, message) -> None:
        if message.type in (Gst.MessageType.EOS, Gst.MessageType.ERROR):
            if message.type == Gst.MessageType.ERROR:
                print(f"camera {self.name}: {message.parse_error()[0].message}", file=sys.stderr, flush=True)
            self._end()

    def _end(self) -> None:
        """The clip cannot be played: every client's stream ends, as a camera switched off."""
        with self._lock:
            self.ended = True
            outs, self._outs = list(self._outs), {}
        for src in outs:
            src.emit("end-of-stream")
        self.pipeline.set_state(Gst.State.NULL)

    def attach(self, media) -> None:
        """A new media (its first client) joins the camera at its next keyframe; the first one switches it on."""
        src = media.get_element().get_by_name("src")
        with self._lock:
            if self.ended:
                src.emit("end-of-stream")
                return
            self._outs[src] = False
            start, self.started = not self.started, True
        media.connect("unprepared", lambda m: self._detach(src))
        if start:
            self.pipeline.set_state(Gst.State.PLAYING)

    def _detach(self, src) -> None:
        with self._lock:
            self._outs.pop(src, None)

    def _on_sample(self, sink) -> Gst.FlowReturn:
        buf = sink.emit("pull-sample").get_buffer()
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        with self._lock:
            outs = [s for s, started in self._outs.items() if started or key]
            for s in outs:
                self._outs[s] = True
        if outs:
            out = buf.copy()  # shares the data; the media stamps it with its own running time when it arrives
            out.pts = out.dts = Gst.CLOCK_TIME_NONE
            for src in outs:
                if src.emit("push-buffer", out) not in (Gst.FlowReturn.OK, Gst.FlowReturn.FLUSHING):
                    self._detach(src)
        return Gst.FlowReturn.OK


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--width", type=int, default=0, help="scale to this width (0 keeps the source size)")
    ap.add_argument("--once", action="store_true", help="play each clip once, then end the stream")
    ap.add_argument("--passthrough", action="store_true", help="serve H.264 files without re-encoding")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("mounts", nargs="+", help="NAME=FILE")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    cameras = []
    for spec in args.mounts:
        name, _, path = spec.partition("=")
        line = passthrough_line(path) if args.passthrough else encode_line(path, args.fps, args.width)
        factory = GstRtspServer.RTSPMediaFactory()
        if args.once:  # a clip, not a camera: each client plays it from its start, then its stream ends
            factory.set_launch(f"( {line} ! rtph264pay name=pay0 pt=96 config-interval=-1 )")
            factory.set_shared(False)
        else:
            camera = LiveCamera(name, line)
            cameras.append(camera)
            factory.set_launch(MEDIA_LINE)
            factory.set_shared(True)  # one live stream per camera, whoever watches
            factory.connect("media-configure", lambda f, media, cam=camera: cam.attach(media))
        if args.user:
            factory.add_role_from_structure(Gst.Structure.from_string(
                "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
        mounts.add_factory(f"/{name}", factory)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
    if server.attach(None) == 0:  # 0: the port is taken (by a leftover server) and nothing listens for us
        print(f"FAILED cannot listen on 127.0.0.1:{args.port}", flush=True)
        return 2
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {args.port}", flush=True)
    loop.run()
    for camera in cameras:
        camera.pipeline.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
