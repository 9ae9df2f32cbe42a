"""The generated district (gridwatch/district.py) and the case lists at its scale (docs/api-scale.md)."""
from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
import redis
from matplotlib.path import Path as MplPath

from alerts import CaseStore, EvidenceStore
from alerts.cases import IllegalTransition
from gridwatch.district import (
    CAMERAS,
    LEAVES,
    _area,
    district_config,
    leaf_grids,
    main,
    seed_cases,
)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return district_config(tmp_path_factory.mktemp("district"))


def _ring(grid):
    return [tuple(p) for p in grid.outline.coordinates[0]]


def test_the_district_is_cut_into_600_leaf_grids_under_streets(cfg):
    by_id = {g.id: g for g in cfg.grids}
    tops = [g for g in cfg.grids if g.parent is None]
    assert len(tops) == 1
    top = tops[0]
    streets = [g for g in cfg.grids if g.parent == top.id]
    assert 20 <= len(streets) <= 40
    leaves = leaf_grids(cfg)
    assert len(leaves) == LEAVES == 600
    children = Counter(g.parent for g in cfg.grids if g.parent)
    # the re-cut: cells under streets, some split into two or four sub-grids (their parent is the cell)
    split = [g for g in cfg.grids if g.parent in {s.id for s in streets} and g.id in children]
    assert split and {children[g.id] for g in split} <= {2, 4} and {children[g.id] for g in split} == {2, 4}
    for g in cfg.grids:
        assert g.parent is None or g.parent in by_id
        ring = g.outline.coordinates[0]
        assert len(ring) >= 4 and tuple(ring[0]) == tuple(ring[-1])
        assert _area([tuple(p) for p in ring[:-1]]) > 0  # counter-clockwise (RFC 7946) and not degenerate
        assert all(121.3 < lon < 121.6 and 31.1 < lat < 31.4 for lon, lat in ring)
    # the leaves tile the district: no overlaps (their areas add up to at most the district's), few gaps
    district = _area(_ring(top)[:-1])
    leaf_area = sum(_area(_ring(by_id[g])[:-1]) for g in leaves)
    assert 0.9 * district <= leaf_area <= district * 1.0001
    for g in leaves:
        ring = _ring(by_id[g])[:-1]
        cx, cy = sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring)
        assert MplPath(_ring(top)).contains_point((cx, cy))


def test_492_cameras_inside_their_grids_denser_where_it_is_busy(cfg):
    by_id = {g.id: g for g in cfg.grids}
    leaves = set(leaf_grids(cfg))
    assert len(cfg.cameras) == CAMERAS == 492
    assert len({c.id for c in cfg.cameras}) == 492
    for c in cfg.cameras:
        assert c.grid in leaves
        # checked with matplotlib's Path, not with the generator's own point_in_ring that placed the camera
        assert MplPath(_ring(by_id[c.grid])).contains_point((c.lon, c.lat)), c.id
        assert c.zones and (c.zones[0].crowding is not None or c.zones[0].conflict.enabled)
        assert c.url.startswith("rtsp://127.0.0.1:8554/cam-")
    per_grid = Counter(c.grid for c in cfg.cameras)
    assert len(per_grid) < len(leaves)  # some grids have none
    assert max(per_grid.values()) >= 3  # and busy ones several
    assert any(c.zones[0].conflict.enabled and c.fps >= 5 for c in cfg.cameras)


def test_the_same_seed_gives_the_same_district_and_clips_go_round_robin(tmp_path, short_clip):
    a = district_config(tmp_path / "a", seed=3)
    b = district_config(tmp_path / "b", seed=3)
    assert [(g.id, g.outline) for g in a.grids] == [(g.id, g.outline) for g in b.grids]
    assert [(c.id, c.lat, c.lon) for c in a.cameras] == [(c.id, c.lat, c.lon) for c in b.cameras]
    clips = [str(short_clip), "rtsp://192.0.2.7/stream"]
    c = district_config(tmp_path / "c", clips=clips)
    assert [cam.url for cam in c.cameras[:4]] == [str(short_clip), clips[1], str(short_clip), clips[1]]
    assert short_clip.parent.resolve() in [d.resolve() for d in c.settings.media_dirs]
    assert len(leaf_grids(c)) == 600


def test_seed_cases_writes_the_history_through_the_real_store(store, cfg):
    now = time.time()
    t = time.perf_counter()
    counts = seed_cases(store, cfg, open_cases=150, closed_cases=100, now=now)
    assert time.perf_counter() - t < 30
    assert counts["created"] == 250 and counts["open"] == 150 and counts["closed"] == 100
    assert counts["failed_transitions"] == 0
    listed = store.list(limit=1000, scan=1000)
    assert len(listed) == 250
    assert Counter(c.state == "closed" for c in listed) == {True: 100, False: 150}
    assert len(store.list(sort="priority", limit=1000, scan=1000, state="new")) == counts["states"].get("new", 0)
    assert all(now - 8 * 86400 < c.ts <= now for c in listed)
    closed = next(c for c in listed if c.state == "closed")
    full = store.get(closed.id)
    actions = [h.action for h in full.history]
    assert actions[0] == "create" and actions[-1] == "close" and "resolve" in actions
    assert [h.ts for h in full.history] == sorted(h.ts for h in full.history) and full.history[-1].ts < now
    assert full.verdict is not None and full.worker and store.verify_history(closed.id) == (True, None)
    cams = {c.id: c for c in cfg.cameras}
    assert all(cams[c.camera_id].grid == c.grid_id for c in listed)


def test_the_command_writes_the_config_and_seeds(tmp_path, redis_url):
    from gridwatch.config import load_config

    prefix = "gwdist-cmd"
    try:
        assert main(["--data-dir", str(tmp_path / "d"), "--redis", redis_url, "--prefix", prefix,
                     "--write-config", str(tmp_path / "district.yaml"), "--open", "20", "--closed", "10"]) == 0
        assert len(leaf_grids(load_config(tmp_path / "district.yaml"))) == 600
        store = CaseStore(redis.Redis.from_url(redis_url), prefix=prefix)
        assert len(store.list(limit=100, scan=100)) == 30
    finally:
        r = redis.Redis.from_url(redis_url)
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)


def test_the_api_lists_the_district(store, cfg, redis_url, tmp_path):
    from conftest import authorize

    from api import create_app
    from gridwatch.harness import serving

    counts = seed_cases(store, cfg, open_cases=120, closed_cases=60)
    app = create_app(cfg, store, redis_url, EvidenceStore(tmp_path / "ev"))
    with serving(app) as base, httpx.Client(base_url=base, headers=authorize(app, "op"), timeout=10) as c:
        r = c.get("/api/alerts?limit=50")
        assert r.status_code == 200 and len(r.json()) == 50 and 'rel="next"' in r.headers["link"]
        newest = r.json()
        assert [x["ts"] for x in newest] == sorted((x["ts"] for x in newest), reverse=True)
        assert newest[0]["id"] == store.list(limit=1)[0].id and "snapshot_url" in newest[0]
        second = c.get(r.headers["link"].split(";")[0].strip("<>")).json()
        assert not {x["id"] for x in second} & {x["id"] for x in newest}
        prio = c.get("/api/alerts?sort=priority&limit=500").json()
        assert len(prio) == 180
        assert [x["state"] == "closed" for x in prio] == [False] * 120 + [True] * 60
        open_prios = [x["priority"] for x in prio[:120]]
        assert open_prios == sorted(open_prios)
        grid = newest[0]["grid_id"]
        in_grid = c.get(f"/api/alerts?grid={grid}&limit=500").json()
        assert in_grid and all(x["grid_id"] == grid for x in in_grid)
        assert len(c.get("/api/alerts?state=new&limit=500").json()) == counts["states"].get("new", 0)
        # a change shows at once in the lists (the parsed cases and their JSON are kept per version)
        cid = next(x["id"] for x in prio if x["state"] == "new")
        assert c.post(f"/api/cases/{cid}/acknowledge", json={"actor": "op"}).status_code == 200
        again = {x["id"]: x for x in c.get("/api/alerts?sort=priority&limit=500").json()}
        assert again[cid]["state"] == "acknowledged" and again[cid]["version"] == 2


def test_transition_many_is_each_case_s_own_atomic_step(store):
    from alerts import Alert

    ids = []
    for i in range(3):
        _, case = store.ingest(Alert(kind="crowding", camera_id="cam-1", camera_name="Gate", grid_id="g-2",
                                     zone_id=f"z{i}", ts=time.time() - 100 + i, count=9, score=0.8, detail="9",
                                     snapshot=None, lat=31.2, lon=121.4), 0)
        ids.append(case.id)
    at = time.time() - 50
    out = store.transition_many([
        {"cid": ids[0], "action": "acknowledge", "actor": "op", "now": at},
        {"cid": ids[1], "action": "arrive", "actor": "w1"},  # not allowed from new
        {"cid": ids[2], "action": "accept", "actor": "w1", "now": at},
        {"cid": "nope", "action": "acknowledge", "actor": "op"},
    ])
    assert out[0].state == "acknowledged" and out[0].updated_at == pytest.approx(at, abs=1e-3)
    assert isinstance(out[1], IllegalTransition) and store.get(ids[1]).state == "new"
    assert out[2].state == "dispatched" and out[2].worker == "w1"
    assert isinstance(out[3], KeyError)
    got = store.get(ids[0])
    assert [h.action for h in got.history] == ["create", "acknowledge"]
    assert got.history[-1].ts == pytest.approx(at, abs=1e-3)
    assert store.verify_history(ids[0]) == (True, None)
    # the delivery of an accepted case is done (nothing pending in the grid's queue for it)
    assert all(p["case"] != ids[2] for p in store.pending("g-2"))


def test_lists_read_the_same_without_sort(store):
    """Where SORT ... GET is refused, the lists read ZREVRANGE then MGET and answer the same."""
    from alerts import Alert

    for i in range(30):
        store.ingest(Alert(kind="crowding" if i % 3 else "conflict", camera_id=f"cam-{i % 4}", camera_name="C",
                           grid_id=f"g-{i % 2}", zone_id=f"z{i}", ts=1000.0 + i, count=9, score=0.8, detail="d",
                           snapshot=None, lat=31.2, lon=121.4), 0)
    fallback = CaseStore(store.r, prefix=store.p)
    fallback._sort_ok = False
    for kw in ({"limit": 10}, {"grid": "g-1", "limit": 7}, {"sort": "priority", "limit": 12}, {"kind": "conflict"},
               {"camera": "cam-2", "limit": 3}, {"state": "new", "sort": "priority", "limit": 50}):
        a, b = store.list(**kw), fallback.list(**kw)
        assert store._sort_ok, "this server refused SORT: the comparison would be the fallback with itself"
        assert [c.id for c in a] == [c.id for c in b], kw
    assert [c.ts for c in store.list(limit=5)] == [1029.0, 1028.0, 1027.0, 1026.0, 1025.0]


def test_a_logout_counts_in_this_process_at_once_and_in_the_others_within_a_second(store, redis_url, tmp_path):
    """The revocation check is believed for SessionRevocations.CLEAR_S (1 s) without asking Redis again."""
    from conftest import TEST_PASSWORD, wait_for

    from api import create_app
    from gridwatch.accounts import AccountBook, SessionRevocations, hash_password
    from gridwatch.config import parse_config
    from gridwatch.harness import serving

    cfg = parse_config({"grids": [{"id": "g-1"}]})
    secret, pw_hash = b"k" * 32, hash_password(TEST_PASSWORD)
    from gridwatch.accounts import Account

    books = [AccountBook([Account(name="op", role="operator", password_hash=pw_hash)], secret) for _ in range(2)]
    apps = [create_app(cfg, store, redis_url, EvidenceStore(tmp_path / f"ev{i}"), accounts=b)
            for i, b in enumerate(books)]
    token = books[0].issue(books[0].get("op"))
    bearer = {"Authorization": f"Bearer {token}"}
    with serving(apps[0]) as one, serving(apps[1]) as two:
        assert httpx.get(f"{two}/api/auth/me", headers=bearer).status_code == 200  # now believed for a second
        assert httpx.post(f"{one}/api/auth/logout", headers=bearer).status_code == 204
        assert httpx.get(f"{one}/api/auth/me", headers=bearer).status_code == 401  # this process: at once
        t = time.monotonic()
        assert wait_for(lambda: httpx.get(f"{two}/api/auth/me", headers=bearer).status_code == 401, timeout=5)
        assert time.monotonic() - t <= SessionRevocations.CLEAR_S + 0.5
