"""Stand-ins for the outside world, for the demo, the tests and the benchmarks (never the running pipeline).

* ``RtspServer``: Debian's GStreamer RTSP server serving footage as cameras (``rtsp_server.py`` runs under the
  system Python, which has GStreamer's bindings); the demo's cameras and the tests' real RTSP peer.
* ``make_h264_clip``, ``make_resolution_change_clip``: camera-like H.264 clips from any footage.
* ``serving``: an app on a real uvicorn server in a background thread; ``free_port``.
"""
from .clips import make_h264_clip, make_resolution_change_clip
from .rtsp import RtspServer, free_port, rtsp_server_available
from .serving import serving
from .zookeeper import ZooKeeperServer, zookeeper_available

__all__ = ["RtspServer", "ZooKeeperServer", "free_port", "make_h264_clip", "make_resolution_change_clip",
           "rtsp_server_available", "serving", "zookeeper_available"]
