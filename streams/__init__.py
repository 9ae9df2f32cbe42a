"""Camera intake: one reader per camera, newest-frame hand-off, health."""
from .frame import Frame
from .reader import Backoff, CameraHealth, CameraReader, FrameSlot, StreamEnded
from .urls import MaskingFormatter, UnsafeSource, check_source, mask_json, mask_text, mask_url, url_secrets

__all__ = ["Backoff", "CameraHealth", "CameraReader", "Frame", "FrameSlot", "MaskingFormatter",
           "StreamEnded", "UnsafeSource", "check_source", "mask_json", "mask_text", "mask_url",
           "url_secrets"]
