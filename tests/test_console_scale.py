"""The operator console at the centre's scale, in Chromium: 492 cameras, 600 grids, 2,000 open cases (issue 15).

The district and its case history are ``gridwatch.district``'s (the same every run); the API, Redis and the browser
are real, and the page runs under its own Content-Security-Policy. Camera health comes from a simulated worker that
reports every second (most cameras online, some offline, stalled, unauthorized, and a few nobody owns).

The page's measurement contract (bench and these tests rely on it): ``performance.mark("gw:first-render")`` once,
when the alert list, the camera wall and the map first show data; ``performance.mark("gw:filtered")`` each time a
grid (``select#grid``) or camera (``input#camera-filter``) filter change has been applied and rendered.

Targets (issue 15, item 6): first render <= 2 s, a filter <= 200 ms, no long task over 200 ms during a burst of
100 alerts in 10 s. The asserts allow a loaded CI machine more (4 s, 500 ms); the measured values are printed.
"""
from __future__ import annotations

import json
import math
import os
import random
import threading
import time
import uuid
from types import SimpleNamespace

import pytest
import redis
from conftest import HEAR, WAIT_MS, browser_cookies, shot
from playwright.sync_api import expect

from alerts import Alert, CaseStore, EvidenceStore
from gridwatch.telemetry import Telemetry, WorkerInfo

PROBLEMS = {"offline", "unauthorized", "stalled", "connecting", "stopped", "unowned"}
OPEN = {"new", "acknowledged", "dispatched", "on_site"}
# long tasks (> 50 ms on the main thread) as the page has them, from its very start
LONG_TASKS = """(() => {
  window.longTasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.longTasks.push({ start: e.startTime, ms: e.duration });
    }).observe({ type: "longtask", buffered: true });
  } catch (_) { window.longTasks = null; }
})()"""


class Health:
    """A worker process as the API sees it: every camera's health, reported every second (reports older than
    telemetry.STALE_S are not believed). 20 offline, 8 stalled, 4 unauthorized, 5 owned by nobody; the rest online."""

    def __init__(self, store: CaseStore, camera_ids: list[str]):
        ids = list(camera_ids)
        random.Random(3).shuffle(ids)
        self.offline, self.stalled, self.unauth, self.unowned = ids[:20], ids[20:28], ids[28:32], ids[32:37]
        self.problems = set(ids[:37])
        self.report = {c: {"state": "online", "fps_in": 10.0, "fps_analysed": 2.0, "frames_in": 900, "frames_analysed": 180}
                       for c in ids}
        for c in self.offline:
            self.report[c] = {"state": "offline", "last_error": "connection refused"}
        for c in self.stalled:
            self.report[c] = {"state": "stalled", "last_error": "no packet for 12 s"}
        for c in self.unauth:
            self.report[c] = {"state": "unauthorized", "last_error": "401 from the camera"}
        self.owned = [c for c in ids if c not in self.unowned]  # the others' records stay, nobody owns them: unowned
        self.tel = Telemetry(store.r, store.p, worker=WorkerInfo("w-scale", "host-scale", 4242, capacity=8))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.tel.put(self.report, {"fps": 900.0, "frames": 10000, "batches": 1300}, owned=self.owned)
            if self.stop.wait(1.0):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture(scope="module")
def centre(valkey, tmp_path_factory):
    """The district on a real API server: 600 grids, 492 cameras, 2,000 open and 3,000 closed cases."""
    from api import create_app
    from gridwatch.district import district_config, seed_cases
    from gridwatch.harness import serving

    # this session's own Valkey, not REDIS_URL's shared server: the district is seeded once for the module, and
    # other tests (the fleet's) flush the shared database meanwhile
    url = valkey.url
    client = redis.Redis.from_url(url)
    data_dir = tmp_path_factory.mktemp("district")
    cfg = district_config(data_dir)
    store = CaseStore(client, prefix=f"gwscale-{uuid.uuid4().hex[:8]}", policy=cfg.alerts)
    counts = seed_cases(store, cfg, open_cases=2000, closed_cases=3000)
    parents = {g.parent for g in cfg.grids if g.parent}
    leaves = [g.id for g in cfg.grids if g.id not in parents]
    app = create_app(cfg, store, url, EvidenceStore(data_dir / "evidence"))
    try:
        with serving(app) as base_url, Health(store, [c.id for c in cfg.cameras]) as health:
            yield SimpleNamespace(base_url=base_url, app=app, store=store, cfg=cfg, counts=counts, leaves=leaves,
                                  health=health, cookies=browser_cookies(app, base_url, "op"))
    finally:
        for key in client.scan_iter(f"{store.p}:*"):
            client.delete(key)
        client.close()


@pytest.fixture
def console(centre, browser_page):
    """A console page as the operator, under its real CSP; script errors and CSP refusals collected."""
    def open_page():
        page = browser_page(cookies=centre.cookies, bypass_csp=False, timeout_ms=15000)
        page.add_init_script(HEAR)
        page.add_init_script(LONG_TASKS)
        page.problems = []
        page.on("console", lambda m: page.problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        page.goto(centre.base_url)
        page.wait_for_selector("body[data-first-render]", state="attached", timeout=20000)
        return page

    def open_loaded():
        """...and every open case loaded behind the first render (the map's colours, the wall's order)."""
        page = open_page()
        page.wait_for_selector("body[data-open-loaded]", state="attached", timeout=20000)
        return page

    open_page.loaded = open_loaded

    return open_page


def first_render_ms(page) -> float:
    return page.evaluate("() => performance.getEntriesByName('gw:first-render')[0].startTime")


def timed_filter(page, action: str, arg: str) -> float:
    """Apply a filter change in the page; milliseconds from the change to its gw:filtered mark."""
    page.evaluate("""([action, arg]) => {
        window.filteredBefore = performance.getEntriesByName("gw:filtered").length;
        window.filterStart = performance.now();
        if (action === "grid") { const s = document.querySelector("#grid"); s.value = arg; s.dispatchEvent(new Event("change")); }
        else { const i = document.querySelector("#camera-filter"); i.value = arg; i.dispatchEvent(new Event("input")); }
    }""", [action, arg])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = page.evaluate("""() => { const m = performance.getEntriesByName("gw:filtered");
            return m.length > window.filteredBefore ? m[m.length - 1].startTime - window.filterStart : null; }""")
        if got is not None:
            return got
        time.sleep(0.02)
    raise AssertionError("no gw:filtered mark within 10 s")


def ancestors(parent_of: dict, grid: str) -> list[str]:
    out = []
    while (grid := parent_of.get(grid)) is not None and len(out) < 16:
        out.append(grid)
    return out


def open_by(store, key: str) -> dict[str, int]:
    """Open cases (not resolved, not closed) per grid or camera, from the store."""
    out: dict[str, int] = {}
    for c in store.list(state=None, sort="priority", limit=5000, scan=5000):
        if c.state in OPEN:
            k = c.grid_id if key == "grid" else c.camera_id
            out[k] = out.get(k, 0) + 1
    return out


def test_first_render_and_filters_at_the_centres_scale(centre, console):
    assert len(centre.leaves) == 600 and len(centre.cfg.cameras) == 492 and centre.counts["open"] == 2000
    page = console()
    ms = first_render_ms(page)
    print(f"\nfirst render: {ms:.0f} ms (492 cameras, 600 grids, {centre.counts['open']} open + "
          f"{centre.counts['closed']} closed cases)")
    tasks = page.evaluate("(t) => (window.longTasks || []).filter((e) => e.start < t).map((e) => Math.round(e.ms))", ms)
    print(f"long tasks before it: {tasks} ms")
    assert ms <= 4000, f"first render took {ms:.0f} ms (target 2000 ms)"
    # what the first render shows: a page of cards (more on demand), a page of tiles, every grid on the map
    cards = page.locator("#feed [data-case-id]")
    assert 20 <= cards.count() <= 100
    expect(page.locator("#more")).to_be_visible()
    assert page.locator("#cameras [data-camera-id]").count() == 48
    assert page.locator("#map path.grid[data-grid-id]").count() == 600
    shot(page, "console_scale_first")

    # the open cases arrive behind the first render: the map colours grids by them
    page.wait_for_function("() => document.querySelectorAll('#map path.grid[data-alert=conflict]').length > 0",
                           timeout=WAIT_MS)
    per_grid = open_by(centre.store, "grid")
    expect(page.locator('#map path.grid:not([data-alert="none"])')).to_have_count(len(per_grid), timeout=WAIT_MS)
    busiest = max(per_grid, key=per_grid.get)
    assert page.locator(f'#map [data-grid-id="{busiest}"]').get_attribute("data-level") == "3" or per_grid[busiest] < 4

    # filter by grid: the loaded cases at once (one mark), then the server's page of that grid
    grid = sorted(per_grid, key=lambda g: (-per_grid[g], g))[5]
    took = timed_filter(page, "grid", grid)
    print(f"filter by grid {grid}: {took:.0f} ms")
    assert took <= 500, f"the grid filter took {took:.0f} ms (target 200 ms)"
    want = [c.id for c in centre.store.list(grid=grid, limit=60)]  # its closed cases too: those only the server had
    expect(cards).to_have_count(len(want), timeout=WAIT_MS)
    assert cards.evaluate_all("els => els.map((e) => e.dataset.caseId)") == want  # newest first
    grids = page.eval_on_selector_all("#feed [data-case-id]", "els => els.map((e) => e.dataset.grid)")
    assert set(grids) == {grid}
    assert set(page.eval_on_selector_all("#cameras [data-camera-id]", "els => els.map((e) => e.dataset.grid)")) <= {grid}
    assert page.locator(f'#map [data-grid-id="{grid}"]').get_attribute("class") == "grid sel"
    shot(page, "console_scale_grid")

    # filter by camera (grid cleared): its alerts and its tile
    page.select_option("#grid", "")
    per_cam = open_by(centre.store, "camera")
    cam = sorted(per_cam, key=lambda c: (-per_cam[c], c))[3]
    took_cam = timed_filter(page, "camera", cam)
    print(f"filter by camera {cam}: {took_cam:.0f} ms")
    assert took_cam <= 500, f"the camera filter took {took_cam:.0f} ms (target 200 ms)"
    expect(page.locator("#cameras [data-camera-id]")).to_have_count(1)
    assert page.locator("#cameras [data-camera-id]").get_attribute("data-camera-id") == cam
    page.wait_for_function("(n) => document.querySelectorAll('#feed [data-case-id]').length >= n",
                           arg=per_cam[cam], timeout=WAIT_MS)
    assert set(page.eval_on_selector_all("#feed [data-case-id]", "els => els.map((e) => e.dataset.camera)")) == {cam}
    # a street (a grid of grids) filters by all its cells
    page.fill("#camera-filter", "")
    street = next(g for g in centre.cfg.grids if g.parent == "d")
    kids = {g.id: g.parent for g in centre.cfg.grids}
    under = {g for g in kids if any(p == street.id for p in ancestors(kids, g))} | {street.id}
    took_street = timed_filter(page, "grid", street.id)
    print(f"filter by street {street.id} ({len(under) - 1} grids under it): {took_street:.0f} ms")
    assert set(page.eval_on_selector_all("#feed [data-case-id]", "els => els.map((e) => e.dataset.grid)")) <= under
    assert page.locator("#feed [data-case-id]").count() > 0
    assert set(page.eval_on_selector_all("#cameras [data-camera-id]", "els => els.map((e) => e.dataset.grid)")) <= under
    page.select_option("#grid", "")
    # "more" renders the next page of cards without the filter
    expect(cards).to_have_count(60)
    page.click("#morebtn")  # (scrolled to, it also asks for more by itself)
    page.wait_for_function("() => document.querySelectorAll('#feed [data-case-id]').length >= 120")
    assert page.problems == []


def test_the_wall_shows_problems_first_and_pages_the_rest(centre, console):
    page = console.loaded()
    tiles = page.locator("#cameras [data-camera-id]")
    n_problems = len(centre.health.problems)
    # the health reports are in: the first tiles are the cameras with problems, then those with open alerts
    page.wait_for_function("(n) => [...document.querySelectorAll('#cameras [data-camera-id]')].slice(0, n)"
                           ".every((e) => !['online', 'unknown'].includes(e.dataset.state))", arg=n_problems,
                           timeout=WAIT_MS)
    page.wait_for_function("() => document.querySelectorAll('#cameras [data-open]:not([data-open=\"0\"])').length > 0",
                           timeout=WAIT_MS)
    states = tiles.evaluate_all("els => els.map((e) => [e.dataset.cameraId, e.dataset.state, +e.dataset.open])")
    assert len(states) == 48
    assert {c for c, _, _ in states[:n_problems]} == centre.health.problems
    assert all(s in PROBLEMS for _, s, _ in states[:n_problems])
    rest = states[n_problems:]
    assert rest[0][2] > 0, "after the problems come the cameras with open alerts"
    opens = [o for _, _, o in rest]
    quiet = next((i for i, o in enumerate(opens) if o == 0), len(opens))
    assert all(o == 0 for o in opens[quiet:]), "cameras with open alerts come before quiet ones"
    expect(page.locator('[data-role="camera-summary"]')).to_contain_text(f"with problems {n_problems}")

    # pages of 48: 492 cameras are 11 pages; the next page shows the next 48
    pager = page.locator("#wallpager")
    assert pager.get_attribute("data-pages") == str(math.ceil(492 / 48))
    expect(page.locator("#wpage")).to_have_text("1–48 of 492")
    # the open cases load in pages after the first render and reorder the wall as they come: read it once settled
    page.wait_for_function("() => document.body.dataset.openLoaded === '1'", timeout=WAIT_MS)
    first = None
    for _ in range(20):
        time.sleep(0.8)  # the wall follows new counts at most every 0.7 s
        now = tiles.evaluate_all("els => els.map((e) => e.dataset.cameraId)")
        if now == first:
            break
        first = now
    first = set(first)
    page.click("#wnext")
    expect(page.locator("#wpage")).to_have_text("49–96 of 492")
    second = set(tiles.evaluate_all("els => els.map((e) => e.dataset.cameraId)"))
    assert len(second) == 48 and not first & second
    # problems only
    page.check("#f-problems")
    expect(tiles).to_have_count(n_problems)
    expect(page.locator("#wpage")).to_have_text(f"{n_problems} shown")
    # a tile keeps its live link
    assert tiles.first.locator('[data-role="live-link"]').get_attribute("href").startswith("/live/cam-")
    shot(page, "console_scale_wall")
    assert page.problems == []


def map_state(page) -> dict:
    return page.evaluate("""() => { const m = document.querySelector("#map");
        return { zoom: +m.dataset.zoom, clusters: m.querySelectorAll(".cluster").length,
                 dots: m.querySelectorAll(".camdot").length,
                 inClusters: [...m.querySelectorAll(".cluster")].reduce((a, e) => a + +e.dataset.count, 0),
                 view: document.querySelector("#mview").getAttribute("transform") }; }""")


def test_the_map_zooms_pans_clusters_and_filters(centre, console):
    page = console.loaded()
    page.wait_for_timeout(300)
    fit = map_state(page)
    assert fit["clusters"] > 10 and fit["dots"] + fit["inClusters"] == 492, fit  # every camera, crowds clustered
    assert abs(fit["zoom"] - 1) < 1e-6
    # at the fit zoom the district's streets are labelled, the grids' own names wait for a closer zoom
    assert page.locator("#map .plabel").count() >= 5 and page.locator("#map .glabel").count() == 0
    assert page.locator("#map .pgrid.top").count() == 1
    shot(page, "console_scale_map")

    # a cluster clicked zooms in on it: it splits into smaller clusters and dots
    big = page.evaluate("""() => { const cs = [...document.querySelectorAll("#map .cluster")];
        cs.sort((a, b) => b.dataset.count - a.dataset.count); const c = cs[0];
        return { count: +c.dataset.count, x: +c.dataset.x, y: +c.dataset.y }; }""")
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + big["x"], box["y"] + big["y"])
    page.wait_for_function("(z) => +document.querySelector('#map').dataset.zoom > z", arg=fit["zoom"] * 2)
    page.wait_for_timeout(100)
    near = page.evaluate("""([x, y]) => { let n = 0, biggest = 0;
        for (const c of document.querySelectorAll("#map .cluster"))
          if (Math.hypot(c.dataset.x - x, c.dataset.y - y) < 60) biggest = Math.max(biggest, +c.dataset.count);
        for (const d of document.querySelectorAll("#map .camdot"))
          if (Math.hypot(d.getAttribute("cx") - x, d.getAttribute("cy") - y) < 60) n++;
        return { biggest, dots: n }; }""", [big["x"], big["y"]])
    assert near["biggest"] < big["count"] and near["dots"] > 0, (big, near)
    zoomed = map_state(page)
    assert zoomed["dots"] > fit["dots"]

    # the wheel zooms further (grid names appear), "-" zooms out, a drag pans, the fit button restores the district
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(4):
        page.mouse.wheel(0, -240)
        page.wait_for_timeout(50)
    page.wait_for_function("(z) => +document.querySelector('#map').dataset.zoom > z", arg=zoomed["zoom"] * 2)
    expect(page.locator("#map .glabel").first).to_be_attached()
    deep = map_state(page)
    assert deep["clusters"] < fit["clusters"]
    shot(page, "console_scale_map_zoomed")
    page.click("#zout")
    page.wait_for_function("(z) => +document.querySelector('#map').dataset.zoom < z", arg=deep["zoom"])
    before = map_state(page)["view"]
    page.mouse.move(box["x"] + 200, box["y"] + 150)
    page.mouse.down()
    page.mouse.move(box["x"] + 260, box["y"] + 190, steps=5)
    page.mouse.up()
    assert map_state(page)["view"] != before
    page.click("#zfit")
    page.wait_for_function("() => Math.abs(+document.querySelector('#map').dataset.zoom - 1) < 1e-6")

    # a grid clicked filters the console by it (and clicked again, clears it)
    page.click("#zin")
    page.click("#zin")
    page.wait_for_timeout(200)
    target = page.evaluate("""() => { const r = document.querySelector("#map").getBoundingClientRect();
        for (const p of document.querySelectorAll("#map path.grid:not([data-alert=none])")) {
          const b = p.getBoundingClientRect(), x = b.x + b.width / 2, y = b.y + b.height / 2;
          if (x < r.x + 10 || y < r.y + 10 || x > r.right - 40 || y > r.bottom - 10) continue;
          if (document.elementFromPoint(x, y) === p) return { id: p.dataset.gridId, x, y }; }
        return null; }""")
    assert target, "no grid with open alerts clear of cameras in view"
    page.mouse.click(target["x"], target["y"])
    expect(page.locator("#grid")).to_have_value(target["id"])
    expect(page.locator(f'#map [data-grid-id="{target["id"]}"]')).to_have_class("grid sel")
    page.wait_for_function("(g) => { const c = [...document.querySelectorAll('#feed [data-case-id]')];"
                           " return c.length > 0 && c.every((e) => e.dataset.grid === g); }", arg=target["id"])
    shot(page, "console_scale_map_grid")
    page.mouse.click(target["x"], target["y"])
    expect(page.locator("#grid")).to_have_value("")
    assert page.problems == []


def main_thread_tasks(trace: bytes) -> list[tuple[float, float]]:
    """(wall ms, CPU ms) of each task on the page's main thread (Chromium's CrRendererMain), from a trace."""
    events = json.loads(trace)["traceEvents"]
    mains = {(e["pid"], e["tid"]) for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"
             and e.get("args", {}).get("name") == "CrRendererMain"}
    return [(e["dur"] / 1000, e.get("tdur", e["dur"]) / 1000) for e in events
            if e.get("name") == "RunTask" and e.get("ph") == "X" and (e["pid"], e["tid"]) in mains]


def test_a_burst_of_100_alerts_in_10_s_never_blocks_the_page(centre, console):
    """100 new alerts in 10 s, pushed to a console holding 2,000 open cases: no task on the page's main thread
    reaches 200 ms. The long tasks the page sees (wall time) are printed and asserted when the machine is not
    overloaded; the work itself (each task's CPU time, from a Chromium trace) is asserted always: on a machine
    shared by more runnable processes than cores, a few ms of work can take hundreds of ms of wall time."""
    page = console.loaded()
    page.wait_for_function("() => document.querySelector('#live').dataset.state === 'live'")
    page.wait_for_timeout(1000)  # what is measured is the burst, not the start
    browser = page.context.browser
    browser.start_tracing(page=page, categories=["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline"])
    start = page.evaluate("() => performance.now()")
    cams = random.Random(11).sample(centre.cfg.cameras, 100)
    ids = []
    t0 = time.monotonic()
    for i, cam in enumerate(cams):
        kind = "conflict" if i % 4 == 0 else "crowding"
        status, case = centre.store.ingest(Alert(
            kind=kind, camera_id=cam.id, camera_name=cam.name, grid_id=cam.grid, zone_id=f"burst-{i}", ts=time.time(),
            count=3 if kind == "conflict" else 30, score=0.9, detail=f"burst {i}", snapshot=None, lat=cam.lat,
            lon=cam.lon), 0)
        assert status == "created"
        ids.append(case.id)
        time.sleep(max(0.0, t0 + (i + 1) * 0.1 - time.monotonic()))
    took = time.monotonic() - t0
    page.wait_for_function("(ids) => ids.every((id) => window.heard.some((c) => c.id === id))", arg=ids)
    page.wait_for_timeout(1000)  # the last batch rendered
    tasks = main_thread_tasks(browser.stop_tracing())
    long_tasks = page.evaluate("(t) => window.longTasks && window.longTasks.filter((e) => e.start >= t)", start)
    assert long_tasks is not None, "this Chromium reports no long tasks"
    longest = max((t["ms"] for t in long_tasks), default=0.0)
    longest_cpu = max((cpu for _, cpu in tasks), default=0.0)
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"\nburst of 100 alerts in {took:.1f} s over 2000 open cases: longest task {longest:.0f} ms "
          f"({len(long_tasks)} over 50 ms); longest task's CPU time {longest_cpu:.0f} ms; "
          f"{len(tasks)} tasks; load average {load:.1f} on {cores} cores")
    assert tasks, "no main-thread tasks in the trace"
    assert longest_cpu < 200, f"a task of {longest_cpu:.0f} ms CPU during the burst"
    if load < cores:
        assert longest < 200, f"a task of {longest:.0f} ms during the burst"
    # newest first: the last alert tops the feed, marked new; every one is on the page's list
    expect(page.locator("#feed [data-case-id]").first).to_have_attribute("data-case-id", ids[-1])
    assert int(page.locator("#announce").get_attribute("data-total")) == 100  # announced (in batches)
    shown = set(page.eval_on_selector_all("#feed [data-case-id]", "els => els.map((e) => e.dataset.caseId)"))
    assert set(ids[-40:]) <= shown
    shot(page, "console_scale_burst")
    assert page.problems == []
