"""The web view of ``fedfr track --serve``: the pipeline's observer hook, the live state, and
the FastAPI app over loopback (TestClient, a real uvicorn server, a WebSocket client)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time

import numpy as np
import pytest

from fedfr.tracking.bytetrack import Track, TrackOutput
from fedfr.tracking.detection import PrecomputedDetector
from fedfr.tracking.embedders import ColourHistogramEmbedder
from fedfr.tracking.motchallenge import read_rows
from fedfr.tracking.pipeline import FrameUpdate, PipelineObserver, TrackingConfig, run_tracking
from fedfr.tracking.scene import SceneSpec, write_scene
from fedfr.tracking.sources import FeedConfig, Frame, ImageFolderSource
from fedfr.tracking.web.state import LiveView

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

CAMS = ["c001", "c002", "c003"]
FRAMES = 12


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(SceneSpec(frames=FRAMES, width=160, height=120, num_people=4),
                       tmp_path_factory.mktemp("web") / "scene")


def _sources(scene):
    return [ImageFolderSource(scene / c) for c in CAMS]


def _run(scene, out, observers, feed=None):
    srcs = _sources(scene)
    det = PrecomputedDetector({s.camera: s.info.root / "det" / "det.txt" for s in srcs})
    cfg = TrackingConfig(crop_size=(64, 32), feed=feed or FeedConfig())
    return run_tracking(srcs, det, ColourHistogramEmbedder(), out, cfg, observers=observers)


class Recorder(PipelineObserver):
    def __init__(self):
        self.calls: list[str] = []
        self.updates: list[FrameUpdate] = []
        self.error = "unset"

    def on_start(self, cameras, frame_rates, stats):
        self.calls.append("start")
        self.cameras, self.rates, self.stats = list(cameras), dict(frame_rates), stats()

    def on_frame(self, update):
        self.calls.append("frame")
        self.updates.append(update)

    def on_match(self, event):
        self.calls.append("match")

    def on_end(self, error=None):
        self.calls.append("end")
        self.error = error


@pytest.fixture(scope="module")
def finished(scene, tmp_path_factory):
    """A LiveView and a Recorder fed by one complete run of the small scene."""
    view, rec = LiveView(ring_size=4), Recorder()
    out = tmp_path_factory.mktemp("run")
    _run(scene, out, [view, rec])
    return view, rec, out


def test_observer_sees_every_written_frame_with_the_written_global_ids(finished):
    _, rec, out = finished
    assert rec.calls[0] == "start" and rec.calls[-1] == "end" and rec.error is None
    assert rec.cameras == CAMS and rec.rates == {c: 10.0 for c in CAMS}
    assert set(rec.stats) == set(CAMS)
    for cam in CAMS:
        ups = [u for u in rec.updates if u.frame.camera == cam]
        assert [u.frame.index for u in ups] == list(range(1, FRAMES + 1))
        seen = {(u.frame.index, u.global_ids[t.track_id]) for u in ups for t in u.tracks}
        rows = read_rows(out / f"{cam}.txt", 7)
        assert seen == {(int(f), int(i)) for f, i in rows[:, :2]}
        assert all(u.latency_s >= 0 and u.frame.image.shape == (120, 160, 3) for u in ups)


def test_observer_gets_the_error_when_the_run_fails(scene, tmp_path):
    class Broken(PrecomputedDetector):
        def detect(self, frames):
            raise RuntimeError("detector died")

    rec = Recorder()
    srcs = _sources(scene)
    det = Broken({s.camera: s.info.root / "det" / "det.txt" for s in srcs})
    with pytest.raises(RuntimeError, match="detector died"):
        run_tracking(srcs, det, ColourHistogramEmbedder(), tmp_path, observers=[rec])
    assert rec.calls == ["start", "end"] and "detector died" in str(rec.error)


def _update(cam, index, tracks, gids, image=None):
    img = np.full((40, 60, 3), index, np.uint8) if image is None else image
    outs = [TrackOutput(t, np.array([5.0, 5.0, 10.0, 20.0]), 0.9, 0, Track(
        np.array([5.0, 5.0, 10.0, 20.0]), 0.9)) for t in tracks]
    return FrameUpdate(Frame(cam, index, img, time.time()), outs, dict(zip(tracks, gids,
                                                                           strict=True)), 0.01)


def test_live_view_ring_events_identities_and_crops():
    view = LiveView(ring_size=3, end_after=2, crop_every=100)
    view.on_start(["a", "b"], {"a": 10.0, "b": 10.0}, dict)
    for k in range(1, 6):
        view.on_frame(_update("a", k, [1], [1]))
    assert view.latest("a").index == 5 and view.latest("a", 3).index == 3
    assert view.latest("a", 2) is None  # left the ring (3 frames kept)
    assert view.latest("b") is None and view.jpeg("b") is None
    view.on_frame(_update("b", 1, [7], [2]))
    view.on_frame(_update("b", 2, [7], [1]))  # the gallery linked b/7 to identity 1
    kinds = [e["type"] for e in view.events_since(0)]
    assert kinds == ["start", "track_start", "track_start", "identity"]
    gallery = {g["global_id"]: g for g in view.gallery()}
    assert set(gallery) == {1}  # identity 2 had no other member and is gone
    assert gallery[1]["cameras"]["b"]["tracks"] == [7] and gallery[1]["cameras"]["a"]["crop"]
    assert view.crop_jpeg(1, "b") is not None and view.crop_jpeg(2, "b") is None
    for k in range(6, 10):
        view.on_frame(_update("a", k, [], []))
    ends = [e for e in view.events_since(0) if e["type"] == "track_end"]
    assert [(e["camera"], e["track_id"], e["global_id"]) for e in ends] == [("a", 1, 1)]
    st = view.status()["cameras"]["a"]
    assert st["frames"] == 9 and st["last_frame"] == 9 and st["tracks"] == 0


def _client(view, **kw):
    from fastapi.testclient import TestClient

    from fedfr.tracking.web.app import create_app

    return TestClient(create_app(view, **kw))


def test_rest_frames_crops_and_metrics(finished):
    from PIL import Image
    from prometheus_client.parser import text_string_to_metric_families

    view, rec, _ = finished
    client = _client(view)
    status = client.get("/api/status").json()
    assert status["running"] is False and status["error"] is None
    assert {c: s["frames"] for c, s in status["cameras"].items()} == {c: FRAMES for c in CAMS}
    r = client.get("/frame/c001.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    drawn = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), np.int16)
    last = [u for u in rec.updates if u.frame.camera == "c001"][-1]
    assert drawn.shape == last.frame.image.shape
    # boxes are drawn: the annotated frame differs from the camera's frame (beyond JPEG noise)
    diff = np.abs(drawn - last.frame.image.astype(np.int16)).max(axis=2)
    assert (diff > 60).sum() > 100
    assert client.get(f"/frame/c001.jpg?index={FRAMES - 3}").status_code == 200
    assert client.get(f"/frame/c001.jpg?index={FRAMES - 4}").status_code == 404  # ring of 4
    assert client.get("/frame/nope.jpg").status_code == 404
    gids = {last.global_ids[t.track_id] for t in last.tracks}
    listed = {g["global_id"]: g for g in client.get("/api/gallery").json()}
    assert gids <= set(listed)
    g = next(iter(gids))
    crop = client.get(f"/crop/{g}/c001.jpg")
    assert crop.status_code == 200 and Image.open(io.BytesIO(crop.content)).height == 128
    assert client.get("/crop/99999/c001.jpg").status_code == 404
    page = client.get("/gallery").text
    assert f"/crop/{g}/c001.jpg" in page and f"G{g}" in page
    assert f"G{g}:" in client.get("/").text
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    samples = {(s.name, s.labels.get("camera")): s.value
               for fam in text_string_to_metric_families(metrics.text) for s in fam.samples}
    for c in CAMS:
        assert samples[("fedfr_track_frames_total", c)] == FRAMES
        assert samples[("fedfr_track_latency_seconds_count", c)] == FRAMES
        assert samples[("fedfr_track_dropped_frames_total", c)] == 0
        assert ("fedfr_track_queue_depth", c) in samples and ("fedfr_track_fps", c) in samples
    assert samples[("fedfr_track_identities", None)] == status["identities"] > 0
    assert samples[("fedfr_track_running", None)] == 0


def test_websocket_replays_track_events_and_status(finished):
    view, rec, _ = finished
    client = _client(view, status_every=0.1, poll_s=0.01)
    with client.websocket_connect("/ws?since=0") as ws:
        first = json.loads(ws.receive_text())
        assert first["type"] == "status" and first["cameras"]["c002"]["frames"] == FRAMES
        events = []
        while not events or events[-1]["type"] != "end":
            msg = json.loads(ws.receive_text())
            if msg["type"] != "status":
                events.append(msg)
    assert events[0]["type"] == "start" and events[0]["cameras"] == CAMS
    starts = {(e["camera"], e["track_id"]) for e in events if e["type"] == "track_start"}
    written = {(u.frame.camera, t.track_id) for u in rec.updates for t in u.tracks}
    assert starts == written
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_server_streams_mjpeg_and_events_during_a_run(scene, tmp_path):
    """uvicorn on a free loopback port while the pipeline runs in real time (paced at 10 FPS):
    the MJPEG stream delivers several distinct frames and the WebSocket live track events."""
    import httpx
    import websockets

    from fedfr.tracking.web.app import create_app
    from fedfr.tracking.web.server import WebServer

    view = LiveView()
    view.on_start(CAMS, {c: 10.0 for c in CAMS}, dict)
    app = create_app(view, max_fps=30, status_every=0.2, poll_s=0.01)
    with WebServer(app, "127.0.0.1", 0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        runner = threading.Thread(target=_run, args=(scene, tmp_path, [view],
                                                     FeedConfig(realtime=True)))
        runner.start()
        frames = []
        with httpx.stream("GET", f"{server.url}/stream/c002.mjpg", timeout=5) as r:
            assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
            buf = b""
            for chunk in r.iter_bytes():
                buf += chunk
                while b"\r\n\r\n" in buf and b"\xff\xd9\r\n" in buf:
                    head, rest = buf.split(b"\r\n\r\n", 1)
                    n = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    if len(rest) < n + 2:
                        break
                    frames.append(rest[:n])
                    buf = rest[n + 2:]
                if len(frames) >= 3:
                    break

        async def listen():
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws?since=0") as ws:
                got = []
                while not any(e["type"] == "end" for e in got):
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                return got

        events = asyncio.run(listen())
        runner.join(10)
        status = httpx.get(f"{server.url}/api/status").json()
    assert len(frames) >= 3 and len(set(frames)) >= 3
    assert all(f.startswith(b"\xff\xd8") for f in frames)
    kinds = {e["type"] for e in events}
    assert {"status", "start", "track_start", "end"} <= kinds
    assert all(s["frames"] == FRAMES and s["dropped"] == 0 for s in status["cameras"].values())


def test_track_command_serves_and_reports_a_bound_port(tmp_path, capsys):
    from fedfr.cli import main

    rc = main(["track", "--synthetic", "--frames", "6", "--size", "128x96", "--people", "3",
               "--out", str(tmp_path / "run"), "--serve", "--port", "0", "--linger", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "web view: http://127.0.0.1:" in out and "| gallery | multi-camera |" in out
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = main(["track", "--scene", str(tmp_path / "run" / "scene"), "--out",
                   str(tmp_path / "r2"), "--serve", "--port", str(port), "--linger", "0"])
    assert rc == 2
    assert f"cannot bind 127.0.0.1:{port}" in capsys.readouterr().err
