"""Lifecycle under signals, real processes: the embedded Valkey comes back when killed, goes when gridwatch goes,
and is never run twice on one data directory; Ctrl-C ends a timed demo at once."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import redis
import yaml

from alerts import EmbeddedValkey
from gridwatch.harness import free_port

ROOT = Path(__file__).resolve().parents[1]
GRIDWATCH = Path(sys.executable).parent / "gridwatch"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def valkeys_on(socket: Path) -> list[psutil.Process]:
    """Every live valkey-server serving ``socket`` (its process title names it)."""
    out = []
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        if (p.info["name"] or "").startswith("valkey-server") and p.info["status"] != psutil.STATUS_ZOMBIE \
                and str(socket) in " ".join(p.info["cmdline"] or []):
            out.append(p)
    return out


def client(socket: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(socket), socket_timeout=5)


# ---- the supervisor -----------------------------------------------------------------------------------------------

def test_killed_valkey_is_restarted_with_its_data_logging_once_per_change(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="alerts.redis_server")
    vk = EmbeddedValkey(tmp_path / "vk", poll_s=0.1, backoff_s=(0.2, 1.0)).start()
    try:
        client(vk.socket).set("before", "kept")
        first = vk.proc.pid
        vk.command = lambda: ["/bin/false"]  # the first restarts fail: still one "down" line, no flood
        os.kill(first, signal.SIGKILL)
        time.sleep(2.0)
        del vk.command
        wait_for(lambda: vk.proc.pid != first and vk._answers(), 5, "the supervisor restarted valkey")
        assert client(vk.socket).get("before") == b"kept"  # the append-only file kept it
        assert gone(first) and not psutil.pid_exists(first)  # reaped, not left a zombie
        assert [p.pid for p in valkeys_on(vk.socket)] == [vk.proc.pid]
        time.sleep(0.5)
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert sum("went down" in m for m in lines) == 1, lines
        assert sum("back up" in m for m in lines) == 1, lines
        assert vk.restarts == 1
    finally:
        vk.stop()
    assert gone(first) and not valkeys_on(vk.socket) and not vk.socket.exists()


def test_a_second_embedded_valkey_on_one_directory_is_refused(tmp_path):
    from alerts.redis_server import DataDirInUse

    with EmbeddedValkey(tmp_path / "vk") as vk:
        with pytest.raises(DataDirInUse, match=f"{tmp_path / 'vk'}.*stop that one.*--data-dir"):
            EmbeddedValkey(tmp_path / "vk").start()
        assert vk._answers()  # the refused one touched nothing of the first's


# ---- a real gridwatch process -------------------------------------------------------------------------------------

def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({"grids": [{"id": "g-1", "name": "One"}],
                                    "settings": {"data_dir": str(tmp_path / "data")}}))
    return path


class Gridwatch:
    """``gridwatch ARGS`` in its own process with the embedded Valkey (REDIS_URL removed); output in a file."""

    def __init__(self, args: list[str], log: Path):
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen([str(GRIDWATCH), *args], stdout=self._out, stderr=subprocess.STDOUT, env=env,
                                     cwd=log.parent)
        self.valkeys: list[psutil.Process] = []

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> "Gridwatch":
        deadline = time.monotonic() + timeout
        while "Operator page:" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gridwatch did not start (rc {self.proc.poll()}):\n{self.output()}")
            time.sleep(0.1)
        self.valkeys = [c for c in psutil.Process(self.proc.pid).children(recursive=True)
                        if c.name().startswith("valkey-server")]
        return self

    def stop_with(self, sig: int, timeout: float) -> float:
        """Seconds from ``sig`` to the process's exit."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"gridwatch still running {timeout} s after signal {sig}:\n{self.output()}") from None
        return time.monotonic() - t0

    def kill(self) -> None:
        """The test's cleanup: nothing it started outlives it."""
        if self.proc.poll() is None:
            self.valkeys += [c for c in psutil.Process(self.proc.pid).children(recursive=True)
                             if c.name().startswith("valkey-server")]
            self.proc.kill()
            self.proc.wait(10)
        for v in self.valkeys:
            if not gone(v.pid):
                v.kill()
        self._out.close()


@contextmanager
def gridwatch(args: list[str], log: Path) -> Iterator[Gridwatch]:
    gw = Gridwatch(args, log)
    try:
        yield gw
    finally:
        gw.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_gridwatch_and_its_embedded_valkey(tmp_path, sig):
    cfg = write_config(tmp_path)
    socket = tmp_path / "data" / "valkey" / "valkey.sock"
    with gridwatch(["serve", "--config", str(cfg), "--port", str(free_port())], tmp_path / "gw.log") as gw:
        gw.wait_ready()
        assert len(gw.valkeys) == 1 and valkeys_on(socket) == gw.valkeys
        client(socket).set("written", "before the signal")
        gw.stop_with(sig, 15)
        wait_for(lambda: gone(gw.valkeys[0].pid), 5, "valkey-server gone with gridwatch")
        assert not socket.exists() and not valkeys_on(socket)
    # its append-only file was flushed: the next one has the data
    with EmbeddedValkey(tmp_path / "data" / "valkey") as vk:
        assert client(vk.socket).get("written") == b"before the signal"


def spawn_orphan(data_dir: Path) -> int:
    """A valkey-server on the directory that no gridwatch owns, as a gridwatch killed before this fix (or on a
    system without PR_SET_PDEATHSIG) left behind: daemonized, so init is its parent."""
    cmd = EmbeddedValkey(data_dir).command()
    cmd[cmd.index("--daemonize") + 1] = "yes"
    subprocess.run(cmd, check=True, timeout=10)
    wait_for(lambda: (data_dir / "valkey.pid").is_file() and data_dir.joinpath("valkey.sock").exists(), 10,
             "the orphan is up")
    pid = int((data_dir / "valkey.pid").read_text())
    wait_for(lambda: client(data_dir / "valkey.sock").ping(), 10, "the orphan answers")
    return pid


def test_one_gridwatch_per_data_dir_and_an_orphaned_valkey_is_taken_over(tmp_path):
    cfg = write_config(tmp_path)
    vdir = tmp_path / "data" / "valkey"
    socket = vdir / "valkey.sock"
    orphan = None
    try:
        with gridwatch(["serve", "--config", str(cfg), "--port", str(free_port())], tmp_path / "a.log") as a:
            a.wait_ready()
            client(socket).set("k1", "from a")
            # a second start on the same data directory is refused, naming it and the way out
            second = subprocess.run([str(GRIDWATCH), "serve", "--config", str(cfg), "--port", str(free_port())],
                                    env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
                                    capture_output=True, text=True, timeout=60)
            assert second.returncode == 1, second.stderr
            assert str(vdir) in second.stderr and "--data-dir" in second.stderr and "stop that one" in second.stderr
            assert valkeys_on(socket) == a.valkeys and client(socket).get("k1") == b"from a"  # a's untouched
            # SIGKILL: no cleanup runs in gridwatch, yet its valkey-server does not outlive it
            a.proc.kill()
            a.proc.wait(10)
            wait_for(lambda: gone(a.valkeys[0].pid), 10, "valkey-server died with its SIGKILLed gridwatch")
        orphan = spawn_orphan(vdir)
        client(socket).set("k2", "in the orphan")
        with gridwatch(["serve", "--config", str(cfg), "--port", str(free_port())], tmp_path / "c.log") as c:
            c.wait_ready()
            assert gone(orphan)
            assert [p.pid for p in valkeys_on(socket)] == [v.pid for v in c.valkeys] and len(c.valkeys) == 1
            assert client(socket).mget("k1", "k2") == [b"from a", b"in the orphan"]
            assert "taking over" in c.output() or "take over" in c.output()
            c.stop_with(signal.SIGTERM, 15)
    finally:
        if orphan and not gone(orphan):
            os.kill(orphan, signal.SIGKILL)


@pytest.mark.slow
def test_ctrl_c_ends_a_timed_demo_at_once(tmp_path, vtest, rtsp_ok):
    data = tmp_path / "demo"
    (data / "footage").mkdir(parents=True)
    (data / "footage" / "vtest.avi").symlink_to(vtest)  # no apt-get download here
    args = ["demo", "--duration", "60", "--data-dir", str(data), "--port", str(free_port())]
    with gridwatch(args, tmp_path / "demo.log") as gw:
        gw.wait_ready(120)
        took = gw.stop_with(signal.SIGINT, 30)
        assert took < 15, f"Ctrl-C took {took:.1f} s to end a 60 s demo:\n{gw.output()}"
        assert all(gone(v.pid) for v in gw.valkeys)
