"""Queue benchmark: alerts per second into the grid case queue, and case transitions per second through the API.

Runs against the embedded default (a Valkey this script starts in a temporary
directory, append-only file on, fsync every second), like a fresh install:

* alerts in: ``CaseStore.ingest`` (one atomic script per alert: case, history,
  grid queue, deadline, event) for alerts of 492 cameras, 80 % new incidents and
  20 % news of open ones, one client as the publisher is, and 4 clients at once;
  the per-alert latency is the enqueue latency. Baseline, in the same process and
  server: a bare ``XADD`` of the same alert (the least any queue on Redis costs).
* transitions: acknowledge -> dispatch -> arrive -> resolve -> close through the
  HTTP API (real uvicorn, in this process, over loopback), one client and 4 at
  once. Baseline: ``GET /api/health`` on the same server (one Redis PING).

    python bench/queue_load.py --quick     # < 1 minute; last line: JSON
    python bench/queue_load.py             # more alerts; writes bench/results/queue.json

The worst burst 492 cameras can make is about 492 alerts in a second (every
camera's zones firing at once); ``headroom`` is alerts/s against that.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import redis
from tqdm import tqdm

from alerts import Alert, CaseStore, EmbeddedValkey, EvidenceStore, incident_id_for
from api import create_app
from bench.machine import describe
from gridwatch.config import parse_config
from gridwatch.harness import serving

ROOT = Path(__file__).resolve().parents[1]
CAMERAS = 492
WORST_BURST_PER_S = CAMERAS


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(lat_s: list[float], wall_s: float, n: int) -> dict:
    return {"n": n, "per_s": round(n / wall_s, 1), "p50_ms": round(1000 * pct(lat_s, 50), 3),
            "p99_ms": round(1000 * pct(lat_s, 99), 3), "max_ms": round(1000 * max(lat_s), 3)}


def make_alerts(n: int, ts0: float) -> list[Alert]:
    """80 % new incidents, 20 % updates of an earlier one (the count rising), spread over 492 cameras."""
    out: list[Alert] = []
    opened: list[Alert] = []
    for i in range(n):
        if opened and i % 5 == 4:
            base = opened[(i * 7) % len(opened)]
            seq = base.seq + 1 + i  # increasing per incident
            out.append(replace(base, seq=seq, count=base.count + 1, phase="update", detail="count rose"))
            continue
        cam = f"cam-{i % CAMERAS:03d}"
        zone, kind = f"z{i}", "conflict" if i % 13 == 0 else "crowding"  # a zone per incident: no cooldown merge
        ts = ts0 + i * 1e-4
        a = Alert(kind=kind, camera_id=cam, camera_name=cam, grid_id=f"g-{i % 40:02d}", zone_id=zone, ts=ts,
                  count=8 + i % 30, score=0.9, detail="crowd", snapshot=None, lat=31.2, lon=121.4,
                  incident_id=incident_id_for(cam, zone, kind, ts), seq=0, priority=0, level="", phase="start")
        opened.append(a)
        out.append(a)
    return out


def run_timed(items, fn, threads: int, desc: str) -> tuple[list[float], float]:
    lat: list[float] = []
    lock = threading.Lock()
    bar = tqdm(total=len(items), desc=desc, unit="op", leave=False, file=sys.stderr)

    def work(chunk):
        mine = []
        for it in chunk:
            t = time.perf_counter()
            fn(it)
            mine.append(time.perf_counter() - t)
            if len(mine) % 200 == 0:
                bar.update(200)
        with lock:
            lat.extend(mine)
        bar.update(len(mine) % 200)

    chunks = [items[i::threads] for i in range(threads)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(work, chunks))
    wall = time.perf_counter() - t0
    bar.close()
    return lat, wall


def bench_alerts(url: str, n: int, trials: int) -> dict:
    """Per client count: ``trials`` rounds of (baseline XADD, ingest) back to back; the median round is reported.

    Rounds, not one long run, because this machine is shared: a neighbour's burst
    hits one round, and the median says what the queue does, the spread how noisy it was.
    """
    out = {}
    for threads in (1, 4):
        client = redis.Redis.from_url(url, max_connections=threads + 2)
        rounds = []
        for trial in range(trials):
            prefix = f"bench{threads}-{trial}"
            store = CaseStore(client, prefix=prefix)
            alerts = make_alerts(n, time.time())
            store.ingest(replace(make_alerts(1, 0.0)[0], zone_id="warm-up", incident_id="warm-up"), 60)  # script loaded
            payloads = [a.to_json() for a in alerts]
            lat, wall = run_timed(payloads, lambda p: client.xadd(f"{prefix}:baseline", {"alert": p}), threads,
                                  f"baseline XADD x{threads} #{trial + 1}")
            base = summary(lat, wall, n)
            lat, wall = run_timed(alerts, lambda a: store.ingest(a, 60), threads, f"ingest x{threads} #{trial + 1}")
            got = summary(lat, wall, n)
            cases = client.zcard(f"{prefix}:cases") - 1
            assert cases == sum(1 for a in alerts if a.phase == "start"), "every new incident must be one case"
            rounds.append({"ingest": got, "baseline_xadd": base,
                           "ratio_per_s_vs_xadd": round(got["per_s"] / base["per_s"], 3), "cases": cases})
            for key in client.scan_iter(f"{prefix}:*", count=1000):
                client.unlink(key)
        client.close()
        median = sorted(rounds, key=lambda r: r["ingest"]["per_s"])[len(rounds) // 2]
        out[f"clients_{threads}"] = {**median, "rounds_per_s": [r["ingest"]["per_s"] for r in rounds],
                                     "rounds_p99_ms": [r["ingest"]["p99_ms"] for r in rounds]}
    return out


def bench_transitions(url: str, cases: int, tmp: Path) -> dict:
    cfg = parse_config({"grids": [{"id": "g-1"}], "cameras": []})
    client = redis.Redis.from_url(url, max_connections=64)
    store = CaseStore(client, prefix="bench-api")
    app = create_app(cfg, store, url, EvidenceStore(tmp / "evidence"))
    # an operator account, as a console would log in (the API answers 401 otherwise)
    from gridwatch.accounts import Account, hash_password

    book = app.state.accounts
    operator = Account(name="bench-op", role="operator", grids=[], password_hash=hash_password("bench-password"))
    book.add(operator)
    auth = {"Authorization": f"Bearer {book.issue(operator)}"}
    steps = [("acknowledge", {}), ("dispatch", {"worker": "w1"}), ("arrive", {}),
             ("resolve", {"verdict": "confirmed"}), ("close", {})]
    out = {}
    try:
        with serving(app) as base_url:
            for threads in (1, 4):
                ids = [store.ingest(a, 0)[1].id for a in make_alerts(cases, time.time()) if a.phase == "start"]
                http = httpx.Client(base_url=base_url, timeout=30, headers=auth,
                                    limits=httpx.Limits(max_connections=threads + 2))
                lat, wall = run_timed(list(range(len(ids) * 5)), lambda i: http.get("/api/health"), threads,
                                      f"baseline GET x{threads}")
                base = summary(lat, wall, len(ids) * 5)

                def lifecycle(cid):
                    for action, body in steps:
                        r = http.post(f"/api/cases/{cid}/{action}", json={"actor": "bench-op", **body})
                        if r.status_code != 200:
                            raise RuntimeError(f"{action}: {r.status_code} {r.text}")

                lat, wall = run_timed(ids, lifecycle, threads, f"transitions x{threads}")
                per_case = summary(lat, wall, len(ids))
                http.close()
                n = len(ids) * len(steps)
                out[f"clients_{threads}"] = {
                    "transitions_per_s": round(n / wall, 1),
                    "p50_ms_per_transition": round(per_case["p50_ms"] / len(steps), 3),
                    "p99_ms_per_case_of_5": per_case["p99_ms"], "transitions": n,
                    "baseline_health_get": base,
                    "ratio_per_s_vs_health_get": round((n / wall) / base["per_s"], 3)}
    finally:
        for key in client.scan_iter("bench-api:*", count=1000):
            client.unlink(key)
        client.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer alerts; < 1 minute")
    ap.add_argument("--alerts", type=int, default=None)
    ap.add_argument("--cases", type=int, default=None, help="cases taken through their 5 transitions")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    n = args.alerts or (2000 if args.quick else 10000)
    trials = 3 if args.quick else 5
    cases = args.cases or (150 if args.quick else 1000)
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp, EmbeddedValkey(Path(tmp) / "valkey") as server:
        info = redis.Redis.from_url(server.url).info("server")
        alerts = bench_alerts(server.url, n, trials)
        transitions = bench_transitions(server.url, cases, Path(tmp))
    one = alerts["clients_1"]["ingest"]
    result = {
        "alerts_per_s": one["per_s"],
        "p99_enqueue_ms": one["p99_ms"],
        "p50_enqueue_ms": one["p50_ms"],
        "alerts_per_s_4_clients": alerts["clients_4"]["ingest"]["per_s"],
        "p99_enqueue_ms_4_clients": alerts["clients_4"]["ingest"]["p99_ms"],
        "ratio_vs_bare_xadd": alerts["clients_1"]["ratio_per_s_vs_xadd"],
        "load_avg_1m_before": load_before,
        "transitions_per_s": transitions["clients_1"]["transitions_per_s"],
        "transitions_per_s_4_clients": transitions["clients_4"]["transitions_per_s"],
        "headroom_vs_worst_burst": round(one["per_s"] / WORST_BURST_PER_S, 1),
        "target": {"alerts_per_s": 2000, "p99_enqueue_ms": 20},
        "meets_target": one["per_s"] >= 2000 and one["p99_ms"] <= 20,
        "server": f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info['redis_version']} "
                  "(embedded default: unix socket, appendonly yes, appendfsync everysec)",
        "machine": describe(),
        "model": "none (the queue does not run a model)",
        "quick": args.quick,
        "details": {"alerts": alerts, "transitions": transitions},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = args.out or (None if args.quick else ROOT / "bench" / "results" / "queue.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
