"""No alert lost while Redis is down: a local append-only spool (fsync) and an outbox that drains it in order.

The spool is one JSON line per operation in ``alerts.jsonl`` and the byte offset
delivered so far in ``offset`` (written atomically). Delivery is idempotent on
the Redis side (each alert carries its incident id and sequence number), so an
operation delivered twice (crash between delivery and the offset) still makes
one case: in order, without duplicates.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

log = logging.getLogger(__name__)

# what "Redis is not there right now" looks like; anything else is a bad operation, not an outage
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ReadOnlyError,
               ConnectionError, TimeoutError)


class SpoolInUse(RuntimeError):
    """Another live process holds this spool (its lock): it is theirs to deliver."""


class Spool:
    """An append-only file of operations, fsynced before ``append`` returns; one process holds it (flock)."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "alerts.jsonl"
        self.offset_path = self.dir / "offset"
        self.rejected_path = self.dir / "rejected.jsonl"
        self._fh = open(self.path, "ab")
        try:  # two writers on one spool would interleave and replay each other's lines
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise SpoolInUse(f"spool {self.path} is in use by another gridwatch process; give each process its "
                               "own alerts.spool_dir (or settings.data_dir)") from None
        self.offset = self._read_offset()

    def _read_offset(self) -> int:
        try:
            return min(int(self.offset_path.read_text().strip() or 0), self.size())
        except (FileNotFoundError, ValueError):
            return 0

    def size(self) -> int:
        return self.path.stat().st_size

    def append(self, op: dict) -> None:
        self._fh.write(json.dumps(op, separators=(",", ":")).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def has_pending(self) -> bool:
        return self.size() > self.offset

    def read(self, limit: int = 500) -> Iterator[tuple[int, dict | None]]:
        """(offset after the line, operation) for up to ``limit`` undelivered lines; a torn last line is skipped."""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            pos = self.offset
            for _ in range(limit):
                line = fh.readline()
                if not line:
                    return
                if not line.endswith(b"\n"):  # being written (or torn by a crash before fsync): not ours yet
                    return
                pos += len(line)
                try:
                    yield pos, json.loads(line)
                except json.JSONDecodeError:
                    log.error("spool: unreadable line at %d skipped: %r", pos - len(line), line[:200])
                    yield pos, None

    def commit(self, offset: int) -> None:
        tmp = self.offset_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(str(offset))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.offset_path)
        self.offset = offset

    def reject(self, op: dict, why: str) -> None:
        """An operation Redis refuses (not an outage): kept aside, never dropped, never blocking the rest."""
        with open(self.rejected_path, "ab") as fh:
            fh.write(json.dumps({"why": why, "op": op}).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def compact(self) -> None:
        """Everything delivered: start an empty file (the caller holds the lock, so nothing is appended now)."""
        self._fh.truncate(0)
        self._fh.seek(0)
        os.fsync(self._fh.fileno())
        self.commit(0)

    def close(self) -> None:
        self._fh.close()


class Outbox:
    """Sends operations to Redis now when it can, else spools them; a thread delivers the spool in order.

    While anything is spooled, new operations queue behind it, so the order in
    which the pipeline produced them is the order Redis sees.
    """

    def __init__(self, spool: Spool, deliver: Callable[[dict], object], retry_s: float = 0.5,
                 max_retry_s: float = 5.0, adopted: bool = False):
        """``adopted``: the spool of a process that died; once delivered, it is closed and its folder removed."""
        self.spool, self.deliver, self.adopted = spool, deliver, adopted
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._spooling = spool.has_pending()
        self.spooled = 0
        self.replayed = 0
        self.rejected = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._drain_loop, name="spool-drain", daemon=True)
        self._thread.start()
        if self._spooling:
            log.warning("spool: %d bytes from before are delivered first", spool.size() - spool.offset)
            self._wake.set()

    @property
    def spooling(self) -> bool:
        return self._spooling

    def send(self, op: dict) -> object | None:
        """Deliver ``op``; returns what delivery returned, or None when it was spooled (it will be delivered)."""
        with self._lock:
            if not self._spooling:
                try:
                    return self.deliver(op)
                except UNAVAILABLE as err:
                    self.last_error = f"{type(err).__name__}: {err}"
                    log.warning("Redis unavailable (%s); spooling alerts to %s", err, self.spool.path)
                    self._spooling = True
            self.spool.append(op)
            self.spooled += 1
            self._wake.set()
            return None

    def _drain_loop(self) -> None:
        delay = self.retry_s
        while not self._stop.is_set():
            self._wake.wait(delay if self._spooling else 1.0)
            self._wake.clear()
            if not self._spooling:
                continue
            try:
                self.drain()
                delay = self.retry_s
            except UNAVAILABLE as err:
                self.last_error = f"{type(err).__name__}: {err}"
                delay = min(delay * 2, self.max_retry_s)

    def drain(self) -> None:
        """Deliver every spooled operation in order; raises UNAVAILABLE (and keeps its place) if Redis is still away."""
        while True:
            with self._lock:
                batch = list(self.spool.read())
                if not batch:
                    if self.spool.size() == self.spool.offset:
                        self.spool.compact()
                        self._spooling = False
                        log.info("spool %s drained: Redis has every alert again", self.spool.dir)
                        if self.adopted:
                            self._retire()
                    return
            done = self.spool.offset
            try:
                for end, op in batch:
                    if op is not None:
                        try:
                            self.deliver(op)
                            self.replayed += 1
                        except UNAVAILABLE:
                            raise
                        except redis.RedisError as err:  # refused, not unreachable: set aside, go on
                            self.rejected += 1
                            self.spool.reject(op, f"{type(err).__name__}: {err}")
                    done = end
            finally:
                with self._lock:
                    self.spool.commit(done)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the spool is delivered (tests, shutdown); False if Redis stayed away."""
        deadline = time.monotonic() + timeout
        while self._spooling and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        return not self._spooling

    def _retire(self) -> None:
        """An adopted spool is delivered: nobody will write it again (its process is dead), so it goes."""
        self._stop.set()
        if not self.spool.rejected_path.exists():  # refused operations stay for a person to look at
            for f in (self.spool.path, self.spool.offset_path):
                f.unlink(missing_ok=True)
            try:
                self.spool.dir.rmdir()
            except OSError:
                pass
        self.spool.close()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)
        if not self.spool._fh.closed:
            self.spool.close()


def adopt_orphans(root: Path, own: Path, deliver: Callable[[dict], object], name_prefix: str = "") -> list[Outbox]:
    """Deliver the spools that processes which died on this machine left under ``root``.

    Each worker spools into its own folder under ``alerts.spool_dir``; a folder whose lock nobody holds belongs to a
    dead process (the kernel drops a dead process's flock), so the first worker to start after it takes it over and
    delivers it in order, in the background (``name_prefix``: only spools of the same Redis key prefix; ``root``
    itself is a spool from before spools were per worker). The delivery is idempotent on the Redis side, so an alert the dead
    worker sent just before dying (and had not yet marked delivered) still makes one case.
    """
    adopted: list[Outbox] = []
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(name_prefix)) \
        if root.is_dir() else []
    for folder in candidates:
        if folder.resolve() == own.resolve() or not (folder / "alerts.jsonl").exists():
            continue
        try:
            spool = Spool(folder)
        except SpoolInUse:
            continue  # a live process's spool
        outbox = Outbox(spool, deliver, adopted=True)
        if spool.has_pending():
            log.warning("spool %s of a process that is gone: %d bytes to deliver", folder, spool.size() - spool.offset)
            adopted.append(outbox)
        elif folder != root:
            outbox._retire()
        else:
            outbox.close()
    return adopted
