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
    python bench/api_load.py --district     # the centre's scale: writes bench/results/api_district.json

``--district``: the generated district (gridwatch/district.py: 600 leaf grids, 492 cameras, 2,000 open and
3,000 closed cases with their history, seeded through the real store), then the case list and the health
baseline at 100 requests/s open loop, then the operator console in headless Chromium:

* first render: the page's ``performance.mark("gw:first-render")`` (alert list, camera wall and map painted with
  data), its startTime from navigation start. Target: 2 s.
* filter: from dispatching a change of the grid filter (``[data-role=grid-filter]``, the select ``#grid``) or the
  camera filter (``[data-role=camera-filter]``, the input ``#camera-filter``) to the page's next
  ``performance.mark("gw:filtered")``; the slowest of several picks of each. Target: 200 ms.
* burst: 100 new alerts over 10 s written to the store as the pipeline writes them, while a
  ``PerformanceObserver`` of type ``longtask`` records the page's long main-thread tasks; the longest (0: none).

A mark the page does not make (yet) is reported as null, with a note; the last line is JSON with
``case_list_p99_ms``, ``health_p99_ms``, ``console_first_render_ms``, ``filter_ms``, ``burst_longest_task_ms``.
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
    if args.district:
        from gridwatch.district import district_config

        cfg = district_config(data_dir, seed=args.seed)
    else:
        cfg = parse_config(config(args.camera_url, data_dir)).resolve_paths(data_dir)
    book = AccountBook.for_config(cfg)
    book.put("bench-op", "operator", os.environ["BENCH_PASSWORD"])
    book.save()
    store = CaseStore(redis.Redis.from_url(args.redis_url), prefix=args.prefix, policy=cfg.alerts)
    app = create_app(cfg, store, args.redis_url, EvidenceStore(data_dir / "evidence"))
    uvicorn.Server(uvicorn_config(app, "127.0.0.1", args.port)).run()
    return 0


# ---- the load ----------------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p90_ms": pct(ms, 90), "p99_ms": pct(ms, 99),
            "max_ms": round(max(ms), 2) if ms else None}


def started_and_logged_in(base: str, server, password: str, within_s: float) -> str:
    """Wait for the API server (a subprocess) to answer its health check, log in as the bench's operator; the
    token."""
    import httpx

    deadline = time.monotonic() + within_s
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
    return login["access_token"]


async def open_loop(base: str, headers: dict, path: str, rate: float, seconds: float, keep: bool = False) -> dict:
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
    return {**summary(lat), "errors": errors, "rate_rps": rate, "achieved_rps": round(achieved, 1),
            **({"latencies": lat} if keep else {})}


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


# ---- the district: the centre's scale ----------------------------------------------------------------------------
FIRST_RENDER_MARK, FILTERED_MARK = "gw:first-render", "gw:filtered"
FILTER_SELECTORS = {"grid": ("[data-role=grid-filter]", "#grid", "#f-grid"),
                    "camera": ("[data-role=camera-filter]", "#camera-filter", "#f-camera")}
# installed before the page's own script: every long main-thread task, and the marks as they are made
OBSERVE = """(() => {
  window.__longtasks = [];
  try {
    new PerformanceObserver((list) => { for (const e of list.getEntries())
      window.__longtasks.push({start: e.startTime, duration: e.duration}); }).observe({type: "longtask", buffered: true});
  } catch (_) { window.__longtasks = null; }
})()"""


async def interleaved(base: str, headers: dict, paths: list[str], rate: float, seconds: float,
                      slice_s: float = 2.0) -> dict[str, dict]:
    """``open_loop`` on each path in turn, ``slice_s`` at a time, until each had ``seconds``: the same rate, and
    the same moments of a shared machine's load, for a route and its baseline."""
    runs: dict[str, list[dict]] = {p: [] for p in paths}
    done = 0.0
    while done < seconds - 1e-9:
        step = min(slice_s, seconds - done)
        for path in paths:
            runs[path].append(await open_loop(base, headers, path, rate, step, keep=True))
        done += step
    out = {}
    for path, parts in runs.items():
        lat = [x for part in parts for x in part["latencies"]]
        out[path] = {**summary(lat), "errors": sum(p["errors"] for p in parts), "rate_rps": rate,
                     "achieved_rps": round(min(p["achieved_rps"] for p in parts), 1), "slices": len(parts),
                     "slice_s": slice_s}
    return out


def _wait_mark(page, name: str, after: float, timeout_s: float) -> float | None:
    """startTime of the first ``name`` mark at or after ``after`` (ms since navigation), or None by the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = page.evaluate("([n, t]) => { const m = performance.getEntriesByName(n, 'mark')"
                            ".filter((e) => e.startTime >= t); return m.length ? m[0].startTime : null; }",
                            [name, after])
        if got is not None:
            return float(got)
        time.sleep(0.01)
    return None


def _apply_filter(page, selector: str, value: str) -> float:
    """Set a filter and dispatch its change, as a person's pick does; returns performance.now() just before."""
    return float(page.evaluate("""([sel, v]) => { const el = document.querySelector(sel);
        if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === v)) {
          const o = document.createElement("option"); o.value = v; o.textContent = v; el.appendChild(o); }
        const t = performance.now(); el.value = v;
        el.dispatchEvent(new Event("input", {bubbles: true})); el.dispatchEvent(new Event("change", {bubbles: true}));
        return t; }""", [selector, value]))


def console_run(base: str, token: str, store, cfg, grid_picks: list[str], camera_picks: list[str],
                burst: int = 100, burst_s: float = 10.0) -> dict:
    """The operator console in headless Chromium on the district: first render, filters, a burst of alerts."""
    from playwright.sync_api import sync_playwright

    from alerts import Alert

    out: dict = {"notes": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, bypass_csp=True)
        ctx.add_cookies([{"name": "gw_session", "value": token, "url": base + "/"}])
        ctx.add_init_script(OBSERVE)
        page = ctx.new_page()
        t0 = time.perf_counter()
        page.goto(f"{base}/", wait_until="domcontentloaded")
        first = _wait_mark(page, FIRST_RENDER_MARK, 0, 20)
        out["first_render_ms"] = None if first is None else round(first, 1)
        if first is None:
            out["notes"].append(f"no performance mark {FIRST_RENDER_MARK!r} within 20 s: the page does not make it "
                                "(yet); console_first_render_ms is null")
        # what a person sees, whatever the page marks: cards, camera wall and map drawn (for reference)
        try:
            page.wait_for_function("""() => document.querySelector('#feed [data-case-id]')
                && document.querySelector('#cameras [data-camera-id]')
                && document.querySelector('#map [data-grid-id]')""", timeout=20000)
            out["cards_wall_map_seen_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        except Exception as err:  # noqa: BLE001 - a page that never draws is a result too
            out["cards_wall_map_seen_ms"] = None
            out["notes"].append(f"cards, camera wall and map not all drawn within 20 s: {type(err).__name__}")
        out["dom"] = page.evaluate("""() => ({cards: document.querySelectorAll('#feed [data-case-id]').length,
            cameras: document.querySelectorAll('#cameras [data-camera-id]').length,
            map_grids: document.querySelectorAll('#map [data-grid-id]').length,
            map_cameras: document.querySelectorAll('#map [data-camera-id]').length})""")
        page.wait_for_timeout(1000)  # let the first loads settle before the filters
        filters = []
        found = {kind: next((s for s in FILTER_SELECTORS[kind] if page.query_selector(s) is not None), None)
                 for kind in FILTER_SELECTORS}
        for kind, sel in found.items():
            if sel is None:
                out["notes"].append(f"no {kind} filter on the page (looked for {', '.join(FILTER_SELECTORS[kind])})")
        for kind, sel in found.items():
            if sel is None:
                continue
            picks = grid_picks if kind == "grid" else camera_picks
            for value in [*picks, ""]:  # each pick, then back to all
                t = _apply_filter(page, sel, value)
                mark = _wait_mark(page, FILTERED_MARK, t, 5)
                filters.append({"filter": sel, "value": value,
                                "ms": None if mark is None else round(mark - t, 1)})
                page.wait_for_timeout(300)
        measured = [f["ms"] for f in filters if f["ms"] is not None]
        out["filters"] = filters
        out["filter_ms"] = max(measured) if measured and len(measured) == len(filters) else None
        out["filter_p50_ms"] = pct(measured, 50)
        if filters and not measured:
            out["notes"].append(f"no performance mark {FILTERED_MARK!r} after a filter change: filter_ms is null")
        elif len(measured) < len(filters):
            out["notes"].append(f"{len(filters) - len(measured)} of {len(filters)} filter changes made no "
                                f"{FILTERED_MARK!r} mark within 5 s: filter_ms is null")
        # the burst: alerts as the pipeline writes them, the page's long tasks meanwhile
        page.wait_for_timeout(1000)
        if page.evaluate("window.__longtasks") is None:
            out["notes"].append("this Chromium has no longtask observer")
        start = float(page.evaluate("performance.now()"))
        cams = [c for c in cfg.cameras][:burst]
        t_b = time.perf_counter()
        for k in range(burst):
            c = cams[k % len(cams)]
            when = t_b + k * burst_s / burst
            time.sleep(max(0.0, when - time.perf_counter()))
            store.ingest(Alert(kind="conflict" if k % 5 == 0 else "crowding", camera_id=c.id, camera_name=c.name,
                               grid_id=c.grid, zone_id=f"burst-{k}", ts=time.time(), count=12, score=0.8,
                               detail="burst", snapshot=None, lat=c.lat, lon=c.lon), 0)
        page.wait_for_timeout(1500)
        tasks = [t for t in (page.evaluate("window.__longtasks") or []) if t["start"] >= start]
        out["burst"] = {"alerts": burst, "seconds": burst_s, "long_tasks": len(tasks),
                        "longest_task_ms": round(max((t["duration"] for t in tasks), default=0.0), 1),
                        "long_task_total_ms": round(sum(t["duration"] for t in tasks), 1),
                        "cards_after": page.evaluate("document.querySelectorAll('#feed [data-case-id]').length")}
        ctx.close()
        browser.close()
    return out


def district(args) -> int:
    """--district: seed the district, load the list at 100 requests/s (health as the baseline), the console."""
    import redis

    from alerts import CaseStore, EmbeddedValkey
    from bench.machine import cpu_record, describe
    from gridwatch.district import district_config, leaf_grids, seed_cases
    from gridwatch.harness import free_port

    seconds = args.seconds or (10 if args.quick else 30)
    load_before = os.getloadavg()
    result: dict = {"machine": describe(), "cpu": cpu_record(),
                    "load_average_at_start": round(load_before[0], 1), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = tmp / "data"
        cfg = district_config(data_dir, seed=args.seed)
        url, valkey = os.environ.get("REDIS_URL"), None
        prefix = f"bench-district-{secrets.token_hex(3)}" if url else "gw"
        if not url:
            valkey = EmbeddedValkey(tmp / "valkey").start()
            url = valkey.url
        client = redis.Redis.from_url(url)
        store = CaseStore(client, prefix=prefix, policy=cfg.alerts)
        password = secrets.token_urlsafe(12)
        port = free_port()
        server = None
        try:
            seeded = seed_cases(store, cfg, args.open, args.closed, seed=args.seed)
            result["data"] = {"grids": len(cfg.grids), "leaf_grids": len(leaf_grids(cfg)),
                              "cameras": len(cfg.cameras), **{k: seeded[k] for k in ("open", "closed", "states")},
                              "transitions": seeded["transitions"], "seed_s": seeded["seconds"],
                              "redis": "REDIS_URL" if valkey is None else "embedded Valkey"}
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", "--district",
                 "--seed", str(args.seed), "--port", str(port), "--redis-url", url, "--prefix", prefix,
                 "--data-dir", str(data_dir)], env={**os.environ, "BENCH_PASSWORD": password})
            base = f"http://127.0.0.1:{port}"
            token = started_and_logged_in(base, server, password, 60)
            headers = {"Authorization": f"Bearer {token}"}
            # the baseline and the list in alternate 2-second slices: both see the same (shared, noisy) machine
            both = asyncio.run(interleaved(base, headers, ["/api/health", "/api/alerts?limit=50"], 100, seconds))
            result["health_baseline"], result["case_list"] = both["/api/health"], both["/api/alerts?limit=50"]
            result["case_list_priority_open"] = asyncio.run(
                open_loop(base, headers, "/api/alerts?limit=50&sort=priority&state=new", 20, seconds / 2))
            busy_grid = max(leaf_grids(cfg), key=lambda g: sum(c.grid == g for c in cfg.cameras))
            result["case_list_grid"] = asyncio.run(
                open_loop(base, headers, f"/api/alerts?limit=50&grid={busy_grid}", 20, seconds / 2))
            if Path(CHROMIUM).exists() and not args.no_browser:
                counts: dict[str, int] = {}
                for c in store.list(sort="priority", state=None, limit=500):
                    counts[c.grid_id] = counts.get(c.grid_id, 0) + 1
                grids = [g for g, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:4]]
                cams = [c.camera_id for c in store.list(limit=200)][:4]
                result["console"] = console_run(base, token, store, cfg, grids,
                                                list(dict.fromkeys(cams)))
            else:
                result["console"] = {"notes": ["skipped: no Chromium here (or --no-browser)"]}
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
            if valkey is not None:
                valkey.stop()
            else:
                for key in client.scan_iter(f"{prefix}:*", count=1000):
                    client.delete(key)
    cl, hb, con = result["case_list"], result["health_baseline"], result["console"]
    result["targets"] = {
        "case_list_p99_le_50ms": cl["p99_ms"] is not None and cl["p99_ms"] <= 50 and cl["achieved_rps"] >= 95,
        "first_render_le_2s": con.get("first_render_ms") is not None and con["first_render_ms"] <= 2000,
        "filter_le_200ms": con.get("filter_ms") is not None and con["filter_ms"] <= 200}
    result["load_average_after"] = round(os.getloadavg()[0], 1)
    out = ROOT / "bench" / "results" / "api_district.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    burst = con.get("burst") or {}
    print(json.dumps({"case_list_p99_ms": cl["p99_ms"], "case_list_p50_ms": cl["p50_ms"],
                      "case_list_achieved_rps": cl["achieved_rps"], "health_p99_ms": hb["p99_ms"],
                      "console_first_render_ms": con.get("first_render_ms"), "filter_ms": con.get("filter_ms"),
                      "burst_longest_task_ms": burst.get("longest_task_ms"), "notes": con.get("notes", []),
                      "data": {k: result["data"][k] for k in ("grids", "leaf_grids", "cameras", "open", "closed")},
                      "targets": result["targets"], "results": str(out.relative_to(ROOT))}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="< 1 minute")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int)
    ap.add_argument("--redis-url")
    ap.add_argument("--prefix", default="gw")
    ap.add_argument("--data-dir")
    ap.add_argument("--camera-url")
    ap.add_argument("--district", action="store_true", help="the centre's scale (gridwatch/district.py)")
    ap.add_argument("--seed", type=int, default=7, help="--district: the district's seed")
    ap.add_argument("--open", type=int, default=2000, help="--district: open cases")
    ap.add_argument("--closed", type=int, default=3000, help="--district: closed cases")
    ap.add_argument("--seconds", type=float, help="--district: seconds of list load (default 30, --quick 10)")
    ap.add_argument("--no-browser", action="store_true", help="--district: skip the console")
    args = ap.parse_args()
    if args.serve:
        return serve(args)
    if args.district:
        return district(args)

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
            token = started_and_logged_in(base, server, password, 30)
            headers = {"Authorization": f"Bearer {token}"}
            result["health_baseline"] = asyncio.run(open_loop(base, headers, "/api/health", 100, seconds / 2))
            result["case_list"] = asyncio.run(open_loop(base, headers, "/api/alerts?limit=50", 100, seconds))
            result["case_list_sort_priority"] = asyncio.run(
                open_loop(base, headers, "/api/alerts?limit=50&sort=priority&state=new", 20, seconds / 2))
            result["fanout"] = asyncio.run(fanout(base, headers, store, 50, alerts))
            if cam is not None and Path(CHROMIUM).exists():
                result["first_frame"] = first_frame(base, token, runs)
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
