"""Time from `gridwatch demo` to the first alert, frames analysed per second, and peak memory.

Runs the demo as a user would (a subprocess), samples the memory of its whole
process tree (gridwatch, the embedded Valkey, the RTSP server) and writes
bench/results/demo.json. The last line printed is that JSON.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from bench.machine import describe

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--port", type=int, default=8097)
    args = ap.parse_args()
    data_dir = ROOT / "var" / "bench-demo"
    for sub in ("valkey", "evidence"):
        subprocess.run(["rm", "-rf", str(data_dir / sub)])
    cmd = [str(Path(sys.executable).with_name("gridwatch")), "demo", "--duration", str(args.duration),
           "--port", str(args.port), "--data-dir", str(data_dir)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    peak = {"rss": 0}

    def sample():
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = sum(c.memory_info().rss for c in [p, *p.children(recursive=True)])
                peak["rss"] = max(peak["rss"], rss)
            except psutil.Error:
                pass
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    first_alert = ready = None
    stats = {}
    for line in proc.stdout:
        now = time.monotonic() - t0
        if ready is None and line.startswith("Operator page:"):
            ready = now
        if first_alert is None and "alerts.publisher: alert " in line:
            first_alert = now
        if m := re.match(r"analysed (\d+) frames at ([\d.]+) fps \(mean batch ([\d.]+)\); alerts published: (\d+)",
                         line):
            stats = {"frames": int(m[1]), "fps": float(m[2]), "mean_batch": float(m[3]), "alerts": int(m[4])}
    proc.wait()
    result = {
        "machine": describe(),
        "model": "yolov10n.pt @ 640, CPU", "cameras": 2, "analysis_fps_configured": {"cam-plaza": 3, "cam-street": 2},
        "duration_s": args.duration, "ready_s": ready, "first_alert_s": first_alert,
        "frames_analysed_per_s": stats.get("fps"), "mean_batch": stats.get("mean_batch"),
        "alerts": stats.get("alerts"), "peak_rss_mb": round(peak["rss"] / 2**20),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0 if first_alert is not None else 1


if __name__ == "__main__":
    sys.exit(main())
