"""The security probe's camera-URL findings, kept as tests on real parts.

A. the admin camera test opened any FFmpeg URL (concat:/etc/passwd came back as a JPEG of the text);
B. a stored camera password was restored into a URL for any host and sent there;
C. passwords with '@', '/' or spaces, and query-string passwords, leaked through the masking.

Real uvicorn over real Redis/Valkey, the real GStreamer RTSP server, real TCP listeners standing in for
an attacker's host, real FFmpeg (PyAV).
"""
from __future__ import annotations

import asyncio
import base64
import logging
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for

from gridwatch.config import Camera, ConfigError, keep_secret, load_config, parse_config
from gridwatch.harness import RtspServer, free_port
from streams import CameraReader, FrameSlot
from streams.urls import (
    FILE_FORMATS,
    MaskingFormatter,
    UnsafeSource,
    check_source,
    has_masked_secret,
    mask_json,
    mask_text,
    mask_url,
    mask_url_field,
    url_secrets,
)

ZONE = {"id": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}


class Listener:
    """A plain TCP listener (an attacker's host): records every byte; answers RTSP requests with a Basic challenge.

    The challenge is what makes FFmpeg send ``Authorization: Basic base64(user:password)``, as the probe saw.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen()
        self.host, self.port = host, self.sock.getsockname()[1]
        self.received = bytearray()
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            conn.settimeout(5)
            try:
                while data := conn.recv(4096):
                    self.received.extend(data)
                    buf += data
                    while b"\r\n\r\n" in buf:
                        req, buf = buf.split(b"\r\n\r\n", 1)
                        cseq = re.search(rb"CSeq:\s*(\d+)", req)
                        conn.sendall(b"RTSP/1.0 401 Unauthorized\r\nCSeq: " + (cseq[1] if cseq else b"1")
                                     + b'\r\nWWW-Authenticate: Basic realm="cam"\r\n\r\n')
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def basic(user: str, password: str) -> bytes:
    return base64.b64encode(f"{user}:{password}".encode())


def problems(r) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {e["field"]: e["message"] for e in r.json()["errors"]}


# ---- A: what may be opened --------------------------------------------------------------------------------------
def test_the_camera_test_refuses_every_other_protocol_and_any_file_with_422(api):
    admin = api.headers_for("admin")
    bait = Listener()  # http:, tcp:, udp: and ftp: aim here: nothing may connect
    try:
        hostile = [
            "concat:/etc/passwd|/etc/xdg/pip/constraints.txt",
            "file:/etc/passwd", "file:///etc/passwd", "/etc/passwd", "../../../../etc/passwd",
            f"http://127.0.0.1:{bait.port}/x.mp4", f"https://127.0.0.1:{bait.port}/x", f"tcp://127.0.0.1:{bait.port}",
            f"udp://127.0.0.1:{bait.port}", f"ftp://u:p@127.0.0.1:{bait.port}/x.avi",
            "data:text/plain;base64,cm9vdDp4OjA6MA==", "subfile,,start,0,end,0,,:/etc/passwd", "pipe:0",
            "rtsp:///x", "rtsp://", f"rtsp://127.0.0.1:{bait.port}/x\r\nInjected: 1",
        ]
        for url in hostile:
            r = api.post("/api/admin/cameras/test", json={"url": url}, headers=admin)
            assert r.status_code == 422, (url, r.status_code, r.headers.get("content-type"))
            assert not r.headers["content-type"].startswith("image/")
            assert list(problems(r)) == ["body.url"], url
            assert "root:" not in r.text
        assert bait.connections == 0 and not bait.received
        # the answer does not tell whether a file exists
        there = problems(api.post("/api/admin/cameras/test", json={"url": "/etc/passwd"}, headers=admin))
        absent = problems(api.post("/api/admin/cameras/test", json={"url": "/etc/no-such-file-here"}, headers=admin))
        assert there == absent and "settings.media_dirs" in there["body.url"]
        # the zone editor's snapshot of a configured camera goes through the same check
        api.app.state.config.cameras[0].url = "/etc/passwd"
        assert api.get("/api/admin/cameras/cam-1/snapshot", headers=admin).status_code == 422
    finally:
        bait.close()


def test_media_dirs_allow_their_videos_only(api, short_clip, tmp_path):
    """Inside settings.media_dirs a real video works; '..', a symlink out, and a text file (FFmpeg's tty) do not."""
    admin = api.headers_for("admin")
    media, outside = tmp_path / "media", tmp_path / "outside"
    media.mkdir()
    outside.mkdir()
    shutil.copy(short_clip, media / "clip.mp4")
    shutil.copy(short_clip, outside / "secret.mp4")
    (media / "to-passwd.mp4").symlink_to("/etc/passwd")
    (media / "elsewhere").symlink_to(outside, target_is_directory=True)
    (media / "notes.txt").write_text("root:x:0:0:root:/root:/bin/bash\n" * 40)
    api.app.state.config.settings.media_dirs = [media]

    def test(url: str):
        return api.post("/api/admin/cameras/test", json={"url": url}, headers=admin)

    r = test(str(media / "clip.mp4"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert test(f"file://{media / 'clip.mp4'}").status_code == 200
    for url in (f"{media}/../outside/secret.mp4", str(media / "elsewhere" / "secret.mp4"),
                str(media / "to-passwd.mp4"), str(outside / "secret.mp4"), str(media)):
        assert list(problems(test(url))) == ["body.url"], url
    # allowed place, but not a video: FFmpeg's tty demuxer would draw it; the format whitelist stops it
    r = test(str(media / "notes.txt"))
    assert r.status_code == 502 and "no video picture" in r.json()["detail"]
    assert not r.headers["content-type"].startswith("image/")


def test_a_real_rtsp_camera_still_works_and_failures_say_little(api, vtest, rtsp_ok):
    admin = api.headers_for("admin")
    with RtspServer({"walk": vtest}, user="viewer", password="cam-pass-1") as server:
        r = api.post("/api/admin/cameras/test", json={"url": server.url("walk")}, headers=admin)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.headers["x-width"] == "768"

        wrong = server.url("walk").replace("cam-pass-1", "wrong-pass-2")
        r = api.post("/api/admin/cameras/test", json={"url": wrong}, headers=admin)
        assert r.status_code == 502 and "401" in r.json()["detail"] and "wrong-pass-2" not in r.text

        def failure(url: str) -> str:
            r = api.post("/api/admin/cameras/test", json={"url": url}, headers=admin)
            assert r.status_code == 502, r.text
            return r.json()["detail"].removeprefix(mask_url_field(url) + ": ")

        # refused, no such stream on a real server, something that is not RTSP: one and the same answer
        closed = failure(f"rtsp://127.0.0.1:{free_port()}/x")
        missing = failure(server.url("nope"))
        with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers... then goes away
            silent_port = silent.getsockname()[1]
            threading.Thread(target=lambda: silent.accept()[0].close(), daemon=True).start()
            not_rtsp = failure(f"rtsp://127.0.0.1:{silent_port}/x")
        assert closed == missing == not_rtsp
        assert not re.search(r"refused|404|not found|errno|timed out", closed, re.I)


# ---- B: a stored password stays with its camera ---------------------------------------------------------------------
def test_a_stored_password_is_never_sent_to_another_host_port_or_user(api):
    admin = api.headers_for("admin")
    port = free_port()
    home = Listener("127.0.0.1", port)  # the camera's own address
    other_port = Listener("127.0.0.1")
    try:
        other_host = Listener("127.0.0.2", port)
    except OSError:
        other_host = None
    try:
        cam = {"id": "cam-sec", "url": f"rtsp://admin:S3cret-pw@127.0.0.1:{port}/cam", "grid": "g-2",
               "lat": 31.2, "lon": 121.4, "zones": [ZONE]}
        assert api.put("/api/admin/cameras/cam-sec", params={"create": "true"}, json=cam,
                       headers=admin).status_code == 200
        stolen = basic("admin", "S3cret-pw")
        attempts = [f"rtsp://admin:***@127.0.0.1:{other_port.port}/cam",
                    f"rtsps://admin:***@127.0.0.1:{port}/cam",
                    f"rtsp://root:***@127.0.0.1:{port}/cam"]
        if other_host is not None:
            attempts.append(f"rtsp://admin:***@127.0.0.2:{port}/cam")
        for url in attempts:
            r = api.post("/api/admin/cameras/test", json={"url": url, "camera_id": "cam-sec"}, headers=admin)
            assert "password" in problems(r)["body.url"], url
            # the same through an edit of the camera: refused, the stored URL unchanged
            r = api.put("/api/admin/cameras/cam-sec", json={**cam, "url": url}, headers=admin)
            assert "password" in problems(r)["body.url"], url
        assert api.app.state.config.camera("cam-sec").url == cam["url"]
        time.sleep(0.3)
        assert not other_port.received and stolen not in home.received
        assert other_host is None or not other_host.received
        # the control: the same scheme, host, port and user gets the stored password (the listener hears it)
        r = api.post("/api/admin/cameras/test", json={"url": f"rtsp://admin:***@127.0.0.1:{port}/other",
                                                      "camera_id": "cam-sec"}, headers=admin)
        assert r.status_code == 502 and "401" in r.json()["detail"] and "S3cret" not in r.text
        assert wait_for(lambda: stolen in home.received, 5)
    finally:
        for listener in (home, other_port, other_host):
            if listener is not None:
                listener.close()


def test_keep_secret_compares_scheme_host_port_and_user():
    stored = "rtsp://admin:pw@cam.example:554/s?user=admin&password=qpw"
    assert keep_secret("rtsp://admin:***@cam.example/s?user=admin&password=***", stored) == \
        "rtsp://admin:pw@cam.example/s?user=admin&password=qpw"  # 554 is RTSP's own port
    for other in ("rtsp://admin:***@cam.example:8554/s", "rtsp://admin:***@evil.example/s",
                  "rtsps://admin:***@cam.example:554/s", "rtsp://root:***@cam.example/s",
                  "rtsp://admin:***@cam.example/s?user=root&password=***"):
        assert has_masked_secret(keep_secret(other, stored)), other
    # a password holding '@' and '/' is restored whole for its own host
    odd = "rtsp://admin:p@ss/w rd@10.0.0.5/s"
    assert keep_secret("rtsp://admin:***@10.0.0.5/t", odd) == "rtsp://admin:p@ss/w rd@10.0.0.5/t"
    assert keep_secret(mask_url_field(odd), odd) == odd


# ---- C: masking -----------------------------------------------------------------------------------------------------
HOSTILE = {  # camera -> (URL, fragments of its secret that must never be seen)
    "cam-at": ("rtsp://admin:p@ss/w rd@127.0.0.1:{port}/a", ["p@ss", "ss/w", "w rd"]),
    "cam-space": ("rtsp://admin:a b@c-S3c@127.0.0.1:{port}/b", ["a b@c", "b@c-S3c", "c-S3c"]),
    "cam-pct": ("rtsp://admin:pct%2Fpass%40word@127.0.0.1:{port}/c", ["pct%2F", "pass%40", "pct/pass", "pass@word"]),
    "cam-query": ("rtsp://127.0.0.1:{port}/d?user=admin&password=qu3ry-S3cret&channel=1", ["qu3ry", "S3cret"]),
    "cam-quote": ("rtsp://admin:it's-S3cr3t@127.0.0.1:{port}/e", ["it's", "s-S3cr3t"]),
}


def hostile(port: int) -> dict[str, tuple[str, list[str]]]:
    return {cid: (url.format(port=port), frags) for cid, (url, frags) in HOSTILE.items()}


def assert_hidden(text: str, cams: dict[str, tuple[str, list[str]]]) -> None:
    for cid, (_, frags) in cams.items():
        for frag in frags:
            assert frag not in text, (cid, frag, text[:2000])


def test_hostile_passwords_never_reach_the_api_the_audit_or_last_error(api):
    admin = api.headers_for("admin")
    cams = hostile(free_port())  # nothing listens there: every reader fails at once
    for cid, (url, _) in cams.items():
        body = {"id": cid, "url": url, "grid": "g-2", "lat": 31.2, "lon": 121.4, "zones": [ZONE]}
        r = api.put(f"/api/admin/cameras/{cid}", params={"create": "true"}, json=body, headers=admin)
        assert r.status_code == 200, r.text
        assert_hidden(r.text, cams)
        assert api.app.state.config.camera(cid).url == url  # stored as typed
    # the readers fail (refused, or a host taken from inside the password) and say so in last_error
    readers = [CameraReader(cid, url, fps=1, slot=FrameSlot(), hwaccel="cpu") for cid, (url, _) in cams.items()]
    for reader in readers:
        reader.start()
    try:
        assert wait_for(lambda: all(r.health.last_error for r in readers), 10)
    finally:
        for reader in readers:
            reader.stop(timeout=5)
    api.app.state.telemetry.put({r.camera_id: r.snapshot_health() for r in readers}, {})
    for reader in readers:
        assert_hidden(str(reader.snapshot_health()), cams)

    worker = api.get("/api/cameras", headers=api.headers_for("w1"))
    everyone = api.get("/api/cameras", headers=admin)
    assert worker.status_code == everyone.status_code == 200
    seen = {c["id"]: c for c in worker.json()}
    assert set(cams) <= set(seen) and all(seen[cid]["last_error"] for cid in cams)
    assert seen["cam-query"]["url"].endswith("?user=admin&password=***&channel=1")
    for r in (worker, everyone, api.get("/api/cameras/cam-at", headers=admin), api.get("/api/admin/config", headers=admin),
              api.get("/api/audit", headers=admin)):
        assert r.status_code == 200, r.text
        assert_hidden(r.text, cams)


def test_reader_log_lines_and_the_masking_formatter_hide_hostile_passwords(caplog):
    cams = hostile(free_port())
    with caplog.at_level(logging.INFO, logger="streams.reader"):
        readers = [CameraReader(cid, url, fps=1, slot=FrameSlot(), hwaccel="cpu") for cid, (url, _) in cams.items()]
        for reader in readers:
            reader.start()
        try:
            assert wait_for(lambda: all(r.health.state == "offline" for r in readers), 10)
        finally:
            for reader in readers:
                reader.stop(timeout=5)
    lines = "\n".join(r.getMessage() for r in caplog.records)
    assert "offline" in lines
    assert_hidden(lines, cams)

    # a formatter that knows the cameras' secrets masks them in any line, even one no URL parser can read
    secrets = [s for url, _ in cams.values() for s in url_secrets(url)]
    fmt = MaskingFormatter("%(levelname)s %(message)s", secrets=secrets)
    for url, _ in cams.values():
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "opening %s failed: %r", (url, url), None)
        out = fmt.format(record)
        assert out.startswith("WARNING opening rtsp://")
        assert_hidden(out, cams)
    try:
        raise OSError(f"camera said: {cams['cam-space'][0]}")
    except OSError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert_hidden(fmt.format(record), cams)


def test_masking_functions():
    # one URL field: the userinfo runs to the last '@'; query secrets masked; nothing else touched
    assert mask_url_field("rtsp://admin:p@ss/w rd@10.0.0.1:554/s") == "rtsp://admin:***@10.0.0.1:554/s"
    assert mask_url_field("rtsp://h/s?user=admin&pwd=x&Token=y&apiKey=z&channel=1") == \
        "rtsp://h/s?user=admin&pwd=***&Token=***&apiKey=***&channel=1"
    assert mask_url_field("rtsp://10.0.0.1/stream1") == "rtsp://10.0.0.1/stream1"
    assert mask_url_field(None) is None
    # free text: every URL, in quotes or not, several per line; spaces inside a password do not end it
    text = "refused: 'rtsp://a:b c@h/x' then rtsp://u:p%40ss@h/y and \"rtsp://u:it's@h/z\""
    assert mask_url(text) == "refused: 'rtsp://a:***@h/x' then rtsp://u:***@h/y and \"rtsp://u:***@h/z\""
    assert mask_url("rtsp://admin:hunter2@10.0.0.1/x and rtsp://u:p%40ss@h/y") == \
        "rtsp://admin:***@10.0.0.1/x and rtsp://u:***@h/y"
    assert mask_url("GET /cam?user=a&password=zz9 HTTP/1.1") == "GET /cam?user=a&password=*** HTTP/1.1"
    # known secrets, raw and percent-decoded, are replaced wherever they appear
    url = "rtsp://admin:pa%20ss%2Fword@h/x?user=admin&secret=s%26ecret"
    assert set(url_secrets(url)) >= {"pa%20ss%2Fword", "pa ss/word", "s%26ecret", "s&ecret"}
    assert mask_text("the camera sent back pa ss/word and s&ecret", url_secrets(url)) == \
        "the camera sent back *** and ***"
    # JSON: every string value as a URL field; the masked text of JSON stays JSON
    body = {"url": "rtsp://u:a\"b c@h/x", "zones": [{"name": "rtsp://u:q@h/y?token=t t"}], "n": 3}
    assert mask_json(body) == {"url": "rtsp://u:***@h/x", "zones": [{"name": "rtsp://u:***@h/y?token=***"}], "n": 3}
    import json

    assert "a\\\"b" not in mask_url(json.dumps(body)) and json.loads(mask_url(json.dumps(body)))["url"] == \
        "rtsp://u:***@h/x"


# ---- the one check, and the readers and live view that use it -------------------------------------------------------
def test_check_source_and_its_ffmpeg_whitelists(tmp_path, short_clip):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(short_clip, media / "a.mp4")
    src = check_source("rtsp://u:p@cam.example/s")
    assert src.kind == "rtsp" and src.options["protocol_whitelist"] == "rtsp,rtsps,tcp,tls"
    assert src.options["format_whitelist"] == "rtsp" and src.options["rtsp_transport"] == "tcp"
    got = check_source(str(media / "a.mp4"), [media])
    assert got.kind == "file" and got.target == str((media / "a.mp4").resolve())
    assert got.options == {"protocol_whitelist": "file", "format_whitelist": FILE_FORMATS}
    assert check_source("media/a.mp4", ["media"], base=tmp_path).target == got.target
    for url in ("file://other-host/media/a.mp4", "media/../media/../a.mp4", "HTTP://h/x", "rtmp://h/x", "srt://h:1"):
        with pytest.raises(UnsafeSource):
            check_source(url, [media], base=tmp_path)
    with pytest.raises(UnsafeSource) as info:
        check_source("/etc/passwd", [media], field="view_url")
    assert str(info.value).startswith("view_url: ") and "settings.media_dirs" in str(info.value)


def test_readers_and_live_view_refuse_what_the_check_refuses(vtest, tmp_path):
    reader = CameraReader("cat", "concat:/etc/passwd|/etc/xdg/pip/constraints.txt", fps=2, slot=FrameSlot())
    outside = CameraReader("far", str(vtest), fps=2, slot=FrameSlot(), media_dirs=[tmp_path])
    for r in (reader, outside):
        r.start()
    try:
        assert wait_for(lambda: reader.health.last_error and outside.health.last_error, 5)
    finally:
        reader.stop(timeout=5)
        outside.stop(timeout=5)
    assert reader.health.frames_in == outside.health.frames_in == 0
    assert "media_dirs" in outside.health.last_error and "rtsp://" in reader.health.last_error

    from api.live import LiveViews

    views = LiveViews(["127.0.0.1"])
    cam = Camera(id="c", url="/etc/passwd", grid="g", lat=0, lon=0)
    with pytest.raises(LookupError, match="media_dirs"):
        asyncio.run(views.answer(cam, "v=0", "offer"))
    assert not views.players


def test_config_refuses_local_files_outside_media_dirs_naming_the_field(tmp_path, short_clip):
    (tmp_path / "footage").mkdir()
    shutil.copy(short_clip, tmp_path / "footage" / "clip.mp4")
    (tmp_path / "footage" / "out").symlink_to("/etc", target_is_directory=True)
    head = "grids: [{id: g}]\ncameras:\n"
    cam = "  - {{id: c{i}, url: '{url}', grid: g, lat: 0, lon: 0}}\n"

    def write(urls: list[str], media: str | None) -> Path:
        path = tmp_path / "gw.yaml"
        text = head + "".join(cam.format(i=i, url=u) for i, u in enumerate(urls))
        if media is not None:
            text += f"settings: {{media_dirs: [{media}]}}\n"
        path.write_text(text)
        return path

    urls = ["rtsp://h/s", "rtsp://h/t", "rtsp://h/u", "/etc/passwd"]
    with pytest.raises(ConfigError) as info:
        load_config(write(urls, None))
    assert [p.where for p in info.value.problems] == ["cameras[3].url"]
    assert "settings.media_dirs" in info.value.problems[0].msg
    # relative folders and files resolve against the config file's folder
    cfg = load_config(write(["footage/clip.mp4"], "footage"))
    assert cfg.settings.media_dirs == [tmp_path / "footage"] and cfg.cameras[0].url == str(tmp_path / "footage/clip.mp4")
    for bad in ("footage/../gw.yaml", "footage/out/passwd", "file:///etc/passwd"):
        with pytest.raises(ConfigError) as info:
            load_config(write(["rtsp://h/s", bad], "footage"))
        assert [p.where for p in info.value.problems] == ["cameras[1].url"], bad
    with pytest.raises(ConfigError):
        parse_config({"grids": [{"id": "g"}], "cameras": [{"id": "c", "url": "rtsp://h/s", "view_url": "/etc/passwd",
                                                           "grid": "g", "lat": 0, "lon": 0}]})
