"""Ingest benchmark: how many cameras one core can read, against the naive baseline.

N simulated cameras: Debian's GStreamer RTSP server on loopback serving H.264
clips (made from real pedestrian footage) without re-encoding, at 640x360 and
1280x720, 10 and 25 fps. Each configuration runs in its own process for a fixed
time; its CPU time (user + system, from the OS) gives CPU milliseconds per
stream-second and so cameras per core. The baseline runs in the same benchmark:
one ``cv2.VideoCapture`` thread per camera reading every frame (what
ultralytics' multi-stream loader does). Frame age is measured at hand-off: from
the moment a packet arrived to the moment the analyser (one consumer thread,
woken like the inference loop) takes the frame.

    python bench/ingest.py --quick      # < 1 minute; last line: JSON
    python bench/ingest.py              # the sizing table (docs/ingest.md), a few minutes

Results go to bench/results/ingest[-quick].json.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import threading
import time
from pathlib import Path

from bench.machine import describe

ROOT = Path(__file__).resolve().parents[1]

CACHE = ROOT / "var" / "cache" / "ingest"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Consumer(threading.Thread):
    """Takes the newest frame of every camera as soon as one is there, and records its age."""

    def __init__(self, slots, wake, age_of):
        super().__init__(daemon=True)
        self.slots, self.wake, self.age_of = slots, wake, age_of
        self.ages: list[float] = []
        self.taken = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.wake.wait(0.2)
            self.wake.clear()
            now = time.time()
            for s in self.slots:
                f = s.take()
                if f is not None:
                    self.taken += 1
                    self.ages.append(now - self.age_of(f))


def _stagger() -> None:
    """Real cameras are not in step: connect at random moments so their keyframes do not all coincide."""
    import random

    time.sleep(random.uniform(0.0, 0.15))


def _run_gridwatch(urls, fps, seconds, warmup, q):
    from streams import CameraReader, FrameSlot

    wake = threading.Event()
    slots = [FrameSlot(wake) for _ in urls]
    base_rss = _rss_mb()
    readers = [CameraReader(f"c{i}", u, fps, slots[i], hwaccel="cpu", max_side=1280) for i, u in enumerate(urls)]
    consumer = _Consumer(slots, wake, lambda f: f.ts)  # Frame.ts: when its packet arrived
    consumer.start()
    for r in readers:
        _stagger()
        r.start()
    time.sleep(warmup)
    consumer.ages.clear()
    n0 = sum(r.health.frames_analysed for r in readers)
    c0, t0 = _cpu_s(), time.time()
    time.sleep(seconds)
    cpu, wall = _cpu_s() - c0, time.time() - t0
    analysed = sum(r.health.frames_analysed for r in readers) - n0
    ages = sorted(consumer.ages)
    rss = _rss_mb()
    q.put({"cpu_s": cpu, "wall_s": wall, "analysed": analysed, "rss_mb": rss, "base_rss_mb": base_rss,
           "ages": ages, "online": sum(r.health.state == "online" for r in readers),
           "modes": sorted({r.health.decode_mode for r in readers}),
           "decoded": sum(r.health.frames_in for r in readers),
           "skipped": sum(r.health.frames_skipped for r in readers)})
    consumer.stop.set()
    for r in readers:
        r._stop_event.set()
    _exit_after_flush(q)


def _exit_after_flush(q) -> None:
    q.close()
    q.join_thread()  # the queue's feeder thread must deliver before the hard exit
    os._exit(0)  # readers may sit in a blocking read; the numbers are already out


def _run_demux_only(urls, fps, seconds, warmup, q):
    """The floor: PyAV reading the RTSP streams with the reader's options, decoding nothing."""
    import av

    from streams.reader import RTSP_OPTIONS

    base_rss = _rss_mb()
    counts = [0] * len(urls)

    def read(i, url):
        with av.open(url, options=RTSP_OPTIONS, timeout=(5, 5)) as c:
            for _ in c.demux(c.streams.video[0]):
                counts[i] += 1

    for i, u in enumerate(urls):
        _stagger()
        threading.Thread(target=read, args=(i, u), daemon=True).start()
    time.sleep(warmup)
    c0, t0 = _cpu_s(), time.time()
    time.sleep(seconds)
    q.put({"cpu_s": _cpu_s() - c0, "wall_s": time.time() - t0, "analysed": 0, "rss_mb": _rss_mb(),
           "base_rss_mb": base_rss, "ages": [], "online": len(urls), "modes": ["demux only"], "decoded": 0,
           "skipped": sum(counts)})
    _exit_after_flush(q)


def _run_baseline(urls, fps, seconds, warmup, q):
    """One cv2.VideoCapture thread per camera reading every frame; newest frame offered at hand-off."""
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp|analyzeduration;500000|probesize;100000"
    import cv2

    from streams import Frame, FrameSlot

    wake = threading.Event()
    slots = [FrameSlot(wake) for _ in urls]
    base_rss = _rss_mb()
    counts = [0] * len(urls)
    stop = threading.Event()
    period = 1.0 / fps

    def read(i, url):
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        next_due = 0.0
        while not stop.is_set():
            ok, img = cap.read()  # decodes and converts every frame
            if not ok:
                time.sleep(0.1)
                continue
            now = time.time()
            if now >= next_due:  # sampled at the analysis rate, like ultralytics' vid_stride
                next_due = now + period
                counts[i] += 1
                slots[i].put(Frame(f"c{i}", img, now, counts[i]))

    consumer = _Consumer(slots, wake, lambda f: f.ts)
    consumer.start()
    threads = [threading.Thread(target=read, args=(i, u), daemon=True) for i, u in enumerate(urls)]
    for t in threads:
        _stagger()
        t.start()
    time.sleep(warmup)
    consumer.ages.clear()
    n0 = sum(counts)
    c0, t0 = _cpu_s(), time.time()
    time.sleep(seconds)
    cpu, wall = _cpu_s() - c0, time.time() - t0
    ages = sorted(consumer.ages)
    q.put({"cpu_s": cpu, "wall_s": wall, "analysed": sum(counts) - n0, "rss_mb": _rss_mb(), "base_rss_mb": base_rss,
           "ages": ages, "online": len(urls), "modes": ["all (cv2)"], "decoded": None, "skipped": 0})
    stop.set()
    _exit_after_flush(q)


def _merge(parts: list[dict]) -> dict:
    """Several worker processes of one run, as one: CPU and memory add up, ages pool."""
    return {"cpu_s": sum(p["cpu_s"] for p in parts), "wall_s": max(p["wall_s"] for p in parts),
            "analysed": sum(p["analysed"] for p in parts), "rss_mb": sum(p["rss_mb"] for p in parts),
            "base_rss_mb": sum(p["base_rss_mb"] for p in parts), "ages": sorted(a for p in parts for a in p["ages"]),
            "online": sum(p["online"] for p in parts), "modes": sorted({m for p in parts for m in p["modes"]}),
            "decoded": (None if any(p["decoded"] is None for p in parts) else sum(p["decoded"] for p in parts)),
            "skipped": sum(p["skipped"] for p in parts)}


def measure(kind: str, urls: list[str], fps: float, seconds: float, warmup: float, stream_fps: int,
            processes: int = 1) -> dict:
    """One run in ``processes`` fresh processes (its CPU and memory are the run's alone)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    target = {"gridwatch": _run_gridwatch, "baseline": _run_baseline, "demux": _run_demux_only}[kind]
    procs = [ctx.Process(target=target, args=(urls[k::processes], fps, seconds, warmup, q)) for k in range(processes)]
    for p in procs:
        p.start()
    r = _merge([q.get(timeout=warmup + seconds + 120) for _ in procs])
    for p in procs:
        p.join(10)
    n = len(urls)
    ms_per_stream_s = 1000 * r["cpu_s"] / (n * r["wall_s"])
    ages = r.pop("ages")
    p95 = ages[int(0.95 * (len(ages) - 1))] * 1000 if ages else None
    return {
        "kind": kind if processes == 1 else f"{kind} x{processes} processes", "cameras": n, "analysis_fps": fps,
        "cpu_ms_per_stream_s": round(ms_per_stream_s, 2),
        "cameras_per_core": round(1000 / ms_per_stream_s, 1),
        "analysed_fps_per_camera": round(r["analysed"] / (n * r["wall_s"]), 2),
        "mb_per_camera": round(max(r["rss_mb"] - r["base_rss_mb"], 0) / n, 2),
        "frame_age_p95_ms": round(p95, 1) if p95 is not None else None,
        "frame_age_budget_ms": round(200 + 1000 / stream_fps, 1),
        "online": r["online"], "decode_modes": r["modes"],
        "decoded_share": (round(r["decoded"] / (r["decoded"] + r["skipped"]), 3)
                          if r["decoded"] is not None and r["decoded"] + r["skipped"] else None),
    }


def make_clips(specs) -> dict:
    from gridwatch.demo import fetch_vtest
    from gridwatch.harness import make_h264_clip

    src = fetch_vtest(ROOT / ".cache" / "footage")
    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (w, h, fps, gop) in specs.items():
        path = CACHE / f"{name}.mp4"
        if not path.exists():
            make_h264_clip(src, path, w, h, fps, gop, seconds=20)
        out[name] = path
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one configuration, < 1 minute")
    ap.add_argument("--floor", action="store_true", help="demux only: the cost of reading, without decoding")
    ap.add_argument("--cameras", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    args = ap.parse_args()

    from tqdm import tqdm

    from gridwatch.harness import RtspServer

    # name: (width, height, stream fps, GOP in frames)
    specs = {"360p25-gop12": (640, 360, 25, 12), "360p25-gop25": (640, 360, 25, 25),
             "360p25-gop50": (640, 360, 25, 50), "360p10-gop10": (640, 360, 10, 10),
             "720p25-gop12": (1280, 720, 25, 12), "720p25-gop25": (1280, 720, 25, 25),
             "720p10-gop10": (1280, 720, 10, 10)}
    if args.quick:
        runs = [("360p25-gop12", 2.0, "baseline"), ("360p25-gop12", 2.0, "gridwatch")]
        n, seconds, warmup = args.cameras or 8, args.seconds or 8.0, 4.0
        specs = {k: v for k, v in specs.items() if k == "360p25-gop12"}
    else:
        n, seconds, warmup = args.cameras or 16, args.seconds or 8.0, 4.0
        runs = []
        for clip in specs:
            runs.append((clip, 2.0, "baseline"))
            for fps in (1.0, 2.0, 5.0):
                runs.append((clip, fps, "gridwatch"))
        # the concurrency model, at 3x the cameras: all readers as threads of one process, or split in two
        runs += [("360p25-gop12", 2.0, "threads-big"), ("360p25-gop12", 2.0, "procs-big")]
    if args.floor:  # only what reading the streams costs, without decoding
        specs = {k: v for k, v in specs.items() if k in ("360p25-gop12", "720p25-gop12")}
        runs = [(k, 2.0, "demux") for k in specs]
    clips = make_clips(specs)
    results = []
    with RtspServer({f"{name}-{i}": path for name, path in clips.items() for i in range(n)},
                    passthrough=True) as server:
        for clip, fps, kind in tqdm(runs, desc="ingest runs", unit="run"):
            big = kind.endswith("-big")
            urls = [server.url(f"{clip}-{i % n}") for i in range(3 * n if big else n)]
            stream_fps = specs[clip][2]
            r = measure("gridwatch" if big else kind, urls, fps, seconds, warmup, stream_fps,
                        processes=2 if kind == "procs-big" else 1)
            r["clip"] = clip
            results.append(r)
            tqdm.write(json.dumps(r))

    if args.floor:
        out = ROOT / "bench" / "results" / "ingest-floor.json"
        out.write_text(json.dumps({"runs": results, "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2) + "\n")
        print(json.dumps({r["clip"]: r["cpu_ms_per_stream_s"] for r in results}))
        return 0

    def find(kind, clip, fps):
        return next(r for r in results if r["kind"] == kind and r["clip"] == clip and r["analysis_fps"] == fps)

    head_clip = "360p25-gop12"
    ours, base = find("gridwatch", head_clip, 2.0), find("baseline", head_clip, 2.0)
    summary = {
        "machine": describe() + " (CPU decode)",
        "stream": f"{head_clip}: H.264 640x360 25 fps, keyframe every 12 frames, over RTSP/TCP on loopback",
        "analysis_fps": 2.0, "cameras": n, "seconds": seconds,
        "cameras_per_core": ours["cameras_per_core"], "baseline_cameras_per_core": base["cameras_per_core"],
        "ratio": round(ours["cameras_per_core"] / base["cameras_per_core"], 2),
        "mb_per_camera": ours["mb_per_camera"], "baseline_mb_per_camera": base["mb_per_camera"],
        "frame_age_p95_ms": ours["frame_age_p95_ms"], "baseline_frame_age_p95_ms": base["frame_age_p95_ms"],
        "frame_age_budget_ms": ours["frame_age_budget_ms"],
    }
    out = ROOT / "bench" / "results" / ("ingest-quick.json" if args.quick else "ingest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "runs": results,
                               "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
