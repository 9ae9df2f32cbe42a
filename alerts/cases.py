"""Cases on Redis: the grid queues, the case lifecycle with time limits, the audit log, feedback.

Keys (prefix ``gw``; docs/queue.md has the whole picture):
  ``gw:case:{id}``               the case as JSON (``Case``; ``version`` counts its changes)
  ``gw:case:{id}:history``       audit log, append only, hash-chained: who did what, when
  ``gw:case:{id}:evidence``      names of the evidence files the case refers to
  ``gw:cases``                   sorted set id -> incident time, newest-first listings
  ``gw:grid:{grid}:cases``       every case that entered the grid, in order (a log)
  ``gw:grid:{grid}:q{1..4}``     delivery streams per priority, consumer group ``workers``
  ``gw:grid:{grid}:supervisor``  escalations for the grid's supervisor
  ``gw:incident:{id}``           incident id -> case id and the last alert seq seen (idempotency)
  ``gw:dedupe:{cam}:{zone}:{kind}``  open case of a (camera, zone, kind) during the cooldown
  ``gw:deadlines``               sorted set case id -> when its state's time limit runs out
  ``gw:deadletter``  ``gw:police``  ``gw:feedback``  ``gw:events``   streams
  ``gw:zones``, ``gw:zone:{cam}|{zone}|{kind}``   alert and verdict counters per zone (feedback report)
  ``gw:evidence:keep``           evidence file name -> keep until (retention)
  ``gw:evidence:cases:{name}``   the cases that refer to an evidence file (who may see it)
  ``gw:cameras``                 hash camera id -> health JSON, written by the pipeline
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import Literal, get_args

import redis
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.config import AlertsConfig

from . import lua

CaseState = Literal["new", "acknowledged", "dispatched", "on_site", "resolved", "closed"]
Verdict = Literal["confirmed", "false_alarm", "not_found"]
Action = Literal["acknowledge", "dispatch", "accept", "reassign", "arrive", "resolve", "close"]
STATES: tuple[str, ...] = get_args(CaseState)
VERDICTS: tuple[str, ...] = get_args(Verdict)
ACTIONS: tuple[str, ...] = get_args(Action)
PRIORITIES: tuple[int, ...] = (1, 2, 3, 4)  # 1 fight; crowds 2 (>= 2x threshold), 3 (>= 1.5x), 4
GROUP = "workers"
INCIDENT_TTL_S = 7 * 86400  # how long a repeated alert of an incident is still recognised
PARSED_CACHE = 20000  # cases whose parsed form a store keeps (list); about 3 KB each

# action -> (states it may be taken from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "acknowledge": (frozenset({"new"}), "acknowledged"),
    "dispatch": (frozenset({"acknowledged"}), "dispatched"),  # an operator sends a worker
    "accept": (frozenset({"new", "acknowledged"}), "dispatched"),  # a worker who took it from the queue goes
    "reassign": (frozenset({"dispatched", "on_site"}), "dispatched"),
    "arrive": (frozenset({"dispatched"}), "on_site"),
    # an operator may resolve from the video without sending anyone (e.g. an obvious false alarm)
    "resolve": (frozenset({"acknowledged", "dispatched", "on_site"}), "resolved"),
    "close": (frozenset({"resolved"}), "closed"),
}
_LIMIT_FIELD = {"new": "new_s", "acknowledged": "acknowledged_s", "dispatched": "dispatched_s",
                "on_site": "on_site_s", "resolved": "resolved_s"}


class HistoryEntry(BaseModel):
    """One line of the audit log: who did what, when; append only."""

    model_config = ConfigDict(frozen=True)  # (its ``prev``, the hash chain, is checked on the raw entries)

    ts: float
    actor: str
    by: str | None = Field(default=None, description="the logged-in account that recorded it, when that is not "
                                                      "the actor (an operator entering what a worker radioed in)")
    action: str
    state: str
    note: str | None = None
    worker: str | None = None
    verdict: str | None = None
    count: int | None = None
    priority: int | None = None
    level: int | None = Field(default=None, description="escalate: how many times in this state")
    snapshot: str | None = None
    clip: str | None = None
    photo: str | None = None


class Case(BaseModel):
    """A case as stored in ``gw:case:{id}``: one incident in a grid's queue, from its alert until it is closed.

    The Lua scripts (alerts/lua.py) write it: INGEST every field, COMMIT what ``CaseStore.transition`` and
    ``add_note`` changed, ESCALATE the escalation counters, ATTACH the clip. The defaults are for cases an
    older gridwatch wrote. What the API shows of it is ``api.schemas.CaseOut``, derived from these fields.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    incident_id: str | None = None
    kind: str
    state: CaseState
    priority: int = Field(default=4, description="1 fight; crowds 2 (>= 2x threshold), 3 (>= 1.5x), 4")
    level: str | None = Field(default=None, description="fight, or the crowd's density level")
    camera_id: str
    camera_name: str
    grid_id: str
    zone_id: str
    ts: float = Field(description="when the incident was detected (unix seconds)")
    count: int = Field(description="people in the zone (peak while the incident lasted)")
    score: float
    detail: str
    snapshot: str | None = Field(default=None, description="evidence file: the annotated frame of the alert")
    clip: str | None = Field(default=None, description="evidence file: H.264 MP4, from before to after the alert")
    photos: list[str] = Field(default_factory=list, description="evidence files: photos from the worker")
    lat: float
    lon: float
    verdict: Verdict | None = None
    worker: str | None = None
    resolved_by: str | None = Field(default=None, description="who recorded the verdict")
    created_at: float
    updated_at: float
    state_since: float | None = None
    updates: int = 0
    incidents: int = 1
    notes: int = 0
    escalations: int = 0
    escalation_level: int = Field(default=0, description="escalations in the current state")
    dead_letter: bool = Field(default=False, description="delivered too often without a worker accepting it")
    end_ts: float | None = Field(default=None, description="when the incident itself ended, if it has")
    version: int = Field(default=1, description="goes up by one with every change: two copies of a case with the "
                                                "same version are the same (pages skip re-rendering)")
    # the queue's bookkeeping
    stream_id: str | None = Field(default=None, description="its entry in the grid's priority queue")
    queue: str | None = Field(default=None, description="that queue (stream key)")
    history_head: str = Field(default="", description="SHA-1 of the last audit entry (CaseStore.verify_history)")
    history: list[HistoryEntry] | None = Field(default=None, description="the audit log, oldest first; "
                                                                         "CaseStore.get reads it, other reads do not")


class DeliveredCase(Case):
    """A case as ``CaseStore.take`` hands it to a worker's client: with its delivery from the grid's queue."""

    delivery_id: str = Field(description="the grid queue's entry; accept the case to acknowledge it")
    deliveries: int = Field(description="how many times this case has been handed out")


class IllegalTransition(Exception):
    def __init__(self, case_id: str, action: str, state: str):
        allowed = ", ".join(sorted(TRANSITIONS[action][0])) if action in TRANSITIONS else "-"
        super().__init__(f"cannot {action} case {case_id}: it is {state}; {action} is allowed from: {allowed}")


class CaseNotFound(KeyError):
    pass


def incident_id_for(camera_id: str, zone_id: str, kind: str, start_ts: float) -> str:
    """Stable id of one incident: the same (camera, zone, kind, start) always gives the same id; sorts by time."""
    ms = int(round(start_ts * 1000))
    digest = hashlib.sha1(f"{camera_id}\0{zone_id}\0{kind}\0{ms}".encode()).hexdigest()[:10]
    return f"{ms:013x}-{digest}"


def priority_of(kind: str, count: int, threshold: int | None) -> tuple[int, str]:
    """A fight before any crowd; crowds by density (count against the zone's threshold)."""
    if kind == "conflict":
        return 1, "fight"
    ratio = count / threshold if threshold else 1.0
    if ratio >= 2.0:
        return 2, "high"
    if ratio >= 1.5:
        return 3, "elevated"
    return 4, "normal"


@dataclass(frozen=True, kw_only=True)
class Alert:
    """What the pipeline sends into the queue: one incident (or news of it), with its evidence."""

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
    incident_id: str = ""  # stable id; empty: derived from (camera, zone, kind, ts)
    seq: int = 0  # 0 the start, then 1, 2 ... for its updates and its end; repeats are ignored
    priority: int = 0  # 0: from the kind (fight 1, crowd 4)
    level: str = ""
    phase: Literal["start", "update", "end"] = "start"

    def normalised(self) -> "Alert":
        """With the incident id and priority filled in."""
        if self.incident_id and self.priority and self.level:
            return self
        iid = self.incident_id or incident_id_for(self.camera_id, self.zone_id, self.kind, self.ts)
        prio, level = priority_of(self.kind, self.count, None)
        if self.priority:
            prio, level = self.priority, self.level or level
        return replace(self, incident_id=iid, priority=prio, level=level)

    def as_dict(self) -> dict:
        # (not dataclasses.asdict: its deep copy was a third of the ingest time)
        return {f: getattr(self, f) for f in _ALERT_FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.normalised().as_dict())


_ALERT_FIELDS = tuple(f.name for f in fields(Alert))


def _sent_by(actor: str, by: str | None) -> dict:
    return {"by": by} if by and by != actor else {}


def _hist_entry(raw: bytes) -> dict:
    return json.loads(raw)


class CaseStore:
    """All case reads and writes; every write also lands on ``gw:events`` (what browsers and outputs follow)."""

    def __init__(self, client: redis.Redis, prefix: str = "gw", policy: AlertsConfig | None = None):
        self.r = client
        self.p = prefix
        self.policy = policy or AlertsConfig()
        self._ingest = client.register_script(lua.INGEST)
        self._commit_script = client.register_script(lua.COMMIT)
        self._escalate = client.register_script(lua.ESCALATE)
        self._attach = client.register_script(lua.ATTACH)
        self._reindex = client.register_script(lua.REINDEX)
        self._indexed = False
        self._parsed: dict[str, tuple[bytes, Case]] = {}  # case id -> (its JSON as read, parsed): list()'s cache
        # SORT ... GET reads an index and its cases in one round trip; not where a key pattern would misread
        self._sort_ok = "*" not in prefix and "->" not in prefix and "{" not in prefix
        self._index_lock = threading.Lock()  # one backfill per process, however many requests arrive meanwhile

    def with_policy(self, policy: AlertsConfig) -> "CaseStore":
        """The same queue, under the time limits and delivery rules of a config."""
        return CaseStore(self.r, self.p, policy)

    # keys
    def k(self, *parts: str) -> str:
        return ":".join((self.p, *parts))

    def _case(self, cid: str) -> str:
        return self.k("case", cid)

    def _hist(self, cid: str) -> str:
        return self.k("case", cid, "history")

    def grid_stream(self, grid: str) -> str:
        """Every case that entered ``grid``, in order (a log, no consumer group)."""
        return self.k("grid", grid, "cases")

    def queue_stream(self, grid: str, priority: int) -> str:
        return self.k("grid", grid, f"q{priority}")

    def supervisor_stream(self, grid: str) -> str:
        return self.k("grid", grid, "supervisor")

    @property
    def events_stream(self) -> str:
        return self.k("events")

    def limit_s(self, state: str) -> float | None:
        field = _LIMIT_FIELD.get(state)
        return getattr(self.policy.limits, field) if field else None

    # --- alerts in ----------------------------------------------------------------
    def ingest(self, alert: Alert, cooldown_s: float | None = None, *, now: float | None = None
               ) -> tuple[str, Case | None]:
        """One alert into the queue, atomically and idempotently; returns (status, case).

        status: ``created`` (a new case in the grid's queue), ``updated`` / ``ended`` (news on the
        incident's open case), ``absorbed`` (its case is closed, within the cooldown), ``duplicate``
        (this alert was seen before: a retry or a replay), ``ignored`` (the end of an unknown incident).
        ``now``: when the queue received it (default: now; a generated history, gridwatch/district.py, sets it).
        """
        _, status, raw = self._ingest(args=self._ingest_args(alert, cooldown_s, now))
        return status.decode(), (Case.model_validate_json(raw) if raw else None)

    def _ingest_args(self, alert: Alert, cooldown_s: float | None, now: float | None) -> list:
        cooldown = self.policy.cooldown_s if cooldown_s is None else cooldown_s
        return [self.p, alert.to_json(), int(cooldown * 1000), repr(time.time() if now is None else now),
                self.policy.limits.new_s, INCIDENT_TTL_S]

    def ingest_many(self, alerts: list[Alert], cooldown_s: float | None = None, *,
                    now: list[float] | None = None) -> list[tuple[str, str]]:
        """Many alerts in one pipelined round trip, each its own atomic INGEST; returns (status, case id) each.

        For bulk loads (a generated district, a replay); ``now``: when each one was received.
        """
        if not alerts:
            return []
        pipe = self.r.pipeline(transaction=False)
        for i, alert in enumerate(alerts):
            self._ingest(args=self._ingest_args(alert, cooldown_s, None if now is None else now[i]), client=pipe)
        return [(status.decode(), cid.decode()) for cid, status, _ in pipe.execute()]

    def case_of_incident(self, incident_id: str) -> str:
        cid = self.r.hget(self.k("incident", incident_id), "case")
        if cid is None:
            raise CaseNotFound(incident_id)
        return cid.decode()

    def attach(self, incident_id: str, field: Literal["clip"], name: str) -> str:
        """Reference an evidence file (a clip finished after the alert) from the incident's case; idempotent."""
        until = time.time() + self.policy.retention.evidence_days * 86400
        _, status = self._attach(args=[self.p, incident_id, field, name, repr(time.time()), repr(until)])
        return status.decode()

    # --- people act -----------------------------------------------------------------
    def transition(self, cid: str, action: str, actor: str, *, worker: str | None = None,
                   verdict: str | None = None, note: str | None = None, by: str | None = None,
                   now: float | None = None) -> Case:
        """``actor``: who the action is recorded for; ``by``: the account that sent it, kept in the (hash-chained)
        history when it is someone else (an operator entering what a worker radioed in). ``now``: when it
        happened (default: now; a generated history sets it)."""
        worker = self._check_action(action, actor, worker, verdict)
        for _ in range(100):
            case = self._load(cid)
            after, entry, kw = self._transition_step(case, action, actor, worker, verdict, note, by,
                                                     time.time() if now is None else now)
            out = self._commit(case, after, entry, "case.updated", **kw)
            if out is not None:
                if action in ("dispatch", "accept", "resolve", "close"):
                    self._ack_delivery(after)
                return out
        raise RuntimeError(f"case {cid} changed 100 times while {action} was tried; try again")

    def transition_many(self, steps: list[dict]) -> list[Case | Exception]:
        """Many transitions, of different cases, in three pipelined round trips (read, commit, delivery acks).

        Each step is ``transition``'s keywords: ``{"cid", "action", "actor", "worker"?, "verdict"?, "note"?,
        "by"?, "now"?}``; each commit is still its own atomic, version-checked step. A step whose case changed
        meanwhile is retried alone (``transition``). Returns the case after each step, or the exception it raised.
        For bulk work (a generated district's history); a person's action goes through ``transition``.
        """
        pipe = self.r.pipeline(transaction=False)
        for st in steps:
            pipe.get(self._case(st["cid"]))
            if st["action"] == "close":
                pipe.smembers(self.k("case", st["cid"], "evidence"))
        raw = iter(pipe.execute())
        out: list[Case | Exception | None] = []
        todo = []
        for st in steps:
            case_raw = next(raw)
            evidence = next(raw) if st["action"] == "close" else None
            try:
                if case_raw is None:
                    raise CaseNotFound(st["cid"])
                case = json.loads(case_raw)
                worker = self._check_action(st["action"], st["actor"], st.get("worker"), st.get("verdict"))
                now = time.time() if st.get("now") is None else st["now"]
                after, entry, kw = self._transition_step(case, st["action"], st["actor"], worker, st.get("verdict"),
                                                         st.get("note"), st.get("by"), now, evidence=evidence)
            except (CaseNotFound, IllegalTransition, ValueError) as err:
                out.append(err)
                continue
            todo.append((len(out), st, case, after, entry, kw))
            out.append(None)
        pipe = self.r.pipeline(transaction=False)
        for _, _, case, after, entry, kw in todo:
            self._commit(case, after, entry, "case.updated", client=pipe, **kw)
        acks = self.r.pipeline(transaction=False)
        for (i, st, _, after, _, _), res in zip(todo, pipe.execute()):
            if res in (b"conflict", b"missing"):
                try:
                    out[i] = self.transition(st["cid"], st["action"], st["actor"], worker=st.get("worker"),
                                             verdict=st.get("verdict"), note=st.get("note"), by=st.get("by"),
                                             now=st.get("now"))
                except (CaseNotFound, IllegalTransition, ValueError) as err:
                    out[i] = err
                continue
            out[i] = Case.model_validate_json(res)
            if st["action"] in ("dispatch", "accept", "resolve", "close") and after.get("stream_id"):
                acks.xack(after["queue"], GROUP, after["stream_id"])
        acks.execute()
        return out  # type: ignore[return-value]

    @staticmethod
    def _check_action(action: str, actor: str, worker: str | None, verdict: str | None) -> str | None:
        """The arguments' own checks; returns the worker (``accept``: the actor, unless named)."""
        if action not in TRANSITIONS:
            raise ValueError(f"unknown action {action!r}; one of {sorted(TRANSITIONS)}")
        if not actor:
            raise ValueError("actor is required: who takes this action")
        if action in ("dispatch", "reassign") and not worker:
            raise ValueError(f"{action} needs worker: the grid worker sent to the place")
        if action == "accept":
            worker = worker or actor
        if action == "resolve" and verdict not in VERDICTS:
            raise ValueError(f"resolve needs verdict: one of {', '.join(VERDICTS)}")
        return worker

    def _transition_step(self, case: dict, action: str, actor: str, worker: str | None, verdict: str | None,
                         note: str | None, by: str | None, now: float, evidence=None) -> tuple[dict, dict, dict]:
        """The case after ``action``, its audit entry and the commit's side effects; raises when not allowed."""
        allowed, target = TRANSITIONS[action]
        cid = case["id"]
        if case["state"] not in allowed:
            raise IllegalTransition(cid, action, case["state"])
        if action == "reassign" and worker == case.get("worker"):
            raise ValueError(f"reassign needs a different worker: {worker} already has case {cid}")
        after = {**case, "state": target, "updated_at": now, "state_since": now, "escalation_level": 0,
                 "version": case["version"] + 1}
        if worker:
            after["worker"] = worker
        if verdict and action == "resolve":
            after["verdict"] = verdict
            after["resolved_by"] = actor
        entry = {"ts": now, "actor": actor, "action": action, "state": target, "note": note, "worker": worker,
                 "verdict": verdict if action == "resolve" else None, **_sent_by(actor, by)}
        if action == "reassign":
            entry["note"] = f"from {case.get('worker')}" + (f": {note}" if note else "")
        limit = self.limit_s(target)
        extras, counters, pins = self._side_effects(case, after, action, actor, note, now, evidence)
        return after, entry, {"deadline": repr(now + limit) if limit else "clear", "extras": extras,
                              "counters": counters, "pins": pins, "police": note or action}

    def _side_effects(self, before: dict, after: dict, action: str, actor: str, note: str | None,
                      now: float | None = None, evidence=None):
        """Feedback counters and records on a verdict; retention of the evidence when a case closes.

        ``evidence``: the case's evidence names when already read (``transition_many``), else they are read here.
        """
        now = time.time() if now is None else now
        extras, counters, pins = [], [], []
        if action == "resolve":
            zone = f"{after['camera_id']}|{after['zone_id']}|{after['kind']}"
            counters.append([self.k("zone", zone), after["verdict"], 1])
            extras.append([self.k("feedback"), {
                "case": after["id"], "camera": after["camera_id"], "zone": after["zone_id"], "kind": after["kind"],
                "verdict": after["verdict"], "actor": actor, "worker": after.get("worker") or "", "note": note or "",
                "count": after["count"], "score": after["score"], "priority": after["priority"],
                "snapshot": after.get("snapshot") or "", "clip": after.get("clip") or "",
                "photos": json.dumps(after.get("photos") or []), "ts": repr(now)}])
        if action == "close":
            days = (self.policy.retention.feedback_days if after.get("verdict") == "false_alarm"
                    else self.policy.retention.evidence_days)
            until = repr(now + days * 86400)
            if evidence is None:
                evidence = self.r.smembers(self.k("case", after["id"], "evidence"))
            pins = [[n.decode(), until] for n in evidence]
        return extras, counters, pins

    def add_note(self, cid: str, actor: str, note: str | None = None, photo: str | None = None,
                 by: str | None = None) -> Case:
        """A worker's note and/or photo (an evidence file name) on the case's timeline."""
        if not actor:
            raise ValueError("actor is required: who writes the note")
        if not note and not photo:
            raise ValueError("a note needs text or a photo")
        for _ in range(100):
            case = self._load(cid)
            if case["state"] == "closed":
                raise IllegalTransition(cid, "note", "closed")
            now = time.time()
            after = {**case, "updated_at": now, "version": case["version"] + 1, "notes": case.get("notes", 0) + 1}
            if photo:
                after["photos"] = [*(case.get("photos") or []), photo]
            entry = {"ts": now, "actor": actor, "action": "photo" if photo else "note", "state": case["state"],
                     "note": note, "photo": photo, **_sent_by(actor, by)}
            out = self._commit(case, after, entry, "case.updated", pins=[[photo, "+inf"]] if photo else [],
                               police=note or "photo")
            if out is not None:
                return out
        raise RuntimeError(f"case {cid} changed 100 times while a note was added; try again")

    def _commit(self, before: dict, after: dict, entry: dict, event: str, *, deadline: str = "",
                extras: list | None = None, counters: list | None = None, pins: list | None = None,
                police: str = "", client=None) -> Case | None:
        """Write a changed case, its audit entry, event and side effects in one step; None if it changed meanwhile.

        ``client``: a pipeline to queue the step on (its result comes with the pipeline's, unparsed).
        """
        after = {k: v for k, v in after.items() if k not in ("history", "delivery_id", "deliveries")}
        entry = {k: v for k, v in entry.items() if v is not None}
        out = self._commit_script(args=[
            self.p, before["id"], before["version"], json.dumps(after), json.dumps(entry), event, deadline,
            json.dumps(extras or []), json.dumps(counters or []), json.dumps(pins or []), police], client=client)
        if client is not None:
            return None
        if out in (b"conflict",):
            return None
        if out == b"missing":
            raise CaseNotFound(before["id"])
        return Case.model_validate_json(out)

    # --- delivery to grid workers ---------------------------------------------------
    def queue_streams(self, grid: str) -> list[str]:
        return [self.queue_stream(grid, p) for p in PRIORITIES]

    def _existing_queues(self, grid: str | None = None) -> list[str]:
        known = {s.decode() for s in self.r.smembers(self.k("queues"))}
        if grid is None:
            return sorted(known, key=lambda s: (s.rsplit(":", 1)[-1], s))
        return [s for s in self.queue_streams(grid) if s in known]

    def take(self, grid: str, worker: str, block_ms: int | None = None) -> DeliveredCase | None:
        """The next case of ``grid`` for ``worker``: fights first, then crowds by density; oldest first.

        A case another worker took but did not accept within ``claim_timeout_s`` is handed on
        (XAUTOCLAIM); one delivered ``max_deliveries`` times goes to the dead-letter stream instead.
        The worker's client then accepts it (``accept``), which acknowledges the delivery.
        """
        self.sweep_dead_letters(grid)
        claim_ms = int(self.policy.delivery.claim_timeout_s * 1000)
        streams = self._existing_queues(grid)
        for stream in streams:
            while True:
                _, claimed, _ = self.r.xautoclaim(stream, GROUP, worker, claim_ms, "0-0", count=1)
                if not claimed:
                    break
                if (case := self._deliverable(stream, *claimed[0])) is not None:
                    return case
            while True:
                got = self.r.xreadgroup(GROUP, worker, {stream: ">"}, count=1)
                if not got:
                    break
                if (case := self._deliverable(stream, *got[0][1][0])) is not None:
                    return case
        if block_ms and streams:
            got = self.r.xreadgroup(GROUP, worker, {s: ">" for s in streams}, count=1, block=block_ms)
            for stream, entries in got or []:
                return self._deliverable(stream.decode(), *entries[0])
        return None

    def _deliverable(self, stream: str, msg_id: bytes, fields: dict) -> DeliveredCase | None:
        """The case behind a delivery, or None (and the delivery done) when nobody needs to take it any more."""
        cid = fields[b"case"].decode()
        try:
            case = self._load_with_history(cid)
        except CaseNotFound:
            case = None
        if case is None or case["state"] not in ("new", "acknowledged") or case.get("dead_letter"):
            self.r.xack(stream, GROUP, msg_id)
            return None
        info = self.r.xpending_range(stream, GROUP, msg_id, msg_id, 1)
        return DeliveredCase.model_validate({**case, "delivery_id": msg_id.decode(),
                                             "deliveries": info[0]["times_delivered"] if info else 1})

    def _ack_delivery(self, case: dict) -> None:
        """Once a worker goes (or the case is resolved or closed) the grid's queue entry is done."""
        if case.get("stream_id") and case.get("queue"):
            self.r.xack(case["queue"], GROUP, case["stream_id"])

    def pending(self, grid: str) -> list[dict]:
        """Deliveries taken and not yet accepted, per worker (XPENDING), fights first."""
        out = []
        for stream in self._existing_queues(grid):
            for p in self.r.xpending_range(stream, GROUP, "-", "+", 1000):
                entry = self.r.xrange(stream, p["message_id"], p["message_id"])
                out.append({"delivery_id": p["message_id"].decode(), "worker": p["consumer"].decode(),
                            "idle_s": p["time_since_delivered"] / 1000, "deliveries": p["times_delivered"],
                            "case": entry[0][1][b"case"].decode() if entry else None,
                            "priority": int(stream.rsplit("q", 1)[-1])})
        return out

    def sweep_dead_letters(self, grid: str | None = None) -> list[str]:
        """Deliveries that were taken ``max_deliveries`` times and never accepted: to the dead-letter stream."""
        d = self.policy.delivery
        moved = []
        for stream in self._existing_queues(grid):
            for p in self.r.xpending_range(stream, GROUP, "-", "+", 100, idle=int(d.claim_timeout_s * 1000)):
                if p["times_delivered"] < d.max_deliveries:
                    continue
                entry = self.r.xrange(stream, p["message_id"], p["message_id"])
                if entry and (cid := self._dead_letter(entry[0][1][b"case"].decode(), p)):
                    moved.append(cid)
                self.r.xack(stream, GROUP, p["message_id"])
        return moved

    def _dead_letter(self, cid: str, pending: dict) -> str | None:
        for _ in range(100):
            try:
                case = self._load(cid)
            except CaseNotFound:
                return None
            if case.get("dead_letter"):
                return None
            now = time.time()
            note = (f"delivered {pending['times_delivered']} times, never accepted "
                    f"(last to {pending['consumer'].decode()}); the operators take it over")
            after = {**case, "dead_letter": True, "updated_at": now, "version": case["version"] + 1}
            entry = {"ts": now, "actor": "gridwatch", "action": "deadletter", "state": case["state"], "note": note}
            extras = [[self.k("deadletter"), {"case": cid, "grid": case["grid_id"], "kind": case["kind"],
                                               "deliveries": pending["times_delivered"],
                                               "last_worker": pending["consumer"].decode(), "ts": repr(now)}]]
            if self._commit(case, after, entry, "case.deadletter", extras=extras) is not None:
                return cid
        return None

    def dead_letters(self, count: int = 100) -> list[dict]:
        return self._stream_tail(self.k("deadletter"), count)

    def police_stream(self, count: int = 100) -> list[dict]:
        """The police-liaison stream: fights, from creation through every step, newest first."""
        return self._stream_tail(self.k("police"), count)

    def escalations(self, grid: str, count: int = 100) -> list[dict]:
        return self._stream_tail(self.supervisor_stream(grid), count)

    def feedback(self, count: int = 100, verdict: str | None = None) -> list[dict]:
        rows = self._stream_tail(self.k("feedback"), count if verdict is None else 10 * count)
        return [r for r in rows if verdict is None or r["verdict"] == verdict][:count]

    def _stream_tail(self, stream: str, count: int) -> list[dict]:
        return [{"id": mid.decode(), **{k.decode(): v.decode() for k, v in f.items()}}
                for mid, f in self.r.xrevrange(stream, count=count)]

    # --- time limits ---------------------------------------------------------------------
    def escalate_due(self, now: float | None = None, batch: int = 200) -> list[Case]:
        """Escalate every case whose state's time limit ran out; safe to run in several processes at once."""
        now = time.time() if now is None else now
        limits = {s: self.limit_s(s) for s in _LIMIT_FIELD}
        out = []
        for cid in self.r.zrangebyscore(self.k("deadlines"), "-inf", now, start=0, num=batch):
            raw = self._escalate(args=[self.p, cid, repr(now), json.dumps(limits), self.policy.limits.repeat])
            if raw:
                out.append(Case.model_validate_json(raw))
        return out

    # --- reads ------------------------------------------------------------------------
    def _load(self, cid: str) -> dict:
        raw = self.r.get(self._case(cid))
        if raw is None:
            raise CaseNotFound(cid)
        return json.loads(raw)

    def _load_with_history(self, cid: str) -> dict:
        case = self._load(cid)
        case["history"] = [_hist_entry(h) for h in self.r.lrange(self._hist(cid), 0, -1)]
        return case

    def get(self, cid: str) -> Case:
        """The case with its audit log."""
        return Case.model_validate(self._load_with_history(cid))

    def verify_history(self, cid: str) -> tuple[bool, int | None]:
        """Whether the audit log is as written: (True, None), or (False, index of the first entry that is not)."""
        raws = self.r.lrange(self._hist(cid), 0, -1)
        prev = ""
        for i, raw in enumerate(raws):
            if json.loads(raw).get("prev") != prev:
                return False, max(i - 1, 0)
            prev = hashlib.sha1(raw).hexdigest()
        if self._load(cid).get("history_head", "") != prev:
            return False, max(len(raws) - 1, 0)
        return True, None

    def list(self, *, grid: str | None = None, camera: str | None = None, kind: str | None = None,
             state: str | None = None, worker: str | None = None, sort: Literal["time", "priority"] = "time",
             limit: int = 50, scan: int = 2000) -> list[Case]:
        """Newest first (or by priority, then newest), filtered.

        Reads at most ``scan`` recent cases of the narrowest index that holds every match (the
        worker's, the camera's, the grid's, the open ones), so a worker's case dispatched hours ago
        stays on their list however many alerts the other 491 cameras raised since.
        """
        self.ensure_indexes()
        steps = self._list_steps(grid, camera, kind, state, worker, sort, limit, scan)
        try:
            want = next(steps)
            while True:
                want = steps.send(self._newest(*want))
        except StopIteration as done:
            return done.value

    async def alist(self, aclient, *, grid: str | None = None, camera: str | None = None, kind: str | None = None,
                    state: str | None = None, worker: str | None = None, sort: Literal["time", "priority"] = "time",
                    limit: int = 50, scan: int = 2000) -> list[Case]:
        """``list`` through ``aclient``, an asyncio client (redis.asyncio) of the same server: the API lists on its
        event loop, with no thread per request (docs/api-scale.md)."""
        if not self._indexed:
            await asyncio.to_thread(self.ensure_indexes)
        steps = self._list_steps(grid, camera, kind, state, worker, sort, limit, scan)
        try:
            want = next(steps)
            while True:
                want = steps.send(await self._anewest(aclient, *want))
        except StopIteration as done:
            return done.value

    def _list_steps(self, grid, camera, kind, state, worker, sort, limit, scan):
        """``list``'s logic, for a sync or an async reader: yields (index, start, count), is sent what
        ``_newest`` reads for it, returns the cases."""
        base = (self.k("cases", "worker", worker) if worker else self.k("cases", "camera", camera) if camera
                else self.k("cases", "grid", grid) if grid else self.k("cases"))
        sources = [base]
        if not (worker or camera or grid) and (sort == "priority" or (state and state != "closed")):
            # open cases come first by priority, however old; closed ones only fill up the rest
            sources = [self.k("cases", "open")] + ([] if state else [base])
        out: list[Case] = []
        seen: set[str] = set()
        for n, src in enumerate(sources):
            if n and sort == "priority" and len(out) >= limit:
                break  # the open cases fill the page: the closed ones, which sort after them, are not needed
            for start in range(0, scan, 500):
                chunk = yield (src, start, min(500, scan - start))
                for cid, raw in chunk:
                    if raw is None or cid in seen:
                        continue
                    seen.add(cid)
                    case = self._parsed_case(cid, raw)
                    if ((grid and case.grid_id != grid) or (camera and case.camera_id != camera)
                            or (kind and case.kind != kind) or (state and case.state != state)
                            or (worker and case.worker != worker)):
                        continue
                    out.append(case)
                    if sort == "time" and len(out) >= limit:
                        return out
                if len(chunk) < min(500, scan - start):
                    break  # the index has no more
        if sort == "priority":
            out.sort(key=lambda c: (c.state == "closed", c.priority, -c.ts))
        return out[:limit]

    def _newest(self, index: str, start: int, count: int) -> list[tuple[str, bytes | None]]:
        """The cases of an index (a sorted set), newest first from ``start``: (id, JSON or None) each.

        One round trip: ``SORT index BY nosort DESC LIMIT start count GET # GET case:*`` reads the sorted set's own
        order and each case with it (ZREVRANGE then MGET took two). Where SORT is refused (an ACL without
        @dangerous), the two commands.
        """
        if self._sort_ok:
            try:
                flat = self.r.sort(index, start=start, num=count, by="nosort", desc=True,
                                   get=["#", self._case("*")])
                return [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]
            except redis.ResponseError:
                self._sort_ok = False
        ids = [b.decode() for b in self.r.zrevrange(index, start, start + count - 1)]
        return list(zip(ids, self.r.mget([self._case(c) for c in ids]))) if ids else []

    async def _anewest(self, aclient, index: str, start: int, count: int) -> list[tuple[str, bytes | None]]:
        """``_newest`` on an asyncio client."""
        if self._sort_ok:
            try:
                flat = await aclient.sort(index, start=start, num=count, by="nosort", desc=True,
                                          get=["#", self._case("*")])
                return [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]
            except redis.ResponseError:
                self._sort_ok = False
        ids = [b.decode() for b in await aclient.zrevrange(index, start, start + count - 1)]
        return list(zip(ids, await aclient.mget([self._case(c) for c in ids]))) if ids else []

    def _parsed_case(self, cid: str, raw: bytes) -> Case:
        """``raw`` as a Case; parsed once per version of the case (the lists read the same cases again and again:
        comparing the bytes is a hundred times cheaper than validating them)."""
        hit = self._parsed.get(cid)
        if hit is not None and hit[0] == raw:
            return hit[1]
        case = Case.model_validate_json(raw)
        if len(self._parsed) >= PARSED_CACHE:
            self._parsed.clear()  # simple and rare: the next lists parse again what they read
        self._parsed[cid] = (raw, case)
        return case

    def ensure_indexes(self, batch: int = 500) -> int:
        """Index cases written before the list indexes existed (once per database); returns how many."""
        if self._indexed:
            return 0
        with self._index_lock:
            if self._indexed:
                return 0
            marker, n = self.k("cases", "indexed"), 0
            if not self.r.exists(marker):
                start = 0
                while ids := self.r.zrange(self.k("cases"), start, start + batch - 1):
                    n += self._reindex(args=[self.p, *ids])
                    start += batch
                self.r.set(marker, "1")
            self._indexed = True
        return n

    def zone_report(self) -> list[dict]:
        """Per (camera, zone, kind): alerts, and the verdicts of the people who went (for re-tuning thresholds)."""
        zones = sorted(z.decode() for z in self.r.smembers(self.k("zones")))
        pipe = self.r.pipeline(transaction=False)
        for z in zones:
            pipe.hgetall(self.k("zone", z))
        out = []
        for z, counts in zip(zones, pipe.execute()):
            cam, zone, kind = z.split("|", 2)
            c = {key.decode(): int(v) for key, v in counts.items()}
            resolved = sum(c.get(v, 0) for v in VERDICTS)
            out.append({"camera_id": cam, "zone_id": zone, "kind": kind, "alerts": c.get("alerts", 0),
                        **{v: c.get(v, 0) for v in VERDICTS}, "unresolved": c.get("alerts", 0) - resolved,
                        "false_alarm_rate": round(c.get("false_alarm", 0) / resolved, 4) if resolved else None})
        return out

    def evidence_keep(self, names: list[str]) -> dict[str, float | None]:
        """Until when each evidence file must be kept (inf while its case is open; None: no case refers to it)."""
        if not names:
            return {}
        return dict(zip(names, self.r.zmscore(self.k("evidence", "keep"), names)))

    def forget_evidence(self, names: list[str]) -> None:
        if names:
            self.r.zrem(self.k("evidence", "keep"), *names)
            self.r.delete(*(self.k("evidence", "cases", n) for n in names))

    def evidence_cases(self, name: str) -> list[str]:
        """The cases that refer to an evidence file: whoever may read one of them may see the file."""
        return sorted(c.decode() for c in self.r.smembers(self.k("evidence", "cases", name)))
