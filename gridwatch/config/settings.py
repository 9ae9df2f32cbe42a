"""The process: ingest, live view, data directory, media folders, Redis."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

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
    conflict_model: str | None = Field(
        default=None, min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the conflict classifier version every worker runs: a shipped one (conflict-v3, ...) or one "
                    "`gridwatch conflict retrain` made from the site's verdicts (DATA_DIR/models/conflict/"
                    "VERSION.json; `gridwatch conflict versions` lists them); empty: the shipped default")


class FleetConfig(_Strict):
    """How worker processes share the cameras (gridwatch/fleet.py): a tooz partitioned group.

    Each ``gridwatch worker`` joins the group with its capacity as weight and runs the cameras the group's consistent
    hash ring gives it; a worker that stops heartbeating leaves the group after ``membership_timeout_s`` and the others
    take its cameras.
    """

    url: str | None = Field(
        default=None, description="coordination backend: redis://, rediss:// or zookeeper://host:port; default: the "
        "Redis gridwatch uses (REDIS_URL, settings.redis_url or the embedded Valkey)")
    group: str = Field(default="cameras", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                       description="the group's name; fleets sharing one backend need different names")
    heartbeat_s: float = Field(default=1.0, gt=0, le=10, description="how often a worker says it is alive")
    membership_timeout_s: float = Field(
        default=3.0, ge=1, le=60, description="a worker silent this long is out and its cameras move "
        "(ZooKeeper: at least twice the server's tickTime)")

    @model_validator(mode="after")
    def _beats_within_timeout(self) -> "FleetConfig":
        if self.heartbeat_s * 2 > self.membership_timeout_s:
            raise ValueError(f"heartbeat_s ({self.heartbeat_s:g}) must be at most half of membership_timeout_s "
                             f"({self.membership_timeout_s:g}): one late beat would drop a healthy worker")
        if self.url is not None and not self.url.startswith(("redis://", "rediss://", "unix://", "zookeeper://")):
            raise ValueError(f"url {self.url!r}: use redis://, rediss://, unix:// (a socket) or zookeeper://host:port")
        return self
