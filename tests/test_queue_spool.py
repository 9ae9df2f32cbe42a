"""No loss: alerts spooled on local disk while Redis is down, delivered in order and exactly once when it returns."""
import json
import os
import signal
import threading
import time

import pytest
import redis

from alerts import Alert, CaseStore, EmbeddedValkey, incident_id_for
from alerts.spool import Outbox, Spool


def alert_n(i: int, ts0: float) -> Alert:
    cam, zone = f"cam-{i % 250:03d}", f"z{i // 250}"
    ts = ts0 + i * 0.001
    return Alert(kind="conflict" if i % 10 == 0 else "crowding", camera_id=cam, camera_name=cam, grid_id=f"g-{i % 7}",
                 zone_id=zone, ts=ts, count=5 + i % 20, score=0.8, detail=f"alert {i}", snapshot=None, lat=31.2,
                 lon=121.4, incident_id=incident_id_for(cam, zone, "crowding", ts))


def deliver_to(store: CaseStore):
    return lambda op: store.ingest(Alert(**op["alert"]), op["cooldown_s"])


def op(a: Alert) -> dict:
    from dataclasses import asdict

    return {"op": "alert", "alert": asdict(a), "cooldown_s": 0}


@pytest.fixture
def own_valkey(tmp_path_factory):
    """A Valkey of this test's own (the embedded default: append-only file on), to kill and restart."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("vk")).start()
    yield server
    server.stop()


def test_redis_killed_mid_burst_of_1000_alerts_every_case_exactly_once(own_valkey, tmp_path):
    client = redis.Redis.from_url(own_valkey.url)
    store = CaseStore(client, prefix="burst")
    outbox = Outbox(Spool(tmp_path / "spool"), deliver_to(store), retry_s=0.1, max_retry_s=0.5)
    ts0 = time.time()
    alerts = [alert_n(i, ts0) for i in range(1000)]
    at_300, at_700 = threading.Event(), threading.Event()

    def chaos():  # beside the burst, as a crash would come: no warning, maybe mid-command
        at_300.wait(30)
        os.kill(own_valkey.proc.pid, signal.SIGKILL)
        own_valkey.proc.wait(5)
        at_700.wait(30)
        own_valkey.start()  # same data directory: it loads its append-only file

    killer = threading.Thread(target=chaos)
    killer.start()
    direct = 0
    for i, a in enumerate(alerts):
        (at_300 if i == 300 else at_700 if i == 700 else threading.Event()).set()
        if outbox.send(op(a)) is not None:
            direct += 1
    killer.join(60)
    assert outbox.flush(timeout=30), f"spool not drained: {outbox.last_error}"
    assert 300 <= direct < 1000 and outbox.spooled > 0 and outbox.replayed == outbox.spooled

    cases = {c: json.loads(client.get(f"burst:case:{c}")) for c in
             (i.decode() for i in client.zrange("burst:cases", 0, -1))}
    assert sorted(cases) == sorted(a.incident_id for a in alerts)  # every alert: a case; no case twice
    log = [(grid, f[b"case"].decode()) for grid in range(7) for _, f in client.xrange(f"burst:grid:g-{grid}:cases")]
    assert len(log) == 1000 and len({c for _, c in log}) == 1000
    queued = sum(client.xlen(s) for s in client.smembers("burst:queues"))
    assert queued == 1000  # one delivery entry per case in the grid queues
    for grid in range(7):  # in order: each grid's queue saw its alerts in the order they were raised
        got = [f[b"case"].decode() for _, f in client.xrange(f"burst:grid:g-{grid}:cases")]
        assert got == [a.incident_id for a in alerts if a.grid_id == f"g-{grid}"]
    assert all(len(client.lrange(f"burst:case:{c}:history", 0, -1)) == 1 for c in cases)
    # sending the whole burst again (a restarted publisher replaying) changes nothing
    assert {store.ingest(a)[0] for a in alerts[::50]} == {"duplicate"}
    outbox.close()
    client.close()


def test_new_alerts_wait_behind_the_spool_so_order_is_kept(store, tmp_path):
    delivered = []
    down = threading.Event()
    down.set()

    def deliver(o):
        if down.is_set():
            raise redis.ConnectionError("Redis is restarting")
        delivered.append(o["n"])
        return "ok"

    outbox = Outbox(Spool(tmp_path / "s"), deliver, retry_s=0.05, max_retry_s=0.1)
    for n in range(5):
        assert outbox.send({"op": "x", "n": n}) is None
    down.clear()
    # Redis is back, but the spool is not drained yet: a new op must not overtake the spooled ones
    outbox.send({"op": "x", "n": 5})
    assert outbox.flush(5)
    assert delivered == [0, 1, 2, 3, 4, 5]
    assert outbox.send({"op": "x", "n": 6}) == "ok" and delivered[-1] == 6  # direct again
    assert (tmp_path / "s" / "alerts.jsonl").stat().st_size == 0  # compacted once delivered
    outbox.close()


def test_spool_survives_a_crash_and_a_torn_last_line(tmp_path):
    spool = Spool(tmp_path / "s")
    for n in range(3):
        spool.append({"op": "x", "n": n})
    spool.commit(len(json.dumps({"op": "x", "n": 0}, separators=(",", ":"))) + 1)  # the first was delivered
    spool.close()
    with open(tmp_path / "s" / "alerts.jsonl", "ab") as fh:
        fh.write(b'{"op":"x","n":3')  # the process died in the middle of a write
    delivered = []
    outbox = Outbox(Spool(tmp_path / "s"), lambda o: delivered.append(o["n"]), retry_s=0.05)
    deadline = time.monotonic() + 5
    while delivered != [1, 2] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert delivered == [1, 2]  # from where it stopped; not the delivered one, not the torn one
    outbox.close()


def test_an_operation_redis_refuses_is_set_aside_not_lost_and_does_not_block(tmp_path):
    delivered = []

    def deliver(o):
        if not delivered and o["n"] == 0 and not getattr(deliver, "up", False):
            raise redis.ConnectionError("down")
        if o["n"] == 1:
            raise redis.ResponseError("ERR bad op")
        delivered.append(o["n"])

    outbox = Outbox(Spool(tmp_path / "s"), deliver, retry_s=0.05)
    for n in range(3):
        outbox.send({"op": "x", "n": n})
    deliver.up = True
    assert outbox.flush(5)
    assert delivered == [0, 2] and outbox.rejected == 1
    rejected = [json.loads(line) for line in (tmp_path / "s" / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["op"]["n"] == 1 and "bad op" in rejected[0]["why"]
    outbox.close()


def test_embedded_default_keeps_append_only_persistence_on(own_valkey):
    client = redis.Redis.from_url(own_valkey.url)
    assert client.config_get("appendonly")["appendonly"] == "yes"
    client.close()


def test_one_spool_one_writer(tmp_path):
    first = Spool(tmp_path / "s")
    with pytest.raises(RuntimeError, match="in use by another gridwatch process.*spool_dir"):
        Spool(tmp_path / "s")
    first.close()
    Spool(tmp_path / "s").close()  # free again once the first is closed
