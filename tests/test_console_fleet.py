"""The operator console's fleet panel in Chromium: the worker processes beside the camera wall, each tile naming its
worker, and a camera whose worker died shown as unowned. Workers are simulated by what they write (their telemetry
reports, as ``gridwatch worker`` writes them); the API, Redis and the browser are real, and the page runs under its
real Content-Security-Policy (no CSP bypass), so an inline handler or an eval would break it here.
"""
from __future__ import annotations

import re
import threading

import pytest
from conftest import WAIT_MS, shot
from playwright.sync_api import expect

from gridwatch.telemetry import Telemetry, WorkerInfo

CAM = {"state": "online", "fps_in": 10.0, "fps_analysed": 4.0, "frames_in": 300, "frames_analysed": 100}
PIPE_A = {"fps": 4.0, "frames": 100, "batches": 20, "mean_batch": 5.0, "max_batch": 8,
          "latency_p50_ms": 80.0, "latency_p95_ms": 120.0}
PIPE_B = {"fps": 0.0, "frames": 0, "batches": 0, "error": "detector: CUDA out of memory"}


class Workers:
    """Worker processes as the API sees them: each reports every half second until stopped (reports older than
    telemetry.STALE_S drop a worker from the fleet, so one report would not last the test)."""

    def __init__(self, api):
        self.api, self.live = api, {}
        self.stop_all = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add(self, info: WorkerInfo, cameras: dict, pipeline: dict) -> None:
        with self.lock:
            self.live[info.name] = (Telemetry(self.api.store.r, self.api.store.p, worker=info), cameras, pipeline)
        self.report()

    def kill(self, name: str) -> None:
        """The process dies: it reports no more, and its record goes (as when its TTL runs out)."""
        with self.lock:
            self.live.pop(name)
        self.api.store.r.delete(f"{self.api.store.p}:worker:{name}")

    def report(self) -> None:
        with self.lock:
            for tel, cameras, pipeline in self.live.values():
                tel.put(cameras, pipeline, owned=list(cameras))

    def _run(self) -> None:
        while not self.stop_all.wait(0.5):
            self.report()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_all.set()
        self.thread.join(5)


@pytest.fixture
def open_page(api, browser_page):
    def open_as(name: str):
        page = browser_page(cookies=api.cookies_for(name), bypass_csp=False)
        page.problems = []  # script errors and CSP refusals, reported on the console
        page.on("console", lambda m: page.problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)  # /favicon.ico
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        page.fleet_requests = []
        page.on("request", lambda r: page.fleet_requests.append(r.url) if "/api/fleet" in r.url else None)
        return page

    return open_as


def test_fleet_panel_lists_workers_and_a_dead_workers_camera_turns_unowned(api, open_page):
    with Workers(api) as workers:
        workers.add(WorkerInfo("w-a", "host-a", 4242, capacity=8), {"cam-1": CAM}, PIPE_A)
        workers.add(WorkerInfo("w-b", "host-b", 77, capacity=2), {}, PIPE_B)
        page = open_page("op")
        page.goto(str(api.base_url))

        panel = page.locator('[data-role="fleet"]')
        expect(panel).to_be_visible(timeout=WAIT_MS)
        a = panel.locator('[data-worker="w-a"]')
        expect(a.locator('[data-role="fleet-worker-name"]')).to_have_text("w-a", timeout=WAIT_MS)
        assert "host-a · pid 4242" in a.inner_text()
        expect(a.locator('[data-role="worker-cameras"]')).to_have_text("cameras 1")
        expect(a.locator('[data-role="worker-fps"]')).to_have_text("fps 4.0")
        expect(a.locator('[data-role="worker-batch"]')).to_have_text("batch 5.0 (8)")
        expect(a.locator('[data-role="worker-latency"]')).to_have_text("latency p50 80 · p95 120 ms")
        expect(a.locator('[data-role="heartbeat"]')).to_have_text(re.compile(r"^♥ \d+\.\d s ago$"))
        assert a.locator('[data-role="worker-error"]').count() == 0
        b = panel.locator('[data-worker="w-b"]')
        expect(b.locator('[data-role="worker-error"]')).to_have_text("detector: CUDA out of memory")
        expect(b.locator('[data-role="worker-cameras"]')).to_have_text("cameras 0")
        summary = page.locator('[data-role="fleet-summary"]')
        expect(summary).to_have_text("2 workers · 1 camera · 0 unowned")
        expect(page.locator('[data-role="fleet-unowned"]')).not_to_have_class(re.compile(r"\bbad\b"))

        # the wall: the tile names the worker that analyses the camera
        tile = page.locator('#cameras [data-camera-id="cam-1"]')
        expect(tile).to_have_attribute("data-state", "online", timeout=WAIT_MS)
        expect(tile.locator('[data-role="camera-worker"]')).to_have_text("worker w-a")
        # the fleet panel sits beside the wall, not under it
        wall, fleet = page.locator("#wallbox").bounding_box(), panel.bounding_box()
        assert fleet["x"] >= wall["x"] + wall["width"] and abs(fleet["y"] - wall["y"]) < 20
        shot(page, "console_fleet")

        # w-a dies: its camera is nobody's until another worker takes it; the fleet says so
        workers.kill("w-a")
        expect(tile).to_have_attribute("data-state", "unowned", timeout=WAIT_MS)
        expect(tile.locator('[data-role="unowned"]')).to_have_text("unowned — its worker is gone; waiting for another")
        expect(tile.locator('[data-role="camera-worker"]')).to_have_text("was on w-a")
        expect(summary).to_have_text("1 worker · 1 camera · 1 unowned", timeout=WAIT_MS)
        expect(page.locator('[data-role="fleet-unowned"]')).to_have_class(re.compile(r"\bbad\b"))
        expect(panel.locator('[data-worker="w-a"]')).to_have_count(0)
        assert "with problems 1" in page.locator('[data-role="camera-summary"]').inner_text()
        shot(page, "console_fleet_unowned")

        # w-b takes the camera over: the tile names it and nothing is unowned
        workers.add(WorkerInfo("w-b", "host-b", 77, capacity=2), {"cam-1": CAM}, PIPE_A)
        expect(tile.locator('[data-role="camera-worker"]')).to_have_text("worker w-b", timeout=WAIT_MS)
        expect(summary).to_have_text("1 worker · 1 camera · 0 unowned", timeout=WAIT_MS)

        # a hidden page asks nothing; shown again, it asks at once
        page.evaluate("""() => { Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
                                 document.dispatchEvent(new Event("visibilitychange")); }""")
        page.wait_for_timeout(300)  # a request already on its way may still land
        before = len(page.fleet_requests)
        page.wait_for_timeout(3500)
        assert len(page.fleet_requests) == before
        with page.expect_request(lambda r: "/api/fleet" in r.url, timeout=1000):
            page.evaluate("""() => { Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
                                     document.dispatchEvent(new Event("visibilitychange")); }""")
        assert page.problems == []


def test_a_grid_workers_console_has_no_fleet_panel(api, open_page):
    with Workers(api) as workers:
        workers.add(WorkerInfo("w-a", "host-a", 4242, capacity=8), {"cam-1": CAM}, PIPE_A)
        page = open_page("w1")  # a grid worker of g-2, where cam-1 is
        with page.expect_response(lambda r: "/api/fleet" in r.url) as answer:
            page.goto(str(api.base_url))
        assert answer.value.status == 403
        tile = page.locator('#cameras [data-camera-id="cam-1"]')
        expect(tile.locator('[data-role="camera-worker"]')).to_have_text("worker w-a", timeout=WAIT_MS)
        expect(page.locator('[data-role="fleet"]')).to_be_hidden()
        page.wait_for_timeout(3500)  # more than one polling interval: refused once, it stops asking
        assert len(page.fleet_requests) == 1
        expect(page.locator('[data-role="fleet"]')).to_be_hidden()
