"""The process: ingest, live view, data directory, media folders, Redis."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from .base import _Strict


class IngestConfig(_Strict):
    """How cameras are read (streams/)."""

    hwaccel: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: NVDEC when an NVIDIA GPU is present, else CPU")
    max_side: int = Field(default=1280, ge=160, le=4096,
                          description="analysed frames are shrunk to this long side while converting")
    open_timeout_s: float = Field(default=5.0, gt=0, le=60)
    read_timeout_s: float = Field(default=5.0, gt=0, le=60, description="a hung camera is dropped after this")


class LiveConfig(_Strict):
    """Live view over WebRTC (api/live.py)."""

    ice_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="the server's own ICE host candidates: the addresses browsers reach it on")
    stun_servers: list[str] = Field(default_factory=list, description="none by default: nothing public is asked")


class Settings(_Strict):
    data_dir: Path = Path("var")
    media_dirs: list[Path] = Field(
        default_factory=list, description="folders whose video files may be used as cameras (demo, tests; relative to "
        "the config file); empty: no local files at all, only rtsp:// and rtsps:// URLs")
    redis_url: str | None = Field(default=None, description="use this Redis/Valkey; empty starts an embedded Valkey")
