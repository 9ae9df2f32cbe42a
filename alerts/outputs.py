"""Outputs beyond the queue: case events as a webhook POST and on MQTT, shaped like Frigate's events.

Each output follows the case event stream (``gw:events``) with its own cursor kept
in Redis, so it gets every change from every process (pipeline and API), at least
once, in order, and a receiver that is down only delays that output.
Frigate's shape: ``{"type": "new" | "update" | "end", "before": {...}, "after": {...}}``;
``end`` is when the case is closed.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Protocol

import redis

from gridwatch.config import MqttOutput, OutputsConfig, WebhookOutput, mask_url

from .cases import Case

log = logging.getLogger(__name__)


def frigate_object(case: Case) -> dict:
    """A case as Frigate describes a tracked object of an event, plus gridwatch's own fields."""
    return {
        "id": case.id, "camera": case.camera_id, "label": case.kind, "sub_label": case.level or None,
        "score": case.score, "top_score": case.score, "frame_time": case.ts, "start_time": case.ts,
        "end_time": case.end_ts or (case.updated_at if case.state == "closed" else None),
        "current_zones": [case.zone_id], "entered_zones": [case.zone_id],
        "has_snapshot": bool(case.snapshot), "has_clip": bool(case.clip),
        "false_positive": case.verdict == "false_alarm", "stationary": False,
        "thumbnail": None,
        # gridwatch: where it goes and how far it is
        "grid": case.grid_id, "state": case.state, "priority": case.priority, "count": case.count,
        "verdict": case.verdict, "worker": case.worker, "escalations": case.escalations,
        "lat": case.lat, "lon": case.lon,
        "snapshot_url": f"/api/evidence/{case.snapshot}" if case.snapshot else None,
        "clip_url": f"/api/evidence/{case.clip}" if case.clip else None,
    }


def frigate_event(event_type: str, case: Case, before: Case | None) -> dict:
    if event_type == "case.created":
        kind = "new"
    elif case.state == "closed" and (before is None or before.state != "closed"):
        kind = "end"
    else:
        kind = "update"
    return {"type": kind, "before": frigate_object(before or case), "after": frigate_object(case),
            "event": event_type}


class Output(Protocol):
    name: str

    def send(self, event: dict) -> None:
        """Deliver one event or raise; the relay retries."""


class Webhook:
    """POSTs each event as JSON (stdlib urllib: one request at a time needs no client library)."""

    def __init__(self, cfg: WebhookOutput):
        self.cfg = cfg
        self.name = "webhook"

    def send(self, event: dict) -> None:
        req = urllib.request.Request(self.cfg.url, data=json.dumps(event).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **self.cfg.headers})
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                if resp.status >= 300:
                    raise OSError(f"webhook {mask_url(self.cfg.url)} answered {resp.status}")
        except urllib.error.URLError as err:
            raise OSError(f"webhook {mask_url(self.cfg.url)}: {err}") from None


class Mqtt:
    """Publishes each event to ``PREFIX/events`` (as Frigate does on ``frigate/events``) with paho-mqtt."""

    def __init__(self, cfg: MqttOutput, client_id: str = "gridwatch"):
        import paho.mqtt.client as mqtt

        self.cfg = cfg
        self.name = "mqtt"
        self.topic = f"{cfg.topic_prefix.rstrip('/')}/events"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password)
        self.client.reconnect_delay_set(1, 10)
        self.client.connect_async(cfg.host, cfg.port, keepalive=30)
        self.client.loop_start()

    def send(self, event: dict) -> None:
        if not self.client.is_connected():
            raise OSError(f"MQTT broker {self.cfg.host}:{self.cfg.port} not connected")
        info = self.client.publish(self.topic, json.dumps(event), qos=self.cfg.qos)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise OSError(f"MQTT publish to {self.topic} not confirmed")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def outputs_from(cfg: OutputsConfig) -> list[Output]:
    out: list[Output] = []
    if cfg.webhook is not None:
        out.append(Webhook(cfg.webhook))
    if cfg.mqtt is not None:
        out.append(Mqtt(cfg.mqtt))
    return out


class OutputRelay(threading.Thread):
    """Follows the case events for one output; its cursor lives in Redis, so a restart resumes, not repeats."""

    def __init__(self, client: redis.Redis, prefix: str, output: Output, retry_s: float = 1.0):
        super().__init__(name=f"output-{output.name}", daemon=True)
        self.r, self.output, self.retry_s = client, output, retry_s
        self.stream = f"{prefix}:events"
        self.cursor_key = f"{prefix}:outputs:{output.name}:cursor"
        self._stop_event = threading.Event()
        self._cursor: str | None = None
        self.sent = 0
        self.last_error: str | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)
        if hasattr(self.output, "close"):
            self.output.close()

    def prime(self) -> None:
        """Fix where to start before the thread runs: the saved cursor, else now (not the whole history)."""
        saved = self.r.get(self.cursor_key)
        self._cursor = saved.decode() if saved else (self._last_id() or "0-0")

    def run(self) -> None:
        cursor: str | None = self._cursor
        while not self._stop_event.is_set():
            try:
                if cursor is None:
                    self.prime()
                    cursor = self._cursor
                got = self.r.xread({self.stream: cursor}, count=100, block=1000)
                for _, entries in got or []:
                    for msg_id, fields in entries:
                        if not self._send_until_done(fields):
                            return  # stopping: this event is sent after the restart
                        cursor = msg_id.decode()
                        self.r.set(self.cursor_key, cursor)
            except redis.RedisError as err:
                self.last_error = f"{type(err).__name__}: {err}"
                self._stop_event.wait(self.retry_s)

    def _last_id(self) -> str | None:
        last = self.r.xrevrange(self.stream, count=1)
        return last[0][0].decode() if last else None

    def _send_until_done(self, fields: dict) -> bool:
        case = Case.model_validate_json(fields[b"case"])
        before = Case.model_validate_json(fields[b"before"]) if fields.get(b"before") else None
        event = frigate_event(fields[b"type"].decode(), case, before)
        delay = self.retry_s
        while not self._stop_event.is_set():
            try:
                self.output.send(event)
                self.sent += 1
                return True
            except Exception as err:  # receiver down: this output waits, nothing else does
                self.last_error = f"{type(err).__name__}: {err}"
                log.warning("%s output: %s; retrying in %.0f s", self.output.name, err, delay)
                self._stop_event.wait(delay)
                delay = min(delay * 2, 30.0)
        return False
