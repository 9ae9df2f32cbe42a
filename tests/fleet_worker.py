"""``python -m tests.fleet_worker --config ... [worker options]``: ``gridwatch worker`` with the detector replaced.

The fleet tests run several workers on a 2-core machine; the real detector is exercised by one of them
(tests/test_fleet.py) and by the rest of the suite. Everything else is real: RTSP, Redis, tooz, the spool.
``GW_FAKE_PEOPLE`` people stand in the middle of every frame, so a crowding zone there sees a crowd as long as the
camera is analysed.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    from gridwatch.cli import main
    from gridwatch.harness.doubles import StandingCrowd

    if os.environ.get("GW_FAKE_DETECTOR", "1") == "1":
        StandingCrowd.replacing_the_detector(int(os.environ.get("GW_FAKE_PEOPLE", "4")))
    sys.exit(main(["worker", *sys.argv[1:]]))
