"""The queue's background work in the API process, with short limits: escalation, dead letters, retention; config."""
import json
import os
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import API_CONFIG, authorize, wait_for

from alerts import Alert, EvidenceStore
from alerts.background import QueueBackground
from gridwatch.config import AlertsConfig, ConfigError, parse_config
from gridwatch.harness import serving


def alert(kind="crowding", zone="z1", grid="g-2") -> Alert:
    return Alert(kind=kind, camera_id="cam-1", camera_name="Gate", grid_id=grid, zone_id=zone, ts=time.time(), count=9,
                 score=0.9, detail="9 people", snapshot=None, lat=31.2, lon=121.4)


@pytest.fixture
def fast_api(store, redis_url, tmp_path, monkeypatch):
    """`gridwatch serve` (the Service without the pipeline, real uvicorn) under time limits of a fraction of a second."""
    from gridwatch.service import Service

    monkeypatch.setenv("REDIS_URL", redis_url)  # this test's server (the embedded Valkey, or REDIS_URL's)
    cfg = parse_config({**API_CONFIG, "settings": {"data_dir": str(tmp_path)}, "alerts": {
        "limits": {"new_s": 0.4, "acknowledged_s": 0.4, "repeat": 2, "check_every_s": 0.05},
        "delivery": {"claim_timeout_s": 0.2, "max_deliveries": 1}}}).resolve_paths(tmp_path)
    with Service(cfg, analyse=False, prefix=store.p) as svc, serving(svc.app) as base_url, \
            httpx.Client(base_url=base_url, timeout=10, headers=authorize(svc.app)) as client:
        client.store, client.app = svc.store, svc.app  # the store under the config's policy (set by the Service)
        assert client.store.policy.limits.new_s == 0.4
        yield client
    assert not svc.background._threads[0].is_alive()  # stopped with the service




def test_escalation_runs_by_itself_in_the_api_process(fast_api):
    events, ready = [], threading.Event()

    def listen():
        with fast_api.stream("GET", "/api/events", timeout=15) as r:
            for line in r.iter_lines():
                if line.startswith("event: stream.ready"):
                    ready.set()  # subscribed: what happens from now on is pushed
                if line.startswith("event:") and "escalated" in line:
                    events.append(line)
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    _, case = fast_api.store.ingest(alert(kind="conflict"))
    t0 = time.time()
    got = wait_for(lambda: fast_api.get(f"/api/cases/{case.id}").json()["escalation_level"] >= 1)
    assert got and 0.35 < time.time() - t0 < 3  # after the limit, not before, and not much after
    t.join(10)
    assert events  # the operator room is told (server-sent event)
    sup = fast_api.get("/api/grids/g-2/escalations").json()
    assert sup[0]["fields"]["case"] == case.id and "not acknowledged within 0.4 s" in sup[0]["fields"]["note"]
    # acknowledging starts the next state's clock; its limit escalates too
    fast_api.post(f"/api/cases/{case.id}/acknowledge", json={"actor": "op"})
    assert wait_for(lambda: fast_api.get(f"/api/cases/{case.id}").json()["escalation_level"] >= 1)
    assert fast_api.get(f"/api/cases/{case.id}").json()["state"] == "acknowledged"
    assert wait_for(lambda: fast_api.get(f"/api/cases/{case.id}").json()["escalations"] == 3, 3)
    time.sleep(0.6)
    assert fast_api.get(f"/api/cases/{case.id}").json()["escalations"] == 3  # repeat: 2 per state at most


def test_an_untaken_delivery_is_dead_lettered_by_the_background(fast_api):
    _, case = fast_api.store.ingest(alert())
    taken = fast_api.post("/api/grids/g-2/take", params={"worker": "w-asleep"}).json()
    assert taken["id"] == case.id
    dead = wait_for(lambda: fast_api.get("/api/deadletter").json())
    assert dead[0]["fields"]["case"] == case.id and dead[0]["fields"]["last_worker"] == "w-asleep"
    assert fast_api.get(f"/api/cases/{case.id}").json()["dead_letter"] is True
    assert fast_api.get("/api/grids/g-2/pending").json() == []


def test_retention_deletes_what_no_open_case_needs(store, tmp_path):
    ev = EvidenceStore(tmp_path / "ev")
    img = np.zeros((16, 16, 3), np.uint8)
    open_snap = ev.save_jpeg(img)
    closed_snap = ev.save_jpeg(img + 1)
    orphan_old = ev.save_jpeg(img + 2)
    orphan_new = ev.save_jpeg(img + 3)
    old = time.time() - 40 * 86400
    for name in (open_snap, closed_snap, orphan_old):
        os.utime(ev.dir / name, (old, old))
    s = store.with_policy(AlertsConfig.model_validate({"retention": {"evidence_days": 30}}))
    from dataclasses import replace

    s.ingest(replace(alert(zone="a"), snapshot=open_snap))
    _, closed = s.ingest(replace(alert(zone="b"), snapshot=closed_snap))
    for action, kw in [("acknowledge", {}), ("resolve", {"verdict": "confirmed"}), ("close", {})]:
        s.transition(closed.id, action, "op", **kw)
    s.r.zadd(s.k("evidence", "keep"), {closed_snap: time.time() - 1})  # its 30 days are over
    bg = QueueBackground(s, ev, s.policy)
    assert sorted(bg.sweep_evidence()) == sorted([closed_snap, orphan_old])
    assert ev.path(open_snap) and ev.path(orphan_new) and not ev.path(closed_snap)
    assert s.evidence_keep([closed_snap]) == {closed_snap: None}


@pytest.mark.parametrize("alerts, field, words", [
    ({"outputs": {"webhook": {"url": "ftp://x"}}}, "alerts.outputs.webhook.url", "should match pattern"),
    ({"outputs": {"mqtt": {"host": "h", "port": 70000}}}, "alerts.outputs.mqtt.port", "less than or equal"),
    ({"limits": {"new_s": 0}}, "alerts.limits.new_s", "greater than 0"),
    ({"delivery": {"max_deliveries": 0}}, "alerts.delivery.max_deliveries", "greater than or equal to 1"),
    ({"clip": {"pre_s": -1}}, "alerts.clip.pre_s", "greater than or equal to 0"),
    ({"outputs": {"kafka": {}}}, "alerts.outputs.kafka", "unknown field"),
])
def test_bad_queue_config_names_the_field(alerts, field, words):
    with pytest.raises(ConfigError) as err:
        parse_config({**API_CONFIG, "alerts": alerts}, "site.yaml")
    assert any(p.where == field and words in p.msg for p in err.value.problems), err.value.problems


def test_events_carry_json_the_outputs_can_read(store):
    _, case = store.ingest(alert())
    _, fields = store.r.xrevrange(store.events_stream, count=1)[0]
    assert json.loads(fields[b"case"])["id"] == case.id and fields[b"type"] == b"case.created"
