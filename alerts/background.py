"""What runs beside the API: escalation on time limits, dead letters, evidence retention, outputs.

It runs in the API process (started and stopped by the API's lifespan), because
it acts on cases, which exist whether or not a pipeline runs in this process.
Every step is safe to run in several processes at once (escalation and
dead-lettering are atomic on the server), so more API replicas do no harm.
"""
from __future__ import annotations

import logging
import threading

import redis

from gridwatch.config import AlertsConfig

from .cases import CaseStore
from .evidence import EvidenceStore
from .outage import OutageLog
from .outputs import OutputRelay, outputs_from

log = logging.getLogger(__name__)


class QueueBackground:
    def __init__(self, store: CaseStore, evidence: EvidenceStore, cfg: AlertsConfig,
                 retention_every_s: float = 3600.0):
        self.store, self.evidence, self.cfg = store.with_policy(cfg), evidence, cfg
        self.retention_every_s = retention_every_s
        self._stop = threading.Event()
        self.escalated = 0
        self.dead_lettered = 0
        self.deleted = 0
        self.last_error: str | None = None
        self.outage = OutageLog("Redis (queue background)", log)
        self._threads = [threading.Thread(target=self._escalate_loop, name="escalator", daemon=True),
                         threading.Thread(target=self._retention_loop, name="retention", daemon=True)]
        self.relays = [OutputRelay(store.r, store.p, out) for out in outputs_from(cfg.outputs)]

    def start(self) -> "QueueBackground":
        for r in self.relays:
            try:
                r.prime()
            except redis.RedisError as err:  # Redis not there yet: the relay finds its place when it is
                log.warning("output %s starts later: %s", r.output.name, err)
        for t in (*self._threads, *self.relays):
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        for r in self.relays:
            r.stop()

    def escalate_once(self) -> None:
        self.escalated += len(self.store.escalate_due())
        self.dead_lettered += len(self.store.sweep_dead_letters())

    def _escalate_loop(self) -> None:
        while not self._stop.wait(self.cfg.limits.check_every_s):
            try:
                self.escalate_once()
                self.outage.ok()
            except redis.ConnectionError as err:  # Redis away for a while: logged once, the next round tries again
                self.last_error = f"{type(err).__name__}: {err}"
                self.outage.failed(err)
            except Exception as err:
                self.last_error = f"{type(err).__name__}: {err}"
                log.warning("escalation round failed: %s", err)

    def sweep_evidence(self) -> list[str]:
        deleted = self.evidence.sweep(self.store.evidence_keep, self.cfg.retention.evidence_days)
        self.store.forget_evidence(deleted)
        self.deleted += len(deleted)
        return deleted

    def _retention_loop(self) -> None:
        while True:
            try:
                if deleted := self.sweep_evidence():
                    log.info("retention: %d evidence files deleted", len(deleted))
            except redis.ConnectionError as err:
                self.last_error = f"{type(err).__name__}: {err}"
                self.outage.failed(err)
            except Exception as err:
                self.last_error = f"{type(err).__name__}: {err}"
                log.warning("retention round failed: %s", err)
            if self._stop.wait(self.retention_every_s):
                return

    def stats(self) -> dict:
        return {"escalated": self.escalated, "dead_lettered": self.dead_lettered, "evidence_deleted": self.deleted,
                "outputs": {r.output.name: {"sent": r.sent, "last_error": r.last_error} for r in self.relays},
                "last_error": self.last_error}
