"""What every benchmark result states about where it ran (one description for all of bench/)."""
from __future__ import annotations

import os
import platform


def describe(gpu: str | None = None) -> str:
    """Cores, architecture, CPU model, memory and the GPU used ("no GPU" unless one is named)."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores {platform.machine()} ({cpu}), {mem:.0f} GiB, "
            f"Python {platform.python_version()}, {gpu or 'no GPU'}")
