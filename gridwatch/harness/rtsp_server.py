"""A real RTSP server for the demo and the tests: Debian's GStreamer RTSP server.

Runs under the system Python (``/usr/bin/python3``, which has ``gi``), not the
virtual environment: ``python3 rtsp_server.py --port N NAME=FILE ...``.
Each file is decoded and encoded to H.264 (no B-frames, short GOP) so any
input the system's GStreamer decodes becomes a camera-like stream, and plays
in a loop (``--once`` ends the stream at the end of the clip). ``--passthrough``
serves H.264 files (MP4, MKV or Annex-B) as they are, which costs the server
almost nothing: what the ingest benchmark uses. Prints
``READY <port>`` once listening; exits on SIGTERM/SIGINT. Optional
``--user``/``--password`` require Basic authentication, like a real camera.

Deliberately free of gridwatch imports: it must run outside the venv.
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def passthrough_line(path: str) -> str:
    """Serve an H.264 file as it is: no decoding, no encoding (what a camera's own encoder does)."""
    low = path.lower()
    demux = ("qtdemux ! " if low.endswith((".mp4", ".mov")) else
             "matroskademux ! " if low.endswith(".mkv") else
             "tsdemux ! " if low.endswith(".ts") else "")  # .h264/.264: an Annex-B elementary stream
    return (f'( filesrc location="{path}" ! {demux}h264parse name=conv config-interval=-1 ! '
            f"rtph264pay name=pay0 pt=96 config-interval=-1 )")


def launch_line(path: str, fps: int, width: int) -> str:
    scale = f"videoscale ! video/x-raw,width={width},pixel-aspect-ratio=1/1 ! " if width else ""
    return (
        f'( filesrc location="{path}" ! decodebin ! videoconvert name=conv ! videorate ! {scale}'
        f"video/x-raw,framerate={fps}/1,format=I420 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bframes=0 threads=1 ! "
        f"video/x-h264,profile=baseline ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )


def loop_forever(factory, media) -> None:
    """Rewind the clip at its end so the camera never stops: the EOS is dropped before the
    encoder and a flushing seek to the start is made from the main loop."""
    pipeline = media.get_element()

    def rewind():
        pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        return False

    def on_event(pad, info):
        if info.get_event().type == Gst.EventType.EOS:
            GLib.idle_add(rewind)
            return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

    pipeline.get_by_name("conv").get_static_pad("sink").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_event)


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
    for spec in args.mounts:
        name, _, path = spec.partition("=")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(passthrough_line(path) if args.passthrough else launch_line(path, args.fps, args.width))
        factory.set_shared(False)  # each client gets the clip from its start
        if not args.once:
            factory.connect("media-configure", loop_forever)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
