"""The operator page in a real browser (Debian's Chromium, headless, driven by Playwright).

Screenshots of each run are kept in var/test-screenshots/.
"""
import time

import pytest
from conftest import HEAR, heard, shot


@pytest.fixture
def page(api, browser_page):
    page = browser_page(cookies=api.cookies_for("op"))  # logged in as the operator
    page.add_init_script(HEAR)
    return page


def test_operator_sees_pushed_alerts_and_triages_them(api, make_case, page):
    old = make_case(count=7)
    page.goto(str(api.base_url))
    page.wait_for_selector(f'[data-case-id="{old.id}"]')
    page.wait_for_function("document.querySelector('#live').dataset.state === 'live'")

    # a new alert arrives while the page is open: pushed, not reloaded
    new = make_case(kind="conflict", count=2)
    card = page.locator(f'[data-case-id="{new.id}"]')
    card.wait_for()
    assert card.get_attribute("data-state") == "new"
    assert page.locator("#feed [data-case-id]").first.get_attribute("data-case-id") == new.id  # newest on top
    # (looked up afresh on each poll: a handle would hold on to an image the page has replaced by rebuilding the card,
    # and a lazy image that is no longer in the page never loads)
    page.wait_for_function("s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
                           arg=f'[data-case-id="{new.id}"] img')

    # acknowledge, then dispatch to a worker, from the buttons; before each click, the push of the last change is in
    # (the answer to the POST and the push of the same change come in either order, and the answer always rebuilds
    # the card, to clear its busy state: a click between the two could land on the card being replaced)
    card.locator('[data-action="acknowledge"]').click()
    page.wait_for_selector(f'[data-case-id="{new.id}"][data-state="acknowledged"]')
    heard(api, page, new.id)
    card = page.locator(f'[data-case-id="{new.id}"]')
    card.locator('[data-action="dispatch"]').click()
    card.locator('[data-role="worker"]').fill("w-zhao")
    card.locator('[data-role="send"]').click()
    page.wait_for_selector(f'[data-case-id="{new.id}"][data-state="dispatched"]')
    assert api.store.get(new.id).worker == "w-zhao"

    # someone else acts on the old case meanwhile: the page follows, without a reload
    api.store.transition(old.id, "acknowledge", "op-2")
    page.wait_for_selector(f'[data-case-id="{old.id}"][data-state="acknowledged"]')
    shot(page, "operator-triage")

    # the worker is on site, reassigned, then a verdict, then close
    heard(api, page, new.id)
    page.locator(f'[data-case-id="{new.id}"] [data-action="arrive"]').click()
    page.wait_for_selector(f'[data-case-id="{new.id}"][data-state="on_site"]')
    heard(api, page, new.id)
    card = page.locator(f'[data-case-id="{new.id}"]')
    card.locator('[data-action="reassign"]').click()
    card.locator('[data-role="worker"]').fill("w-qian")
    card.locator('[data-role="send"]').click()
    page.wait_for_selector(f'[data-case-id="{new.id}"][data-state="dispatched"] [data-role="worker-name"]:text("w-qian")')
    heard(api, page, new.id)
    page.locator(f'[data-case-id="{new.id}"] [data-action="not_found"]').click()
    page.wait_for_selector(f'[data-case-id="{new.id}"][data-state="resolved"]')
    assert page.locator(f'[data-case-id="{new.id}"] [data-role="verdict"]').inner_text() == "not found"
    heard(api, page, new.id)
    page.locator(f'[data-case-id="{new.id}"] [data-action="close"]').click()
    page.wait_for_selector(f'[data-case-id="{new.id}"][data-state="closed"]')
    got = api.store.get(new.id)
    assert [h.action for h in got.history] == ["create", "acknowledge", "dispatch", "arrive", "reassign",
                                               "resolve", "close"]
    assert got.verdict == "not_found" and got.worker == "w-qian"


def test_escalations_and_priority_show_on_the_card(api, make_case, page):
    crowd = make_case(count=7)
    fight = make_case(kind="conflict", count=2)
    page.goto(str(api.base_url))
    page.wait_for_function("document.querySelector('#live').dataset.state === 'live'")
    card = page.locator(f'[data-case-id="{fight.id}"]')
    card.wait_for()
    assert card.locator('[data-role="priority"]').inner_text().startswith("P1")
    assert page.locator(f'[data-case-id="{crowd.id}"] [data-role="priority"]').inner_text().startswith("P4")
    assert card.locator('[data-role="escalated"]').count() == 0
    # two minutes pass and nobody acknowledged the fight: pushed to the page as case.escalated
    assert fight.id in [c.id for c in api.store.escalate_due(now=time.time() + 121)]
    page.wait_for_selector(f'[data-case-id="{fight.id}"] [data-role="escalated"]')
    assert "overdue" in card.locator('[data-role="escalated"]').inner_text()
    shot(page, "operator-escalated")


def test_illegal_action_shows_the_servers_message(api, make_case, page):
    """Another operator was quicker and this page has not heard yet: the 409's message is shown on the card."""
    page.route("**/api/events", lambda route: route.abort())  # no push: this page's view goes stale
    case = make_case()
    # the page reads the list twice at start (the feed and the map's open alerts): the view is
    # stale only once both have answered
    with page.expect_response(lambda r: "/api/alerts?" in r.url and "limit=100" in r.url), \
            page.expect_response(lambda r: "/api/alerts?" in r.url and "limit=500" in r.url):
        page.goto(str(api.base_url))
    card = page.locator(f'[data-case-id="{case.id}"]')
    card.wait_for()
    api.store.transition(case.id, "acknowledge", "op-elsewhere")
    card.locator('[data-action="acknowledge"]').click()
    error = page.locator(f'[data-case-id="{case.id}"] [data-role="error"]')
    error.wait_for()
    assert "cannot acknowledge" in error.inner_text() and "it is acknowledged" in error.inner_text()
    # after the refusal the card shows the true state and its legal actions
    page.wait_for_selector(f'[data-case-id="{case.id}"][data-state="acknowledged"] [data-action="dispatch"]')


def test_the_evidence_clip_plays_in_the_browser(api, make_case, page, tmp_path):
    """Chromium decodes the H.264 clip: the proof that browsers play it, not only that ffprobe likes it."""
    import numpy as np

    from alerts.clips import encode_mp4

    frames = []
    for i in range(12):
        img = np.full((360, 480, 3), 40, np.uint8)
        img[100:200, 20 * i:20 * i + 80] = (0, 200, 255)
        frames.append((i / 3, img))
    case = make_case()
    clip = api.evidence.save_bytes(encode_mp4(frames), "mp4")
    incident = api.store.get(case.id).incident_id
    assert api.store.attach(incident, "clip", clip) == "attached"
    page.goto(str(api.base_url))
    link = page.locator(f'[data-case-id="{case.id}"] [data-role="clip"]')
    link.wait_for()
    src = link.get_attribute("href")
    played = page.evaluate("""async (src) => {
        const v = document.createElement("video");
        v.muted = true; v.src = src; document.body.appendChild(v);
        await new Promise((ok, bad) => {
          v.onloadeddata = ok; v.onerror = () => bad(new Error("video error " + (v.error && v.error.code))); });
        v.currentTime = 2.0;
        await new Promise((ok) => { v.onseeked = ok; });
        return { w: v.videoWidth, h: v.videoHeight, duration: v.duration, ready: v.readyState };
    }""", src)
    assert played["w"] == 480 and played["h"] == 360 and played["ready"] >= 2
    assert abs(played["duration"] - 11 / 3) < 0.5
