"""Camera intake: one reader per camera, newest-frame hand-off, health."""
from .frame import Frame
from .reader import Backoff, CameraHealth, CameraReader, FrameSlot, StreamEnded
from .rtsp import RtspServer, rtsp_server_available

__all__ = ["Backoff", "CameraHealth", "CameraReader", "Frame", "FrameSlot", "RtspServer", "StreamEnded", "rtsp_server_available"]
