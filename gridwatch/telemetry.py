"""Live health of the fleet, written by each worker process and read by the API.

Kept in Redis so the API and the workers can run as separate processes (or machines):

* ``{prefix}:worker:{name}``: one worker's report (host, pid, capacity, the cameras it owns, its inference loop's
  numbers, the time of the report), with a TTL: a dead worker's record disappears instead of lingering;
* ``{prefix}:workers``: a sorted set of worker names by last report, so the API lists them without a SCAN;
* ``{prefix}:cameras``: camera id -> health JSON, each stamped with the worker that wrote it and when.

A camera's record counts only while its writer is alive and still owns it: otherwise the API shows it as
``unowned`` (``reading`` says so), never as "online" from a stale record.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field

import redis

RECENT = 20  # analyses per camera kept for the live view (10 s at 2 fps)
STALE_S = 5.0  # a report older than this is not believed: workers report every second, so five went missing


@dataclass(frozen=True)
class WorkerInfo:
    """Who a worker process is: what ``/api/fleet`` shows beside its numbers."""

    name: str
    host: str
    pid: int
    capacity: int = 1
    started: float = field(default_factory=time.time)

    @classmethod
    def this_process(cls, name: str | None = None, capacity: int = 1) -> "WorkerInfo":
        """This process, named ``host-pid`` unless given a name (``gridwatch worker --name``)."""
        host = socket.gethostname()
        return cls(name=name or f"{host}-{os.getpid()}", host=host, pid=os.getpid(), capacity=capacity)


class Telemetry:
    def __init__(self, client: redis.Redis, prefix: str = "gw", ttl_s: int = 30, worker: WorkerInfo | None = None):
        self.r, self.p, self.ttl, self.worker = client, prefix, ttl_s, worker

    # -- written by a worker

    def put(self, cameras: dict[str, dict], pipeline: dict, owned: list[str] | None = None) -> None:
        """One report of this worker: its cameras' health and its loop's numbers, in one round trip."""
        now = time.time()
        w = self.worker = self.worker or WorkerInfo.this_process()
        pipe = self.r.pipeline(transaction=False)
        if cameras:
            stamped = {k: json.dumps({**v, "worker": w.name, "reported": now}) for k, v in cameras.items()}
            pipe.hset(f"{self.p}:cameras", mapping=stamped)
            pipe.expire(f"{self.p}:cameras", self.ttl)
        record = {"name": w.name, "host": w.host, "pid": w.pid, "capacity": w.capacity, "started": w.started,
                  "heartbeat": now, "cameras": sorted(owned if owned is not None else cameras), "pipeline": pipeline}
        pipe.set(f"{self.p}:worker:{w.name}", json.dumps(record), ex=self.ttl)
        pipe.zadd(f"{self.p}:workers", {w.name: now})
        pipe.zremrangebyscore(f"{self.p}:workers", "-inf", now - 86400)  # names of workers gone for a day
        pipe.execute()

    def retire(self) -> None:
        """A worker that stops cleanly says so at once, rather than letting its record expire."""
        if self.worker is not None:
            self.r.delete(f"{self.p}:worker:{self.worker.name}")
            self.r.zrem(f"{self.p}:workers", self.worker.name)

    # -- read by the API

    def workers(self, max_age_s: float = STALE_S) -> list[dict]:
        """Live workers' latest reports, by name; a report older than ``max_age_s`` is left out (a paused worker)."""
        names = [n.decode() for n in self.r.zrangebyscore(f"{self.p}:workers", time.time() - max_age_s, "+inf")]
        if not names:
            return []
        raws = self.r.mget([f"{self.p}:worker:{n}" for n in names])
        return sorted((json.loads(r) for r in raws if r), key=lambda w: w["name"])

    def cameras(self, workers: list[dict] | None = None) -> dict[str, dict]:
        """Each camera's last health record, believed only while its writer is alive, recent and still owns it.

        A record that fails one of those becomes ``{"state": "unowned", "worker": <its last writer>}``: the camera
        is nobody's right now (its worker died, or it is moving to another).
        """
        workers = self.workers() if workers is None else workers
        owner = {cid: w["name"] for w in workers for cid in w.get("cameras", [])}
        now = time.time()
        out = {}
        for k, v in self.r.hgetall(f"{self.p}:cameras").items():
            cid, h = k.decode(), json.loads(v)
            live = owner.get(cid) == h.get("worker") and now - h.get("reported", 0) <= STALE_S
            out[cid] = h if live else {"state": "unowned", "worker": h.get("worker"), "since": h.get("reported")}
        return out

    def owners(self, workers: list[dict] | None = None) -> dict[str, str]:
        """camera id -> the live worker that owns it (cameras nobody owns are absent)."""
        workers = self.workers() if workers is None else workers
        return {cid: w["name"] for w in workers for cid in w.get("cameras", [])}

    def pipeline(self) -> dict:
        """The fleet's inference numbers summed over live workers (``/api/pipeline``); empty when none reports."""
        stats = [w["pipeline"] for w in self.workers() if w.get("pipeline")]
        if not stats:
            return {}
        total = {k: sum(s.get(k) or 0 for s in stats) for k in ("frames", "batches", "fps")}
        total["mean_batch"] = total["frames"] / max(total["batches"], 1)
        for k in ("latency_p50_ms", "latency_p95_ms"):  # the worst worker: what an operator waits for
            vals = [s[k] for s in stats if s.get(k) is not None]
            total[k] = max(vals) if vals else None
        total["workers"] = len(stats)
        errors = [s["error"] for s in stats if s.get("error")]
        total["error"] = errors[0] if errors else None
        return total

    # -- the live view's overlays

    def put_overlay(self, camera_id: str, overlay: dict) -> None:
        """What the live view draws over the video: one analysed frame's people, normalised."""
        self.put_overlays({camera_id: [overlay]})

    def put_overlays(self, overlays: dict[str, list[dict]]) -> None:
        """Cameras' analyses since the last write, oldest first, in one round trip (a worker writes its cameras' a
        few times a second): the last ``RECENT`` in ``overlays:{id}``, so the live page can match each video frame to
        the analysis of that moment, not only to the newest."""
        pipe = self.r.pipeline(transaction=False)
        for camera_id, recent in overlays.items():
            if not recent:
                continue
            key = f"{self.p}:overlays:{camera_id}"
            pipe.rpush(key, *(json.dumps(o) for o in recent))
            pipe.ltrim(key, -RECENT, -1)
            pipe.expire(key, 5)
        pipe.execute()

    def overlay(self, camera_id: str) -> dict | None:
        """The camera's newest analysis (None when nobody analyses it)."""
        raw = self.r.lindex(f"{self.p}:overlays:{camera_id}", -1)
        return json.loads(raw) if raw else None

    def recent_overlays(self, camera_id: str) -> list[dict]:
        """The camera's last few analyses, oldest first (empty when nobody analyses it)."""
        return [json.loads(o) for o in self.r.lrange(f"{self.p}:overlays:{camera_id}", 0, -1)]
