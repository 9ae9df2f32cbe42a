"""The case queue on a real server: one case per incident, the lifecycle, the grid's consumer group."""
import time

import pytest
import redis

from alerts import Alert, CaseNotFound, IllegalTransition


def alert(camera="cam-1", zone="z1", kind="crowding", grid="g-1", count=12, detail="12 people") -> Alert:
    return Alert(kind, camera, "Gate", grid, zone, time.time(), count, 0.9, detail, None, 31.2, 121.4)


def test_new_case_lands_in_its_grids_stream(store):
    case, created = store.create_case(alert(grid="g-7"), cooldown_s=60)
    assert created and case["state"] == "new"
    entries = store.r.xrange(store.grid_stream("g-7"))
    assert [e[1][b"case"].decode() for e in entries] == [case["id"]]
    assert store.r.xrange(store.grid_stream("g-1")) == []
    assert [c["id"] for c in store.list(grid="g-7")] == [case["id"]]


def test_same_incident_within_cooldown_is_one_case(store):
    first, created1 = store.create_case(alert(count=12), cooldown_s=60)
    again, created2 = store.create_case(alert(count=15, detail="count rose to 15"), cooldown_s=60)
    other_zone, created3 = store.create_case(alert(zone="z2"), cooldown_s=60)
    other_kind, created4 = store.create_case(alert(kind="conflict"), cooldown_s=60)
    assert (created1, created2, created3, created4) == (True, False, True, True)
    assert again["id"] == first["id"] and again["count"] == 15 and again["updates"] == 1
    assert len({first["id"], other_zone["id"], other_kind["id"]}) == 3
    history = store.get(first["id"])["history"]
    assert [h["action"] for h in history] == ["create", "update"]


def test_closed_case_absorbs_news_within_cooldown(store):
    first, _ = store.create_case(alert(), cooldown_s=60)
    for action, kw in [("acknowledge", {}), ("verify", {"verdict": "false_alarm"}), ("close", {})]:
        store.transition(first["id"], action, "op", **kw)
    again, created = store.create_case(alert(count=20), cooldown_s=60)
    assert not created and again["id"] == first["id"] and again["state"] == "closed"
    assert store.r.xlen(store.grid_stream("g-1")) == 1


def test_after_cooldown_a_new_case(store):
    first, _ = store.create_case(alert(), cooldown_s=0.2)
    time.sleep(0.3)
    second, created = store.create_case(alert(), cooldown_s=0.2)
    assert created and second["id"] != first["id"]


def test_full_lifecycle_records_who_and_when(store):
    case, _ = store.create_case(alert(), cooldown_s=60)
    cid = case["id"]
    store.transition(cid, "acknowledge", "op-li")
    store.transition(cid, "dispatch", "op-li", worker="w-zhang")
    store.transition(cid, "verify", "w-zhang", verdict="confirmed", note="about 30 people at the gate")
    store.transition(cid, "close", "op-li", note="dispersed")
    got = store.get(cid)
    assert got["state"] == "closed" and got["verdict"] == "confirmed" and got["worker"] == "w-zhang"
    steps = [(h["action"], h["state"], h["actor"]) for h in got["history"]]
    assert steps == [("create", "new", "gridwatch"), ("acknowledge", "acknowledged", "op-li"),
                     ("dispatch", "dispatched", "op-li"), ("verify", "verified", "w-zhang"),
                     ("close", "closed", "op-li")]
    times = [h["ts"] for h in got["history"]]
    assert times == sorted(times) and time.time() - times[0] < 60


@pytest.mark.parametrize("path, action", [
    ([], "dispatch"),                               # new -> dispatched skips acknowledge
    ([], "close"),                                  # cannot close what nobody looked at
    (["acknowledge"], "acknowledge"),               # twice
    (["acknowledge"], "close"),                     # closing needs a verdict first
])
def test_illegal_transitions_are_refused_and_change_nothing(store, path, action):
    case, _ = store.create_case(alert(), cooldown_s=60)
    for step in path:
        store.transition(case["id"], step, "op")
    before = store.get(case["id"])
    with pytest.raises(IllegalTransition, match=f"cannot {action}"):
        store.transition(case["id"], action, "op", worker="w", verdict="confirmed")
    assert store.get(case["id"]) == before


def test_closed_case_stays_closed(store):
    case, _ = store.create_case(alert(), cooldown_s=60)
    for action, kw in [("acknowledge", {}), ("verify", {"verdict": "false_alarm"}), ("close", {})]:
        store.transition(case["id"], action, "op", **kw)
    for action in ("acknowledge", "dispatch", "verify", "close"):
        with pytest.raises(IllegalTransition):
            store.transition(case["id"], action, "op", worker="w", verdict="confirmed")


def test_bad_arguments(store):
    case, _ = store.create_case(alert(), cooldown_s=60)
    store.transition(case["id"], "acknowledge", "op")
    with pytest.raises(ValueError, match="worker"):
        store.transition(case["id"], "dispatch", "op")
    with pytest.raises(ValueError, match="verdict"):
        store.transition(case["id"], "verify", "op", verdict="maybe")
    with pytest.raises(CaseNotFound):
        store.transition("nope", "acknowledge", "op")


def test_grid_workers_share_the_queue_through_the_consumer_group(store):
    a, _ = store.create_case(alert(zone="a", grid="g-2"), cooldown_s=60)
    b, _ = store.create_case(alert(zone="b", grid="g-2"), cooldown_s=60)
    got1 = store.take("g-2", "worker-1")
    got2 = store.take("g-2", "worker-2")
    assert {got1["id"], got2["id"]} == {a["id"], b["id"]}  # each case to one worker
    assert store.take("g-2", "worker-3") is None
    pending = store.r.xpending(store.grid_stream("g-2"), "workers")
    assert pending["pending"] == 2
    store.transition(got1["id"], "acknowledge", "op")
    store.transition(got1["id"], "dispatch", "op", worker="worker-1")
    assert store.r.xpending(store.grid_stream("g-2"), "workers")["pending"] == 1


def test_concurrent_transitions_one_wins(store, redis_url):
    """Two operators acknowledge at once: exactly one succeeds (optimistic locking on the case)."""
    import threading

    from alerts import CaseStore

    case, _ = store.create_case(alert(), cooldown_s=60)
    results = []

    def ack(name):
        s = CaseStore(redis.Redis.from_url(redis_url), prefix=store.p)
        try:
            s.transition(case["id"], "acknowledge", name)
            results.append("ok")
        except IllegalTransition:
            results.append("refused")

    threads = [threading.Thread(target=ack, args=(f"op{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["refused"] * 7
    assert [h["action"] for h in store.get(case["id"])["history"]].count("acknowledge") == 1
