"""Statistics from real cases through the real API, and the stats page's charts in Chromium."""
import time

from conftest import shot


def _walk(api, case_id, verdict, waits):
    """acknowledge -> dispatch -> arrive -> resolve -> close, sleeping ``waits`` seconds before each step."""
    steps = [("acknowledge", {}), ("dispatch", {"worker": "w1"}), ("arrive", {}), ("resolve", {"verdict": verdict}),
             ("close", {})]
    for (action, extra), wait in zip(steps, waits):
        time.sleep(wait)
        r = api.post(f"/api/cases/{case_id}/{action}", json={"actor": "op", **extra})
        assert r.status_code == 200, r.text


def test_stats_counts_rates_and_times(api, make_case):
    a = make_case(zone="z1")
    b = make_case(zone="z2", kind="conflict", count=2)
    make_case(zone="z3")  # still new
    _walk(api, a.id, "confirmed", [0.2, 0, 0.2, 0, 0.2])
    _walk(api, b.id, "false_alarm", [0, 0, 0, 0, 0])
    s = api.get("/api/stats", params={"days": 1}).json()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert s["alerts"] == 3 and s["days"] == [today]
    assert {(r["key"], r["alerts"]) for r in s["by_kind"]} == {("crowding", 2), ("conflict", 1)}
    assert s["by_grid"] == [{"day": today, "key": "g-2", "alerts": 3}]
    assert s["by_camera"] == [{"day": today, "key": "cam-1", "alerts": 3}]
    assert s["resolved"] == 2 and s["confirmed"] == 1 and s["confirmation_rate"] == 0.5
    ack, site, close = s["time_to_acknowledge"], s["time_to_site"], s["time_to_close"]
    assert ack["n"] == site["n"] == close["n"] == 2
    assert 0.15 <= ack["p90_s"] < 2 and ack["p50_s"] <= ack["p90_s"]
    assert site["p90_s"] >= 0.35 and close["p90_s"] >= 0.55 and close["p90_s"] >= site["p90_s"]
    # grid workers have no statistics; bad input names the field
    assert api.get("/api/stats", headers=api.headers_for("w1")).status_code == 403
    r = api.get("/api/stats", params={"days": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.days"


def test_stats_page_draws_the_charts(api, make_case, browser_page):
    a = make_case(zone="z1")
    make_case(zone="z2", kind="conflict", count=2)
    _walk(api, a.id, "confirmed", [0, 0, 0, 0, 0])
    page = browser_page(viewport={"width": 1300, "height": 900}, cookies=api.cookies_for("op"))
    page.goto(f"{api.base_url}/stats")
    page.wait_for_selector("body[data-loaded='1']")
    assert page.text_content("#total") == "2"
    assert page.get_attribute("#confirm", "data-rate") == "1"
    bars = page.eval_on_selector_all("#by_kind rect", "rs => rs.map(r => [r.dataset.key, +r.dataset.n])")
    assert sorted(bars) == [["conflict", 1], ["crowding", 1]]
    assert page.eval_on_selector_all("#times rect", "rs => rs.length") == 6
    shot(page, "stats")
