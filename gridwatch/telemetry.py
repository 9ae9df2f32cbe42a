"""Live health of the pipeline, written by the pipeline process and read by the API.

Kept in Redis so the API and the pipeline can run as separate processes (or
machines): ``{prefix}:cameras`` is a hash camera id -> health JSON, and
``{prefix}:pipeline`` the inference loop's numbers. Each write has a TTL so a
dead pipeline shows as no data rather than as stale "online".
"""
from __future__ import annotations

import json

import redis


class Telemetry:
    def __init__(self, client: redis.Redis, prefix: str = "gw", ttl_s: int = 30):
        self.r, self.p, self.ttl = client, prefix, ttl_s

    def put(self, cameras: dict[str, dict], pipeline: dict) -> None:
        pipe = self.r.pipeline(transaction=False)
        if cameras:
            pipe.hset(f"{self.p}:cameras", mapping={k: json.dumps(v) for k, v in cameras.items()})
            pipe.expire(f"{self.p}:cameras", self.ttl)
        pipe.set(f"{self.p}:pipeline", json.dumps(pipeline), ex=self.ttl)
        pipe.execute()

    def cameras(self) -> dict[str, dict]:
        return {k.decode(): json.loads(v) for k, v in self.r.hgetall(f"{self.p}:cameras").items()}

    def pipeline(self) -> dict:
        raw = self.r.get(f"{self.p}:pipeline")
        return json.loads(raw) if raw else {}

    def put_overlay(self, camera_id: str, overlay: dict) -> None:
        """What the live view draws over the video: the last analysed frame's people, normalised."""
        self.put_overlays({camera_id: overlay})

    def put_overlays(self, overlays: dict[str, dict]) -> None:
        """Several cameras' overlays in one round trip (the pipeline writes the fleet's a few times a second)."""
        pipe = self.r.pipeline(transaction=False)
        for camera_id, overlay in overlays.items():
            pipe.set(f"{self.p}:overlay:{camera_id}", json.dumps(overlay), ex=5)
        pipe.execute()

    def overlay(self, camera_id: str) -> dict | None:
        raw = self.r.get(f"{self.p}:overlay:{camera_id}")
        return json.loads(raw) if raw else None
