"""The grid worker's page (/worker) on a phone-sized Chromium: notice, take, accept, on site, resolve with note and photo.

Real uvicorn, real Redis, real Chromium (Debian's, headless, via Playwright). Screenshots in var/test-screenshots/.
"""

import cv2
import numpy as np
import pytest
from conftest import shot

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(api, browser_page):
    # logged in as grid worker w1 (grid g-2), as the login page does
    return browser_page(viewport=PHONE, cookies=api.cookies_for("w1"), device_scale_factor=2, is_mobile=True,
                        has_touch=True)


def no_sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_worker_takes_accepts_arrives_and_resolves_with_note_and_photo(api, make_case, phone):
    page = phone
    page.goto(f"{api.base_url}/worker")
    page.wait_for_function("document.querySelector('#live').dataset.state === 'live'")
    # the event stream and the first list load race each other; wait for both, then assert
    page.wait_for_function("!document.querySelector('#mine').innerText.includes('loading')")
    assert page.locator("#mine").inner_text().strip() == "No open cases."

    # a new case in the worker's grid: announced on the page (pushed, not polled)
    case = make_case(count=11)
    notice = page.locator('[data-role="notice"]')
    notice.wait_for(state="visible")
    assert "New crowding case" in notice.inner_text() and "Gate" in notice.inner_text()

    # take it from the grid's queue: offered, with its evidence and location
    notice.locator('[data-role="take-notice"]').click()
    offered = page.locator(f'#offered [data-case-id="{case["id"]}"]')
    offered.wait_for()
    img = offered.locator('[data-role="snapshot"]')
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    assert "31.200000,121.400000" in offered.locator('[data-role="location"]').inner_text()
    assert offered.locator('[data-role="map"]').get_attribute("href").startswith("geo:31.200000,121.400000")
    assert no_sideways_scroll(page)
    shot(page, "worker-offered", full_page=True)
    assert api.store.pending("g-2")[0]["worker"] == "w1"  # taken, not yet accepted

    offered.locator('[data-action="accept"]').click()
    card = page.locator(f'#mine [data-case-id="{case["id"]}"][data-state="dispatched"]')
    card.wait_for()
    got = api.store.get(case["id"])
    assert got["state"] == "dispatched" and got["worker"] == "w1"
    assert api.store.pending("g-2") == []  # the delivery is acknowledged
    assert page.locator("#offered [data-case-id]").count() == 0

    card.locator('[data-action="arrive"]').click()
    card = page.locator(f'#mine [data-case-id="{case["id"]}"][data-state="on_site"]')
    card.wait_for()
    assert api.store.get(case["id"])["state"] == "on_site"

    # resolve without a verdict: the error is next to the choice, nothing is sent
    card.locator('[data-action="resolve"]').click()
    err = card.locator('[data-role="error"][data-field="verdict"]')
    err.wait_for()
    assert "choose" in err.inner_text()
    assert api.store.get(case["id"])["state"] == "on_site"

    # a verdict, a note and a photo from the phone's camera
    card = page.locator(f'#mine [data-case-id="{case["id"]}"]')
    card.locator('input[type=radio][value="confirmed"]').check()
    card.locator('[data-role="note"]').fill("about 12 people queueing at the gate; asked them to spread out")
    img = np.zeros((240, 320, 3), np.uint8)
    cv2.rectangle(img, (60, 60), (260, 200), (40, 160, 240), -1)
    _, jpeg = cv2.imencode(".jpg", img)
    card.locator('[data-role="photo"]').set_input_files(
        {"name": "gate.jpg", "mimeType": "image/jpeg", "buffer": jpeg.tobytes()})
    shot(page, "worker-resolving", full_page=True)
    card.locator('[data-action="resolve"]').click()
    page.wait_for_selector(f'#mine [data-case-id="{case["id"]}"]', state="detached")
    assert "resolved" in page.locator('[data-role="notice"]').inner_text()
    got = api.store.get(case["id"])
    assert got["state"] == "resolved" and got["verdict"] == "confirmed"
    assert len(got["photos"]) == 1 and api.evidence.path(got["photos"][0]) is not None
    resolve = next(h for h in got["history"] if h["action"] == "resolve")
    assert resolve["actor"] == "w1" and "spread out" in resolve["note"]
    assert [h["action"] for h in got["history"]] == ["create", "accept", "arrive", "photo", "resolve"]


def test_case_sent_by_an_operator_appears_and_a_bad_photo_is_refused(api, make_case, phone):
    page = phone
    page.goto(f"{api.base_url}/worker")
    page.wait_for_function("document.querySelector('#live').dataset.state === 'live'")
    case = make_case(kind="conflict", count=3)
    api.store.transition(case["id"], "acknowledge", "op-1")
    api.store.transition(case["id"], "dispatch", "op-1", worker="w1")
    card = page.locator(f'#mine [data-case-id="{case["id"]}"][data-state="dispatched"]')
    card.wait_for()
    assert "sent to you" in page.locator('[data-role="notice"]').inner_text()
    assert "fight" in card.inner_text().lower()
    assert no_sideways_scroll(page)
    shot(page, "worker-dispatched", full_page=True)

    # a file that claims to be a JPEG but is not: the server's refusal is shown next to the photo field
    card.locator('input[type=radio][value="false_alarm"]').check()
    card.locator('[data-role="photo"]').set_input_files(
        {"name": "x.jpg", "mimeType": "image/jpeg", "buffer": b"not a picture at all"})
    card.locator('[data-action="resolve"]').click()
    err = page.locator(f'#mine [data-case-id="{case["id"]}"] [data-role="error"][data-field="photo"]')
    err.wait_for()
    assert err.inner_text()
    assert api.store.get(case["id"])["state"] == "dispatched"  # not resolved without the photo

    # reassigned to someone else: it leaves this worker's list
    api.store.transition(case["id"], "reassign", "op-1", worker="w-zhou")
    page.wait_for_selector(f'#mine [data-case-id="{case["id"]}"]', state="detached")
