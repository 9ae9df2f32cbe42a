"""Outputs beyond the queue against real receivers: a local HTTP server (webhook) and Mosquitto (MQTT)."""
import json
import queue
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import need

from alerts import Alert, Case, EvidenceStore
from alerts.background import QueueBackground
from alerts.outputs import frigate_event
from gridwatch.config import AlertsConfig
from gridwatch.harness import free_port

MOSQUITTO = "/usr/sbin/mosquitto"


def alert(kind="crowding", zone="z1", count=12) -> Alert:
    return Alert(kind=kind, camera_id="cam-1", camera_name="Gate", grid_id="g-1", zone_id=zone, ts=time.time(),
                 count=count, score=0.9, detail=f"{count} people", snapshot="a" * 32 + ".jpg", lat=31.2, lon=121.4)


class Receiver:
    """A real HTTP server on a loopback port that records each JSON POST."""

    def __init__(self, port: int):
        got: queue.Queue = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.put((self.path, self.headers.get("X-Token"), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.got = got
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, n: int, timeout: float = 15.0) -> list:
        return [self.got.get(timeout=timeout) for _ in range(n)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def background(store, tmp_path, outputs: dict) -> QueueBackground:
    cfg = AlertsConfig.model_validate({"outputs": outputs})
    return QueueBackground(store, EvidenceStore(tmp_path / "ev"), cfg).start()


def test_webhook_gets_frigate_shaped_events_through_the_case_lifecycle(store, tmp_path):
    port = free_port()
    rx = Receiver(port)
    bg = background(store, tmp_path, {"webhook": {"url": f"http://127.0.0.1:{port}/hook",
                                                  "headers": {"X-Token": "s3cret"}}})
    try:
        _, case = store.ingest(alert())
        for action, kw in [("acknowledge", {}), ("dispatch", {"worker": "w1"}),
                           ("resolve", {"verdict": "confirmed"}), ("close", {})]:
            store.transition(case.id, action, "op", **kw)
        events = rx.take(5)
    finally:
        bg.stop()
        rx.close()
    assert {(path, token) for path, token, _ in events} == {("/hook", "s3cret")}
    bodies = [e for _, _, e in events]
    assert [b["type"] for b in bodies] == ["new", "update", "update", "update", "end"]
    assert [b["after"]["state"] for b in bodies] == ["new", "acknowledged", "dispatched", "resolved", "closed"]
    assert [b["before"]["state"] for b in bodies[1:]] == ["new", "acknowledged", "dispatched", "resolved"]
    first, last = bodies[0]["after"], bodies[-1]["after"]
    assert first["id"] == case.id and first["camera"] == "cam-1" and first["label"] == "crowding"
    assert first["current_zones"] == ["z1"] and first["has_snapshot"] and first["end_time"] is None
    assert last["end_time"] is not None and last["verdict"] == "confirmed" and last["false_positive"] is False


def test_a_webhook_that_is_down_gets_every_event_once_it_is_up(store, tmp_path):
    port = free_port()
    bg = background(store, tmp_path, {"webhook": {"url": f"http://127.0.0.1:{port}/hook", "timeout_s": 1}})
    try:
        ids = [store.ingest(alert(zone=f"z{i}"))[1].id for i in range(3)]
        time.sleep(1.0)  # the relay has tried and failed meanwhile
        assert bg.relays[0].last_error is not None
        rx = Receiver(port)
        events = rx.take(3, timeout=30)
        rx.close()
    finally:
        bg.stop()
    assert [e["after"]["id"] for _, _, e in events] == ids  # in order, none lost


@pytest.fixture
def mosquitto(tmp_path):
    need(shutil.which(MOSQUITTO) is not None, "mosquitto is not installed (scripts/setup.sh installs it)")
    port = free_port()
    proc = subprocess.Popen([MOSQUITTO, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def test_mqtt_gets_the_events_on_prefix_events(store, tmp_path, mosquitto):
    import paho.mqtt.client as mqtt

    got: queue.Queue = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
    sub.on_message = lambda c, u, msg: got.put((msg.topic, json.loads(msg.payload)))
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("district/#", qos=1)
    sub.connect("127.0.0.1", mosquitto)
    sub.loop_start()
    assert subscribed.wait(10)
    bg = background(store, tmp_path, {"mqtt": {"host": "127.0.0.1", "port": mosquitto, "topic_prefix": "district"}})
    try:
        _, fight = store.ingest(alert(kind="conflict", count=2))
        store.transition(fight.id, "acknowledge", "op")
        messages = [got.get(timeout=15) for _ in range(2)]
    finally:
        bg.stop()
        sub.loop_stop()
        sub.disconnect()
    assert [t for t, _ in messages] == ["district/events"] * 2
    assert [(m["type"], m["after"]["label"], m["after"]["state"]) for _, m in messages] == [
        ("new", "conflict", "new"), ("update", "conflict", "acknowledged")]
    assert messages[0][1]["after"]["priority"] == 1


def test_frigate_event_shape():
    case = Case(id="c1", camera_id="cam", camera_name="Cam", kind="crowding", level="high", score=1.0, ts=10.0,
                zone_id="z", state="closed", created_at=10.0, updated_at=20.0, grid_id="g", priority=2, count=30,
                detail="30 people", lat=1.0, lon=2.0, snapshot=None, clip="b" * 32 + ".mp4", verdict="false_alarm")
    ev = frigate_event("case.updated", case, case.model_copy(update={"state": "resolved"}))
    assert ev["type"] == "end" and ev["after"]["end_time"] == 20.0 and ev["after"]["false_positive"] is True
    assert ev["after"]["has_clip"] and not ev["after"]["has_snapshot"] and ev["before"]["state"] == "resolved"
    assert frigate_event("case.created", case.model_copy(update={"state": "new"}), None)["type"] == "new"
