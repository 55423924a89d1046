"""The web view in a real browser: headless Chromium (Debian's ``chromium``) driven over the
DevTools protocol loads the live page from a uvicorn server on loopback; the test checks in
the screenshot that the camera tiles show frames (MJPEG decoded, pixels not blank) and in the
page's text that the identities are listed, then the same on the gallery page."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest

from fedfr.tracking.detection import PrecomputedDetector
from fedfr.tracking.embedders import ColourHistogramEmbedder
from fedfr.tracking.pipeline import TrackingConfig, run_tracking
from fedfr.tracking.scene import SceneSpec, write_scene
from fedfr.tracking.sources import ImageFolderSource

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--window-size=1280,1000", "--remote-debugging-port=0"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None,
                       reason="chromium not installed (apt-get install chromium)"),
]


class DevTools:
    """The smallest DevTools-protocol client: one page, commands answered by id."""

    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def eval(self, expr: str):
        res = await self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return res["result"].get("value")

    async def wait_for(self, expr: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.eval(expr):
                return
            await asyncio.sleep(0.1)
        state = await self.eval("JSON.stringify(Array.from(document.images).map("
                                "i => [i.src, i.naturalWidth, i.naturalHeight]))")
        raise AssertionError(f"page never satisfied {expr}; images: {state}")

    async def open(self, url: str):
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState !== 'loading' && "
                            f"location.href === {json.dumps(url)}")

    async def screenshot(self) -> np.ndarray:
        from PIL import Image

        png = base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _devtools_url(profile, proc, timeout: float = 30.0) -> str:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not port_file.is_file() or not port_file.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("chromium did not open its DevTools port")
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
        pages = [t for t in json.load(r) if t["type"] == "page"]
    return pages[0]["webSocketDebuggerUrl"]


def test_live_page_renders_frames_and_lists_identities_in_chromium(tmp_path):
    import websockets

    from fedfr.tracking.web import LiveView
    from fedfr.tracking.web.app import create_app
    from fedfr.tracking.web.server import WebServer

    scene = write_scene(SceneSpec(frames=12, width=320, height=240, num_people=4),
                        tmp_path / "scene")
    srcs = [ImageFolderSource(scene / c) for c in ("c001", "c002", "c003")]
    det = PrecomputedDetector({s.camera: s.info.root / "det" / "det.txt" for s in srcs})
    view = LiveView()
    run_tracking(srcs, det, ColourHistogramEmbedder(), tmp_path / "run",
                 TrackingConfig(crop_size=(64, 32)), observers=[view])
    gids = sorted({g["global_id"] for g in view.gallery()})
    assert gids

    profile = tmp_path / "profile"
    with WebServer(create_app(view), "127.0.0.1", 0) as server:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ws_url = _devtools_url(profile, proc)

            async def drive():
                async with websockets.connect(ws_url, max_size=2 ** 26) as ws:
                    dt = DevTools(ws)
                    await dt.open(f"{server.url}/")
                    # every camera tile's MJPEG has decoded a frame; the identities are listed
                    await dt.wait_for("document.images.length === 3 && Array.from("
                                      "document.images).every(i => i.naturalWidth === 320)")
                    await dt.wait_for("document.getElementById('state').textContent "
                                      "=== 'finished'")
                    rects = await dt.eval(
                        "Array.from(document.images).map(i => {const r = "
                        "i.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]})")
                    scale = await dt.eval("window.devicePixelRatio")
                    shot = await dt.screenshot()
                    text = await dt.eval("document.body.innerText")
                    await dt.open(f"{server.url}/gallery")
                    await dt.wait_for("document.images.length > 0 && Array.from("
                                      "document.images).every(i => i.naturalHeight === 128)")
                    gallery_text = await dt.eval("document.body.innerText")
                    return rects, scale, shot, text, gallery_text

            rects, scale, shot, text, gallery_text = asyncio.run(drive())
        finally:
            proc.terminate()
            proc.wait(10)

    page_bg = shot[-5:, -5:].reshape(-1, 3).mean(0)
    for x, y, w, h in rects:
        tile = shot[int(y * scale):int((y + h) * scale), int(x * scale):int((x + w) * scale)]
        assert tile.shape[0] > 100 and tile.shape[1] > 100
        assert tile.reshape(-1, 3).std(0).mean() > 10  # a picture, not a blank box
        assert np.abs(tile.reshape(-1, 3).mean(0) - page_bg).max() > 10
    for g in gids:
        assert f"G{g}:" in text and f"G{g}" in gallery_text
    assert "c001" in text and "12" in text  # the camera table: 12 frames each
