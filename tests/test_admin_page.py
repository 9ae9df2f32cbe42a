"""The admin page (/admin) in Chromium: add a camera on the real RTSP server, test it, draw a zone over its
picture, set its rules, see errors next to their fields, save, and see the live count while editing.
"""
import time

import pytest
from conftest import shot

from gridwatch.configsync import ConfigChannel
from gridwatch.harness import RtspServer
from gridwatch.telemetry import Telemetry


@pytest.fixture
def admin_page(api, browser_page):
    return browser_page(viewport={"width": 1400, "height": 1000}, cookies=api.cookies_for("admin"),
                        timeout_ms=15000)


def click_at(page, fx, fy, **kw):
    page.locator("#draw").scroll_into_view_if_needed()
    box = page.locator("#draw").bounding_box()
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"], **kw)


def drag_vertex(page, index, fx, fy):
    """Drag corner ``index`` of the polygon being drawn to (fx, fy), fractions of the picture."""
    box = page.locator("#draw").bounding_box()
    # measured in one go: once the camera is saved the page redraws the corners every second (live count), and a
    # locator's bounding_box() of a corner replaced between finding and measuring it is None
    vtx = page.evaluate("""i => {
        const r = document.querySelector(`#draw circle.vtx[data-vtx="${i}"]`).getBoundingClientRect();
        return {x: r.x, y: r.y, width: r.width, height: r.height}; }""", index)
    page.mouse.move(vtx["x"] + vtx["width"] / 2, vtx["y"] + vtx["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=5)
    page.mouse.up()


def test_admin_adds_a_camera_draws_a_zone_and_the_pipeline_gets_it(api, admin_page, vtest, rtsp_ok):
    page = admin_page
    with RtspServer({"walk": vtest}) as server:
        page.goto(f"{api.base_url}/admin")
        page.locator('[data-camera-id="cam-1"]').wait_for()
        page.locator('[data-role="add-camera"]').click()
        page.fill('[data-path="id"]', "cam-walk")
        page.fill('[data-path="name"]', "Walkway")
        page.fill('[data-path="url"]', server.url("walk"))
        page.select_option('[data-path="grid"]', "g-1")
        page.fill('[data-path="lat"]', "95")  # wrong: corrected below
        page.fill('[data-path="lon"]', "121.41")

        # the test button connects and shows the camera's picture, which the zone editor draws over
        page.locator('[data-role="test"]').click()
        page.wait_for_selector('[data-role="test-result"][data-ok="true"]')
        assert "768×576" in page.locator('[data-role="test-result"]').inner_text()
        page.wait_for_function(
            "() => { const i = document.querySelector('#pic'); return i && i.complete && i.naturalWidth === 768; }")

        # a zone: three corners clicked, crowding on with a bad hysteresis
        page.locator('[data-role="add-zone"]').click()
        page.fill('[data-path="zones.0.id"]', "path")
        for fx, fy in [(0.05, 0.45), (0.95, 0.45), (0.95, 0.98)]:
            click_at(page, fx, fy)
        page.check('[data-path="zones.0.crowding"]')
        page.fill('[data-path="zones.0.crowding.threshold"]', "3")
        page.fill('[data-path="zones.0.crowding.clear_below"]', "5")
        page.fill('[data-path="zones.0.active_hours"]', "07:00-25:00")
        page.locator('[data-role="save"]').click()

        # each error next to its field; nothing saved
        page.wait_for_selector('[data-error-for="lat"]:not(:empty)')
        assert "less than or equal to 90" in page.locator('[data-error-for="lat"]').inner_text()
        assert "clear_below" in page.locator('[data-error-for="zones.0.crowding"]').inner_text()
        assert "HH:MM-HH:MM" in page.locator('[data-error-for="zones.0.active_hours"]').inner_text()
        assert page.locator('[data-path="lat"]').evaluate("e => e.classList.contains('invalid')")
        shot(page, "admin-errors", full_page=True)
        assert [c["id"] for c in api.get("/api/cameras").json()] == ["cam-1"]

        # fix them; one more corner, a stray point removed, a corner dragged
        page.fill('[data-path="lat"]', "31.21")
        page.fill('[data-path="zones.0.crowding.clear_below"]', "")
        page.fill('[data-path="zones.0.active_hours"]', "06:00-23:00")
        click_at(page, 0.05, 0.98)                      # 4th corner: a rectangle
        click_at(page, 0.5, 0.7)                        # a stray point inside ...
        assert page.locator("#draw circle.vtx").count() == 5
        page.locator("#draw circle.vtx.cur").dblclick()  # ... removed again
        assert page.locator("#draw circle.vtx").count() == 4
        drag_vertex(page, 0, 0.02, 0.40)
        page.locator('[data-role="save"]').click()
        page.wait_for_selector('[data-role="status"].ok')
        assert "saved" in page.locator('[data-role="status"]').inner_text()

    published = ConfigChannel(api.store.r, api.store.p).current()
    cam = published.camera("cam-walk")
    zone = cam.zones[0]
    assert (cam.grid, cam.lat, zone.id, zone.crowding.threshold, zone.active_hours) == ("g-1", 31.21, "path", 3, ["06:00-23:00"])
    assert len(zone.polygon) == 4
    assert zone.polygon[0] == pytest.approx((0.02, 0.40), abs=0.01)   # dragged
    assert zone.polygon[2] == pytest.approx((0.95, 0.98), abs=0.01)
    assert [c["id"] for c in api.get("/api/cameras").json()] == ["cam-1", "cam-walk"]

    # the live count of the zone being edited: people whose feet are inside the polygon
    tel = Telemetry(api.store.r, api.store.p)
    boxes = [[0.2, 0.5, 0.25, 0.7], [0.6, 0.6, 0.66, 0.9], [0.4, 0.05, 0.45, 0.3]]  # feet at y 0.7, 0.9 (in), 0.3 (out)
    deadline = time.monotonic() + 10
    while page.locator('[data-role="live-count"]').get_attribute("data-count") != "2" and time.monotonic() < deadline:
        tel.put_overlay("cam-walk", {"ts": time.time(), "boxes": boxes, "zones": {"path": 2}})
        time.sleep(0.3)
    assert page.locator('[data-role="live-count"]').get_attribute("data-count") == "2"
    # move a corner while editing: the count follows the polygon being drawn, before any save
    page.locator("#draw").scroll_into_view_if_needed()
    drag_vertex(page, 0, 0.5, 0.40)
    tel.put_overlay("cam-walk", {"ts": time.time(), "boxes": boxes, "zones": {"path": 2}})
    page.wait_for_selector('[data-role="live-count"][data-count="1"]')
    shot(page, "admin-zone-editor", full_page=True)


def corner_xy(page, index):
    return page.evaluate("""i => {
        const r = document.querySelector(`#draw circle.vtx[data-vtx="${i}"]`).getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2]; }""", index)


def test_the_zone_editor_removes_a_corner_on_the_browsers_double_click(api, admin_page):
    """A double-click is what the browser says it is (the user's double-click speed, its click count), not two
    pointer presses within a timer of the page's own (issue 15, item 9)."""
    page = admin_page
    page.goto(f"{api.base_url}/admin?camera=cam-1")   # no picture (the camera is unreachable): drawn over a placeholder
    page.locator('[data-role="add-zone"]').wait_for()
    page.locator('[data-role="add-zone"]').click()
    for fx, fy in [(0.05, 0.3), (0.45, 0.6), (0.45, 0.95), (0.05, 0.95)]:  # beside zone z1's triangle (y < x)
        click_at(page, fx, fy)
    corners = page.locator("#draw circle.vtx")
    assert corners.count() == 4

    # two single clicks on a corner, 300 ms apart, that the browser does not count as a double-click: still there
    x, y = corner_xy(page, 1)
    page.mouse.click(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    page.wait_for_timeout(200)
    assert corners.count() == 4

    # a slow double-click (a long double-click time, set for accessibility): the browser's dblclick removes it
    x, y = corner_xy(page, 2)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_timeout(600)
    page.mouse.down(click_count=2)
    page.mouse.up(click_count=2)
    page.wait_for_function("document.querySelectorAll('#draw circle.vtx').length === 3")

    # an ordinary double-click too
    page.locator('#draw circle.vtx[data-vtx="0"]').dblclick()
    page.wait_for_function("document.querySelectorAll('#draw circle.vtx').length === 2")
    pts = page.evaluate("[...document.querySelectorAll('#draw circle.vtx')].map((c) => [+c.getAttribute('cx'), "
                        "+c.getAttribute('cy')])")
    w = page.evaluate("document.querySelector('#draw').viewBox.baseVal.width")
    h = page.evaluate("document.querySelector('#draw').viewBox.baseVal.height")
    # what is left: the corners at (0.45, 0.6) and (0.05, 0.95)
    assert [(round(px / w, 2), round(py / h, 2)) for px, py in pts] == [(0.45, 0.6), (0.05, 0.95)]
