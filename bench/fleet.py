"""Fleet benchmark: failover, balance and capacity of ``gridwatch worker`` processes sharing cameras (issue 13).

Three parts, each in its own section of the result:

* ``ring``: the assignment alone, computed offline as every worker computes it: tooz's hash ring
  (``tooz.hashring.HashRing`` with ``gridwatch.fleet.PARTITIONS`` points per unit of weight, cameras hashed as tooz's
  ``Partitioner`` hashes them) and, where ``gridwatch.fleet`` has it, its bounded-load ``assign`` on that ring: the
  fraction of 492 cameras that move when one worker joins a fleet of N (1 ... 16), and the most-loaded worker's share
  over the fair share for 492 cameras over 8 and 16 workers, for the names ``w1`` ... ``wN`` and over random name sets
  (names decide the ring). When the plain ring's imbalance is above 1.25 other PARTITIONS values are tried.
* ``live``: real worker processes (``python -m bench.fleet worker``: ``gridwatch worker`` with the detector replaced
  by a double that sees the same standing crowd in every frame), real RTSP (GStreamer, passthrough of small H.264
  clips), real Redis, tooz and spools. Workers are killed with SIGKILL one after another; for each camera of the
  killed worker the benchmark polls (20 Hz) the live-view overlay the new owner writes for every analysed frame (the
  newest of ``gw:overlays:<camera>``, whose ``ts`` is the analysed frame's arrival time) and takes the re-own time
  as the first frame analysed after the kill. The killed worker is then started again under its name (a join): the
  cameras that moved are counted and compared with what the ring predicts. At the end every camera must have exactly
  one open crowding case (the double's crowd stands on every camera, so each camera raised alerts): cameras with
  none are lost alerts, extra open cases of one camera zone are duplicates.
* ``capacity``: ONE worker with the REAL detector (the config's default: yolov10n, OpenVINO on this CPU) and RTSP
  cameras of real footage analysed at 2 fps; cameras are added (published config, no restart) until the analysed
  rate per camera falls below 1.8 fps or latency p95 explodes. Host CPU per analysed frame: the worker process's CPU
  time, the readers' decode CPU (``decode_cpu_s``) and the inference stages' p50 (per batch and per frame).

    python -m bench.fleet --quick     # 4-5 minutes on the shared 2-core VM; last line: JSON; fleet_quick.json
    python -m bench.fleet             # the centre: 492 cameras over 8 workers (double detector), kills and joins,
                                      # and a finer capacity sweep; bench/results/fleet_full.json (needs 8+ cores:
                                      # on 2 cores use --cameras 128)
    python -m bench.fleet --skip capacity --merge ...   # one part; the others stay in the result file
    python -m bench.fleet worker --config F --name N --capacity C   # one worker (GW_BENCH_PEOPLE=n: the double)

Redis: ``REDIS_URL`` (default ``redis://127.0.0.1:6379/7``); the benchmark FLUSHES that database, so never point it
at a database that holds anything.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "var" / "bench-fleet"
RESULTS = ROOT / "bench" / "results"
DEFAULT_REDIS = "redis://127.0.0.1:6379/7"
PREFIX = "gw"  # what `gridwatch worker` uses


# --------------------------------------------------------------------------------------------------------------------
# the worker process


def run_worker(argv: list[str]) -> int:
    """``gridwatch worker ARGS``; with ``GW_BENCH_PEOPLE`` set, the detector is the double."""
    from gridwatch.cli import main
    from gridwatch.harness.doubles import StandingCrowd

    if os.environ.get("GW_BENCH_PEOPLE"):
        StandingCrowd.replacing_the_detector(int(os.environ["GW_BENCH_PEOPLE"]))
    try:
        return main(["worker", *argv])
    except KeyboardInterrupt:  # SIGINT: the with-block has left the fleet and retired the worker's record
        return 0


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan workers


class Worker:
    """One ``python -m bench.fleet worker`` subprocess."""

    def __init__(self, name: str, config: Path, capacity: int, redis_url: str, people: int | None, logs: Path):
        self.name, self.config, self.capacity = name, config, capacity
        self.redis_url, self.people, self.logs = redis_url, people, logs
        self.proc: subprocess.Popen | None = None
        self.started = 0
        self.cpu0 = 0.0

    def start(self) -> "Worker":
        env = {**os.environ, "REDIS_URL": self.redis_url, "PYTHONUNBUFFERED": "1"}
        env.pop("GW_BENCH_PEOPLE", None)
        if self.people is not None:
            env["GW_BENCH_PEOPLE"] = str(self.people)
        self.started += 1
        log = open(self.logs / f"{self.name}.{self.started}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fleet", "worker", "--config", str(self.config),
                                      "--name", self.name, "--capacity", str(self.capacity)],
                                     cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> float:
        """SIGKILL; returns the moment it was sent."""
        assert self.proc is not None
        t = time.time()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        return t

    def terminate(self) -> None:
        """SIGTERM: gridwatch unwinds (leaves the group, flushes its outbox, retires its record). Not SIGINT: a
        benchmark started in the background (``&``) passes SIGINT on as ignored."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, SIGKILL if it hangs."""
        if not self.alive():
            return
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def rss_mb(self) -> float:
        import psutil

        try:
            return round(psutil.Process(self.proc.pid).memory_info().rss / 2**20)
        except (psutil.Error, AttributeError):
            return 0.0

    def cpu_s(self) -> float:
        import psutil

        try:
            t = psutil.Process(self.proc.pid).cpu_times()
            return t.user + t.system + t.children_user + t.children_system
        except (psutil.Error, AttributeError):
            return 0.0


# --------------------------------------------------------------------------------------------------------------------
# the ring alone


def ring_owners(names: list[str], cameras: list[str], capacity: int = 32, partitions: int | None = None,
                bounded: bool | None = None) -> dict:
    """camera -> owner as the workers compute it: tooz's ring (member ids as bytes, weight = capacity, cameras hashed
    as tooz's Partitioner hashes them), and, where gridwatch.fleet has ``assign`` (consistent hashing with bounded
    loads) and ``bounded`` is not False, that assignment on the same ring."""
    from tooz.hashring import HashRing

    import gridwatch.fleet as fleet

    ring = HashRing([], partitions=partitions or fleet.PARTITIONS)
    for n in names:
        ring.add_node(n.encode(), capacity)
    if bounded is not False and hasattr(fleet, "assign"):
        return {c: m.decode() for c, m in fleet.assign(ring, cameras).items()}
    return {c: next(iter(ring.get_nodes(c.encode()))).decode() for c in cameras}


def imbalance_of(owners: dict, names: list[str], capacities: dict | None = None) -> float:
    """The most-loaded worker's cameras over its fair share (capacity-weighted)."""
    caps = capacities or {n: 1 for n in names}
    total_cap = sum(caps[n] for n in names)
    counts = {n: 0 for n in names}
    for o in owners.values():
        counts[o] += 1
    return max(counts[n] / (len(owners) * caps[n] / total_cap) for n in names)


def camera_ids(n: int) -> list[str]:
    return [f"cam-{i:04d}" for i in range(1, n + 1)]


def ring_analysis(n_cameras: int = 492, max_workers: int = 16, name_sets: int = 50, capacity: int = 32,
                  partitions_to_try: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 1024)) -> dict:
    """Moved-on-join and imbalance, for tooz's plain ring and (if the fleet has it) the bounded-load assignment."""
    import gridwatch.fleet as fleet

    cams = camera_ids(n_cameras)
    rng = random.Random(13)
    sets = [[f"gw-{rng.getrandbits(40):010x}" for _ in range(max_workers + 1)] for _ in range(name_sets)]
    variants = {"ring": False} | ({"bounded": True} if hasattr(fleet, "assign") else {})
    out: dict = {"cameras": n_cameras, "capacity": capacity, "partitions": fleet.PARTITIONS, "name_sets": name_sets,
                 "load_bound": getattr(fleet, "LOAD_BOUND", None), "assignment": list(variants)}
    for label, bounded in variants.items():
        moved = []
        for n in range(1, max_workers + 1):
            fixed = [f"w{i}" for i in range(1, n + 2)]
            before = ring_owners(fixed[:n], cams, capacity, bounded=bounded)
            after = ring_owners(fixed, cams, capacity, bounded=bounded)
            named = sum(before[c] != after[c] for c in cams) / n_cameras
            to_joiner = all(after[c] == fixed[-1] for c in cams if before[c] != after[c])
            rand = []
            for names in sets[: max(6, name_sets // 5)]:
                b = ring_owners(names[:n], cams, capacity, bounded=bounded)
                a = ring_owners(names[: n + 1], cams, capacity, bounded=bounded)
                rand.append(sum(b[c] != a[c] for c in cams) / n_cameras)
            moved.append({"n": n, "ideal": round(1 / (n + 1), 4), "limit": round(1.5 / (n + 1), 4),
                          "moved_w_names": round(named, 4), "moved_w_names_all_to_joiner": to_joiner,
                          "moved_random_mean": round(statistics.mean(rand), 4),
                          "moved_random_max": round(max(rand), 4),
                          "ok": named <= 1.5 / (n + 1) and max(rand) <= 1.5 / (n + 1)})

        def imbalances(partitions: int, cap: int, workers: int = 8, bounded=bounded) -> dict:
            named = [f"w{i}" for i in range(1, workers + 1)]
            vals = [imbalance_of(ring_owners(ns[:workers], cams, cap, partitions, bounded), ns[:workers])
                    for ns in sets]
            return {"partitions": partitions, "capacity": cap, "points_per_worker": partitions * cap,
                    "w_names": round(imbalance_of(ring_owners(named, cams, cap, partitions, bounded), named), 3),
                    "random_mean": round(statistics.mean(vals), 3),
                    "random_p90": round(sorted(vals)[int(0.9 * len(vals))], 3), "random_max": round(max(vals), 3),
                    "share_above_1_25": round(sum(v > 1.25 for v in vals) / len(vals), 3)}

        imb = imbalances(fleet.PARTITIONS, capacity)
        part = {"moved_on_join": moved, "imbalance_8": imb,
                "imbalance_16": imbalances(fleet.PARTITIONS, capacity, workers=16),
                "imbalance_8_by_capacity": [imbalances(fleet.PARTITIONS, c) for c in (1, 4)]}
        # a config change that adds one camera (cam-0000 sorts first): how many others change owner
        named = [f"w{i}" for i in range(1, 9)]
        b = ring_owners(named, cams, capacity, bounded=bounded)
        a = ring_owners(named, ["cam-0000", *cams], capacity, bounded=bounded)
        part["moved_when_one_camera_added_8"] = sum(b[c] != a[c] for c in cams)
        if label == "ring" and (imb["w_names"] > 1.25 or imb["random_p90"] > 1.25):
            part["partitions_scan"] = [imbalances(p, capacity) for p in partitions_to_try]
        out[label] = part
    # the floor no plain ring reaches: each camera lands on a worker at random (hashing), 492 balls into 8 bins
    sim = np.random.default_rng(13).multinomial(n_cameras, [1 / 8] * 8, size=20000).max(1) / (n_cameras / 8)
    out["imbalance_8_random_floor"] = {"mean": round(float(sim.mean()), 3),
                                       "p90": round(float(np.quantile(sim, 0.9)), 3),
                                       "share_above_1_25": round(float((sim > 1.25).mean()), 3)}
    if "bounded" in variants:  # what each worker computes every 0.5 s
        from tooz.hashring import HashRing

        ring = HashRing([], partitions=fleet.PARTITIONS)
        for n in range(16):
            ring.add_node(f"w{n}".encode(), capacity)
        t0 = time.perf_counter()
        for _ in range(5):
            fleet.assign(ring, cams)
        out["assign_ms_492_over_16"] = round((time.perf_counter() - t0) / 5 * 1000, 2)
    return out


# --------------------------------------------------------------------------------------------------------------------
# clips, RTSP, config


def make_clip(source: Path, width: int, height: int, fps: int, gop: int, seconds: float) -> Path:
    from gridwatch.harness import make_h264_clip

    dest = WORK / "clips" / f"{source.stem}_{width}x{height}_{fps}fps_g{gop}.mp4"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".part.mp4")
        make_h264_clip(source, tmp, width, height, fps, gop, seconds)
        tmp.rename(dest)
    return dest


class Servers:
    """Cameras served by GStreamer RTSP servers in passthrough (a camera's own encoder costs the host nothing)."""

    PER_SERVER = 32  # one GStreamer process sets up many sessions at once slowly: several servers share the load

    def __init__(self, clips: list[Path], n: int):
        from gridwatch.harness import RtspServer

        self.servers, self.urls = [], {}
        names = [f"s{i}" for i in range(n)]
        for k in range(0, n, self.PER_SERVER):
            chunk = names[k:k + self.PER_SERVER]
            srv = RtspServer({nm: clips[int(nm[1:]) % len(clips)] for nm in chunk}, passthrough=True).start(60)
            self.servers.append(srv)
            self.urls.update({nm: srv.url(nm) for nm in chunk})

    def url(self, i: int) -> str:
        return self.urls[f"s{i}"]

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


def fleet_config(urls: list[str], data_dir: Path, *, fps: float = 2, threshold: int = 3, hold_s: float = 1.0,
                 max_batch: int | None = None, fleet: dict | None = None) -> dict:
    """One grid, one zone per camera with a crowding rule the double's crowd (4 people) sets off."""
    cams = [{"id": cid, "name": f"bench camera {i}", "url": u, "grid": "g-1", "lat": 31.23 + i * 1e-4,
             "lon": 121.47, "fps": fps,
             "zones": [{"id": "z", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
                        "crowding": {"threshold": threshold, "hold_s": hold_s, "clear_s": 5}}]}
            for i, (cid, u) in enumerate(zip(camera_ids(len(urls)), urls))]
    det = {"export_dir": str(ROOT / "var" / "cache" / "exports")}
    if max_batch:
        det["max_batch"] = max_batch
    return {"grids": [{"id": "g-1", "name": "bench grid"}], "cameras": cams,
            "alerts": {"clip": {"enabled": False}}, "detector": det, "fleet": fleet or {},
            "settings": {"data_dir": str(data_dir)}}


def write_config(data: dict, path: Path) -> Path:
    import yaml

    from gridwatch.config import parse_config

    parse_config(data, str(path), base=path.parent)  # fails here, not in four workers
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def fresh_redis(url: str):
    import redis

    r = redis.Redis.from_url(url)
    db = r.connection_pool.connection_kwargs.get("db", 0)
    if db == 0:
        raise SystemExit(f"refusing to flush database 0 of {url}: give REDIS_URL a database of its own, e.g. /7")
    r.flushdb()
    return r


def pct(values, q: float) -> float | None:
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return round(v[lo] + (v[hi] - v[lo]) * (k - lo), 3)


# --------------------------------------------------------------------------------------------------------------------
# the live fleet


class Fleet:
    def __init__(self, r, workers: list[Worker], cameras: list[str]):
        from gridwatch.telemetry import Telemetry

        self.r, self.workers, self.cameras = r, workers, cameras
        self.tel = Telemetry(r, PREFIX)

    def records(self, max_age_s: float = 2.5) -> dict[str, dict]:
        return {w["name"]: w for w in self.tel.workers(max_age_s=max_age_s)}

    def owners(self, names: set[str] | None = None) -> tuple[dict[str, str], int]:
        """camera -> owner from the fresh worker records (of ``names`` only, if given); and how many overlap."""
        own, overlap = {}, 0
        for name, rec in self.records().items():
            if names is not None and name not in names:
                continue
            for c in rec.get("cameras", []):
                overlap += c in own
                own[c] = name
        return own, overlap

    def wait_settled(self, names: set[str], timeout: float, stable_s: float = 2.0) -> tuple[dict[str, str], float]:
        """Until exactly ``names`` report, every camera is owned once, and that holds ``stable_s``."""
        t0 = time.monotonic()
        last, since = None, None
        while time.monotonic() - t0 < timeout:
            recs = self.records()
            own, overlap = self.owners()
            ok = set(recs) == names and len(own) == len(self.cameras) and overlap == 0
            if ok and own == last:
                if time.monotonic() - since >= stable_s:
                    return own, time.monotonic() - t0
            else:
                last, since = (own if ok else None), time.monotonic()
            time.sleep(0.25)
        raise TimeoutError(f"the fleet did not settle on {sorted(names)} in {timeout:.0f} s "
                           f"(reporting: {sorted(self.records())}, owned: {len(self.owners()[0])})")

    def wait_reowned(self, cams: list[str], t_kill: float, timeout: float, victim: str, poll_hz: float = 20) -> dict:
        """Per camera: the first frame analysed after the kill (its arrival time, from the overlay) and when seen."""
        pending, got, assigned = set(cams), {}, {}
        keys = {c: f"{PREFIX}:overlays:{c}" for c in cams}  # each camera's recent analyses, newest last
        while pending and time.time() - t_kill < timeout:
            now = time.time()
            # when a survivor first reports the camera as its own (records are written every second: +-1 s)
            for name, rec in self.records(max_age_s=1.5).items():
                for c in rec.get("cameras", []):
                    if c in pending and c not in assigned and rec.get("heartbeat", 0) > t_kill and name != victim:
                        assigned[c] = round(rec["heartbeat"] - t_kill, 3)
            order = sorted(pending)
            pipe = self.r.pipeline(transaction=False)
            for c in order:
                pipe.lindex(keys[c], -1)
            for c, raw in zip(order, pipe.execute()):
                if raw is None:
                    continue
                ts = json.loads(raw).get("ts", 0)
                if ts > t_kill:
                    got[c] = {"frame_s": round(ts - t_kill, 3), "seen_s": round(now - t_kill, 3),
                              "assigned_s": assigned.get(c)}
                    pending.discard(c)
            time.sleep(1 / poll_hz)
        return {"reowned": got, "never": sorted(pending)}


def live_fleet(args, r, redis_url: str, bar) -> dict:
    n_workers, n_cams, kills = args.workers, args.cameras, args.kills
    clip = make_clip(DATA / "pets-s2l1" / "s2l1_480x360.avi", args.width, args.width * 9 // 16, args.stream_fps,
                     args.gop, 20)
    bar.set_postfix_str(f"RTSP: {n_cams} cameras")
    servers = Servers([clip], n_cams)
    run = WORK / "live"
    subprocess.run(["rm", "-rf", str(run)])
    (run / "logs").mkdir(parents=True)
    workers: list[Worker] = []
    try:
        data = fleet_config([servers.url(i) for i in range(n_cams)], run / "data", fps=args.fps, max_batch=8)
        if args.cooldown is not None:
            data["alerts"]["cooldown_s"] = args.cooldown
        cfg = write_config(data, run / "fleet.yaml")
        cams = camera_ids(n_cams)
        workers = [Worker(f"w{i}", cfg, args.capacity, redis_url, args.people, run / "logs")
                   for i in range(1, n_workers + 1)]
        fleet = Fleet(r, workers, cams)
        bar.set_postfix_str(f"starting {n_workers} workers")
        t_start = time.monotonic()
        for w in workers:
            w.start()
            time.sleep(0.3)  # a fleet starting: not all at one instant (and 2 cores import slowly)
        names = {w.name for w in workers}
        owners, _ = fleet.wait_settled(names, timeout=args.settle_timeout)
        startup_s = time.monotonic() - t_start
        bar.update(1)
        counts = {n: list(owners.values()).count(n) for n in names}
        start_imbalance = imbalance_of(owners, sorted(names))
        ring_start = ring_owners(sorted(names), cams, args.capacity)
        # the first alerts: every camera's crowd must hold hold_s, then the case
        time.sleep(args.first_alerts_s)
        events, reown, reown_frame, reassign = [], [], [], []
        load_before = os.getloadavg()[0]
        rng = random.Random(7)
        for k in range(kills):
            victim = rng.choice(workers)
            bar.set_postfix_str(f"kill {k + 1}/{kills}: {victim.name}")
            rec = fleet.records().get(victim.name, {})
            its = list(rec.get("cameras", []))
            t_kill = victim.kill()
            survivors = names - {victim.name}
            got = fleet.wait_reowned(its, t_kill, timeout=args.reown_timeout, victim=victim.name)
            times = [v["frame_s"] for v in got["reowned"].values()]
            seen = [v["seen_s"] for v in got["reowned"].values()]
            reassign += [v["assigned_s"] for v in got["reowned"].values() if v["assigned_s"] is not None]
            slow = {c: v for c, v in got["reowned"].items() if v["seen_s"] > 10}
            reown += seen
            reown_frame += times
            # wait for the survivors alone to own everything (the dead worker's record is older than 2.5 s by now)
            before, _ = fleet.wait_settled(survivors, timeout=args.settle_timeout)
            bar.update(1)
            bar.set_postfix_str(f"join {k + 1}/{kills}: {victim.name}")
            t_join = time.time()
            victim.start()
            after, settle_s = fleet.wait_settled(names, timeout=args.settle_timeout)
            moved = sorted(c for c in cams if before[c] != after[c])
            predicted_before = ring_owners(sorted(survivors), cams, args.capacity)
            predicted_after = ring_owners(sorted(names), cams, args.capacity)
            predicted = sorted(c for c in cams if predicted_before[c] != predicted_after[c])
            events.append({
                "killed": victim.name, "cameras": len(its), "reowned": len(got["reowned"]),
                "never_reowned": got["never"],
                "reown_frame_s": {"p50": pct(times, 0.5), "max": max(times) if times else None},
                "reown_seen_s_max": max((v["seen_s"] for v in got["reowned"].values()), default=None),
                "assigned_s_max": max((v["assigned_s"] or 0 for v in got["reowned"].values()), default=None),
                "slow_over_10s": slow,
                "owners_match_ring": before == predicted_before and after == predicted_after,
                "ring_mismatch_before_join": mismatch(before, predicted_before),
                "ring_mismatch_after_join": mismatch(after, predicted_after),
                "join_settled_s": round(settle_s, 2), "join_moved": len(moved),
                "join_moved_fraction": round(len(moved) / n_cams, 4), "join_moved_ring": len(predicted),
                "join_moved_to_joiner_only": all(after[c] == victim.name for c in moved),
                "join_at": round(t_join, 3)})
            bar.update(1)
        time.sleep(args.final_s)  # the last joiner's cameras raise their alerts (joined into the open cases)
        bar.set_postfix_str("stopping workers")
        final_owners, _ = fleet.owners()
        pipelines = {n: rec.get("pipeline", {}) for n, rec in fleet.records().items()}
        health = fleet.tel.cameras()
        for w in workers:  # all at once: each takes a few seconds to unwind
            w.terminate()
        for w in workers:
            w.stop()
        cases = cases_report(r, cams, run / "data")
        moved_fr = [e["join_moved_fraction"] for e in events]
        return {
            "workers": n_workers, "cameras": n_cams, "capacity": args.capacity, "kills": kills,
            "detector": f"double (StandingCrowd, {args.people} people per frame); the real detector is measured "
                        "in `capacity`",
            "streams": {"clip": clip.name, "width": args.width, "fps": args.stream_fps, "gop": args.gop,
                        "analysed_fps": args.fps, "rtsp_servers": len(servers.servers)},
            "startup_s": round(startup_s, 1), "start_counts": counts, "start_imbalance": round(start_imbalance, 3),
            "start_owners_match_ring": owners == ring_start,
            "start_ring_mismatch": mismatch(owners, ring_start),
            # seen: when the benchmark saw the new owner's first overlay (an upper bound: overlays are written every
            # 0.2 s, polled at 20 Hz); frame: that frame's arrival at the new owner (a lower bound of its analysis)
            "reown_samples": len(reown), "reown_p50_s": pct(reown, 0.5), "reown_p99_s": pct(reown, 0.99),
            "reown_max_s": max(reown) if reown else None,
            "reown_frame_p50_s": pct(reown_frame, 0.5), "reown_frame_p99_s": pct(reown_frame, 0.99),
            # the fleet's part alone: kill -> a survivor's record lists the camera (records every 1 s: +-1 s)
            "reassigned_p50_s": pct(reassign, 0.5), "reassigned_p99_s": pct(reassign, 0.99),
            "load_avg_1m_before_kills": round(load_before, 2), "load_avg_1m_end": round(os.getloadavg()[0], 2),
            "never_reowned": sum(len(e["never_reowned"]) for e in events),
            "moved_fraction_on_join": round(statistics.mean(moved_fr), 4) if moved_fr else None,
            "moved_fraction_on_join_ideal": round(1 / n_workers, 4),
            "moved_fraction_on_join_limit": round(1.5 / n_workers, 4),
            "cooldown_s": args.cooldown if args.cooldown is not None else "default (120)",
            "events": events, "cases": cases,
            "final_owned": len(final_owners),
            "final_online": sum(h.get("state") == "online" for h in health.values()),
            "discarded": {n: p.get("discarded") for n, p in pipelines.items()},
            "latency_p95_ms": {n: p.get("latency_p95_ms") for n, p in pipelines.items()},
        }
    finally:
        for w in workers:
            if w.alive():
                w.proc.kill()
        servers.stop()


def mismatch(live: dict, ring: dict) -> list[str]:
    """Cameras whose live owner is not the ring's: ``camera: live != ring``."""
    return [f"{c}: {live.get(c)} != {ring[c]}" for c in sorted(ring) if live.get(c) != ring[c]]


def cases_report(r, cams: list[str], data_dir: Path) -> dict:
    """Every camera had a standing crowd: exactly one open crowding case each is the only right answer."""
    from alerts import CaseStore

    store = CaseStore(r, PREFIX)
    cases = store.list(kind="crowding", limit=100000, scan=100000)
    by_zone: dict[tuple[str, str], list] = {}
    for c in cases:
        by_zone.setdefault((c.camera_id, c.zone_id), []).append(c)
    open_by_zone = {k: [c for c in v if c.state != "closed"] for k, v in by_zone.items()}
    no_case = sorted(c for c in cams if (c, "z") not in by_zone)
    dup = {f"{k[0]}/{k[1]}": len(v) for k, v in open_by_zone.items() if len(v) > 1}
    pending = 0
    for f in (data_dir).rglob("alerts.jsonl"):
        off_path = f.with_name("offset")
        off = int(off_path.read_text().strip() or 0) if off_path.is_file() else 0
        with open(f, "rb") as fh:
            fh.seek(off)
            pending += sum(1 for line in fh if line.strip())
    return {"cases": len(cases), "cameras_with_case": len(cams) - len(no_case),
            "lost_alerts": len(no_case), "cameras_without_case": no_case[:20],
            "duplicate_cases": sum(n - 1 for n in dup.values()), "duplicate_zones": dup,
            "incidents_joined": sum(c.incidents for c in cases), "updates": sum(c.updates for c in cases),
            "spooled_undelivered": pending}


# --------------------------------------------------------------------------------------------------------------------
# capacity of one worker, real detector


def capacity_sweep(args, r, redis_url: str, bar) -> dict:
    from gridwatch.config import parse_config
    from gridwatch.configsync import ConfigChannel

    clips = [make_clip(DATA / "pets-s2l1" / "s2l1_480x360.avi", 480, 360, 10, 5, 40),
             make_clip(DATA / "clips" / "plaza_overhead.avi", 640, 360, 10, 5, 27)]
    steps = [int(s) for s in args.steps.split(",")]
    servers = Servers(clips, max(steps))
    run = WORK / "capacity"
    subprocess.run(["rm", "-rf", str(run)])
    (run / "logs").mkdir(parents=True)
    urls = [servers.url(i) for i in range(max(steps))]

    def cfg_for(n: int) -> dict:
        data = fleet_config(urls[:n], run / "data", fps=2, threshold=50, hold_s=10)
        # the footage's people: the crowding rule runs (and tracking), but no alert is the point here
        return data

    path = write_config(cfg_for(steps[0]), run / "worker.yaml")
    worker = Worker("cap1", path, 32, redis_url, None, run / "logs").start()
    channel = ConfigChannel(r, PREFIX)
    from gridwatch.telemetry import Telemetry

    tel = Telemetry(r, PREFIX)
    rows = []
    saturated_at = None
    try:
        bar.set_postfix_str("capacity: loading the real detector")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 180:
            recs = {w["name"]: w for w in tel.workers(max_age_s=3)}
            if "cap1" in recs and recs["cap1"]["pipeline"].get("frames", 0) > 0:
                break
            if not worker.alive():
                raise RuntimeError(f"the capacity worker died: see {run / 'logs'}")
            time.sleep(0.5)
        else:
            raise TimeoutError("the capacity worker analysed nothing in 180 s")
        load_s = time.monotonic() - t0
        for n in steps:
            if n != steps[0]:
                channel.publish(parse_config(cfg_for(n), "<bench>", base=run).resolve_paths(run), actor="bench")
            bar.set_postfix_str(f"capacity: {n} cameras")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # every camera online and reporting
                h = tel.cameras()
                if sum(v.get("state") == "online" for v in h.values()) >= n:
                    break
                time.sleep(0.5)
            time.sleep(args.warmup_s)
            a = snapshot(tel, worker)
            time.sleep(args.window_s)
            b = snapshot(tel, worker)
            row = window_row(a, b, n)
            rows.append(row)
            bar.update(1)
            if row["per_camera_fps"] < 1.8 or (row["latency_p95_ms"] or 0) > 2000:
                saturated_at = n
                break
    finally:
        worker.stop()
        servers.stop()
    ok = [row for row in rows if row["per_camera_fps"] >= 1.8 and (row["latency_p95_ms"] or 0) <= 2000]
    best = max(ok, key=lambda x: x["cameras"]) if ok else None
    # what the CPU alone allows: the worker's own CPU per analysed frame, at the steps it kept up, against 1 core
    kept = [row["cpu_ms_per_frame"] for row in ok] or [row["cpu_ms_per_frame"] for row in rows]
    cpu_ms = statistics.median(kept) if kept else None
    return {"model": "yolov10n.pt (config default), imgsz 640, backend auto (OpenVINO on this CPU)",
            "cpu_ms_per_frame_median": cpu_ms,
            "cameras_per_core_2fps_cpu_bound": round(1000 / (2 * cpu_ms), 1) if cpu_ms else None,
            "clips": [c.name for c in clips], "analysed_fps": 2, "stream": "10 fps, GOP 5 (keyframes every 0.5 s)",
            "load_s": round(load_s, 1), "steps": rows, "saturated_at": saturated_at,
            "cameras_per_worker_2fps": best["cameras"] if best else 0, "at_capacity": best}


def snapshot(tel, worker: Worker) -> dict:
    rec = {w["name"]: w for w in tel.workers(max_age_s=3)}.get("cap1", {})
    cams = tel.cameras()
    return {"t": time.time(), "cpu": worker.cpu_s(), "rss_mb": worker.rss_mb(), "pipeline": rec.get("pipeline", {}),
            "decode_cpu": sum(v.get("decode_cpu_s", 0) for v in cams.values()),
            "frames_in": sum(v.get("frames_in", 0) for v in cams.values()),
            "handed": sum(v.get("frames_analysed", 0) for v in cams.values())}


def window_row(a: dict, b: dict, n: int) -> dict:
    dt = b["t"] - a["t"]
    pa, pb = a["pipeline"], b["pipeline"]
    frames = pb.get("frames", 0) - pa.get("frames", 0)
    batch = pb.get("mean_batch") or 1
    cpu = b["cpu"] - a["cpu"]
    dec = b["decode_cpu"] - a["decode_cpu"]

    def per_frame(k):
        v = pb.get(k)
        return round(v / batch, 1) if v is not None else None

    return {"cameras": n, "window_s": round(dt, 1), "analysed_fps": round(frames / dt, 2),
            "per_camera_fps": round(frames / dt / n, 2),
            "latency_p50_ms": pb.get("latency_p50_ms"), "latency_p95_ms": pb.get("latency_p95_ms"),
            "mean_batch": round(batch, 2), "stale_dropped": pb.get("stale_dropped"),
            "worker_cpu_cores": round(cpu / dt, 2),
            "cpu_ms_per_frame": round(1000 * cpu / max(frames, 1), 1),
            "decode_cpu_ms_per_frame": round(1000 * dec / max(frames, 1), 2),
            "decoded_per_analysed": round((b["frames_in"] - a["frames_in"]) / max(frames, 1), 2),
            "prepare_p50_ms": pb.get("prepare_p50_ms"), "infer_p50_ms": pb.get("infer_p50_ms"),
            "finish_p50_ms": pb.get("finish_p50_ms"),
            "prepare_ms_per_frame": per_frame("prepare_p50_ms"), "infer_ms_per_frame": per_frame("infer_p50_ms"),
            "finish_ms_per_frame": per_frame("finish_p50_ms"),
            "rss_mb": b["rss_mb"], "load_avg_1m": round(os.getloadavg()[0], 2)}


# --------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return run_worker(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small fleet and a short capacity sweep (~2-3 min)")
    ap.add_argument("--skip", action="append", default=[], choices=["ring", "live", "capacity"])
    ap.add_argument("--workers", type=int)
    ap.add_argument("--cameras", type=int)
    ap.add_argument("--kills", type=int)
    ap.add_argument("--capacity", type=int, default=32, help="each worker's --capacity (equal: imbalance is vs 1/N)")
    ap.add_argument("--people", type=int, default=4, help="the double's standing crowd (the zone's threshold is 3)")
    ap.add_argument("--cooldown", type=float, help="alerts.cooldown_s of the fleet part (default: the config's "
                    "default, 120 s); a case's dedupe key lives this long after the case was created")
    ap.add_argument("--steps", help="capacity sweep: cameras per step, comma-separated")
    ap.add_argument("--merge", action="store_true", help="keep the parts of the result file this run skips")
    ap.add_argument("--out", help="result file (default bench/results/fleet_{quick,full}.json)")
    args = ap.parse_args(argv)
    q = args.quick
    for k, quick, full in (("workers", 4, 8), ("cameras", 24, 492), ("kills", 3, 4),
                           ("steps", "4,8,12,16,20,24,32", "2,4,6,8,10,12,14,16,18,20,24,28,32")):
        if getattr(args, k) is None:
            setattr(args, k, quick if q else full)
    # streams: small and slow for the fleet part (the double analyses; what is measured is ownership)
    args.width, args.stream_fps, args.gop, args.fps = (320, 4, 2, 2) if q else (160, 2, 1, 1)
    args.settle_timeout = 90 if q else 600
    args.reown_timeout = 30 if q else 120
    args.first_alerts_s, args.final_s = (4, 5) if q else (20, 15)
    args.warmup_s, args.window_s = (3, 6) if q else (8, 20)

    from tqdm import tqdm

    from bench.machine import cpu_record, describe

    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    r = fresh_redis(redis_url)
    WORK.mkdir(parents=True, exist_ok=True)
    total = (0 if "ring" in args.skip else 1) + (0 if "live" in args.skip else 1 + 2 * args.kills) \
        + (0 if "capacity" in args.skip else len(args.steps.split(",")))
    result: dict = {"mode": "quick" if q else "full", "machine": describe(), "cpu": cpu_record(),
                    "model": "yolov10n.pt (capacity); the fleet part runs a detector double",
                    "redis": redis_url.rsplit("@", 1)[-1]}
    t0 = time.monotonic()
    with tqdm(total=total, desc="fleet", unit="step", file=sys.stderr) as bar:
        if "ring" not in args.skip:
            bar.set_postfix_str("ring")
            result["ring"] = ring_analysis(name_sets=6 if q else 40, partitions_to_try=(16, 32, 64, 128)
                                           if q else (8, 16, 32, 64, 128, 256))
            bar.update(1)
        for part, run_part in (("live", live_fleet), ("capacity", capacity_sweep)):
            if part in args.skip:
                continue
            r.flushdb()
            try:
                result[part] = run_part(args, r, redis_url, bar)
            except Exception as err:  # the machine could not hold it: say so, keep the other parts
                result[part + "_error"] = f"{type(err).__name__}: {err}"
                print(f"{part}: {result[part + '_error']}", file=sys.stderr)
    r.flushdb()
    result["seconds"] = round(time.monotonic() - t0, 1)
    result["args"] = " ".join(argv)
    out = Path(args.out) if args.out else RESULTS / f"fleet_{'quick' if q else 'full'}.json"
    if args.merge and out.is_file():  # parts measured by separate runs (a 2-core machine holds one at a time)
        before = json.loads(out.read_text())
        runs = before.pop("runs", None) or [{k: before.get(k) for k in ("args", "seconds", "machine")}]
        result = {**before, **result, "runs": runs + [{k: result[k] for k in ("args", "seconds", "machine")}]}
    result["summary"] = summarise(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"]))
    return 0


def summarise(res: dict) -> dict:
    live, ring, cap = res.get("live", {}), res.get("ring", {}), res.get("capacity", {})
    s: dict = {"mode": res["mode"], "workers": live.get("workers"), "cameras": live.get("cameras")}
    if live:
        s.update({"reown_p50_s": live["reown_p50_s"], "reown_p99_s": live["reown_p99_s"],
                  "reown_frame_p99_s": live["reown_frame_p99_s"], "reassigned_p99_s": live.get("reassigned_p99_s"),
                  "reown_samples": live["reown_samples"], "never_reowned": live["never_reowned"],
                  "lost_alerts": live["cases"]["lost_alerts"], "duplicate_cases": live["cases"]["duplicate_cases"],
                  "moved_fraction_on_join": live["moved_fraction_on_join"],
                  "moved_fraction_on_join_ideal": live["moved_fraction_on_join_ideal"],
                  "imbalance": live["start_imbalance"]})
    if ring:
        for label in ring.get("assignment", []):
            part = ring[label]
            worst = max(part["moved_on_join"], key=lambda m: m["moved_w_names"] * (m["n"] + 1))
            s[f"moved_fraction_on_join_{label}"] = {str(m["n"]): m["moved_w_names"] for m in part["moved_on_join"]}
            s[f"moved_on_join_{label}_worst_x_ideal"] = round(worst["moved_w_names"] * (worst["n"] + 1), 3)
            s[f"moved_on_join_{label}_ok"] = all(m["ok"] for m in part["moved_on_join"])
            s[f"imbalance_{label}_492_over_8"] = part["imbalance_8"]["w_names"]
            s[f"imbalance_{label}_492_over_8_random_names_p90"] = part["imbalance_8"]["random_p90"]
            s[f"imbalance_{label}_492_over_16"] = part["imbalance_16"]["w_names"]
            if "partitions_scan" in part:
                s["partitions_scan_ring_w_names"] = {str(p["partitions"]): p["w_names"]
                                                     for p in part["partitions_scan"]}
                s["partitions_scan_ring_random_p90"] = {str(p["partitions"]): p["random_p90"]
                                                        for p in part["partitions_scan"]}
        s["imbalance_random_floor_p90"] = ring["imbalance_8_random_floor"]["p90"]
    if cap:
        best = cap.get("at_capacity") or {}
        s.update({"cameras_per_worker_2fps": cap.get("cameras_per_worker_2fps"),
                  "saturated_at": cap.get("saturated_at"),
                  "cameras_per_core_2fps_cpu_bound": cap.get("cameras_per_core_2fps_cpu_bound"),
                  "load_avg_1m": best.get("load_avg_1m"),
                  "cpu_ms_per_frame": best.get("cpu_ms_per_frame"),
                  "decode_cpu_ms_per_frame": best.get("decode_cpu_ms_per_frame"),
                  "prepare_ms_per_frame": best.get("prepare_ms_per_frame"),
                  "infer_ms_per_frame": best.get("infer_ms_per_frame"),
                  "finish_ms_per_frame": best.get("finish_ms_per_frame"),
                  "model": "yolov10n"})
    s["seconds"] = res.get("seconds")
    return s


if __name__ == "__main__":
    sys.exit(main())
