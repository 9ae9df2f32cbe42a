"""Start and stop the GStreamer RTSP server (``rtsp_server.py``) from gridwatch's own Python."""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
_SCRIPT = Path(__file__).with_name("rtsp_server.py")


def rtsp_server_available() -> bool:
    """True when the system Python can import GStreamer's RTSP server bindings."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = ("import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('decodebin')")
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0


def _die_with_parent() -> None:
    """Runs in the child before exec: the server gets SIGKILL when its parent dies, so a killed test
    or benchmark leaves no server holding its port. Linux sends it when the *thread* that started the
    server ends: start servers from a thread that outlives them (the main thread, as everywhere here)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """A real RTSP server serving files as cameras at ``rtsp://127.0.0.1:PORT/NAME``.

    Each mount is a live camera (``rtsp_server.py``): one stream on one timeline, switched on by its first client
    (who sees the clip from its start) and joined by every later client at the current moment, at the next keyframe;
    two clients get the same frame at the same time, as from a real camera. ``loop=False`` serves clips instead:
    each client gets the clip from its start, and its stream ends with it.
    """

    def __init__(self, mounts: dict[str, Path | str], port: int | None = None, fps: int = 10, width: int = 0,
                 user: str | None = None, password: str | None = None, loop: bool = True,
                 passthrough: bool = False):
        self.mounts = {k: str(v) for k, v in mounts.items()}
        self.port = port or free_port()
        self.fps, self.width, self.user, self.password, self.loop = fps, width, user, password, loop
        self.passthrough = passthrough
        self.proc: subprocess.Popen | None = None

    def url(self, name: str, credentials: bool = True) -> str:
        auth = f"{self.user}:{self.password}@" if credentials and self.user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{name}"

    def start(self, timeout: float = 15.0) -> "RtspServer":
        cmd = [SYSTEM_PYTHON, str(_SCRIPT), "--port", str(self.port), "--fps", str(self.fps), "--width", str(self.width)]
        if not self.loop:
            cmd.append("--once")
        if self.passthrough:
            cmd.append("--passthrough")
        if self.user:
            cmd += ["--user", self.user, "--password", self.password or ""]
        cmd += [f"{k}={v}" for k, v in self.mounts.items()]
        # a clean environment: the venv's variables must not leak into the system Python
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY"):
                    return self
                if line.startswith("FAILED") or line == "":
                    break
        self.stop()
        raise RuntimeError(f"the RTSP server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the server hangs with its sockets open, as a frozen camera does."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
