"""The web view's live state: a :class:`~fedfr.tracking.pipeline.PipelineObserver` that keeps,
per camera, a bounded ring buffer of the newest frames with their boxes and global ids, the
track and gallery events, one crop per (global identity, camera), and the counters that
``/metrics`` and ``/api/status`` report.

The pipeline thread only appends references and small copies (a frame's array is the
pipeline's own and is not modified after it is written); drawing and JPEG encoding happen when
a client asks, on the server's threads, once per frame whatever the number of clients.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from fedfr.errors import ConfigError
from fedfr.tracking.gallery import MatchEvent
from fedfr.tracking.pipeline import FrameUpdate, PipelineObserver
from fedfr.tracking.sources import CameraStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Shot:
    """One frame in a camera's ring: ``seq`` counts the camera's written frames from 1;
    ``boxes`` are ``(global id, local id, tlwh)``; ``time`` wall clock when written."""

    seq: int
    index: int
    image: np.ndarray | None
    boxes: list[tuple[int, int, np.ndarray]]
    time: float


@dataclass
class CameraState:
    frame_rate: float
    ring: collections.deque
    frames: int = 0
    last_index: int = 0
    tracks: int = 0
    latency_s: float = float("nan")
    times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=256))
    live: dict[int, int] = field(default_factory=dict)  # local id -> processed frame last seen
    jpeg: tuple[int, bytes] | None = None  # (seq, annotated JPEG) of the newest encoded frame


@dataclass
class Identity:
    """A global identity: per camera the local track ids and first / last frame seen."""

    global_id: int
    cameras: dict[str, dict] = field(default_factory=dict)
    last_time: float = 0.0


class LiveView(PipelineObserver):
    """Observer for the web view. ``ring_size`` frames kept per camera, ``max_events`` events,
    ``max_identities`` identities (least recently seen dropped first), a crop per (identity,
    camera) refreshed every ``crop_every`` frames, a track ends after ``end_after`` processed
    frames unseen (the event only; the gallery has its own rule)."""

    def __init__(self, ring_size: int = 8, max_events: int = 2000, max_identities: int = 1000,
                 crop_every: int = 25, end_after: int = 30, jpeg_quality: int = 80):
        if ring_size < 1 or max_events < 1 or max_identities < 1:
            raise ConfigError("LiveView: ring_size, max_events, max_identities must be >= 1")
        from fedfr.tracking.optional import optional_import

        prom = optional_import("prometheus_client", "the web view's /metrics", "tracking")
        CollectorRegistry, Histogram = prom.CollectorRegistry, prom.Histogram  # noqa: N806
        self.ring_size, self.max_identities = ring_size, max_identities
        self.crop_every, self.end_after, self.jpeg_quality = crop_every, end_after, jpeg_quality
        self._lock = threading.Lock()
        self.cameras: dict[str, CameraState] = {}
        self.events: collections.deque[dict] = collections.deque(maxlen=max_events)
        self.event_seq = 0
        self.identities: dict[int, Identity] = {}
        self._gid_of: dict[tuple[str, int], int] = {}
        self.crops: dict[tuple[int, str], tuple[int, np.ndarray]] = {}
        self.matches = 0
        self.running = False
        self.error: str | None = None
        self.started = self.ended = None
        self._stats: Callable[[], dict[str, CameraStats]] = dict
        self.registry = CollectorRegistry()
        self.latency = Histogram("fedfr_track_latency_seconds",
                                 "capture -> tracks written with global ids, per camera",
                                 ["camera"], buckets=LATENCY_BUCKETS, registry=self.registry)

    # -- observer hook (pipeline thread) ---------------------------------------------------
    def on_start(self, cameras: Sequence[str], frame_rates: Mapping[str, float],
                 stats: Callable[[], dict[str, CameraStats]]) -> None:
        with self._lock:
            for c in cameras:
                st = self.cameras.setdefault(c, CameraState(
                    0.0, collections.deque(maxlen=self.ring_size)))
                st.frame_rate = float(frame_rates.get(c, st.frame_rate))
            self._stats = stats
            self.running, self.started, self.ended, self.error = True, time.time(), None, None
            self._event({"type": "start", "cameras": list(cameras)})

    def on_frame(self, update: FrameUpdate) -> None:
        frame, now = update.frame, time.time()
        cam = frame.camera
        boxes = [(int(update.global_ids.get(t.track_id, t.track_id)), int(t.track_id),
                  np.asarray(t.tlwh, np.float32)) for t in update.tracks]
        with self._lock:
            st = self.cameras.get(cam)
            if st is None:  # an observer attached without on_start (e.g. another runner)
                st = self.cameras[cam] = CameraState(0.0, collections.deque(maxlen=self.ring_size))
            st.frames += 1
            st.last_index, st.tracks, st.latency_s = frame.index, len(boxes), update.latency_s
            st.times.append(now)
            st.ring.append(Shot(st.frames, frame.index, frame.image, boxes, now))
            for gid, local, tlwh in boxes:
                self._see(cam, st, frame, gid, local, tlwh, now)
            for local, seen in list(st.live.items()):
                if st.frames - seen > self.end_after:
                    del st.live[local]
                    self._event({"type": "track_end", "camera": cam, "track_id": local,
                                 "global_id": self._gid_of.get((cam, local)),
                                 "frame": frame.index})
        self.latency.labels(camera=cam).observe(update.latency_s)

    def on_match(self, event: MatchEvent) -> None:
        with self._lock:
            self.matches += 1
            self._event({"type": "match", **asdict(event)})

    def on_end(self, error: BaseException | None = None) -> None:
        with self._lock:
            self.running, self.ended = False, time.time()
            self.error = None if error is None else f"{type(error).__name__}: {error}"
            self._event({"type": "end", "error": self.error})

    # -- internals (lock held) -------------------------------------------------------------
    def _event(self, doc: dict) -> None:
        self.event_seq += 1
        self.events.append({"seq": self.event_seq, "time": time.time(), **doc})

    def _see(self, cam: str, st: CameraState, frame, gid: int, local: int, tlwh: np.ndarray,
             now: float) -> None:
        key = (cam, local)
        old = self._gid_of.get(key)
        if local not in st.live:
            self._event({"type": "track_start", "camera": cam, "track_id": local,
                         "global_id": gid, "frame": frame.index})
        st.live[local] = st.frames
        if old is not None and old != gid:
            self._event({"type": "identity", "camera": cam, "track_id": local,
                         "global_id": gid, "previous": old, "frame": frame.index})
            self._forget(old, cam, local)
        self._gid_of[key] = gid
        ident = self.identities.get(gid)
        if ident is None:
            ident = self.identities[gid] = Identity(gid)
            if len(self.identities) > self.max_identities:
                self._evict()
        ident.last_time = now
        rec = ident.cameras.setdefault(cam, {"tracks": [], "first": frame.index,
                                              "last": frame.index})
        if local not in rec["tracks"]:
            rec["tracks"].append(local)
        rec["last"] = frame.index
        held = self.crops.get((gid, cam))
        if frame.image is not None and (held is None or frame.index - held[0] >= self.crop_every):
            patch = _clip(frame.image, tlwh)
            if patch is not None:
                self.crops[(gid, cam)] = (frame.index, patch)

    def _forget(self, gid: int, cam: str, local: int) -> None:
        """(cam, local) now belongs to another identity: remove it from ``gid``."""
        ident = self.identities.get(gid)
        if ident is None or cam not in ident.cameras:
            return
        rec = ident.cameras[cam]
        if local in rec["tracks"]:
            rec["tracks"].remove(local)
        if not rec["tracks"]:
            del ident.cameras[cam]
            self.crops.pop((gid, cam), None)
        if not ident.cameras:
            del self.identities[gid]

    def _evict(self) -> None:
        gid = min(self.identities.values(), key=lambda i: i.last_time).global_id
        for cam in self.identities.pop(gid).cameras:
            self.crops.pop((gid, cam), None)

    # -- readers (server threads) ----------------------------------------------------------
    def camera_names(self) -> list[str]:
        with self._lock:
            return list(self.cameras)

    def latest(self, camera: str, index: int | None = None) -> Shot | None:
        """The newest frame of ``camera`` (or frame ``index`` while it is in the ring)."""
        with self._lock:
            st = self.cameras.get(camera)
            if st is None or not st.ring:
                return None
            if index is None:
                return st.ring[-1]
            return next((s for s in st.ring if s.index == index), None)

    def jpeg(self, camera: str, index: int | None = None) -> tuple[int, bytes] | None:
        """(seq, annotated JPEG) of the newest frame (or of frame ``index``); None if absent.
        The newest frame's JPEG is cached, so many viewers cost one encoding per frame."""
        from fedfr.tracking.web.annotate import annotate, to_jpeg

        shot = self.latest(camera, index)
        if shot is None or shot.image is None:
            return None
        with self._lock:
            cached = self.cameras[camera].jpeg
        if cached is not None and cached[0] == shot.seq:
            return cached
        data = to_jpeg(annotate(shot.image, shot.boxes, f"{camera} #{shot.index}"),
                       self.jpeg_quality)
        if index is None:
            with self._lock:
                self.cameras[camera].jpeg = (shot.seq, data)
        return shot.seq, data

    def crop_jpeg(self, global_id: int, camera: str, height: int = 128) -> bytes | None:
        from PIL import Image

        from fedfr.tracking.web.annotate import to_jpeg

        with self._lock:
            held = self.crops.get((global_id, camera))
        if held is None:
            return None
        im = Image.fromarray(held[1])
        im = im.resize((max(1, round(im.width * height / im.height)), height), Image.BILINEAR)
        return to_jpeg(im, self.jpeg_quality)

    def events_since(self, seq: int) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e["seq"] > seq]

    def gallery(self) -> list[dict]:
        """Identities, most recently seen first: global id, cameras with local track ids and
        first / last frame, and whether a crop is held per camera."""
        with self._lock:
            idents = sorted(self.identities.values(), key=lambda i: -i.last_time)
            return [{"global_id": i.global_id,
                     "cameras": {c: {**r, "tracks": list(r["tracks"]),
                                     "crop": (i.global_id, c) in self.crops}
                                 for c, r in sorted(i.cameras.items())}}
                    for i in idents]

    def status(self) -> dict:
        """Per camera: frames, FPS (frames in the last 2 s of writing; overall = frames / run
        time), latency of the newest frame (s), tracks in view, reader counters."""
        readers = self._stats()
        now = time.time()
        with self._lock:
            end = self.ended or now
            run_s = (end - self.started) if self.started else float("nan")
            cams = {}
            for c, st in self.cameras.items():
                recent = [t for t in st.times if t >= end - 2.0]
                span = (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
                r = readers.get(c, CameraStats())
                cams[c] = {"frames": st.frames, "last_frame": st.last_index,
                           "frame_rate": st.frame_rate,
                           "fps": (len(recent) - 1) / span if span > 0 else 0.0,
                           "fps_overall": st.frames / run_s if run_s and run_s > 0 else 0.0,
                           "latency_s": st.latency_s, "tracks": st.tracks,
                           "read": r.read, "dropped": r.dropped, "queue_depth": r.depth,
                           "ended": r.ended, "error": r.error}
            return {"running": self.running, "error": self.error, "started": self.started,
                    "ended": self.ended, "cameras": cams, "identities": len(self.identities),
                    "gallery_matches": self.matches, "events": self.event_seq}


def _clip(image: np.ndarray, tlwh: np.ndarray) -> np.ndarray | None:
    """A copy of the box ``tlwh`` of ``image``, clipped to it; None when empty."""
    img_h, img_w = image.shape[:2]
    x, y, w, h = (float(v) for v in tlwh)
    x0, y0 = max(0, int(x)), max(0, int(y))
    x1, y1 = min(img_w, int(np.ceil(x + w))), min(img_h, int(np.ceil(y + h)))
    if x1 <= x0 or y1 <= y0:
        return None
    return image[y0:y1, x0:x1].copy()
