"""The per-camera worker loop and the multi-camera pipeline that drives it.

Per tick the pipeline takes at most one frame per camera from the reader threads
(``MultiCameraFeed``), runs the detector once on the whole batch (batched across cameras), and
hands each camera's frame and detections to that camera's ``CameraWorker``:

    features = embedder(frame, detections)        # optional: appearance gate / re-ID input
    tracks = tracker.update(detections, features)  # BYTE, camera-local ids
    for sink in sinks: sink(frame, tracks)         # writers, re-ID clip buffers, gallery, display

The re-ID step and the cross-camera gallery of ``fedfr track`` plug in as an ``embedder`` and
as sinks (a sink may keep per-track state in ``TrackOutput.track.extra``); nothing here changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedfr.errors import ConfigError
from fedfr.tracking.bytetrack import ByteTracker, TrackOutput
from fedfr.tracking.detection import Detections, Detector
from fedfr.tracking.sources import CameraStats, FeedConfig, Frame, MultiCameraFeed, Source

FeatureExtractor = Callable[[Frame, Detections], np.ndarray]
"""(frame, detections) -> (N, D) features, one row per detection."""

TrackSink = Callable[[Frame, list[TrackOutput]], None]
"""Called once per processed frame with that camera's confirmed tracks."""


@dataclass
class CameraWorker:
    """One camera's tracking state: its tracker (own id allocator), optional embedder, sinks,
    and counters (frames processed, seconds spent in ``step``, capture-to-result latency)."""

    camera: str
    tracker: ByteTracker
    embedder: FeatureExtractor | None = None
    sinks: list[TrackSink] = field(default_factory=list)
    frames: int = 0
    busy_s: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def step(self, frame: Frame, detections: Detections) -> list[TrackOutput]:
        t0 = time.perf_counter()
        features = None
        if self.embedder is not None and len(detections):
            features = np.asarray(self.embedder(frame, detections))
        tracks = self.tracker.update(detections, features)
        for sink in self.sinks:
            sink(frame, tracks)
        self.frames += 1
        self.busy_s += time.perf_counter() - t0
        self.latencies.append(time.time() - frame.timestamp)
        return tracks


@dataclass
class PipelineReport:
    """What a run did: frames per camera, reader stats (drops, errors), wall time, throughput
    (processed frames per second of wall time, per camera), detector seconds, latency
    percentiles (capture timestamp -> tracks, seconds)."""

    frames: dict[str, int]
    readers: dict[str, CameraStats]
    wall_s: float
    detect_s: float
    fps: dict[str, float]
    latency_p50: dict[str, float]
    latency_p95: dict[str, float]


def run_pipeline(sources: Sequence[Source], detector: Detector,
                 workers: Mapping[str, CameraWorker], feed: FeedConfig | None = None,
                 after_tick: Callable[[list[Frame]], None] | None = None,
                 on_feed: Callable[[MultiCameraFeed], None] | None = None) -> PipelineReport:
    """Run all cameras to their end (synchronous) or until every stream ends (real-time).

    ``after_tick(batch)`` runs once per tick after every camera of the batch has been stepped
    (e.g. one batched re-ID call for all cameras, then the cross-camera gallery);
    ``on_feed(feed)`` once when the readers have started (live counters for monitors)."""
    missing = [s.camera for s in sources if s.camera not in workers]
    if missing:
        raise ConfigError(f"no worker for cameras {missing}")
    t0 = time.perf_counter()
    detect_s = 0.0
    with MultiCameraFeed(sources, feed) as mc:
        if on_feed is not None:
            on_feed(mc)
        for batch in mc.ticks():
            td = time.perf_counter()
            dets = detector.detect(batch)
            detect_s += time.perf_counter() - td
            for frame, d in zip(batch, dets, strict=True):
                workers[frame.camera].step(frame, d)
            if after_tick is not None:
                after_tick(batch)
    wall = time.perf_counter() - t0
    readers = mc.stats()
    frames = {s.camera: workers[s.camera].frames for s in sources}

    def pct(cam: str, q: float) -> float:
        lat = workers[cam].latencies
        return float(np.percentile(lat, q)) if lat else float("nan")

    return PipelineReport(
        frames=frames, readers=readers, wall_s=wall, detect_s=detect_s,
        fps={c: n / wall if wall > 0 else float("nan") for c, n in frames.items()},
        latency_p50={c: pct(c, 50) for c in frames},
        latency_p95={c: pct(c, 95) for c in frames},
    )
