"""Config changes reach the running pipeline without a restart.

The admin API validates a change with the same pydantic model as the YAML
file, then publishes the whole config here: it is stored in Redis (so a
pipeline that starts later, or runs in another process, sees the latest) and a
notice goes out on a pub/sub channel. ``watch`` calls back with the new config
in the pipeline's process, which applies it (``Pipeline.reconfigure``).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable

import redis

from alerts.outage import OutageLog
from gridwatch.config import GridwatchConfig, written_data

log = logging.getLogger(__name__)


class ConfigChannel:
    def __init__(self, client: redis.Redis, prefix: str = "gw"):
        self.r, self.p = client, prefix
        self.key, self.channel = f"{prefix}:config", f"{prefix}:config:changed"

    def publish(self, cfg: GridwatchConfig, actor: str) -> int:
        """Store ``cfg`` as the current config and tell every watcher; returns its version.

        What travels is the config as written and the folder its paths are relative to: each process derives its
        runtime copy itself, and an admin in any process edits (and saves) what the user wrote.
        """
        version = int(self.r.incr(f"{self.key}:version"))
        doc = {"version": version, "actor": actor, "ts": time.time(), "config": written_data(cfg),
               "base": str(cfg.base) if cfg.base is not None else None}
        self.r.set(self.key, json.dumps(doc))
        self.r.publish(self.channel, str(version))
        return version

    def current(self) -> GridwatchConfig | None:
        raw = self.r.get(self.key)
        if not raw:
            return None
        doc = json.loads(raw)
        base = Path(doc["base"]) if doc.get("base") else None
        written = GridwatchConfig.model_validate(doc["config"], context={"base": base} if base else None)
        return written.resolve_paths(base) if base is not None else written

    def version(self) -> int:
        raw = self.r.get(self.key)
        return json.loads(raw)["version"] if raw else 0

    def watch(self, apply: Callable[[GridwatchConfig], None], stop: threading.Event,
              poll_s: float = 1.0) -> threading.Thread:
        """Call ``apply`` with each newly published config until ``stop``; a thread.

        Pub/sub wakes it at once; the version is also polled, so a notice lost
        while Redis restarted is caught up on the next poll.
        """
        outage = OutageLog("Redis (config watch)", log)

        def run() -> None:
            seen = self.version()
            pubsub = None
            while not stop.is_set():
                try:
                    if pubsub is None:
                        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
                        pubsub.subscribe(self.channel)
                    pubsub.get_message(timeout=poll_s)
                    outage.ok()
                    v = self.version()
                    if v > seen:
                        cfg = self.current()
                        seen = v
                        if cfg is not None:
                            log.info("config version %d: applying", v)
                            apply(cfg)
                except redis.RedisError as err:
                    outage.failed(err)  # once per outage, not once per poll
                    pubsub = None
                    stop.wait(poll_s)
                except Exception:  # a bad apply must not end the watch
                    log.exception("config change could not be applied")
            if pubsub is not None:
                pubsub.close()

        t = threading.Thread(target=run, name="config-watch", daemon=True)
        t.start()
        return t
