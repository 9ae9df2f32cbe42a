"""The fleet with real parts: worker processes, the GStreamer RTSP server, Redis/Valkey, tooz (Redis and ZooKeeper).

Workers run through ``tests/fleet_worker.py``: ``gridwatch worker`` with the detector replaced by a standing crowd
(four people in every frame), except in the test marked "real detector". Nothing else is a double: the cameras are
RTSP streams, membership is tooz on a real server, alerts go through the real spool into the real case queue.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import yaml
from conftest import wait_for

from alerts import CaseStore
from gridwatch.config import load_config
from gridwatch.configsync import ConfigChannel
from gridwatch.harness import RtspServer, ZooKeeperServer
from gridwatch.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 3.0  # fleet.membership_timeout_s (the default)
pytestmark = pytest.mark.slow


class Fleet:
    """Worker subprocesses on one config; their stderr goes to files the test can read."""

    def __init__(self, tmp: Path, config: Path, redis_url: str, prefix: str = "gw"):
        self.tmp, self.config, self.redis_url = tmp, config, redis_url
        self.r = redis.Redis.from_url(redis_url)
        self.telemetry = Telemetry(self.r, prefix)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, capacity: int = 4, real_detector: bool = False) -> subprocess.Popen:
        env = {**os.environ, "REDIS_URL": self.redis_url, "GW_FAKE_DETECTOR": "0" if real_detector else "1",
               "PYTHONUNBUFFERED": "1"}
        log = open(self.tmp / f"{name}.log", "wb")
        p = subprocess.Popen([sys.executable, "-m", "tests.fleet_worker", "--config", str(self.config), "--name", name,
                              "--capacity", str(capacity)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = p
        return p

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def owners(self) -> dict[str, list[str]]:
        """camera -> every live worker that claims it (more than one would be a double owner)."""
        out: dict[str, list[str]] = {}
        for w in self.telemetry.workers():
            for cid in w["cameras"]:
                out.setdefault(cid, []).append(w["name"])
        return out

    def analysed_by(self, cid: str, worker: str) -> int:
        """Frames of ``cid`` the given worker analysed, as it last reported (0 if it does not report the camera)."""
        h = self.telemetry.cameras().get(cid, {})
        return h.get("frames_analysed", 0) if h.get("worker") == worker else 0

    def settled(self, cameras: list[str], workers: set[str]) -> bool:
        """Every camera has exactly one owner among ``workers``, and every one of those workers reports."""
        owners = self.owners()
        live = {w["name"] for w in self.telemetry.workers()}
        return live == workers and all(len(owners.get(c, [])) == 1 and owners[c][0] in workers for c in cameras)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                    p.terminate()
                except ProcessLookupError:
                    pass
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def write_config(path: Path, urls: dict[str, str], data_dir: Path, fleet: dict | None = None,
                 threshold: int = 3, imgsz: int | None = None) -> Path:
    doc = {"grids": [{"id": "g-1"}],
           "cameras": [{"id": cid, "url": url, "grid": "g-1", "lat": 31.2, "lon": 121.4, "fps": 2,
                        "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                                   "crowding": {"threshold": threshold, "hold_s": 1}}]}
                       for cid, url in urls.items()],
           "settings": {"data_dir": str(data_dir)}, "alerts": {"clip": {"enabled": False}, "cooldown_s": 600}}
    if fleet:
        doc["fleet"] = fleet
    if imgsz:
        doc["detector"] = {"imgsz": imgsz}
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def fleet_redis(valkey):
    """A clean database for one fleet (the fleet's keys use the default prefix, as in production): REDIS_URL's
    server when set, else the embedded Valkey (its unix socket: tooz's Redis driver takes it too). Once, not per
    server: each fleet test starts several worker processes."""
    base = os.environ.get("REDIS_URL") or valkey.url
    # a database of their own: the fleet's keys use the production prefix, and flushing must not touch other tests'
    parts = urlsplit(base)
    redis_url = urlunsplit(parts._replace(path="/14")) if parts.scheme.startswith("redis") else \
        urlunsplit(parts._replace(query="db=14"))
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield redis_url
    r.flushdb()


@pytest.fixture
def six_cameras(vtest, rtsp_ok):
    with RtspServer({f"s{i}": vtest for i in range(6)}, fps=10) as server:
        yield {f"cam-{i}": server.url(f"s{i}") for i in range(6)}


def open_cases(store: CaseStore, camera_id: str) -> list:
    return store.list(camera=camera_id, limit=500)


def test_three_workers_share_fail_over_fence_and_keep_one_case(six_cameras, fleet_redis, tmp_path):
    """Disjoint and complete ownership; kill -9 moves a worker's cameras within the timeout + 3 s; a frozen worker
    is replaced, and when it wakes it drops its cameras; a camera added by config starts on exactly one worker; a
    crowd that lasts through the failover is one case."""
    config = write_config(tmp_path / "gw.yaml", six_cameras, tmp_path / "var")
    fleet = Fleet(tmp_path, config, fleet_redis)
    cams = sorted(six_cameras)
    store = CaseStore(redis.Redis.from_url(fleet_redis))
    with ExitStack() as stack:
        stack.callback(fleet.stop)
        for name in ("w1", "w2", "w3"):
            fleet.start(name)
        assert wait_for(lambda: fleet.settled(cams, {"w1", "w2", "w3"}), 90), fleet.owners()
        # every camera is analysed, each by its one owner, and its standing crowd makes its case
        assert wait_for(lambda: all(fleet.analysed_by(c, fleet.owners().get(c, [""])[0]) > 0 for c in cams), 30)
        assert wait_for(lambda: all(len(open_cases(store, c)) == 1 for c in cams), 30)

        # kill -9 the worker with the most cameras
        owners = fleet.owners()
        victim = max(("w1", "w2", "w3"), key=lambda w: sum(o == [w] for o in owners.values()))
        moved = [c for c, o in owners.items() if o == [victim]]
        assert moved
        frames_before = {c: fleet.telemetry.cameras()[c]["frames_analysed"] for c in moved}
        t_kill = time.monotonic()
        fleet.procs[victim].kill()
        survivors = {"w1", "w2", "w3"} - {victim}

        def moved_and_analysed() -> bool:
            o = fleet.owners()
            return all(len(o.get(c, [])) == 1 and o[c][0] in survivors and fleet.analysed_by(c, o[c][0]) > 0
                       for c in moved)
        assert wait_for(moved_and_analysed, TIMEOUT_S + 3 + 10), fleet.owners()
        reowned_s = time.monotonic() - t_kill
        print(f"re-owned {len(moved)} cameras {reowned_s:.1f} s after kill -9 (frames before: {frames_before})")
        assert reowned_s <= TIMEOUT_S + 3 + 3, f"{reowned_s:.1f} s to re-own after kill -9"
        # the crowd went on through the failover: still one case per camera, now with a second incident
        time.sleep(3)
        for c in moved:
            cases = open_cases(store, c)
            assert len(cases) == 1, [x.id for x in cases]
        assert any((open_cases(store, c)[0].incidents or 1) >= 2 for c in moved)

        # SIGSTOP a survivor: the last one takes everything; SIGCONT: the stale one notices and drops its cameras
        frozen, other = sorted(survivors)
        fleet.procs[frozen].send_signal(signal.SIGSTOP)
        assert wait_for(lambda: fleet.settled(cams, {other}), TIMEOUT_S + 3 + 10), fleet.owners()
        time.sleep(1)
        fleet.procs[frozen].send_signal(signal.SIGCONT)
        assert wait_for(lambda: "dropping its cameras" in fleet.log(frozen), 10), fleet.log(frozen)[-2000:]
        # it rejoins and the ring shares the cameras again, each with exactly one owner
        def shared_again() -> bool:
            owners = fleet.owners()
            return fleet.settled(cams, {frozen, other}) and any(o == [frozen] for o in owners.values())
        assert wait_for(shared_again, 30), fleet.owners()
        report = next(w for w in fleet.telemetry.workers() if w["name"] == frozen)
        assert report["pipeline"]["fenced"] >= 1
        for c in cams:
            assert len(open_cases(store, c)) == 1, c

        # an admin adds a camera: exactly one worker starts it
        cfg = load_config(config)
        extra = write_config(tmp_path / "gw2.yaml", {**six_cameras, "cam-new": six_cameras["cam-0"]}, tmp_path / "var")
        ConfigChannel(fleet.r, "gw").publish(load_config(extra), actor="admin")
        assert wait_for(lambda: len(fleet.owners().get("cam-new", [])) == 1, 20), fleet.owners()
        owner = fleet.owners()["cam-new"][0]
        assert wait_for(lambda: fleet.analysed_by("cam-new", owner) > 0, 20)
        for _ in range(5):  # and stays with one owner
            assert len(fleet.owners().get("cam-new", [])) == 1
            time.sleep(0.5)
        assert len(cfg.cameras) == 6


def test_spool_of_a_dead_worker_is_delivered_by_the_next(six_cameras, fleet_redis, tmp_path):
    """A worker killed with alerts still in its spool (Redis was away): the next worker on the machine delivers them."""
    from alerts.spool import Spool

    config = write_config(tmp_path / "gw.yaml", {"cam-0": six_cameras["cam-0"]}, tmp_path / "var")
    spool_root = load_config(config).alerts.spool_dir
    # what a dead worker left: an alert spooled, never delivered, its lock released by its death
    dead = Spool(spool_root / "gw.dead-worker")
    alert = {"kind": "crowding", "camera_id": "cam-0", "camera_name": "cam-0", "grid_id": "g-1", "zone_id": "all",
             "ts": time.time() - 30, "count": 9, "score": 1.0, "detail": "spooled by a worker that died",
             "snapshot": None, "lat": 31.2, "lon": 121.4, "incident_id": "spooled-1", "seq": 0, "priority": 2,
             "level": "high", "phase": "start"}
    dead.append({"op": "alert", "alert": alert, "cooldown_s": 600})
    dead.close()
    fleet = Fleet(tmp_path, config, fleet_redis)
    store = CaseStore(redis.Redis.from_url(fleet_redis))
    with ExitStack() as stack:
        stack.callback(fleet.stop)
        fleet.start("w1")
        assert wait_for(lambda: any(c.id == "spooled-1" for c in store.list(limit=50)), 60), fleet.log("w1")[-2000:]
        assert wait_for(lambda: not (spool_root / "gw.dead-worker").exists(), 10)


def test_failover_with_the_real_detector(vtest, rtsp_ok, fleet_redis, tmp_path):
    """Two workers running yolov10n (at 320): the survivor analyses the dead worker's camera and sees its people."""
    with RtspServer({"a": vtest, "b": vtest}, fps=10) as server:
        urls = {"cam-a": server.url("a"), "cam-b": server.url("b")}
        config = write_config(tmp_path / "gw.yaml", urls, tmp_path / "var", threshold=50, imgsz=320)
        fleet = Fleet(tmp_path, config, fleet_redis)
        with ExitStack() as stack:
            stack.callback(fleet.stop)
            fleet.start("r1", real_detector=True)
            fleet.start("r2", real_detector=True)
            assert wait_for(lambda: fleet.settled(sorted(urls), {"r1", "r2"}), 120), fleet.owners()
            owners = fleet.owners()
            victim = owners["cam-a"][0]
            survivor = ({"r1", "r2"} - {victim}).pop()
            fleet.procs[victim].kill()
            assert wait_for(lambda: fleet.owners().get("cam-a") == [survivor]
                            and fleet.analysed_by("cam-a", survivor) > 0, TIMEOUT_S + 3 + 15), fleet.owners()
            # the real detector finds the people of vtest's street on the moved camera
            assert wait_for(lambda: fleet.telemetry.cameras()["cam-a"].get("zones", {}).get("all", 0) > 0, 20)


def test_membership_on_zookeeper(six_cameras, fleet_redis, zk_ok, tmp_path):
    """The same ownership and failover with tooz's ZooKeeper driver (a real ZooKeeper server)."""
    with ZooKeeperServer(tick_ms=500) as zk:
        cams = sorted(six_cameras)
        config = write_config(tmp_path / "gw.yaml", six_cameras, tmp_path / "var",
                              fleet={"url": zk.url, "membership_timeout_s": 3})
        fleet = Fleet(tmp_path, config, fleet_redis)
        with ExitStack() as stack:
            stack.callback(fleet.stop)
            fleet.start("z1")
            fleet.start("z2")
            assert wait_for(lambda: fleet.settled(cams, {"z1", "z2"}), 90), fleet.owners()
            fleet.procs["z1"].kill()
            t0 = time.monotonic()
            assert wait_for(lambda: fleet.settled(cams, {"z2"}) and
                            all(fleet.analysed_by(c, "z2") > 0 for c in cams), TIMEOUT_S + 3 + 15), fleet.owners()
            print(f"ZooKeeper: re-owned after kill -9 in {time.monotonic() - t0:.1f} s")


def test_assignment_is_balanced_consistent_and_the_same_everywhere():
    """Every member computes the same owners from the same members (in any order it saw them join); no worker gets
    more than 1.25x its fair share of 492 cameras; a join moves about 1/(N+1) of them; weights are honoured."""
    import random

    from tooz.hashring import HashRing

    from gridwatch.fleet import PARTITIONS, assign

    cams = [f"cam-{i:03d}" for i in range(492)]
    for n in (3, 8, 16):
        names = [f"worker-{i}".encode() for i in range(n)]
        rings = []
        for seed in (1, 2):
            ring = HashRing([], partitions=PARTITIONS)
            order = names[:]
            random.Random(seed).shuffle(order)
            for m in order:
                ring.add_node(m, 32)
            rings.append(ring)
        a, b = assign(rings[0], cams), assign(rings[1], reversed(cams))
        assert a == b and set(a) == set(cams)
        loads = {m: sum(v == m for v in a.values()) for m in names}
        assert max(loads.values()) / (len(cams) / n) <= 1.25, loads
        rings[0].add_node(b"joiner", 32)
        after = assign(rings[0], cams)
        moved = sum(after[c] != a[c] for c in cams) / len(cams)
        assert moved <= 1.5 / (n + 1), (n, moved)
    ring = HashRing([], partitions=PARTITIONS)
    ring.add_node(b"big", 64)
    ring.add_node(b"small", 16)
    share = sum(v == b"big" for v in assign(ring, cams).values()) / len(cams)
    assert 0.7 <= share <= 0.9, share  # capacity 64 against 16: about 80 %


def test_coordination_urls_and_their_errors():
    """gridwatch's Redis URLs become tooz's (database and timeouts in the query); bad settings name the field."""
    from urllib.parse import parse_qs, urlsplit

    from gridwatch.config import FleetConfig, parse_config
    from gridwatch.fleet import tooz_url

    fleet = FleetConfig()
    u = urlsplit(tooz_url("redis://:s3cret@10.0.0.5:6380/3", fleet))
    q = parse_qs(u.query)
    assert (u.scheme, u.hostname, u.port, u.password) == ("redis", "10.0.0.5", 6380, "s3cret")
    assert q["db"] == ["3"] and q["membership_timeout"] == ["3"] and int(q["timeout"][0]) < 3
    assert parse_qs(urlsplit(tooz_url("rediss://h:6379/0", fleet)).query)["ssl"] == ["true"]
    sock = urlsplit(tooz_url("unix:///var/lib/gw/valkey.sock", fleet))
    assert sock.scheme == "redis" and sock.hostname is None and sock.path == "/var/lib/gw/valkey.sock"
    zk = urlsplit(tooz_url("zookeeper://127.0.0.1:2181", fleet))
    assert zk.scheme == "zookeeper" and parse_qs(zk.query)["timeout"] == ["3"]
    with pytest.raises(ValueError, match="fleet.url"):
        tooz_url("http://h:80", fleet)
    base = {"grids": [{"id": "g"}]}
    for bad, field in (({"url": "etcd://h:2379"}, "fleet.url"), ({"heartbeat_s": 2, "membership_timeout_s": 3},
                                                                   "heartbeat_s")):
        with pytest.raises(Exception, match=field.split(".")[-1]):
            parse_config({**base, "fleet": bad})
