"""The grid worker's page when the phone loses signal: nothing typed or photographed is lost, what was done offline
is sent when the signal is back (issue 15, item 7).

Real uvicorn, real Redis, Debian's Chromium via Playwright; the signal is cut with ``context.set_offline``.
"""

import cv2
import numpy as np
import pytest
from conftest import HEAR, WAIT_MS, heard, shot
from playwright.sync_api import expect

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(api, browser_page):
    return browser_page(viewport=PHONE, cookies=api.cookies_for("w1"), device_scale_factor=2, is_mobile=True,
                        has_touch=True)


def settled(api, page):
    page.wait_for_function("document.querySelector('#live').dataset.state === 'live'")
    page.wait_for_function("window.streamReady > 0")
    page.wait_for_function("!document.querySelector('#mine').innerText.includes('loading')")
    expect(page.locator("#grid")).to_have_value("g-2", timeout=WAIT_MS)


def sent_to_w1(api, make_case, page):
    case = make_case(kind="conflict", count=3)
    api.store.transition(case.id, "acknowledge", "op-1")
    api.store.transition(case.id, "dispatch", "op-1", worker="w1")
    page.add_init_script(HEAR)
    page.goto(f"{api.base_url}/worker")
    settled(api, page)
    page.locator(f'#mine [data-case-id="{case.id}"] summary').click()
    return case


def jpeg() -> bytes:
    img = np.zeros((240, 320, 3), np.uint8)
    cv2.rectangle(img, (40, 40), (280, 200), (30, 200, 90), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_the_typed_note_survives_a_reload(api, make_case, phone):
    page = phone
    case = sent_to_w1(api, make_case, page)
    note = page.locator(f'#mine [data-case-id="{case.id}"] [data-role="note"]')
    note.click()
    page.keyboard.type("crowd at the east gate, ")
    page.reload()
    settled(api, page)
    page.locator(f'#mine [data-case-id="{case.id}"] summary').click()
    note = page.locator(f'#mine [data-case-id="{case.id}"] [data-role="note"]')
    expect(note).to_have_value("crowd at the east gate, ", timeout=WAIT_MS)
    note.click()
    page.keyboard.press("End")
    page.keyboard.type("dispersing")
    expect(note).to_have_value("crowd at the east gate, dispersing")


def test_on_site_and_resolve_with_note_and_photo_without_signal_are_sent_when_it_is_back(api, make_case, phone):
    page = phone
    case = sent_to_w1(api, make_case, page)
    card = page.locator(f'#mine [data-case-id="{case.id}"]')

    page.context.set_offline(True)
    card.locator('[data-action="arrive"]').click()
    queued = card.locator('[data-role="queued"]')
    expect(queued).to_contain_text("waiting for signal", timeout=WAIT_MS)
    expect(page.locator("#live")).to_have_attribute("data-state", "offline", timeout=WAIT_MS)
    card.locator('input[type=radio][value="confirmed"]').check()
    card.locator('[data-role="note"]').fill("two men pushing; separated them")
    card.locator('[data-role="photo"]').set_input_files({"name": "gate.jpg", "mimeType": "image/jpeg", "buffer": jpeg()})
    card.locator('[data-action="resolve"]').click()
    expect(queued).to_contain_text("Resolve + photo + note", timeout=WAIT_MS)
    expect(card.locator('[data-action="resolve"]')).to_be_disabled()
    shot(page, "worker-offline-queued", full_page=True)
    page.wait_for_timeout(500)
    got = api.store.get(case.id)
    assert got.state == "dispatched" and got.photos == []   # nothing reached the server
    # the note and the photo are still on the card while it waits
    assert card.locator('[data-role="note"]').input_value() == "two men pushing; separated them"
    assert card.locator('[data-role="photo"]').evaluate("f => f.files.length") == 1
    assert page.evaluate(f"localStorage.getItem('gridwatch.note.{case.id}')") == "two men pushing; separated them"

    page.context.set_offline(False)   # the signal is back: everything goes, in order
    page.wait_for_selector(f'#mine [data-case-id="{case.id}"]', state="detached", timeout=WAIT_MS)
    expect(page.locator('[data-role="notice"]')).to_contain_text("resolved", timeout=WAIT_MS)
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    got = api.store.get(case.id)
    assert got.state == "resolved" and got.verdict == "confirmed" and len(got.photos) == 1
    assert [h.action for h in got.history] == ["create", "acknowledge", "dispatch", "arrive", "photo", "resolve"]
    assert "separated them" in got.history[-1].note
    assert page.evaluate(f"localStorage.getItem('gridwatch.note.{case.id}')") is None   # sent: the draft is gone


def test_a_note_sent_when_the_signal_drops_mid_request_is_kept_and_sent_again(api, make_case, phone):
    """navigator.onLine still says online but the request fails (a dead spot): the note waits and is retried."""
    page = phone
    case = sent_to_w1(api, make_case, page)
    card = page.locator(f'#mine [data-case-id="{case.id}"]')
    failing = {"on": True}

    def dead_spot(route):
        if failing["on"]:
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/api/cases/*/notes", dead_spot)
    card.locator('[data-role="note"]').fill("waiting for the police")
    card.locator('[data-action="note"]').click()
    expect(card.locator('[data-role="queued"]')).to_contain_text("waiting for signal", timeout=WAIT_MS)
    assert api.store.get(case.id).notes == 0
    failing["on"] = False            # the retry (every few seconds) gets through
    expect(card.locator('[data-role="queued"]')).to_have_count(0, timeout=15000)
    heard(api, page, case.id)
    got = api.store.get(case.id)
    assert got.notes == 1 and got.history[-1].note == "waiting for the police"
    assert got.state == "dispatched"
    expect(card.locator('[data-role="note"]')).to_have_value("")


def test_what_waits_for_signal_survives_a_reload_and_is_sent_after_it(api, make_case, phone):
    """The resolve (verdict, note, photo) could not be sent; the worker reloads the page: it is still waiting, with its
    photo, and goes out once the server can be reached."""
    page = phone
    case = sent_to_w1(api, make_case, page)
    card = page.locator(f'#mine [data-case-id="{case.id}"]')
    page.route("**/api/cases/**", lambda route: route.abort("internetdisconnected"))
    card.locator('input[type=radio][value="not_found"]').check()
    card.locator('[data-role="note"]').fill("nobody at the gate any more")
    card.locator('[data-role="photo"]').set_input_files({"name": "gate.jpg", "mimeType": "image/jpeg", "buffer": jpeg()})
    card.locator('[data-action="resolve"]').click()
    expect(card.locator('[data-role="queued"]')).to_contain_text("Resolve + photo + note", timeout=WAIT_MS)

    page.reload()
    settled(api, page)
    card = page.locator(f'#mine [data-case-id="{case.id}"]')
    expect(card.locator('[data-role="queued"]')).to_contain_text("Resolve + photo + note", timeout=WAIT_MS)
    assert api.store.get(case.id).state == "dispatched"
    page.unroute("**/api/cases/**")   # through again: the next retry sends it
    page.wait_for_selector(f'#mine [data-case-id="{case.id}"]', state="detached", timeout=20000)
    got = api.store.get(case.id)
    assert got.state == "resolved" and got.verdict == "not_found" and len(got.photos) == 1
    assert "nobody at the gate" in got.history[-1].note
    assert page.evaluate(f"localStorage.getItem('gridwatch.note.{case.id}')") is None
