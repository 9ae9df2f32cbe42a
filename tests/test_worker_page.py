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


# ---- issue 15: a worker bound to grids, a grid with fifty cases, a case sent while the first list loads -------------
def test_a_worker_bound_to_two_grids_arrives_on_their_grid_with_its_waiting_and_offered_cases(api, make_case,
                                                                                           browser_page):
    """Bound to g-1 and g-2 (the demo's worker is bound to both of its grids): the grid where cases wait is chosen, its
    waiting cases are listed and the case this worker took but has not accepted yet is offered again."""
    waiting = make_case(zone="z-wait", count=8)
    taken = make_case(kind="conflict", zone="z-taken", count=3)
    assert api.store.take("g-2", "w-two").id == taken.id   # taken on another phone (or before a reload)
    page = browser_page(viewport=PHONE, is_mobile=True, has_touch=True,
                        cookies=api.cookies_for("w-two", role="grid_worker", grids=["g-1", "g-2"]))
    page.add_init_script(HEAR)
    page.goto(f"{api.base_url}/worker")
    expect(page.locator("#grid")).to_have_value("g-2", timeout=WAIT_MS)
    assert page.locator("#grid option").all_inner_texts() == ["One (g-1)", "Two (g-2)"]  # their grids, no "—"
    expect(page.locator(f'#waiting [data-waiting-id="{waiting.id}"]')).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#waiting-count")).to_have_text("(1)")
    offered = page.locator(f'#offered [data-case-id="{taken.id}"]')
    expect(offered).to_be_visible(timeout=WAIT_MS)
    shot(page, "worker-two-grids", full_page=True)
    offered.locator('[data-action="accept"]').click()
    expect(page.locator(f'#mine [data-case-id="{taken.id}"][data-state="dispatched"]')).to_be_visible(timeout=WAIT_MS)
    assert api.store.get(taken.id).worker == "w-two"

    # another grid chosen: its (empty) list; back to g-2: the waiting case again, and announced on arrival
    page.select_option("#grid", "g-1")
    expect(page.locator("#waiting")).to_contain_text("No case waiting", timeout=WAIT_MS)
    page.select_option("#grid", "g-2")
    expect(page.locator(f'#waiting [data-waiting-id="{waiting.id}"]')).to_be_visible(timeout=WAIT_MS)
    expect(page.locator('[data-role="notice"]')).to_contain_text("1 case waits in your grid", timeout=WAIT_MS)


def test_a_grid_with_fifty_open_cases_stays_usable_on_the_phone(api, make_case, phone):
    """Fifty open cases in the grid: the worker's own first, the others one compact line each, nothing sideways."""
    cases = [make_case(kind="conflict" if i % 10 == 0 else "crowding", zone=f"z{i:02d}", count=5 + i % 7)
             for i in range(50)]
    for c in cases[:3]:
        api.store.transition(c.id, "acknowledge", "op-1")
        api.store.transition(c.id, "dispatch", "op-1", worker="w1")
    page = phone
    open_worker_page(api, page)
    expect(page.locator("#mine [data-case-id]")).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator("#waiting [data-waiting-id]")).to_have_count(47, timeout=WAIT_MS)
    expect(page.locator("#waiting-count")).to_have_text("(47)")
    # mine first, above the grid's list
    mine_bottom = page.evaluate("document.querySelector('#mine').getBoundingClientRect().bottom")
    waiting_top = page.evaluate("document.querySelector('#waiting').getBoundingClientRect().top")
    assert mine_bottom <= waiting_top
    # compact: a line each, the whole page a few screens long, not fifty cards with pictures
    heights = page.evaluate("[...document.querySelectorAll('#waiting [data-waiting-id]')].slice(0, 5)"
                            ".map((e) => e.getBoundingClientRect().height)")
    assert all(h <= 44 for h in heights), heights
    assert page.evaluate("document.documentElement.scrollHeight") < 47 * 44 + 3 * 120 + 900
    assert no_sideways_scroll(page)
    # fights first in the grid's list
    first = page.locator("#waiting [data-waiting-id]").first.get_attribute("data-waiting-id")
    assert api.store.get(first).kind == "conflict"
    shot(page, "worker-fifty", full_page=True)

    # a push re-renders quickly, and the list follows it: one more case, one taken away by the operator room
    extra = make_case(zone="z-extra")
    expect(page.locator(f'#waiting [data-waiting-id="{extra.id}"]')).to_be_visible(timeout=WAIT_MS)
    api.store.transition(cases[10].id, "acknowledge", "op-1")
    api.store.transition(cases[10].id, "dispatch", "op-1", worker="w-zhou")
    expect(page.locator(f'#waiting [data-waiting-id="{cases[10].id}"]')).to_have_count(0, timeout=WAIT_MS)
    page.locator("#waiting").scroll_into_view_if_needed()
    page.locator("#take").click()
    expect(page.locator("#offered [data-case-id]")).to_have_count(1, timeout=WAIT_MS)
    taken = page.locator("#offered [data-case-id]").get_attribute("data-case-id")
    assert api.store.get(taken).kind == "conflict"  # the queue's order: fights first


def test_a_case_sent_while_the_first_list_loads_is_announced(api, make_case, phone):
    """The operator room sends a case while the page's first list is on its way, before its event stream has started:
    the list shows it and the page announces it (it was sent after the page opened)."""
    import time

    page = phone
    case = make_case(kind="conflict", count=3)
    api.store.transition(case.id, "acknowledge", "op-1")
    sent = []

    def first_list(route):
        if "worker=w1" in route.request.url and not sent:
            api.store.transition(case.id, "dispatch", "op-1", worker="w1")  # while the list request is held
            sent.append(time.time())
        route.continue_()

    def slow_stream(route):
        time.sleep(1.0)  # the stream starts late (a slow network): the dispatch comes before it, whichever way
        route.continue_()

    page.route("**/api/alerts?*", first_list)
    page.route("**/api/events", slow_stream)
    page.add_init_script(HEAR)
    page.goto(f"{api.base_url}/worker")
    card = page.locator(f'#mine [data-case-id="{case.id}"][data-state="dispatched"]')
    expect(card).to_be_visible(timeout=WAIT_MS)
    assert sent
    expect(page.locator('[data-role="notice"]')).to_contain_text("sent to you", timeout=WAIT_MS)
    expect(card).to_have_attribute("open", "")


def test_a_case_sent_before_the_page_opened_is_listed_not_announced(api, make_case, phone):
    page = phone
    case = open_with_a_case_sent_to_me(api, make_case, page)
    api.store.add_note(case.id, "op-1", "police on the way")  # a later change of it is no news
    heard(api, page, case.id)
    page.wait_for_timeout(300)
    assert page.locator('[data-role="notice"]').is_hidden()
