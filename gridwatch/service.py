"""Start and stop a whole gridwatch: Redis (embedded or REDIS_URL), model, pipeline, API."""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import redis
import uvicorn

from alerts import AlertPublisher, CaseStore, EmbeddedValkey, EvidenceStore
from alerts.background import QueueBackground
from api import create_app
from api.server import uvicorn_config
from gridwatch.config import GridwatchConfig, mask_url
from gridwatch.configsync import ConfigChannel
from gridwatch.fleet import FleetMember
from gridwatch.runtime import Pipeline
from gridwatch.telemetry import WorkerInfo
from models import resolve_weights
from vision.detector import PersonDetector

log = logging.getLogger(__name__)


def redis_url_for(cfg: GridwatchConfig, stack: ExitStack) -> str:
    """REDIS_URL, else the config's redis_url, else an embedded Valkey in the data directory."""
    url = os.environ.get("REDIS_URL") or cfg.settings.redis_url
    if url:
        log.info("using Redis at %s", mask_url(url))
        return url
    server = stack.enter_context(EmbeddedValkey(cfg.settings.data_dir / "valkey"))
    return server.url


def enabled_ids(cfg: GridwatchConfig) -> list[str]:
    return [c.id for c in cfg.cameras if c.enabled]


@dataclass
class Service:
    """One running gridwatch, assembled in one place; ``with Service(cfg) as s:`` and everything stops on exit.

    It builds, in this order: Redis (embedded or ``REDIS_URL``), the case store under the config's policy, the
    queue's background jobs (escalation, dead letters, retention, outputs), the pipeline (``analyse``), the app,
    and the watch that applies admin changes. ``analyse=False`` is ``gridwatch serve``: the same without the
    pipeline, which runs elsewhere on the same Redis.
    """

    cfg: GridwatchConfig
    config_path: Path | None = None  # the YAML file admin changes are saved to (None: the demo's built config)
    analyse: bool = True
    prefix: str = "gw"  # Redis key prefix (tests run several services on one Redis)
    api: bool = True
    fleet: bool = False  # join the fleet and run only this worker's share of the cameras
    worker: WorkerInfo = field(default_factory=WorkerInfo.this_process)
    member: FleetMember | None = None
    pipeline: Pipeline | None = None
    store: CaseStore | None = None
    background: QueueBackground | None = None
    redis_url: str = ""
    _stack: ExitStack = field(default_factory=ExitStack)

    def __enter__(self) -> "Service":
        try:
            cfg = self.cfg
            published = None
            det_cfg = cfg.detector
            # weights first: no weights, no start, before any server is up
            weights = resolve_weights(det_cfg.model, det_cfg.weights_dirs, cfg.settings.data_dir / "weights") \
                if self.analyse else None
            self.redis_url = redis_url_for(cfg, self._stack)
            client = redis.Redis.from_url(self.redis_url)
            client.ping()
            self._stack.callback(client.close)
            self.store = CaseStore(client, prefix=self.prefix).with_policy(cfg.alerts)
            channel = ConfigChannel(client, self.store.p)
            if self.fleet and (published := channel.current()) is not None:
                # a worker joins a running fleet: the config of record is the one published (admin changes
                # included), not the file this process happened to start with
                cfg = self.cfg = published
            self.evidence = EvidenceStore(cfg.alerts.evidence_dir)
            if self.api:  # the queue's jobs run beside the API (any number of replicas); a worker only publishes
                self.background = QueueBackground(self.store, self.evidence, cfg.alerts).start()
                self._stack.callback(self.background.stop)
            if self.analyse:
                publisher = AlertPublisher(cfg, self.store, self.evidence, worker=self.worker.name)
                self._stack.callback(publisher.close)  # finishes clips being encoded (runs after the pipeline stops)
                owned, lease, fleet_stats = None, None, None
                if self.fleet:  # nothing is ours until the ring says so
                    self.member = FleetMember(cfg.fleet.url or self.redis_url, self.worker, cfg.fleet, self.prefix)
                    owned, lease, fleet_stats = set(), self.member.valid, self.member.stats
                self.pipeline = Pipeline(cfg, PersonDetector(weights, det_cfg), self.store, publisher,
                                         worker=self.worker, owned=owned, lease=lease, fleet_stats=fleet_stats).start()
                self._stack.callback(self.pipeline.stop)
                if self.member is not None:
                    self.member.on_change = self.pipeline.assign
                    self.member.start(enabled_ids(cfg))
                    self._stack.callback(self.member.stop)  # leaves first: the others take the cameras at once
            self.app = None
            if self.api:
                self.app = create_app(cfg, self.store, self.redis_url, self.evidence)
                self.app.state.pipeline = self.pipeline
                self.app.state.config_path = self.config_path
            # admin changes: published by any API process, applied in each (and to the pipeline) without a restart
            if self.analyse and not (self.fleet and published is not None):
                channel.publish(cfg, actor="startup")
            stop = threading.Event()
            self._stack.callback(stop.set)
            channel.watch(self._apply, stop)
            return self
        except BaseException:
            self._stack.close()
            raise

    def _apply(self, cfg: GridwatchConfig) -> None:
        self.cfg = cfg
        if self.app is not None:
            self.app.state.config = cfg
        if self.pipeline is not None:
            self.pipeline.reconfigure(cfg)
        if self.member is not None:  # an added camera starts on exactly one worker: the one the ring names
            self.member.share(enabled_ids(cfg))

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def serve(self, host: str, port: int, duration: float | None = None, on_ready=None) -> None:
        """Serve the API until Ctrl-C (or for ``duration`` seconds)."""
        server = uvicorn.Server(uvicorn_config(self.app, host, port))
        timer = None
        if duration is not None:
            timer = threading.Timer(duration, lambda: setattr(server, "should_exit", True))
            timer.daemon = True  # Ctrl-C ends the process now, not when the duration runs out
            timer.start()
        if on_ready is not None:
            def _announce():
                while not server.started:
                    if server.should_exit:
                        return
                    time.sleep(0.05)
                on_ready()
            threading.Thread(target=_announce, daemon=True).start()
        try:
            server.run()
        finally:
            if timer is not None:
                timer.cancel()
