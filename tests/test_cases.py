"""The case queue on a real server: one case per incident, the lifecycle, delivery, time limits, audit, feedback."""
import dataclasses
import json
import threading
import time

import pytest
import redis

from alerts import Alert, Case, CaseNotFound, CaseStore, IllegalTransition, incident_id_for
from gridwatch.config import AlertsConfig


def alert(camera="cam-1", zone="z1", kind="crowding", grid="g-1", count=12, detail="12 people", **kw) -> Alert:
    return Alert(kind=kind, camera_id=camera, camera_name="Gate", grid_id=grid, zone_id=zone,
                 ts=kw.pop("ts", time.time()), count=count, score=0.9, detail=detail, snapshot=None, lat=31.2, lon=121.4,
                 **kw)


def policy(**kw) -> AlertsConfig:
    return AlertsConfig.model_validate(kw)


def walk(store, cid, *steps):
    for action, kw in steps:
        store.transition(cid, action, kw.pop("actor", "op"), **kw)


def test_new_case_lands_in_its_grids_stream_and_priority_queue(store):
    status, case = store.ingest(alert(grid="g-7"), cooldown_s=60)
    assert status == "created" and case.state == "new" and case.priority == 4
    log = store.r.xrange(store.grid_stream("g-7"))
    assert [e[1][b"case"].decode() for e in log] == [case.id]
    assert [e[1][b"case"].decode() for e in store.r.xrange(store.queue_stream("g-7", 4))] == [case.id]
    assert store.r.xrange(store.grid_stream("g-1")) == []
    assert [c.id for c in store.list(grid="g-7")] == [case.id]


def test_an_alert_is_built_with_keywords():
    with pytest.raises(TypeError):
        Alert("crowding", "cam-1", "Gate", "g-1", "z1", 1000.0, 12, 0.9, "12 people", None, 31.2, 121.4)
    assert alert(ts=1000.0).normalised().incident_id == incident_id_for("cam-1", "z1", "crowding", 1000.0)


def test_a_case_an_older_gridwatch_wrote_still_reads(store):
    """A case stored before the newer fields existed: read with their defaults, listed, and it moves on."""
    old = {"id": "old-1", "kind": "crowding", "state": "new", "camera_id": "cam-1", "camera_name": "Gate",
           "grid_id": "g-1", "zone_id": "z1", "ts": 1000.0, "count": 9, "score": 0.8, "detail": "9 people",
           "snapshot": None, "lat": 31.2, "lon": 121.4, "created_at": 1000.0, "updated_at": 1000.0, "version": 1}
    store.r.set(store.k("case", "old-1"), json.dumps(old))
    store.r.zadd(store.k("cases"), {"old-1": 1000.0})
    case = store.get("old-1")
    assert isinstance(case, Case) and case.history == [] and case.photos == [] and case.clip is None
    assert (case.priority, case.incidents, case.escalation_level, case.dead_letter) == (4, 1, 0, False)
    assert [c.id for c in store.list()] == ["old-1"]
    after = store.transition("old-1", "acknowledge", "op")
    assert after.state == "acknowledged" and after.version == 2 and store.get("old-1").history[0].actor == "op"


def test_the_same_alert_sent_twice_is_one_case(store):
    """A retry after a timeout, a restarted worker: the incident's id and sequence number make it a no-op."""
    a = alert(incident_id=incident_id_for("cam-1", "z1", "crowding", 1000.0))
    first = store.ingest(a)
    again = store.ingest(a)
    assert first[0] == "created" and again == ("duplicate", None)
    update = dataclasses.replace(a, seq=1, count=15, detail="count rose to 15", phase="update")
    assert store.ingest(update)[0] == "updated"
    assert store.ingest(update)[0] == "duplicate"
    assert store.ingest(a)[0] == "duplicate"  # an old alert arriving late changes nothing either
    case = store.get(first[1].id)
    assert case.id == a.incident_id and case.updates == 1 and case.count == 15
    assert [h.action for h in case.history] == ["create", "update"]
    assert store.r.xlen(store.grid_stream("g-1")) == 1 and store.r.xlen(store.queue_stream("g-1", 4)) == 1


def test_news_of_an_ongoing_incident_grows_the_timeline(store):
    a = alert(count=12, incident_id="inc-a")
    store.ingest(a)
    for seq, n in enumerate((14, 19, 25), start=1):
        store.ingest(dataclasses.replace(a, seq=seq, count=n, detail=f"count rose to {n}", phase="update",
                                         priority=2 if n >= 24 else 4, level="high" if n >= 24 else ""))
    store.ingest(dataclasses.replace(a, seq=4, count=3, detail="count below 11 for 5s", phase="end", ts=a.ts + 60))
    case = store.get("inc-a")
    assert case.count == 25 and case.updates == 3 and case.priority == 2 and case.level == "high"
    assert case.end_ts == pytest.approx(a.ts + 60, abs=1e-3)
    assert [(h.action, h.count) for h in case.history] == [
        ("create", 12), ("update", 14), ("update", 19), ("update", 25), ("end", 3)]
    assert store.r.xlen(store.queue_stream("g-1", 4)) == 1  # still one alert


def test_same_place_within_cooldown_is_one_case(store):
    status1, first = store.ingest(alert(count=12), cooldown_s=60)
    status2, again = store.ingest(alert(count=15, detail="count rose to 15"), cooldown_s=60)
    status3, other_zone = store.ingest(alert(zone="z2"), cooldown_s=60)
    status4, other_kind = store.ingest(alert(kind="conflict"), cooldown_s=60)
    assert (status1, status2, status3, status4) == ("created", "updated", "created", "created")
    assert again.id == first.id and again.count == 15 and again.updates == 1
    assert again.incidents == 2
    assert len({first.id, other_zone.id, other_kind.id}) == 3


def test_closed_case_absorbs_news_within_cooldown(store):
    _, first = store.ingest(alert(), cooldown_s=60)
    walk(store, first.id, ("acknowledge", {}), ("resolve", {"verdict": "false_alarm"}), ("close", {}))
    status, again = store.ingest(alert(count=20), cooldown_s=60)
    assert status == "absorbed" and again.id == first.id and again.state == "closed"
    assert store.r.xlen(store.grid_stream("g-1")) == 1


def test_after_an_incidents_end_and_the_cooldown_a_new_case(store):
    start = alert()
    _, first = store.ingest(start, cooldown_s=0.2)
    end = alert(incident_id=first.incident_id, seq=1, phase="end")
    assert store.ingest(end, cooldown_s=0.2)[0] == "ended"
    time.sleep(0.3)
    status, second = store.ingest(alert(), cooldown_s=0.2)
    assert status == "created" and second.id != first.id


def test_an_incident_that_never_ended_keeps_its_case_past_the_cooldown(store):
    """A worker killed mid-crowd sends no end; the new owner's new incident joins the open case, however long the
    crowd has stood (the cooldown counts from an incident's end)."""
    _, first = store.ingest(alert(ts=time.time() - 5), cooldown_s=0.2)
    time.sleep(0.3)
    status, again = store.ingest(alert(count=14, detail="after a failover"), cooldown_s=0.2)
    assert status == "updated" and again.id == first.id and again.incidents == 2


def test_full_lifecycle_records_who_and_when(store):
    _, case = store.ingest(alert(), cooldown_s=60)
    cid = case.id
    walk(store, cid, ("acknowledge", {"actor": "op-li"}), ("dispatch", {"actor": "op-li", "worker": "w-zhang"}),
         ("reassign", {"actor": "op-li", "worker": "w-wu", "note": "zhang is off sick"}),
         ("arrive", {"actor": "w-wu"}),
         ("resolve", {"actor": "w-wu", "verdict": "confirmed", "note": "about 30 people at the gate"}),
         ("close", {"actor": "op-li", "note": "dispersed"}))
    got = store.get(cid)
    assert got.state == "closed" and got.verdict == "confirmed" and got.worker == "w-wu"
    steps = [(h.action, h.state, h.actor) for h in got.history]
    assert steps == [("create", "new", "gridwatch"), ("acknowledge", "acknowledged", "op-li"),
                     ("dispatch", "dispatched", "op-li"), ("reassign", "dispatched", "op-li"),
                     ("arrive", "on_site", "w-wu"), ("resolve", "resolved", "w-wu"), ("close", "closed", "op-li")]
    assert got.history[3].note == "from w-zhang: zhang is off sick"
    times = [h.ts for h in got.history]
    assert times == sorted(times) and time.time() - times[0] < 60
    assert store.r.zscore(store.k("deadlines"), cid) is None  # closed: no time limit left


@pytest.mark.parametrize("path, action", [
    ([], "dispatch"),                               # new -> dispatched skips acknowledge
    ([], "close"),                                  # cannot close what nobody looked at
    ([], "arrive"),                                 # nobody was sent
    (["acknowledge"], "acknowledge"),               # twice
    (["acknowledge"], "close"),                     # closing needs a verdict first
    (["acknowledge"], "reassign"),                  # nobody to take it from
])
def test_illegal_transitions_are_refused_and_change_nothing(store, path, action):
    _, case = store.ingest(alert(), cooldown_s=60)
    for step in path:
        store.transition(case.id, step, "op")
    before = store.get(case.id)
    with pytest.raises(IllegalTransition, match=f"cannot {action}"):
        store.transition(case.id, action, "op", worker="w", verdict="confirmed")
    assert store.get(case.id) == before


def test_closed_case_stays_closed(store):
    _, case = store.ingest(alert(), cooldown_s=60)
    walk(store, case.id, ("acknowledge", {}), ("resolve", {"verdict": "not_found"}), ("close", {}))
    for action in ("acknowledge", "dispatch", "accept", "reassign", "arrive", "resolve", "close"):
        with pytest.raises(IllegalTransition):
            store.transition(case.id, action, "op", worker="w", verdict="confirmed")
    with pytest.raises(IllegalTransition):
        store.add_note(case.id, "w", "too late")


def test_bad_arguments(store):
    _, case = store.ingest(alert(), cooldown_s=60)
    store.transition(case.id, "acknowledge", "op")
    with pytest.raises(ValueError, match="worker"):
        store.transition(case.id, "dispatch", "op")
    with pytest.raises(ValueError, match="verdict"):
        store.transition(case.id, "resolve", "op", verdict="maybe")
    store.transition(case.id, "dispatch", "op", worker="w1")
    with pytest.raises(ValueError, match="different worker"):
        store.transition(case.id, "reassign", "op", worker="w1")
    with pytest.raises(CaseNotFound):
        store.transition("nope", "acknowledge", "op")


def test_grid_workers_share_the_queue_fights_first_then_crowds_by_density(store):
    crowd = store.ingest(alert(zone="a", grid="g-2", count=6, priority=4))[1]
    dense = store.ingest(alert(zone="b", grid="g-2", count=20, priority=2, level="high"))[1]
    fight = store.ingest(alert(zone="c", grid="g-2", kind="conflict", count=2))[1]
    assert fight.priority == 1
    order = [store.take("g-2", f"worker-{i}") for i in range(3)]
    assert [c.id for c in order] == [fight.id, dense.id, crowd.id]  # each case to one worker
    assert store.take("g-2", "worker-3") is None
    assert len(store.pending("g-2")) == 3
    store.transition(order[0].id, "accept", "worker-0")  # accepting acknowledges the delivery
    assert {p["case"] for p in store.pending("g-2")} == {dense.id, crowd.id}
    assert store.get(order[0].id).worker == "worker-0"


def test_a_case_taken_but_not_accepted_goes_to_another_worker(store):
    s = store.with_policy(policy(delivery={"claim_timeout_s": 0.3, "max_deliveries": 5}))
    case = s.ingest(alert(grid="g-3"))[1]
    first = s.take("g-3", "w-slow")
    assert first.id == case.id and first.deliveries == 1
    assert s.take("g-3", "w-other") is None  # not yet: w-slow may still accept
    time.sleep(0.4)
    second = s.take("g-3", "w-other")
    assert second.id == case.id and second.deliveries == 2
    assert [p["worker"] for p in s.pending("g-3")] == ["w-other"]
    s.transition(case.id, "accept", "w-other")
    assert s.pending("g-3") == [] and s.get(case.id).worker == "w-other"
    with pytest.raises(IllegalTransition):  # w-slow wakes up too late
        s.transition(case.id, "accept", "w-slow")


def test_a_case_delivered_too_often_goes_to_the_dead_letter_stream_and_the_operators(store):
    s = store.with_policy(policy(delivery={"claim_timeout_s": 0.1, "max_deliveries": 2}))
    case = s.ingest(alert(grid="g-4"))[1]
    last_event = s.r.xrevrange(s.events_stream, count=1)[0][0]
    assert s.take("g-4", "w1").deliveries == 1
    time.sleep(0.15)
    assert s.take("g-4", "w2").deliveries == 2
    time.sleep(0.15)
    assert s.take("g-4", "w3") is None  # not a third time
    dead = s.dead_letters()
    assert [(d["case"], d["deliveries"], d["last_worker"]) for d in dead] == [(case.id, "2", "w2")]
    got = s.get(case.id)
    assert got.dead_letter and got.history[-1].action == "deadletter"
    events = [f[b"type"].decode() for _, f in s.r.xrange(s.events_stream, f"({last_event.decode()}")]
    assert "case.deadletter" in events
    assert s.pending("g-4") == [] and s.sweep_dead_letters() == []  # once only
    s.transition(case.id, "acknowledge", "op")  # the operators still can act on it
    s.transition(case.id, "dispatch", "op", worker="w9")


def test_fights_go_to_the_police_liaison_stream_crowds_do_not(store):
    store.ingest(alert(zone="a"))
    fight = store.ingest(alert(zone="b", kind="conflict", count=2, detail="close people moving erratically"))[1]
    walk(store, fight.id, ("acknowledge", {}), ("dispatch", {"worker": "w1"}))
    police = list(reversed(store.police_stream()))
    assert [(p["case"], p["type"]) for p in police] == [(fight.id, "created"), (fight.id, "acknowledged"),
                                                       (fight.id, "dispatched")]
    assert police[0]["camera"] == "cam-1" and float(police[0]["lat"]) == 31.2


def test_time_limits_escalate_to_the_operators_and_the_supervisor(store):
    s = store.with_policy(policy(limits={"new_s": 0.2, "acknowledged_s": 0.2, "repeat": 2}))
    case = s.ingest(alert(grid="g-5"))[1]
    assert s.escalate_due() == []  # not yet
    time.sleep(0.25)
    up = s.escalate_due()
    assert [c.id for c in up] == [case.id] and up[0].escalation_level == 1
    assert s.escalate_due() == []  # re-armed for another limit period, not escalated twice at once
    time.sleep(0.25)
    assert s.escalate_due()[0].escalation_level == 2
    time.sleep(0.25)
    assert s.escalate_due() == []  # repeat: 2 escalations per state at most
    sup = s.escalations("g-5")
    assert [e["level"] for e in sup] == ["2", "1"] and "not acknowledged within 0.2 s" in sup[-1]["note"]
    s.transition(case.id, "acknowledge", "op")  # a new state: a new limit, counted from zero
    assert s.get(case.id).escalation_level == 0
    time.sleep(0.25)
    up = s.escalate_due()
    assert up[0].state == "acknowledged" and up[0].escalations == 3
    assert "no worker dispatched" in s.get(case.id).history[-1].note


def test_audit_log_is_append_only_and_tampering_shows(store):
    _, case = store.ingest(alert(), cooldown_s=60)
    walk(store, case.id, ("acknowledge", {"actor": "op-li"}), ("dispatch", {"actor": "op-li", "worker": "w1"}))
    store.add_note(case.id, "w1", "on my way")
    assert store.verify_history(case.id) == (True, None)
    hist = store.k("case", case.id, "history")
    entry = json.loads(store.r.lindex(hist, 1))
    entry["actor"] = "someone-else"
    store.r.lset(hist, 1, json.dumps(entry))
    assert store.verify_history(case.id) == (False, 1)
    store.r.lset(hist, 1, store.r.lindex(hist, 2))  # or an entry replaced
    assert not store.verify_history(case.id)[0]


def test_tail_of_the_audit_log_cannot_be_dropped_unnoticed(store):
    _, case = store.ingest(alert(), cooldown_s=60)
    walk(store, case.id, ("acknowledge", {}))
    store.r.rpop(store.k("case", case.id, "history"))
    assert store.verify_history(case.id) == (False, 0)


def test_notes_and_photos_from_the_worker(store):
    _, case = store.ingest(alert(), cooldown_s=60)
    walk(store, case.id, ("acknowledge", {}), ("dispatch", {"worker": "w1"}), ("arrive", {"actor": "w1"}))
    store.add_note(case.id, "w1", "crowd waiting for the shuttle bus")
    store.add_note(case.id, "w1", photo="0" * 32 + ".jpg")
    got = store.get(case.id)
    assert got.notes == 2 and got.photos == ["0" * 32 + ".jpg"] and got.state == "on_site"
    assert [(h.action, h.photo) for h in got.history[-2:]] == [("note", None), ("photo", "0" * 32 + ".jpg")]
    with pytest.raises(ValueError):
        store.add_note(case.id, "w1")


def test_verdicts_feed_a_report_per_zone(store):
    verdicts = ["false_alarm", "false_alarm", "confirmed", "not_found", None]
    for i, verdict in enumerate(verdicts):
        case = store.ingest(alert(zone="gate", incident_id=f"i{i}", ts=1000.0 + i), cooldown_s=0)[1]
        if verdict:
            walk(store, case.id, ("acknowledge", {}), ("dispatch", {"worker": "w1"}),
                 ("resolve", {"actor": "w1", "verdict": verdict, "note": f"it was {verdict}"}))
    store.ingest(alert(zone="gate", kind="conflict", incident_id="f1"))
    report = {(r["zone_id"], r["kind"]): r for r in store.zone_report()}
    assert report[("gate", "crowding")] == {
        "camera_id": "cam-1", "zone_id": "gate", "kind": "crowding", "alerts": 5, "confirmed": 1, "false_alarm": 2,
        "not_found": 1, "unresolved": 1, "false_alarm_rate": 0.5}
    assert report[("gate", "conflict")]["alerts"] == 1 and report[("gate", "conflict")]["false_alarm_rate"] is None
    fa = store.feedback(verdict="false_alarm")
    assert [f["case"] for f in fa] == ["i1", "i0"] and fa[0]["worker"] == "w1" and fa[0]["note"] == "it was false_alarm"


def test_evidence_is_kept_while_the_case_is_open_then_for_the_retention_period(store):
    s = store.with_policy(policy(retention={"evidence_days": 1, "feedback_days": 10}))
    a = dataclasses.replace(alert(incident_id="e1"), snapshot="a" * 32 + ".jpg")
    s.ingest(a)
    assert s.attach("e1", "clip", "b" * 32 + ".mp4") == "attached"
    assert s.attach("e1", "clip", "b" * 32 + ".mp4") == "duplicate"
    assert s.get("e1").clip == "b" * 32 + ".mp4"
    keep = s.evidence_keep(["a" * 32 + ".jpg", "b" * 32 + ".mp4", "c" * 32 + ".jpg"])
    assert keep["a" * 32 + ".jpg"] == float("inf") and keep["b" * 32 + ".mp4"] == float("inf")
    assert keep["c" * 32 + ".jpg"] is None
    walk(s, "e1", ("acknowledge", {}), ("resolve", {"verdict": "false_alarm"}), ("close", {}))
    until = s.evidence_keep(["a" * 32 + ".jpg"])["a" * 32 + ".jpg"]
    assert until == pytest.approx(time.time() + 10 * 86400, abs=60)  # a false alarm's evidence: kept for re-tuning


def test_concurrent_transitions_one_wins(store, redis_url):
    """Two operators acknowledge at once: exactly one succeeds (the case's version is checked on the server)."""
    _, case = store.ingest(alert(), cooldown_s=60)
    results = []

    def ack(name):
        s = CaseStore(redis.Redis.from_url(redis_url), prefix=store.p)
        try:
            s.transition(case.id, "acknowledge", name)
            results.append("ok")
        except IllegalTransition:
            results.append("refused")

    threads = [threading.Thread(target=ack, args=(f"op{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["refused"] * 7
    assert [h.action for h in store.get(case.id).history].count("acknowledge") == 1
    assert store.verify_history(case.id) == (True, None)


def test_lists_find_old_cases_however_many_newer_alerts_came_since(store):
    """A worker's case dispatched hours ago, a grid's old open case: the other cameras' newer alerts don't hide them."""
    t0 = time.time() - 4 * 3600
    mine = store.ingest(alert(camera="cam-9", grid="g-9", ts=t0), cooldown_s=0)[1]
    old_open = store.ingest(alert(camera="cam-8", grid="g-8", ts=t0 + 1, kind="conflict"), cooldown_s=0)[1]
    old_closed = store.ingest(alert(camera="cam-7", grid="g-7", ts=t0 + 2), cooldown_s=0)[1]
    walk(store, mine.id, ("acknowledge", {}), ("dispatch", {"worker": "wang"}))
    walk(store, old_closed.id, ("acknowledge", {}), ("resolve", {"verdict": "false_alarm"}), ("close", {}))
    for i in range(30):  # the rest of the district, newer; each list below reads at most 10 cases of its index
        c = store.ingest(alert(camera=f"street-{i}", grid=f"g-{i % 3}", ts=t0 + 100 + i), cooldown_s=0)[1]
        walk(store, c.id, ("acknowledge", {}), ("resolve", {"verdict": "false_alarm"}), ("close", {}))
    ids = lambda **kw: [c.id for c in store.list(scan=10, **kw)]  # noqa: E731
    assert ids(worker="wang") == [mine.id]
    assert ids(grid="g-9") == [mine.id] and ids(camera="cam-8") == [old_open.id]
    assert set(ids(state="dispatched")) == {mine.id} and ids(state="new") == [old_open.id]
    by_priority = ids(sort="priority", limit=5)
    assert by_priority[:2] == [old_open.id, mine.id]  # open first (the fight first), then the newest closed
    assert old_closed.id not in by_priority and len(by_priority) == 5
    assert ids() == ids(sort="time", limit=50)[:10]  # the plain newest-first page is unchanged
    # a reassigned case leaves the first worker's list; a closed one leaves the open index
    walk(store, mine.id, ("reassign", {"worker": "li"}))
    assert ids(worker="wang") == [] and ids(worker="li") == [mine.id]
    walk(store, old_open.id, ("acknowledge", {}), ("resolve", {"verdict": "false_alarm"}), ("close", {}))
    assert ids(state="new") == [] and store.r.zscore(store.k("cases", "open"), old_open.id) is None


def test_a_database_from_before_the_list_indexes_is_indexed_once(store):
    """Cases written by an older gridwatch (no indexes) are found after an upgrade, without losing any."""
    t0 = time.time() - 3600
    cases = [store.ingest(alert(camera=f"cam-{i}", grid=f"g-{i % 2}", ts=t0 + i), cooldown_s=0)[1]
             for i in range(7)]
    walk(store, cases[0].id, ("acknowledge", {}), ("dispatch", {"worker": "zhao"}))
    walk(store, cases[1].id, ("acknowledge", {}), ("resolve", {"verdict": "false_alarm"}), ("close", {}))
    for key in store.r.scan_iter(store.k("cases", "*")):  # what an older version left: just gw:cases
        store.r.delete(key)
    store.r.zadd(store.k("cases"), {c.id: c.ts for c in cases})
    upgraded = CaseStore(store.r, store.p, store.policy)
    assert upgraded.ensure_indexes(batch=3) == 7
    assert [c.id for c in upgraded.list(worker="zhao")] == [cases[0].id]
    assert {c.id for c in upgraded.list(grid="g-0")} == {cases[i].id for i in (0, 2, 4, 6)}
    assert cases[1].id not in [c.id for c in upgraded.list(state="new")]
    assert len(upgraded.list(state="new")) == 5
    assert CaseStore(store.r, store.p, store.policy).ensure_indexes() == 0  # once per database
