"""Live view in a real browser: a camera on the real RTSP server -> aiortc -> headless Chromium."""
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
from conftest import authorize, browser_cookies, shot

from alerts import EvidenceStore
from api import create_app
from gridwatch.config import parse_config
from gridwatch.harness import RtspServer, serving
from gridwatch.telemetry import Telemetry


@pytest.fixture
def live_api(vtest, rtsp_ok, store, redis_url, tmp_path):
    with RtspServer({"walk": vtest}) as cam:
        cfg = parse_config({
            "grids": [{"id": "g-1"}],
            "cameras": [{"id": "cam-walk", "name": "Walkway", "url": cam.url("walk"), "grid": "g-1",
                         "lat": 31.2, "lon": 121.4,
                         "zones": [{"id": "path", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}]}],
        })
        app = create_app(cfg, store, redis_url, EvidenceStore(tmp_path / "ev"))
        with serving(app) as base:
            yield base, store, authorize(app), browser_cookies(app, base)


def test_offer_gets_h264_passed_through(live_api):
    """A minimal offer (as a browser makes) is answered with H.264 only: no re-encoding to VP8."""
    import asyncio

    from aiortc import RTCPeerConnection

    async def negotiate():
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(timeout=20, headers=live_api[2]) as client:
            r = await client.post(f"{live_api[0]}/api/cameras/cam-walk/webrtc",
                                  json={"sdp": pc.localDescription.sdp, "type": "offer"})
        await pc.close()
        return r

    r = asyncio.run(negotiate())
    assert r.status_code == 200, r.text
    sdp = r.json()["sdp"]
    video = sdp[sdp.index("m=video"):]
    assert "H264/90000" in video and "VP8/90000" not in video
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate")]
    assert candidates and all(" 127.0.0.1 " in c for c in candidates)  # only the configured address
    assert httpx.post(f"{live_api[0]}/api/cameras/nope/webrtc", json={"sdp": "x", "type": "offer"},
                      headers=live_api[2]).status_code == 404


@contextmanager
def analysing(telemetry, camera_id, overlay, every_s=0.1):
    """What the running pipeline does: write the camera's overlay again and again, each stamped with the time of the
    frame it is of (the page draws an overlay only over the frame it belongs to: here, the frame of the moment)."""
    stop = threading.Event()

    def run():
        while not stop.is_set():
            telemetry.put_overlay(camera_id, {**overlay, "ts": time.time()})
            stop.wait(every_s)

    thread = threading.Thread(target=run, name="overlay-writer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def test_chromium_plays_the_camera_with_boxes_over_it(live_api, browser_page):
    base, store, _, cookies = live_api
    telemetry = Telemetry(store.r, store.p)
    page = browser_page(viewport={"width": 1000, "height": 720}, cookies=cookies)  # logged in as an operator
    page.goto(f"{base}/live/cam-walk")
    # the pipeline's last analysis of this camera: one person in the zone
    with analysing(telemetry, "cam-walk", {"boxes": [[0.40, 0.45, 0.48, 0.80]], "zones": {"path": 1}}):
        page.wait_for_selector('#status[data-state="playing"]', timeout=20000)
        first_ms = page.evaluate("window.firstFrameMs")
        size = page.evaluate("[document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]")
        assert size == [768, 576]
        page.wait_for_function("document.getElementById('counts').textContent.includes('path: 1 people')")
        # the box is drawn where the overlay says, over the frames it is of (once the page knows the frames' clock):
        # green pixels on the canvas at its left edge
        page.wait_for_function("""() => {
            const c = document.getElementById('overlay'), g = c.getContext('2d');
            const d = g.getImageData(Math.round(0.40 * c.width), Math.round(0.6 * c.height), 1, 1).data;
            return d[1] > 150 && d[0] < 120;
        }""")
        # the frames carry their wall time (the server told the page their RTP clock) and were drawn with the overlay
        # of their moment
        sync = page.evaluate("({origin: liveView.origin, matched: liveView.matched, dt: liveView.dt})")
        assert sync["origin"] is not None and sync["matched"] > 0, sync  # (|dt| <= 0.3 s holds by construction)
        page.wait_for_timeout(1500)
        shot(page, "live-view")
    assert first_ms < 10000  # from page load; bench/api_load.py measures it (target 2 s)
    # the session ends while the operator watches (signed out elsewhere, expired): back to the login page
    page.context.clear_cookies()
    page.wait_for_url("**/login?next=%2Flive%2Fcam-walk", timeout=10000)
