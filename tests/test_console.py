"""Operator console additions in Chromium: camera wall with health and live links, the map of grids and cameras
coloured by open alerts (pushed), and keyboard triage on the selected card.
"""
import re
import time

import pytest
from conftest import SHOTS, WAIT_MS
from playwright.sync_api import expect

from gridwatch.telemetry import Telemetry

RING = [[121.39, 31.19], [121.41, 31.19], [121.41, 31.21], [121.39, 31.21], [121.39, 31.19]]


@pytest.fixture
def console(api, browser_page):
    return browser_page(cookies=api.cookies_for("op"))


def test_wall_map_and_keyboard_triage(api, make_case, console):
    page = console
    r = api.put("/api/admin/grids/g-2", headers=api.headers_for("admin"),
                json={"id": "g-2", "name": "Two", "parent": "g-1", "outline": {"type": "Polygon", "coordinates": [RING]}})
    assert r.status_code == 200, r.text
    Telemetry(api.store.r, api.store.p).put({"cam-1": {"state": "offline", "last_error": "connection refused",
                                                        "since": time.time()}}, {})
    crowd = make_case(count=9)
    page.goto(str(api.base_url))
    page.wait_for_function("document.querySelector('#live').dataset.state === 'live'")

    # the wall: health and a live link per camera
    tile = page.locator('#cameras [data-camera-id="cam-1"]')
    tile.wait_for()
    assert tile.get_attribute("data-state") == "offline" and "connection refused" in tile.inner_text()
    assert tile.locator('[data-role="live-link"]').get_attribute("href") == "/live/cam-1"
    assert "with problems 1" in page.locator('[data-role="camera-summary"]').inner_text()

    # the map: the grid's outline and the camera, coloured by the open crowd; the down camera grey
    # (the map is drawn as soon as its outlines are in, and redrawn as the alert list and the cameras' health arrive)
    grid = page.locator('#map [data-grid-id="g-2"]')
    expect(grid).to_have_attribute("data-alert", "crowding", timeout=WAIT_MS)
    dot = page.locator('#map [data-camera-id="cam-1"]')
    expect(dot).to_have_attribute("data-alert", "crowding", timeout=WAIT_MS)
    expect(dot).to_have_class(re.compile(r"\bdown\b"), timeout=WAIT_MS)
    assert page.locator('#map [data-grid-id="g-1"]').count() == 0  # no outline configured
    # a fight arrives: pushed, the map turns red without a reload
    fight = make_case(kind="conflict", count=2)
    page.wait_for_selector('#map [data-grid-id="g-2"][data-alert="conflict"]')
    shot_dir = SHOTS
    shot_dir.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot_dir / "console-map.png"))

    # keyboard triage: j selects the newest card (the fight); a, d (+ worker, Enter), f
    page.mouse.click(5, 880)
    page.keyboard.press("j")
    page.wait_for_selector(f'[data-case-id="{fight.id}"].sel')
    page.keyboard.press("a")
    page.wait_for_selector(f'[data-case-id="{fight.id}"][data-state="acknowledged"]')
    page.keyboard.press("x")  # close: not allowed now; said on the card, nothing sent
    err = page.locator(f'[data-case-id="{fight.id}"] [data-role="error"]')
    err.wait_for()
    assert "not possible" in err.inner_text()
    page.keyboard.press("d")
    page.keyboard.type("w-zhao")  # the worker field has the focus
    page.keyboard.press("Enter")
    page.wait_for_selector(f'[data-case-id="{fight.id}"][data-state="dispatched"]')
    page.mouse.click(5, 880)  # leave the field
    page.keyboard.press("f")
    page.wait_for_selector(f'[data-case-id="{fight.id}"][data-state="resolved"]')
    got = api.store.get(fight.id)
    assert (got.worker, got.verdict) == ("w-zhao", "false_alarm")
    assert [h.action for h in got.history] == ["create", "acknowledge", "dispatch", "resolve"]
    # the fight is no longer open: the map shows the crowd again
    page.wait_for_selector('#map [data-grid-id="g-2"][data-alert="crowding"]')

    # k moves to the older card (the crowd) and a acknowledges it; then resolved elsewhere, the map is quiet
    page.keyboard.press("k")
    page.keyboard.press("j")
    page.wait_for_selector(f'[data-case-id="{crowd.id}"].sel')
    page.keyboard.press("a")
    page.wait_for_selector(f'[data-case-id="{crowd.id}"][data-state="acknowledged"]')
    api.store.transition(crowd.id, "resolve", "op-2", verdict="confirmed")
    page.wait_for_selector('#map [data-grid-id="g-2"][data-alert="none"]')
