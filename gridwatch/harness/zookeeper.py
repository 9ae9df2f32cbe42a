"""A real, throw-away Apache ZooKeeper server (Debian's ``zookeeper`` package) for the tests and benchmarks.

ZooKeeper is what tooz's ``zookeeper://`` driver coordinates through; a real server catches what a fake would not
(session expiry, ephemeral nodes vanishing, the wire protocol). Debian ships no runnable server without root
(``zkServer.sh`` wants /etc/zookeeper and /var/lib/zookeeper), so this runs the jars directly as the current user,
everything in a temporary directory.
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from types import TracebackType

from .rtsp import _die_with_parent, free_port

JAVA_DIR = Path("/usr/share/java")
_ZK_JAR = JAVA_DIR / "zookeeper.jar"
# Debian's ZooKeeper logs through slf4j 1.7 to log4j 1.2; without the binding slf4j drops every line, and the
# error tail a failed start should show would be empty
_LOG_JARS = (JAVA_DIR / "slf4j-log4j12.jar", JAVA_DIR / "log4j-1.2.jar")
# named in zookeeper.jar's manifest but only needed by the CLI (jline) or the admin server (jetty), both unused here
_OPTIONAL = ("jline", "jetty")
_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"  # standalone: what QuorumPeerMain runs for one server

_LOG4J = """\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File={log}
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} %-5p [%t:%C{{1}}@%L] - %m%n
"""


def _manifest_classpath(jar: Path) -> list[Path]:
    """The jars ``jar``'s manifest pulls in (Debian lists ZooKeeper's dependencies there, as absolute paths)."""
    with zipfile.ZipFile(jar) as z:
        text = z.read("META-INF/MANIFEST.MF").decode()
    joined = text.replace("\r\n", "\n").replace("\n ", "")  # manifest lines continue with a leading space
    for line in joined.splitlines():
        if line.startswith("Class-Path:"):
            return [Path(p) for p in line.split(":", 1)[1].split()]
    return []


def _classpath() -> list[Path]:
    """zookeeper.jar (its manifest brings the rest) and the log4j binding."""
    return [_ZK_JAR, *_LOG_JARS]


def zookeeper_available() -> str | None:
    """None when a ZooKeeper server can be started here; otherwise why not, for ``pytest.skip``."""
    if shutil.which("java") is None:
        return "no java on PATH (apt-get install default-jre-headless zookeeper)"
    if not _ZK_JAR.is_file():
        return f"no {_ZK_JAR} (apt-get install zookeeper)"
    try:
        deps = _manifest_classpath(_ZK_JAR)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        return f"cannot read {_ZK_JAR}'s manifest: {e}"
    missing = [str(p) for p in [*_LOG_JARS, *deps] if not p.exists() and not any(o in p.name for o in _OPTIONAL)]
    if missing:
        return f"ZooKeeper's jars are missing: {', '.join(missing)} (apt-get install zookeeper)"
    return None


def four_letter_word(port: int, word: str = "ruok", timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command (``ruok``, ``srvr``) to 127.0.0.1:port; the answer, or '' on failure."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


class ZooKeeperServer:
    """A standalone ZooKeeper on 127.0.0.1 with its data, config and log in a temporary directory.

    ``tick_ms`` is ZooKeeper's tick: sessions may be as short as two ticks, so a small tick lets tests watch a
    session expire quickly. ``url`` is tooz's (``zookeeper://127.0.0.1:PORT``); kazoo takes ``hosts``.
    """

    def __init__(self, tick_ms: int = 500):
        self.tick_ms = tick_ms
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None

    @property
    def url(self) -> str:
        return f"zookeeper://127.0.0.1:{self.port}"

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log and of the JVM's own output (errors before logging starts)."""
        if self.dir is None:
            return ""
        out = []
        for name in ("zookeeper.log", "jvm.out"):
            p = self.dir / name
            if p.is_file():
                text = p.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    out.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(out)

    def start(self, timeout: float = 30.0) -> "ZooKeeperServer":
        """Launch the JVM and wait until it serves (``ruok``, then ``srvr``); RuntimeError with the log tail otherwise."""
        reason = zookeeper_available()
        if reason:
            raise RuntimeError(reason)
        self.dir = Path(tempfile.mkdtemp(prefix="gridwatch-zk-"))
        deadline = time.monotonic() + timeout
        try:
            for _ in range(3):  # free_port() can race another process to the port: then try another one
                if self._launch(deadline):
                    return self
                if "Address already in use" not in self.log_tail(200) or time.monotonic() > deadline:
                    break
            code = self.proc.poll() if self.proc else None
            why = f"exited with code {code}" if code is not None else f"did not answer within {timeout:.0f} s"
            raise RuntimeError(f"ZooKeeper on port {self.port} {why}\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _launch(self, deadline: float) -> bool:
        """One attempt on a fresh port: True once the server answers, False if it died or the deadline passed."""
        assert self.dir is not None
        self._kill()
        self.port = free_port()
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        cfg, log4j = self.dir / "zoo.cfg", self.dir / "log4j.properties"
        # unknown keys become zookeeper.* system properties (forceSync: no fsync per write, a throw-away server)
        cfg.write_text(f"dataDir={data}\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
                       f"tickTime={self.tick_ms}\nminSessionTimeout={2 * self.tick_ms}\n"
                       "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\nforceSync=no\n")
        log4j.write_text(_LOG4J.format(log=self.dir / "zookeeper.log"))
        cmd = ["java", "-Xmx128m", "-XX:+UseSerialGC",  # small heap, one GC thread; full JIT for benchmarks
               f"-Dlog4j.configuration={log4j.as_uri()}", "-Dzookeeper.jmx.log4j.disable=true",
               "-cp", ":".join(str(p) for p in _classpath()), _MAIN, str(cfg)]
        with open(self.dir / "jvm.out", "ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.dir, preexec_fn=_die_with_parent)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            # ruok answers as soon as the port listens, before the server serves: srvr says when it does
            if four_letter_word(self.port) == "imok" and four_letter_word(self.port, "srvr").startswith("Zookeeper version"):
                return True
            time.sleep(0.1)
        return False

    def _kill(self) -> None:
        """SIGTERM (ZooKeeper closes its sessions), then SIGKILL if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        """Stop the server and delete its directory (data, config, log)."""
        self._kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> "ZooKeeperServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
