"""A generated district at the centre's scale: 600 grids, 492 cameras, their cases and history.

The monitoring room's real numbers (issue 15) are one district cut into 600 grids with 492 cameras; the demo's two
grids say nothing about whether the console and the API hold that. This module makes such a district, the same
every time for a seed:

* **The district** (grid ``d``): an irregular convex outline around People's Square, Shanghai (31.23 N,
  121.47 E), about 7 x 6 km.
* **The cut.** A lattice of 29 x 27 cells over the district, its inner corners jittered (so grids are uneven
  quadrilaterals, as streets are), each cell clipped to the district outline (Sutherland-Hodgman; the outline is
  convex). Cells with less than a quarter of a full cell inside the outline are left out: the border keeps a few
  slivers of the district that are nobody's grid, as real cuts do along a river.
* **Streets** (``s01`` ... ): blocks of 5 x 5 cells, 30 of them, are the street-level grids (parents). A
  street's outline is its block's jittered ring clipped to the district.
* **The re-cut.** The centre re-cut its 680 grids into 600: quiet blocks were merged into whole lattice cells,
  and busy cells (near the hot spots: a station, a market, the square) were split, some in two (along their
  longer midline), some in four (midpoints and centre). Here, the lattice gives L cells (503 for seed 7); the
  busiest cells are split until the leaves are exactly ``LEAVES`` (600): L + (split in two) + 3 x (split in
  four) = 600 (seed 7: 503 + 73 + 3 x 8; 712 grids in all). A split
  cell is the parent grid of its sub-grids (``s03-c12`` -> ``s03-c12a``, ``s03-c12b`` ...); every other cell is
  itself a leaf.
* **Cameras** (492): placed in leaf grids with a weight that falls off from the hot spots (busy areas are dense,
  many quiet grids have none), each at a random point inside its grid's outline, with one zone and a crowding
  rule; those near the hot spots also watch for fights (conflict at 5 fps). ``url`` comes from ``clips`` round
  robin (RTSP URLs or video files), or ``rtsp://127.0.0.1:8554/cam-N`` placeholders that nothing opens unless
  asked.

``seed_cases`` fills a ``CaseStore`` with the district's history through the store's own writes: alerts ingested
over the last days (``CaseStore.ingest_many``, each the real INGEST script with the time it was received), then
taken through the lifecycle (acknowledge, dispatch or a worker's accept, arrive, resolve, close) with
``CaseStore.transition_many``, each step at its own time, so the audit logs, feedback counters and indexes are
the real ones.

    python -m gridwatch.district --data-dir var/district [--redis URL] [--prefix gw] [--write-config PATH]
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

from gridwatch.config import GridwatchConfig, parse_config

CENTRE = (121.4737, 31.2304)  # lon, lat: People's Square
LEAVES = 600
CAMERAS = 492
NX, NY = 29, 27  # lattice cells over the district's bounding box
BLOCK = (5, 5)  # cells per street block (x, y)
HALF_W, HALF_H = 0.037, 0.027  # the bounding box's half size in degrees (about 7 x 6 km)
HOT_SPOTS = [((-0.012, 0.006), 0.010, 1.0), ((0.014, -0.008), 0.008, 0.8), ((0.004, 0.015), 0.007, 0.6)]
STREETS = ["Nanjing Rd", "Fuzhou Rd", "Hankou Rd", "Jiujiang Rd", "Tianjin Rd", "Ningbo Rd", "Xizang Rd",
           "Yunnan Rd", "Guangxi Rd", "Zhejiang Rd", "Fujian Rd", "Shanxi Rd", "Jiangxi Rd", "Henan Rd",
           "Sichuan Rd", "Huangpi Rd", "Chengdu Rd", "Weihai Rd", "Yan'an Rd", "Jinling Rd", "Renmin Rd",
           "Zhongshan Rd", "Beijing Rd", "Guangdong Rd", "Wuning Rd", "Changle Rd", "Julu Rd", "Xinzha Rd",
           "Datian Rd", "Shimen Rd", "Taixing Rd", "Maoming Rd", "Ruijin Rd", "Shaanxi Rd", "Huaihai Rd",
           "Fuxing Rd"]
PLACES = ["gate", "crossing", "plaza", "market", "station exit", "school gate", "bus stop", "park entrance",
          "mall entrance", "alley", "metro exit", "square"]
WORKERS_PER_STREET = 3


# ---- geometry (lon, lat as plane coordinates: the district is small) ----------------------------------------------
def _area(ring: list[tuple[float, float]]) -> float:
    """Signed area (shoelace) of an open ring."""
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]))


def _left_of(a, b, p) -> bool:
    """``p`` is on the left of (or on) the line a -> b."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) >= 0


def _crossing(a, b, p, q) -> tuple[float, float]:
    """Where the segment p -> q crosses the line a -> b."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    ex, ey = b[0] - a[0], b[1] - a[1]
    t = (ex * (p[1] - a[1]) - ey * (p[0] - a[0])) / (ey * dx - ex * dy)
    return (p[0] + t * dx, p[1] + t * dy)


def _clip(subject: list[tuple[float, float]], clip: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sutherland-Hodgman: ``subject`` (open ring) inside the convex, counter-clockwise ``clip`` (open ring)."""
    out = list(subject)
    for a, b in zip(clip, clip[1:] + clip[:1]):
        if not out:
            break
        inp, out = out, []
        for i, q in enumerate(inp):
            p = inp[i - 1]
            if _left_of(a, b, q):
                if not _left_of(a, b, p):
                    out.append(_crossing(a, b, p, q))
                out.append(q)
            elif _left_of(a, b, p):
                out.append(_crossing(a, b, p, q))
    return out


def point_in_ring(pt: tuple[float, float], ring) -> bool:
    """Even-odd rule; ``ring`` open or closed."""
    x, y = pt
    inside = False
    n = len(ring)
    for i in range(n):
        (x0, y0), (x1, y1) = ring[i - 1], ring[i]
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _district_outline(rng: random.Random) -> list[tuple[float, float]]:
    """An irregular convex polygon (counter-clockwise): 13 corners at varied radii, their convex hull."""
    pts = []
    for i in range(13):
        a = 2 * math.pi * (i + rng.uniform(-0.3, 0.3)) / 13
        r = rng.uniform(0.86, 1.0)
        pts.append((HALF_W * r * math.cos(a), HALF_H * r * math.sin(a)))
    return _hull(pts)


def _hull(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Andrew's monotone chain, counter-clockwise."""
    pts = sorted(set(pts))

    def half(seq):
        h: list = []
        for p in seq:
            while len(h) >= 2 and ((h[-1][0] - h[-2][0]) * (p[1] - h[-2][1])
                                   - (h[-1][1] - h[-2][1]) * (p[0] - h[-2][0])) <= 0:
                h.pop()
            h.append(p)
        return h
    lower, upper = half(pts), half(reversed(pts))
    return lower[:-1] + upper[:-1]


def _geo(ring: list[tuple[float, float]]) -> dict:
    """A GeoJSON Polygon of an open ring in district-relative degrees: absolute [lon, lat], counter-clockwise
    (RFC 7946's outer ring), closed, rounded to ~1 m."""
    ring = ring if _area(ring) > 0 else ring[::-1]
    pos = [[round(CENTRE[0] + x, 6), round(CENTRE[1] + y, 6)] for x, y in ring]
    dedup = [p for i, p in enumerate(pos) if p != pos[i - 1]] or pos
    return {"type": "Polygon", "coordinates": [dedup + [dedup[0]]]}


def _heat(x: float, y: float) -> float:
    return sum(w * math.exp(-((x - hx) ** 2 + (y - hy) ** 2) / (2 * s * s)) for (hx, hy), s, w in HOT_SPOTS)


# ---- the config --------------------------------------------------------------------------------------------------
def district_data(clips: list[str] | None = None, seed: int = 7) -> dict:
    """The district's config as written (a dict ``parse_config`` takes), without settings; see the module doc."""
    rng = random.Random(seed)
    outline = _district_outline(rng)
    x0, y0, dx, dy = -HALF_W, -HALF_H, 2 * HALF_W / NX, 2 * HALF_H / NY
    corner = {}
    for i in range(NX + 1):
        for j in range(NY + 1):
            jx = rng.uniform(-0.22, 0.22) * dx if 0 < i < NX else 0.0
            jy = rng.uniform(-0.22, 0.22) * dy if 0 < j < NY else 0.0
            corner[i, j] = (x0 + i * dx + jx, y0 + j * dy + jy)
    full = dx * dy
    cells = {}  # (i, j) -> clipped open ring
    for i in range(NX):
        for j in range(NY):
            quad = [corner[i, j], corner[i + 1, j], corner[i + 1, j + 1], corner[i, j + 1]]
            ring = _clip(quad, outline)
            if len(ring) >= 3 and _area(ring) >= 0.25 * full:
                cells[i, j] = ring
    # streets: blocks of cells
    bx, by = BLOCK
    blocks = sorted({(i // bx, j // by) for i, j in cells}, key=lambda b: (-b[1], b[0]))  # north-west first
    street_of = {b: f"s{n + 1:02d}" for n, b in enumerate(blocks)}
    grids = [{"id": "d", "name": "Huangpu district (generated)", "outline": _geo(outline)}]
    for n, b in enumerate(blocks):
        i0, j0 = b[0] * bx, b[1] * by
        i1, j1 = min(i0 + bx, NX), min(j0 + by, NY)
        ring = ([corner[i, j0] for i in range(i0, i1)] + [corner[i1, j] for j in range(j0, j1)]
                + [corner[i, j1] for i in range(i1, i0, -1)] + [corner[i0, j] for j in range(j1, j0, -1)])
        grids.append({"id": street_of[b], "name": STREETS[n % len(STREETS)], "parent": "d",
                      "outline": _geo(_clip(ring, outline))})
    # the re-cut: split the busiest inner cells until there are LEAVES leaves
    inner = [c for c, ring in cells.items() if abs(_area(ring) - _area(
        [corner[c], corner[c[0] + 1, c[1]], corner[c[0] + 1, c[1] + 1], corner[c[0], c[1] + 1]])) < 1e-12]
    centre = {c: (sum(p[0] for p in r) / len(r), sum(p[1] for p in r) / len(r)) for c, r in cells.items()}
    busiest = sorted(inner, key=lambda c: -_heat(*centre[c]))
    extra = LEAVES - len(cells)
    if extra < 0 or extra > 3 * len(busiest):
        raise ValueError(f"the lattice gives {len(cells)} cells; cannot make {LEAVES} leaves from them")
    fours = min(extra // 3 // 4, len(busiest))  # about a quarter of the extra leaves from cells cut in four
    twos = extra - 3 * fours
    while twos + fours > len(busiest):
        fours, twos = fours + 1, twos - 3
    split = {c: 4 for c in busiest[:fours]} | {c: 2 for c in busiest[fours:fours + twos]}
    leaves: list[tuple[str, str, list]] = []  # (grid id, street, open ring)
    numbered: dict[str, int] = {}
    for (i, j) in sorted(cells, key=lambda c: (-c[1], c[0])):
        street = street_of[i // bx, j // by]
        numbered[street] = numbered.get(street, 0) + 1
        gid = f"{street}-c{numbered[street]:02d}"
        sname = next(g["name"] for g in grids if g["id"] == street)
        name = f"{sname} {numbered[street]}"
        grids.append({"id": gid, "name": name, "parent": street, "outline": _geo(cells[i, j])})
        parts = split.get((i, j))
        if not parts:
            leaves.append((gid, street, cells[i, j]))
            continue
        a, b, c, d = corner[i, j], corner[i + 1, j], corner[i + 1, j + 1], corner[i, j + 1]

        def mid(p, q):
            return ((p[0] + q[0]) / 2, (p[1] + q[1]) / 2)
        if parts == 2:
            if math.dist(a, b) >= math.dist(b, c):  # cut across the longer side
                subs = [[a, mid(a, b), mid(d, c), d], [mid(a, b), b, c, mid(d, c)]]
            else:
                subs = [[a, b, mid(b, c), mid(a, d)], [mid(a, d), mid(b, c), c, d]]
        else:
            m = mid(mid(a, c), mid(b, d))
            subs = [[a, mid(a, b), m, mid(a, d)], [mid(a, b), b, mid(b, c), m],
                    [m, mid(b, c), c, mid(c, d)], [mid(a, d), m, mid(c, d), d]]
        for k, sub in enumerate(subs):
            sid = f"{gid}{'abcd'[k]}"
            grids.append({"id": sid, "name": f"{name}{'abcd'[k]}", "parent": gid, "outline": _geo(sub)})
            leaves.append((sid, street, sub))
    assert len(leaves) == LEAVES, len(leaves)
    # cameras: weighted by heat (and a little everywhere), at random points inside their leaf
    weights = [0.08 + _heat(*_centroid(r)) for _, _, r in leaves]
    cams = []
    per_leaf: dict[str, int] = {}
    for n in range(CAMERAS):
        k = rng.choices(range(len(leaves)), weights)[0]
        gid, street, ring = leaves[k]
        geo = next(g for g in grids if g["id"] == gid)["outline"]["coordinates"][0]
        lon, lat = _inside(rng, geo)
        per_leaf[gid] = per_leaf.get(gid, 0) + 1
        hot = _heat(lon - CENTRE[0], lat - CENTRE[1]) > 0.8 and rng.random() < 0.35
        place = PLACES[rng.randrange(len(PLACES))]
        zone = {"id": "z1", "name": place, "polygon": [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]],
                "crowding": {"threshold": rng.choice((6, 8, 10, 12, 15, 20, 25, 30)), "hold_s": 10}}
        if hot:
            zone["conflict"] = {"enabled": True}
        url = clips[n % len(clips)] if clips else f"rtsp://127.0.0.1:8554/cam-{n + 1}"
        cams.append({"id": f"cam-{n + 1:03d}", "name": f"{_name_of(grids, gid)} {place} {per_leaf[gid]}",
                     "url": url, "grid": gid, "lat": lat, "lon": lon, "fps": 5.0 if hot else 1.0, "zones": [zone]})
    return {"grids": grids, "cameras": cams}


def _centroid(ring) -> tuple[float, float]:
    return (sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring))


def _name_of(grids: list[dict], gid: str) -> str:
    return next(g["name"] for g in grids if g["id"] == gid)


def _inside(rng: random.Random, ring: list[list[float]]) -> tuple[float, float]:
    """A random point strictly inside ``ring`` (absolute, closed), rounded to ~1 m and still inside."""
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    for _ in range(10000):
        pt = (round(rng.uniform(min(xs), max(xs)), 6), round(rng.uniform(min(ys), max(ys)), 6))
        if point_in_ring(pt, ring):
            return pt  # (lon, lat)
    raise RuntimeError("no point found inside a grid")  # cannot happen for a grid of any area


def district_config(data_dir: Path, clips: list[str] | None = None, seed: int = 7) -> GridwatchConfig:
    """The district as a resolved config (``settings.data_dir`` = ``data_dir``); see the module doc.

    ``clips``: camera URLs, round robin (RTSP URLs or video files: their folders become ``settings.media_dirs``);
    None: ``rtsp://127.0.0.1:8554/cam-N`` placeholders.
    """
    from gridwatch.demo import footage_dirs

    data = district_data(clips, seed)
    data["alerts"] = {"cooldown_s": 60}
    data["detector"] = {"max_batch": 8}
    data["settings"] = {"data_dir": str(data_dir),
                        "media_dirs": footage_dirs({str(i): u for i, u in enumerate(clips or [])})}
    return parse_config(data, "<district>").resolve_paths(Path(data_dir))


def leaf_grids(cfg: GridwatchConfig) -> list[str]:
    """The grids no other grid names as its parent: where cameras and cases are."""
    parents = {g.parent for g in cfg.grids if g.parent}
    return [g.id for g in cfg.grids if g.id not in parents]


def workers_of(cfg: GridwatchConfig) -> dict[str, list[str]]:
    """Grid workers per street (``w-s01-1`` ...): who is sent to the street's cases."""
    return {g.id: [f"w-{g.id}-{n}" for n in range(1, WORKERS_PER_STREET + 1)]
            for g in cfg.grids if g.parent is not None and g.parent == _top(cfg)}


def _top(cfg: GridwatchConfig) -> str:
    return next(g.id for g in cfg.grids if g.parent is None)


# ---- the cases ---------------------------------------------------------------------------------------------------
OPEN_STATES = ("new", "acknowledged", "dispatched", "on_site", "resolved")
OPEN_MIX = (0.45, 0.2, 0.15, 0.1, 0.1)  # of the open cases: most are new, the backlog of a busy room
VERDICT_MIX = (("confirmed", 0.55), ("false_alarm", 0.35), ("not_found", 0.10))
STEPS = ("acknowledge", "dispatch", "arrive", "resolve", "close")  # in order; "dispatch" may be a worker's accept


def seed_cases(store, cfg: GridwatchConfig, open_cases: int = 2000, closed_cases: int = 3000, seed: int = 7,
               now: float | None = None, days: float = 7.0, batch: int = 500) -> dict:
    """The district's case history in ``store``: ``open_cases`` not closed and ``closed_cases`` closed.

    Every alert goes through the store's INGEST (pipelined, ``batch`` at a time) with the time it was received;
    then each case is taken through its lifecycle with ``CaseStore.transition_many``, each step at its own time
    (minutes apart, as a room works). Closed cases happened over the last ``days`` days; open ones over the last
    two days, most of them recent; a step that would lie in the future is not taken. Deadlines follow from those
    times, so a running escalator escalates the backlog (as it would). Returns the counts.
    """
    from alerts.cases import Alert, priority_of

    t_start = time.perf_counter()
    rng = random.Random(seed * 7919 + 1)
    now = time.time() if now is None else now
    cams = [c for c in cfg.cameras if c.enabled]
    if not cams:
        raise ValueError("the config has no cameras to raise alerts")
    parent = {g.id: g.parent for g in cfg.grids}
    top = _top(cfg)

    def street(gid: str) -> str:
        while parent.get(gid) not in (top, None):
            gid = parent[gid]
        return gid
    workers = workers_of(cfg)
    heat = [0.1 + _heat(c.lon - CENTRE[0], c.lat - CENTRE[1]) for c in cams]
    plans = []  # (alert, received, [(action, at, extra)])
    seen: set[tuple[str, int]] = set()
    for n in range(open_cases + closed_cases):
        closed = n >= open_cases
        cam = rng.choices(cams, heat)[0]
        if closed:
            ts = now - rng.uniform(3 * 3600, days * 86400)
        else:
            ts = now - min(rng.expovariate(1 / 5400), 2 * 86400)  # mean 1.5 h ago, none older than two days
        ms = int(ts * 1000)
        while (cam.id, ms) in seen:
            ms += 1
        seen.add((cam.id, ms))
        ts = ms / 1000
        zone = cam.zones[0] if cam.zones else None
        conflict = bool(zone and zone.conflict.enabled and rng.random() < 0.3)
        threshold = getattr(zone.crowding, "threshold", None) if zone and zone.crowding else None
        threshold = threshold or 10
        count = rng.randint(2, 6) if conflict else int(threshold * rng.choice((1.0, 1.1, 1.3, 1.6, 2.2)))
        prio, level = priority_of(alert_kind := "conflict" if conflict else "crowding", count, threshold)
        alert = Alert(kind=alert_kind, camera_id=cam.id, camera_name=cam.name,
                      grid_id=cam.grid, zone_id=zone.id if zone else "z1", ts=ts, count=count,
                      score=round(rng.uniform(0.55, 0.98), 3),
                      detail=(f"fight: {count} people" if conflict else f"{count} people (threshold {threshold})"),
                      snapshot=None, lat=cam.lat, lon=cam.lon, priority=prio, level=level)
        received = ts + rng.uniform(0.5, 3.0)
        target = "closed" if closed else rng.choices(OPEN_STATES, OPEN_MIX)[0]
        steps_needed = {"new": 0, "acknowledged": 1, "dispatched": 2, "on_site": 3, "resolved": 4, "closed": 5}[target]
        st = street(cam.grid)
        worker = rng.choice(workers.get(st) or [f"w-{st}-1"])
        operator = f"op-{rng.randint(1, 6)}"
        verdict = rng.choices([v for v, _ in VERDICT_MIX], [w for _, w in VERDICT_MIX])[0]
        by_worker = rng.random() < 0.3  # the worker took it from the grid's queue and accepted it
        t = received
        steps = []
        gaps = {"acknowledge": (20, 240), "dispatch": (30, 600), "arrive": (120, 1200), "resolve": (60, 1800),
                "close": (30, 3600)}
        for action in STEPS[:steps_needed]:
            t += rng.uniform(*gaps[action])
            if t >= now:
                break
            if action == "acknowledge":
                if by_worker:
                    continue
                steps.append(("acknowledge", t, {"actor": operator}))
            elif action == "dispatch":
                if by_worker:
                    steps.append(("accept", t, {"actor": worker}))
                else:
                    steps.append(("dispatch", t, {"actor": operator, "worker": worker}))
            elif action == "arrive":
                steps.append(("arrive", t, {"actor": worker}))
            elif action == "resolve":
                note = {"confirmed": "crowd dispersed", "false_alarm": "queue at a stall, normal",
                        "not_found": "nobody there on arrival"}[verdict]
                steps.append(("resolve", t, {"actor": worker, "verdict": verdict, "note": note}))
            else:
                steps.append(("close", t, {"actor": operator}))
        plans.append((alert, received, steps))

    plans.sort(key=lambda p: p[1])
    created = statuses = 0
    ids: list[str | None] = []
    for i in range(0, len(plans), batch):
        chunk = plans[i:i + batch]
        got = store.ingest_many([a for a, _, _ in chunk], 0, now=[r for _, r, _ in chunk])
        for status, cid in got:
            statuses += 1
            created += status == "created"
            ids.append(cid if status == "created" else None)
    transitions, failed = 0, 0
    depth = max((len(s) for _, _, s in plans), default=0)
    for k in range(depth):  # the k-th step of every case, in batches: one case appears once per round
        round_ = [{"cid": cid, "action": steps[k][0], "now": steps[k][1], **steps[k][2]}
                  for cid, (_, _, steps) in zip(ids, plans) if cid is not None and len(steps) > k]
        for i in range(0, len(round_), batch):
            for res in store.transition_many(round_[i:i + batch]):
                transitions += 1
                failed += isinstance(res, Exception)
    states: dict[str, int] = {}
    for cid, (_, _, steps) in zip(ids, plans):
        if cid is None:
            continue
        s = {"acknowledge": "acknowledged", "dispatch": "dispatched", "accept": "dispatched", "arrive": "on_site",
             "resolve": "resolved", "close": "closed"}[steps[-1][0]] if steps else "new"
        states[s] = states.get(s, 0) + 1
    return {"alerts": statuses, "created": created, "open": sum(v for s, v in states.items() if s != "closed"),
            "closed": states.get("closed", 0), "states": states, "transitions": transitions,
            "failed_transitions": failed, "seconds": round(time.perf_counter() - t_start, 2)}


# ---- the command -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gridwatch.district", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="var/district", help="the config's data directory (and the embedded "
                                                                "Valkey's, without --redis)")
    ap.add_argument("--redis", help="redis://... (default: REDIS_URL, else an embedded Valkey in the data dir)")
    ap.add_argument("--prefix", default="gw", help="key prefix of the case store")
    ap.add_argument("--write-config", type=Path, help="write the district's config (YAML) here")
    ap.add_argument("--open", type=int, default=2000, help="open cases (default 2000)")
    ap.add_argument("--closed", type=int, default=3000, help="closed cases (default 3000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--clip", action="append", default=None, help="camera URL or video file (repeat; round robin)")
    ap.add_argument("--no-cases", action="store_true", help="only the config")
    args = ap.parse_args(argv)

    import json
    import os

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = district_config(data_dir, args.clip, args.seed)
    leaves = leaf_grids(cfg)
    print(f"district: {len(cfg.grids)} grids ({len(leaves)} leaves), {len(cfg.cameras)} cameras")
    if args.write_config:
        from gridwatch.config import save_config

        save_config(cfg, args.write_config)
        print(f"config written to {args.write_config}")
    if args.no_cases:
        return 0
    import redis

    from alerts import CaseStore, EmbeddedValkey

    url, valkey = args.redis or os.environ.get("REDIS_URL"), None
    if not url:
        valkey = EmbeddedValkey(data_dir / "valkey").start()
        url = valkey.url
    try:
        store = CaseStore(redis.Redis.from_url(url), prefix=args.prefix, policy=cfg.alerts)
        counts = seed_cases(store, cfg, args.open, args.closed, args.seed)
        print(json.dumps(counts))
    finally:
        if valkey is not None:
            valkey.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
