"""The grid worker's page (/worker) on a phone-sized Chromium: notice, take, accept, on site, resolve with note and photo.

Real uvicorn, real Redis, real Chromium (Debian's, headless, via Playwright). Screenshots in var/test-screenshots/.
"""

import cv2
import numpy as np
import pytest
from conftest import HEAR, WAIT_MS, heard, shot
from playwright.sync_api import expect

from alerts import Case

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(api, browser_page):
    # logged in as grid worker w1 (grid g-2), as the login page does
    return browser_page(viewport=PHONE, cookies=api.cookies_for("w1"), device_scale_factor=2, is_mobile=True,
                        has_touch=True)


def open_worker_page(api, page):
    """Open /worker and wait until it is settled: pushes reach it, its first list load is done (what it learns after
    that is news, announced) and it knows the worker's grid (new cases are announced for the chosen grid only)."""
    page.add_init_script(HEAR)
    page.goto(f"{api.base_url}/worker")
    page.wait_for_function("document.querySelector('#live').dataset.state === 'live'")
    page.wait_for_function("window.streamReady > 0")
    page.wait_for_function("!document.querySelector('#mine').innerText.includes('loading')")
    expect(page.locator("#grid")).to_have_value("g-2", timeout=WAIT_MS)


def no_sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_worker_takes_accepts_arrives_and_resolves_with_note_and_photo(api, make_case, phone):
    page = phone
    open_worker_page(api, page)
    assert page.locator("#mine").inner_text().strip() == "No open cases."

    # a new case in the worker's grid: announced on the page (pushed, not polled)
    case = make_case(count=11)
    notice = page.locator('[data-role="notice"]')
    notice.wait_for(state="visible")
    assert "New crowding case" in notice.inner_text() and "Gate" in notice.inner_text()

    # take it from the grid's queue: offered, with its evidence and location
    notice.locator('[data-role="take-notice"]').click()
    offered = page.locator(f'#offered [data-case-id="{case.id}"]')
    offered.wait_for()
    # (looked up afresh on each poll: a handle would hold on to an image the page has replaced by re-rendering)
    page.wait_for_function("s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
                           arg=f'#offered [data-case-id="{case.id}"] [data-role="snapshot"]')
    assert "31.200000,121.400000" in offered.locator('[data-role="location"]').inner_text()
    assert offered.locator('[data-role="map"]').get_attribute("href").startswith("geo:31.200000,121.400000")
    assert no_sideways_scroll(page)
    shot(page, "worker-offered", full_page=True)
    assert api.store.pending("g-2")[0]["worker"] == "w1"  # taken, not yet accepted

    offered.locator('[data-action="accept"]').click()
    card = page.locator(f'#mine [data-case-id="{case.id}"][data-state="dispatched"]')
    card.wait_for()
    got = api.store.get(case.id)
    assert got.state == "dispatched" and got.worker == "w1"
    assert api.store.pending("g-2") == []  # the delivery is acknowledged
    assert page.locator("#offered [data-case-id]").count() == 0

    heard(api, page, case.id)  # answer and push of the same change come in either order; the answer re-renders
    card.locator('[data-action="arrive"]').click()
    card = page.locator(f'#mine [data-case-id="{case.id}"][data-state="on_site"]')
    card.wait_for()
    assert api.store.get(case.id).state == "on_site"
    heard(api, page, case.id)

    # resolve without a verdict: the error is next to the choice, nothing is sent
    card.locator('[data-action="resolve"]').click()
    err = card.locator('[data-role="error"][data-field="verdict"]')
    err.wait_for()
    assert "choose" in err.inner_text()
    assert api.store.get(case.id).state == "on_site"

    # a verdict, a note and a photo from the phone's camera
    card = page.locator(f'#mine [data-case-id="{case.id}"]')
    card.locator('input[type=radio][value="confirmed"]').check()
    card.locator('[data-role="note"]').fill("about 12 people queueing at the gate; asked them to spread out")
    img = np.zeros((240, 320, 3), np.uint8)
    cv2.rectangle(img, (60, 60), (260, 200), (40, 160, 240), -1)
    _, jpeg = cv2.imencode(".jpg", img)
    card.locator('[data-role="photo"]').set_input_files(
        {"name": "gate.jpg", "mimeType": "image/jpeg", "buffer": jpeg.tobytes()})
    shot(page, "worker-resolving", full_page=True)
    card.locator('[data-action="resolve"]').click()
    page.wait_for_selector(f'#mine [data-case-id="{case.id}"]', state="detached")
    # the push of the resolve may remove the card before the answer to the POST, which says "resolved", is read
    expect(page.locator('[data-role="notice"]')).to_contain_text("resolved", timeout=WAIT_MS)
    got = api.store.get(case.id)
    assert got.state == "resolved" and got.verdict == "confirmed"
    assert len(got.photos) == 1 and api.evidence.path(got.photos[0]) is not None
    resolve = next(h for h in got.history if h.action == "resolve")
    assert resolve.actor == "w1" and "spread out" in resolve.note
    assert [h.action for h in got.history] == ["create", "accept", "arrive", "photo", "resolve"]


def test_case_sent_by_an_operator_appears_and_a_bad_photo_is_refused(api, make_case, phone):
    page = phone
    # settled first: a case sent before the stream's start is pinned, or listed by the first list load, would count
    # as there before the page opened, and not be announced
    open_worker_page(api, page)
    case = make_case(kind="conflict", count=3)
    api.store.transition(case.id, "acknowledge", "op-1")
    api.store.transition(case.id, "dispatch", "op-1", worker="w1")
    card = page.locator(f'#mine [data-case-id="{case.id}"][data-state="dispatched"]')
    card.wait_for()
    expect(page.locator('[data-role="notice"]')).to_contain_text("sent to you", timeout=WAIT_MS)
    assert "fight" in card.inner_text().lower()
    assert no_sideways_scroll(page)
    shot(page, "worker-dispatched", full_page=True)

    # a file that claims to be a JPEG but is not: the server's refusal is shown next to the photo field
    card.locator('input[type=radio][value="false_alarm"]').check()
    card.locator('[data-role="photo"]').set_input_files(
        {"name": "x.jpg", "mimeType": "image/jpeg", "buffer": b"not a picture at all"})
    card.locator('[data-action="resolve"]').click()
    err = page.locator(f'#mine [data-case-id="{case.id}"] [data-role="error"][data-field="photo"]')
    err.wait_for()
    assert err.inner_text()
    assert api.store.get(case.id).state == "dispatched"  # not resolved without the photo

    # reassigned to someone else: it leaves this worker's list
    api.store.transition(case.id, "reassign", "op-1", worker="w-zhou")
    page.wait_for_selector(f'#mine [data-case-id="{case.id}"]', state="detached")


def open_with_a_case_sent_to_me(api, make_case, page) -> Case:
    """A fight case an operator sent to w1, and w1's page open on it."""
    case = make_case(kind="conflict", count=3)
    api.store.transition(case.id, "acknowledge", "op-1")
    api.store.transition(case.id, "dispatch", "op-1", worker="w1")
    open_worker_page(api, page)
    page.locator(f'#mine [data-case-id="{case.id}"] summary').click()  # open the card
    return case


def test_a_push_while_the_worker_types_keeps_the_note_and_the_cursor(api, make_case, phone):
    """An operator's change lands while the worker writes the note: the card re-renders, the typing goes on."""
    page = phone
    case = open_with_a_case_sent_to_me(api, make_case, page)
    note = page.locator(f'#mine [data-case-id="{case.id}"] [data-role="note"]')
    note.click()
    page.keyboard.type("two men ")
    api.store.add_note(case.id, "op-1", "police informed")  # a new version of the case: pushed, re-rendered
    heard(api, page, case.id)
    page.keyboard.type("separated")
    expect(note).to_have_value("two men separated", timeout=WAIT_MS)


def test_the_echo_of_the_workers_own_action_leaves_the_card_alone(api, make_case, phone):
    """A push of the version the page already shows (the echo of its own action) leaves the card, the same node."""
    page = phone
    case = open_with_a_case_sent_to_me(api, make_case, page)
    page.locator(f'#mine [data-case-id="{case.id}"] [data-action="arrive"]').click()
    card = page.locator(f'#mine [data-case-id="{case.id}"][data-state="on_site"]')
    card.wait_for()
    heard(api, page, case.id)
    card.evaluate("el => { el.dataset.marked = 'yes'; }")
    # the same version once more, as the stream would deliver it again (the order of answer and push varies)
    n = page.evaluate("id => window.heard.filter((c) => c.id === id).length", case.id)
    api.store.r.xadd(api.store.events_stream, {"type": "case.updated", "case": api.store.get(case.id).model_dump_json()})
    page.wait_for_function("([id, n]) => window.heard.filter((c) => c.id === id).length > n", arg=[case.id, n])
    assert card.get_attribute("data-marked") == "yes"  # (the page's handler of that push has run: same event, after ours)
