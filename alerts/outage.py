"""A Redis outage logged once when it starts and once when it ends, however many loops and requests meet it.

Without this, each request and each background round logged its own traceback:
about 26,000 lines in 100 s of one Valkey outage, which buries the one line an
operator needs ("Redis unreachable since 10:02:13").
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class OutageLog:
    """``failed(err)`` on every failure, ``ok()`` on every success; only the changes are logged.

    ``probe``: when given, a failure starts a thread that calls it every ``every_s`` until it succeeds, so the end
    of the outage is logged (and ``down`` cleared) even when nothing else asks Redis meanwhile (an idle API).
    """

    def __init__(self, what: str, logger: logging.Logger | None = None, probe: Callable[[], object] | None = None,
                 every_s: float = 1.0):
        self.what, self.log, self.probe, self.every_s = what, logger or log, probe, every_s
        self._lock = threading.Lock()
        self.since: float | None = None  # when the outage began; None while all is well

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, err: BaseException | str) -> bool:
        """Record a failure; True when it is the first of an outage (and was logged)."""
        with self._lock:
            if self.since is not None:
                return False
            self.since = time.time()
        self.log.error("%s unavailable: %s (logged once; the end of the outage will be logged)", self.what, err)
        if self.probe is not None:
            threading.Thread(target=self._watch, name=f"outage-{self.what}", daemon=True).start()
        return True

    def ok(self) -> None:
        with self._lock:
            if self.since is None:
                return
            lasted, self.since = time.time() - self.since, None
        self.log.warning("%s available again after %.1f s", self.what, lasted)

    def _watch(self) -> None:
        while self.down:
            time.sleep(self.every_s)
            try:
                self.probe()
            except Exception:  # noqa: BLE001 - still down; the outage was logged when it began
                continue
            self.ok()
