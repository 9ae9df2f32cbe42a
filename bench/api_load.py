"""API benchmark: the case list under load, alert fan-out to 50 consoles, and the first live-view frame in Chromium.

The API runs in its own process (``--serve``: real uvicorn, the app as ``gridwatch serve`` builds it, logged in
through POST /api/auth/login like a console); this process is the load, over loopback:

* case list: ``GET /api/alerts?limit=50`` as an operator, open loop at 100 requests/s (a request is sent on
  schedule whether or not the one before has answered), over a store of ``--cases`` cases. Target: p99 <= 50 ms.
  Baseline on the same server: ``GET /api/health`` (one Redis PING) at the same rate.
* fan-out: 50 consoles hold ``GET /api/events`` (SSE) open; a new alert is written to the store as the pipeline
  writes it; each console's delay from the write to its ``case.created``. Target: every console within 1 s.
* first frame: headless Chromium opens ``/live/{camera}`` of a camera served by ``streams.RtspServer`` from real
  footage (PETS 2009 vtest.avi); ``window.firstFrameMs`` (ms since page load). Target: 2 s.

    python bench/api_load.py --quick        # < 1 minute; last line: JSON
    python bench/api_load.py                # longer; writes bench/results/api.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


def config(camera_url: str | None, data_dir: Path) -> dict:
    cams = [{"id": "cam-live", "name": "Walkway", "url": camera_url or "rtsp://127.0.0.1:1/none", "grid": "g-1",
             "lat": 31.2, "lon": 121.4, "zones": [{"id": "walk", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}]}]
    return {"grids": [{"id": f"g-{i}"} for i in range(1, 9)], "cameras": cams,
            "settings": {"data_dir": str(data_dir)}}


# ---- the server process ------------------------------------------------------------------------------------------
def serve(args) -> int:
    import redis
    import uvicorn

    from alerts import CaseStore, EvidenceStore
    from api import create_app
    from api.server import uvicorn_config
    from gridwatch.accounts import AccountBook
    from gridwatch.config import parse_config

    data_dir = Path(args.data_dir)
    cfg = parse_config(config(args.camera_url, data_dir)).resolve_paths(data_dir)
    book = AccountBook.for_config(cfg)
    book.put("bench-op", "operator", os.environ["BENCH_PASSWORD"])
    book.save()
    store = CaseStore(redis.Redis.from_url(args.redis_url), prefix=args.prefix)
    app = create_app(cfg, store, args.redis_url, EvidenceStore(data_dir / "evidence"))
    uvicorn.Server(uvicorn_config(app, "127.0.0.1", args.port)).run()
    return 0


# ---- the load ----------------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p90_ms": pct(ms, 90), "p99_ms": pct(ms, 99),
            "max_ms": round(max(ms), 2) if ms else None}


async def open_loop(base: str, headers: dict, path: str, rate: float, seconds: float) -> dict:
    """Send ``rate`` requests/s on schedule (open loop) for ``seconds``; latency of each, errors counted."""
    import httpx

    lat, errors = [], 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10, limits=limits) as client:
        await client.get(path)  # warm: connection and first query

        async def one():
            nonlocal errors
            t = time.perf_counter()
            r = await client.get(path)
            lat.append((time.perf_counter() - t) * 1000)
            errors += r.status_code != 200

        tasks, t0, n = [], time.perf_counter(), int(rate * seconds)
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        achieved = n / (time.perf_counter() - t0)
    return {**summary(lat), "errors": errors, "rate_rps": rate, "achieved_rps": round(achieved, 1)}


async def fanout(base: str, headers: dict, store, consoles: int, alerts: int) -> dict:
    """``consoles`` SSE clients; each alert's delay from the store write to each console's case.created."""
    import httpx

    from alerts import Alert

    sent: dict[str, float] = {}
    got: dict[str, list[float]] = {}
    ready, warmed = asyncio.Event(), asyncio.Event()
    connected, warm = [0], {"zone": f"warm-{secrets.token_hex(3)}", "n": 0}

    async def console(i):
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=httpx.Timeout(10, read=60)) as c:
            async with c.stream("GET", "/api/events") as r:
                assert r.status_code == 200, r.status_code
                connected[0] += 1
                if connected[0] == consoles:
                    ready.set()
                event = None
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "case.created":
                        now = time.perf_counter()
                        data = json.loads(line[5:])
                        cid = data["id"]
                        if data["zone_id"] == warm["zone"]:
                            warm["n"] += 1
                            if warm["n"] == consoles:
                                warmed.set()
                        got.setdefault(cid, []).append(now)  # matched to its write afterwards (no race)

    tasks = [asyncio.create_task(console(i)) for i in range(consoles)]
    await asyncio.wait_for(ready.wait(), 30)
    # a first alert, not measured: every console's stream is past its first XREAD ("$", new entries only)
    def probe(zone: str, detail: str) -> Alert:
        return Alert(kind="conflict", camera_id="cam-live", camera_name="Walkway", grid_id="g-1", zone_id=zone,
                     ts=time.time(), count=3, score=0.9, detail=detail, snapshot=None, lat=31.2, lon=121.4)

    warm_alert = probe(warm["zone"], "warm-up")
    await asyncio.sleep(0.5)
    await asyncio.to_thread(store.ingest, warm_alert, 0)
    await asyncio.wait_for(warmed.wait(), 20)
    for k in range(alerts):
        a = probe(f"fan-{k}-{secrets.token_hex(3)}", "fan-out probe")
        t = time.perf_counter()
        _, case = await asyncio.to_thread(store.ingest, a, 0)
        sent[case.id] = t
        await asyncio.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(len(got.get(c, [])) for c in sent) < consoles * alerts:
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = [(t - sent[c]) * 1000 for c in sent for t in got.get(c, [])]
    delivered = len(lat)
    return {**summary(lat), "consoles": consoles, "alerts": alerts, "delivered": delivered,
            "expected": consoles * alerts, "within_1s": sum(x <= 1000 for x in lat)}


def first_frame(base: str, token: str, runs: int) -> dict:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(runs):
            ctx = browser.new_context(viewport={"width": 1000, "height": 720},
                                      bypass_csp=True)  # wait_for_function evaluates strings; the CSP forbids them
            ctx.add_cookies([{"name": "gw_session", "value": token, "url": base + "/"}])
            page = ctx.new_page()
            page.goto(f"{base}/live/cam-live")
            page.wait_for_function("window.firstFrameMs !== undefined", timeout=20000)
            out.append(float(page.evaluate("window.firstFrameMs")))
            ctx.close()
        browser.close()
    return {**summary(out), "runs": runs}


def seed(store, n: int) -> None:
    from alerts import Alert

    now = time.time()
    kinds = ("crowding", "conflict")
    for i in range(n):
        a = Alert(kind=kinds[i % 2], camera_id=f"cam-{i % 492:03d}", camera_name="Camera", grid_id=f"g-{1 + i % 8}",
                  zone_id=f"z{i}", ts=now - (n - i) * 30, count=5 + i % 20, score=0.8, detail="seeded", snapshot=None,
                  lat=31.2, lon=121.4)
        store.ingest(a, 0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="< 1 minute")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int)
    ap.add_argument("--redis-url")
    ap.add_argument("--prefix", default="gw")
    ap.add_argument("--data-dir")
    ap.add_argument("--camera-url")
    args = ap.parse_args()
    if args.serve:
        return serve(args)

    import httpx
    import psutil
    import redis

    from alerts import CaseStore, EmbeddedValkey
    from gridwatch.demo import fetch_vtest
    from gridwatch.harness import RtspServer, free_port, rtsp_server_available

    seconds, cases, alerts, runs = (8, 2000, 8, 3) if args.quick else (30, 10000, 30, 10)
    load_before = os.getloadavg()
    result: dict = {"machine": f"{platform.node()}: {psutil.cpu_count()} cores (shared), load average "
                               f"{load_before[0]:.1f} at start, {psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU",
                    "quick": args.quick, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        valkey = EmbeddedValkey(tmp / "valkey").start()
        vtest = fetch_vtest(ROOT / ".cache" / "footage")
        cam = RtspServer({"walk": vtest}).start() if vtest and rtsp_server_available() else None
        password = secrets.token_urlsafe(12)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--port", str(port), "--redis-url", valkey.url,
             "--data-dir", str(tmp / "data"), *(["--camera-url", cam.url("walk")] if cam else [])],
            env={**os.environ, "BENCH_PASSWORD": password})
        try:
            store = CaseStore(redis.Redis.from_url(valkey.url))
            t = time.perf_counter()
            seed(store, cases)
            result["seeded"] = {"cases": cases, "s": round(time.perf_counter() - t, 1)}
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the API server did not start")
                time.sleep(0.1)
            login = httpx.post(f"{base}/api/auth/login", json={"username": "bench-op", "password": password}).json()
            headers = {"Authorization": f"Bearer {login['access_token']}"}
            result["health_baseline"] = asyncio.run(open_loop(base, headers, "/api/health", 100, seconds / 2))
            result["case_list"] = asyncio.run(open_loop(base, headers, "/api/alerts?limit=50", 100, seconds))
            result["case_list_sort_priority"] = asyncio.run(
                open_loop(base, headers, "/api/alerts?limit=50&sort=priority&state=new", 20, seconds / 2))
            result["fanout"] = asyncio.run(fanout(base, headers, store, 50, alerts))
            if cam is not None and Path(CHROMIUM).exists():
                result["first_frame"] = first_frame(base, login["access_token"], runs)
            else:
                result["first_frame"] = {"skipped": "no GStreamer RTSP server or Chromium here"}
        finally:
            server.terminate()
            server.wait(10)
            if cam is not None:
                cam.stop()
            valkey.stop()
    cl, fo, ff = result["case_list"], result["fanout"], result["first_frame"]
    result["targets"] = {"case_list_p99_le_50ms": cl["p99_ms"] is not None and cl["p99_ms"] <= 50,
                         "fanout_all_within_1s": fo["within_1s"] == fo["expected"],
                         "first_frame_le_2s": ff.get("max_ms") is not None and ff["max_ms"] <= 2000}
    result["load_average_after"] = round(os.getloadavg()[0], 1)
    out = ROOT / "bench" / "results" / ("api-quick.json" if args.quick else "api.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"case_list_p99_ms": cl["p99_ms"], "case_list_p50_ms": cl["p50_ms"],
                      "alert_fanout_p99_ms": fo["p99_ms"], "alert_fanout_max_ms": fo["max_ms"],
                      "fanout_delivered": f"{fo['delivered']}/{fo['expected']}",
                      "first_frame_ms": ff.get("p50_ms"), "first_frame_max_ms": ff.get("max_ms"),
                      "targets": result["targets"], "results": str(out.relative_to(ROOT))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
