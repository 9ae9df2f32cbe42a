"""Cases on Redis: a stream per grid with a consumer group for its workers, and the case lifecycle.

Keys (prefix ``gw``):
  ``gw:case:{id}``            the case as JSON
  ``gw:case:{id}:history``    list of JSON entries (append only): who did what, when
  ``gw:cases``                sorted set id -> created time, newest-first listings
  ``gw:grid:{grid}:cases``    stream per grid, consumer group ``workers``
  ``gw:events``               stream of case.created / case.updated, for pushing to browsers
  ``gw:dedupe:{cam}:{zone}:{kind}``  open case of an incident key, expires after the cooldown
  ``gw:cameras``              hash camera id -> health JSON, written by the pipeline
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Literal

import redis

CaseState = Literal["new", "acknowledged", "dispatched", "verified", "closed"]
Verdict = Literal["confirmed", "false_alarm"]
Action = Literal["acknowledge", "dispatch", "verify", "close"]

# action -> (states it may be taken from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "acknowledge": (frozenset({"new"}), "acknowledged"),
    "dispatch": (frozenset({"acknowledged", "dispatched"}), "dispatched"),  # again = reassign
    # an operator may verify from the video without sending anyone (e.g. an obvious false alarm)
    "verify": (frozenset({"acknowledged", "dispatched"}), "verified"),
    "close": (frozenset({"verified"}), "closed"),
}
GROUP = "workers"


class IllegalTransition(Exception):
    def __init__(self, case_id: str, action: str, state: str):
        allowed = ", ".join(sorted(TRANSITIONS[action][0])) if action in TRANSITIONS else "-"
        super().__init__(f"cannot {action} case {case_id}: it is {state}; {action} is allowed from: {allowed}")


class CaseNotFound(KeyError):
    pass


@dataclass(frozen=True)
class Alert:
    """What the pipeline sends into the queue: one incident, with its evidence."""

    kind: str
    camera_id: str
    camera_name: str
    grid_id: str
    zone_id: str
    ts: float
    count: int
    score: float
    detail: str
    snapshot: str | None  # evidence file name, served at /api/evidence/{snapshot}
    lat: float
    lon: float

    @property
    def dedupe_key(self) -> str:
        return f"{self.camera_id}:{self.zone_id}:{self.kind}"


def new_case_id(ts: float) -> str:
    """Sorts by time; unique across processes."""
    return f"{int(ts * 1000):013x}-{os.urandom(3).hex()}"


class CaseStore:
    """All case reads and writes; every write also lands on ``gw:events``."""

    def __init__(self, client: redis.Redis, prefix: str = "gw"):
        self.r = client
        self.p = prefix

    # keys
    def _case(self, cid: str) -> str:
        return f"{self.p}:case:{cid}"

    def _hist(self, cid: str) -> str:
        return f"{self.p}:case:{cid}:history"

    def grid_stream(self, grid: str) -> str:
        return f"{self.p}:grid:{grid}:cases"

    @property
    def events_stream(self) -> str:
        return f"{self.p}:events"

    # --- alerts in ----------------------------------------------------------------
    def open_case_for(self, dedupe_key: str) -> str | None:
        cid = self.r.get(f"{self.p}:dedupe:{dedupe_key}")
        return cid.decode() if cid else None

    def create_case(self, alert: Alert, cooldown_s: float) -> tuple[dict, bool]:
        """A new case for ``alert``, or the open case of the same (camera, zone, kind) within the cooldown.

        Returns (case, created). The dedupe key is taken with SET NX, so two
        processes racing on the same incident still make one case.
        """
        cid = new_case_id(alert.ts)
        key = f"{self.p}:dedupe:{alert.dedupe_key}"
        if not self.r.set(key, cid, nx=True, px=max(int(cooldown_s * 1000), 1)):
            existing = self.r.get(key)
            if existing is not None:
                case = self.append_update(existing.decode(), alert)
                if case is not None:
                    return case, False
            self.r.set(key, cid, px=max(int(cooldown_s * 1000), 1))
        now = time.time()
        stream = self.grid_stream(alert.grid_id)
        try:
            self.r.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise
        # delivery entry first, so the case can carry its id; take() waits out the short gap
        stream_id = self.r.xadd(stream, {"case": cid, "kind": alert.kind, "camera": alert.camera_id}).decode()
        case = {"id": cid, **asdict(alert), "state": "new", "verdict": None, "worker": None,
                "created_at": now, "updated_at": now, "updates": 0, "stream_id": stream_id}
        entry = {"ts": now, "actor": "gridwatch", "action": "create", "state": "new", "note": alert.detail}
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self._case(cid), json.dumps(case))
        pipe.rpush(self._hist(cid), json.dumps(entry))
        pipe.zadd(f"{self.p}:cases", {cid: alert.ts})
        pipe.execute()
        self._event("case.created", case)
        return case, True

    def append_update(self, cid: str, alert: Alert) -> dict | None:
        """Add an ongoing incident's news to its case's timeline; None if the case is gone.

        A closed case is returned unchanged: within the cooldown, the incident its
        people already dealt with does not come back as a new alert.
        """
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self._case(cid))
                    raw = pipe.get(self._case(cid))
                    if raw is None:
                        return None
                    case = json.loads(raw)
                    if case["state"] == "closed":
                        return case
                    case["updates"] += 1
                    case["count"] = max(case["count"], alert.count)
                    case["updated_at"] = time.time()
                    entry = {"ts": case["updated_at"], "actor": "gridwatch", "action": "update",
                             "state": case["state"], "note": alert.detail, "count": alert.count}
                    pipe.multi()
                    pipe.set(self._case(cid), json.dumps(case))
                    pipe.rpush(self._hist(cid), json.dumps(entry))
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        self._event("case.updated", case)
        return case

    # --- people act -----------------------------------------------------------------
    def transition(self, cid: str, action: str, actor: str, *, worker: str | None = None,
                   verdict: str | None = None, note: str | None = None) -> dict:
        if action not in TRANSITIONS:
            raise ValueError(f"unknown action {action!r}; one of {sorted(TRANSITIONS)}")
        if not actor:
            raise ValueError("actor is required: who takes this action")
        if action == "dispatch" and not worker:
            raise ValueError("dispatch needs worker: the grid worker sent to the place")
        if action == "verify" and verdict not in ("confirmed", "false_alarm"):
            raise ValueError("verify needs verdict: 'confirmed' or 'false_alarm'")
        allowed, target = TRANSITIONS[action]
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self._case(cid))
                    raw = pipe.get(self._case(cid))
                    if raw is None:
                        raise CaseNotFound(cid)
                    case = json.loads(raw)
                    if case["state"] not in allowed:
                        raise IllegalTransition(cid, action, case["state"])
                    now = time.time()
                    case.update(state=target, updated_at=now)
                    if worker:
                        case["worker"] = worker
                    if verdict:
                        case["verdict"] = verdict
                    entry = {"ts": now, "actor": actor, "action": action, "state": target, "note": note,
                             "worker": worker, "verdict": verdict}
                    pipe.multi()
                    pipe.set(self._case(cid), json.dumps(case))
                    pipe.rpush(self._hist(cid), json.dumps({k: v for k, v in entry.items() if v is not None}))
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        if target in ("dispatched", "closed"):
            self._ack_delivery(case)
        self._event("case.updated", case)
        return case

    def take(self, grid: str, worker: str, block_ms: int | None = None) -> dict | None:
        """Next undelivered case of ``grid`` for ``worker`` (consumer group read)."""
        try:
            got = self.r.xreadgroup(GROUP, worker, {self.grid_stream(grid): ">"}, count=1, block=block_ms)
        except redis.ResponseError as err:
            if "NOGROUP" in str(err):
                return None
            raise
        if not got:
            return None
        _, entries = got[0]
        msg_id, fields = entries[0]
        cid = fields[b"case"].decode()
        for _ in range(50):
            if self.r.exists(self._case(cid)):
                break
            time.sleep(0.02)
        case = self.get(cid)
        case["delivery_id"] = msg_id.decode()
        return case

    def _ack_delivery(self, case: dict) -> None:
        """Once a worker is dispatched (or the case closed) the grid's stream entry is done."""
        if case.get("stream_id"):
            self.r.xack(self.grid_stream(case["grid_id"]), GROUP, case["stream_id"])

    # --- reads ------------------------------------------------------------------------
    def get(self, cid: str) -> dict:
        raw = self.r.get(self._case(cid))
        if raw is None:
            raise CaseNotFound(cid)
        case = json.loads(raw)
        case["history"] = [json.loads(h) for h in self.r.lrange(self._hist(cid), 0, -1)]
        return case

    def list(self, *, grid: str | None = None, camera: str | None = None, kind: str | None = None,
             state: str | None = None, limit: int = 50, scan: int = 2000) -> list[dict]:
        """Newest first, filtered; scans at most ``scan`` recent cases (the queue issue adds indexes)."""
        ids = [i.decode() for i in self.r.zrevrange(f"{self.p}:cases", 0, scan - 1)]
        out = []
        for chunk in (ids[i:i + 200] for i in range(0, len(ids), 200)):
            for raw in self.r.mget([self._case(c) for c in chunk]):
                if raw is None:
                    continue
                case = json.loads(raw)
                if ((grid and case["grid_id"] != grid) or (camera and case["camera_id"] != camera)
                        or (kind and case["kind"] != kind) or (state and case["state"] != state)):
                    continue
                out.append(case)
                if len(out) >= limit:
                    return out
        return out

    # --- camera health, written by the pipeline, read by the API ---------------------
    def put_health(self, health: dict[str, dict]) -> None:
        if health:
            self.r.hset(f"{self.p}:cameras", mapping={k: json.dumps(v) for k, v in health.items()})

    def health(self) -> dict[str, dict]:
        return {k.decode(): json.loads(v) for k, v in self.r.hgetall(f"{self.p}:cameras").items()}

    def _event(self, kind: str, case: dict) -> None:
        self.r.xadd(self.events_stream, {"type": kind, "case": json.dumps(case)}, maxlen=10000, approximate=True)
