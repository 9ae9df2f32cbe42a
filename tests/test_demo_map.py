"""The demo's map (issue 15, item 3): its grids have outlines, the district around its two grids, each camera inside
its grid, and the console's map answer (GET /api/map) carries them."""
from __future__ import annotations

import httpx
import pytest
from conftest import authorize

from gridwatch.demo import demo_config

URLS = {"plaza": "rtsp://127.0.0.1:8554/plaza", "street": "rtsp://127.0.0.1:8554/street"}


def inside(point: tuple[float, float], ring) -> bool:
    """Ray casting: ``point`` ([lon, lat]) strictly inside the closed ring."""
    x, y = point
    hit = False
    for (x0, y0), (x1, y1) in zip(ring, ring[1:]):
        if (y0 > y) != (y1 > y) and x < (x1 - x0) * (y - y0) / (y1 - y0) + x0:
            hit = not hit
    return hit


def area(ring) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:]))


@pytest.fixture
def cfg(tmp_path):
    return demo_config(URLS, tmp_path)


def test_every_demo_grid_has_a_closed_outline_of_real_size(cfg):
    assert [g.id for g in cfg.grids] == ["g-01", "g-0101", "g-0102"]
    for g in cfg.grids:
        assert g.outline is not None, g.id
        ring = g.outline.coordinates[0]
        assert len(ring) >= 5 and tuple(ring[0]) == tuple(ring[-1]), g.id  # a polygon, closed
        for lon, lat in ring:  # [lon, lat], by People's Square in Shanghai, not [lat, lon]
            assert 121.4 < lon < 121.55 and 31.2 < lat < 31.26, (g.id, lon, lat)
        # a few hundred metres across: 1e-3 degree is about 100 m here
        lons, lats = [p[0] for p in ring], [p[1] for p in ring]
        assert 0.002 < max(lons) - min(lons) < 0.02 and 0.002 < max(lats) - min(lats) < 0.02, g.id
        assert abs(area(ring)) > 0


def test_the_district_holds_its_grids_and_each_camera_stands_in_its_grid(cfg):
    outline = {g.id: g.outline.coordinates[0] for g in cfg.grids}
    for sub in ("g-0101", "g-0102"):
        assert all(inside(tuple(p), outline["g-01"]) for p in outline[sub][:-1]), sub
    # the two grids share the street between them and do not overlap: no corner of one (but the shared ones) lies
    # inside the other
    campus, market = ({tuple(p) for p in outline[s][:-1]} for s in ("g-0101", "g-0102"))
    assert len(campus & market) == 2
    assert not any(inside(p, outline["g-0102"]) for p in campus - market)
    assert not any(inside(p, outline["g-0101"]) for p in market - campus)
    assert sum(abs(area(outline[s])) for s in ("g-0101", "g-0102")) < abs(area(outline["g-01"]))
    assert {c.id: c.grid for c in cfg.cameras} == {"cam-plaza": "g-0101", "cam-street": "g-0102"}
    for cam in cfg.cameras:
        assert inside((cam.lon, cam.lat), outline[cam.grid]), cam.id
        assert inside((cam.lon, cam.lat), outline["g-01"]), cam.id
        other = "g-0102" if cam.grid == "g-0101" else "g-0101"
        assert not inside((cam.lon, cam.lat), outline[other]), cam.id


def test_the_map_answer_carries_the_outlines_and_the_cameras(cfg, store, redis_url, tmp_path):
    from alerts import EvidenceStore
    from api import create_app
    from gridwatch.harness import serving

    app = create_app(cfg, store, redis_url, EvidenceStore(tmp_path / "evidence"))
    with serving(app) as base_url:
        got = httpx.get(f"{base_url}/api/map", headers=authorize(app, "op"), timeout=10)
        assert got.status_code == 200
        body = got.json()
        grids = {g["id"]: g for g in body["grids"]}
        assert set(grids) == {"g-01", "g-0101", "g-0102"}
        for g in cfg.grids:
            assert grids[g.id]["outline"]["type"] == "Polygon"
            assert grids[g.id]["outline"]["coordinates"] == [[list(p) for p in g.outline.coordinates[0]]]
        assert grids["g-0101"]["parent"] == "g-01"
        cams = {c["id"]: c for c in body["cameras"]}
        assert set(cams) == {"cam-plaza", "cam-street"}
        for cam in cfg.cameras:
            assert (cams[cam.id]["lat"], cams[cam.id]["lon"], cams[cam.id]["grid"]) == (cam.lat, cam.lon, cam.grid)
            assert inside((cams[cam.id]["lon"], cams[cam.id]["lat"]), grids[cam.grid]["outline"]["coordinates"][0])

        # the demo's worker, bound to both grids, sees both and the district's outline is not theirs to see
        w = httpx.get(f"{base_url}/api/map", headers=authorize(app, "worker", role="grid_worker",
                                                                grids=["g-0101", "g-0102"]), timeout=10).json()
        assert {g["id"] for g in w["grids"]} == {"g-0101", "g-0102"}
        assert all(g["outline"] for g in w["grids"])
