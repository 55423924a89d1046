"""``fedfr track --backend ray``: the tracking pipeline of :mod:`fedfr.tracking.pipeline` on Ray.

Three kinds of stage, each a plain class that runs in-process (:class:`LocalExecutor`, used by
the fast tests) or as a Ray actor (:class:`RayExecutor`):

* :class:`CameraStage`, **one per camera**: its reader (a one-camera ``MultiCameraFeed``:
  synchronous or real-time with drop-oldest and drop counts), the detector, BYTE inside a
  ``CameraWorker`` (camera-local ids) and the crops of the confirmed tracks that the clip
  schedule (``clip_every``) picks. Only boxes, re-ID crops (``crop_size``, uint8) and the
  reader's counters leave the stage, and the frame itself only when observers are attached.
* :class:`ReidBatcher`, **one shared**: a ``TrackFeatureBank``; per tick it takes the crops of
  all cameras and embeds every ready 4-frame clip in one ``embed_clips`` call, and returns the
  running-average features that changed.
* :class:`GalleryStage`, **one named actor** (``RayOptions.gallery_name``, found by other
  processes with ``ray.get_actor(name, namespace)``): ``MultiCameraMatcher`` over one
  ``CrossCameraGallery`` (optional topology); returns the global ids.

The driver steps all cameras in parallel, one frame each per tick (as ``MultiCameraFeed.ticks``
does for the threaded pipeline), sends their crops to the batcher, passes the batcher's result
to the gallery by reference, writes the same files as ``run_tracking`` (its
``ResultWriter``: global ids, motion-only baseline, AI City) and the same evaluation table,
and makes the same ``PipelineObserver`` calls (the web view). In synchronous mode the ticks,
the clip batches and the order of matcher updates equal the threaded pipeline's, so the global
identities are identical (a test checks this, with and without Ray).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedfr.errors import ConfigError
from fedfr.tracking.bytetrack import ByteTrackConfig, ByteTracker
from fedfr.tracking.detection import Detector
from fedfr.tracking.embedders import crop_boxes
from fedfr.tracking.gallery import (
    CrossCameraGallery,
    GalleryConfig,
    MatchEvent,
    MultiCameraMatcher,
    Topology,
    TrackKey,
)
from fedfr.tracking.pipeline import (
    FrameUpdate,
    PipelineObserver,
    ResultWriter,
    TrackingConfig,
    TrackingResult,
    check_run,
    clip_tracks,
    evaluate_run,
)
from fedfr.tracking.sources import CameraStats, FeedConfig, Frame, MultiCameraFeed, Source
from fedfr.tracking.track_features import TrackFeatureBank
from fedfr.tracking.worker import CameraWorker, PipelineReport


@dataclass(frozen=True)
class TrackRow:
    """A confirmed track as the writers need it: ``tlwh`` (4,) pixels."""

    track_id: int
    tlwh: np.ndarray
    score: float
    cls: int


@dataclass
class CameraStep:
    """One processed frame of one camera: its tracks, the re-ID crops (uint8 (M, H, W, 3), None
    when the source gives no pixels or no track is due) of the tracks ``crop_ids`` that the
    clip schedule (``clip_every``) picked at this frame, the reader's counters, and the frame's
    image (only when the driver publishes frames to observers, e.g. the web view)."""

    camera: str
    index: int
    timestamp: float
    tracks: list[TrackRow]
    crops: np.ndarray | None
    crop_ids: list[int] = field(default_factory=list)
    stats: CameraStats | None = None
    image: np.ndarray | None = None


@dataclass
class CameraSummary:
    """A camera stage's counters at the end: frames processed, reader stats, seconds in the
    detector and in BYTE + cropping, and the Ray node it ran on (None in-process)."""

    camera: str
    frames: int
    stats: CameraStats
    detect_s: float
    busy_s: float
    node: str | None = None


@dataclass
class StagedTrackingResult(TrackingResult):
    """``TrackingResult`` plus ``nodes``: the Ray node id each camera ran on (None
    in-process)."""

    nodes: dict[str, str | None] = field(default_factory=dict)


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:  # pragma: no cover - ray comes with flwr
        return None


class CameraStage:
    """One camera's reader, detector and BYTE (see the module docstring)."""

    def __init__(self, source: Source, detector: Detector, tracker: ByteTrackConfig,
                 crop_size: tuple[int, int], feed: FeedConfig, clip_len: int = 4,
                 clip_every: int = 1, publish_frames: bool = False):
        self.camera = source.camera
        self.detector = detector
        self.crop_size = tuple(crop_size)
        self.clip_len, self.clip_every = clip_len, clip_every
        self.publish_frames = publish_frames
        cfg = ByteTrackConfig(**{**asdict(tracker), "frame_rate": float(source.frame_rate)})
        self.worker = CameraWorker(self.camera, ByteTracker(cfg))
        self.feed = MultiCameraFeed([source], feed)
        self._ticks = self.feed.ticks()
        self.detect_s = 0.0

    def start(self) -> str:
        """Start the reader thread (the driver starts every camera once all stages exist, so
        real-time readers begin pacing together)."""
        self.feed.start()
        return self.camera

    def step(self) -> CameraStep | None:
        """Process the next frame (None when the camera has ended or failed)."""
        batch: list[Frame] | None = next(self._ticks, None)
        if not batch:
            return None
        frame = batch[0]
        t0 = time.perf_counter()
        dets = self.detector.detect([frame])[0]
        self.detect_s += time.perf_counter() - t0
        tracks = self.worker.step(frame, dets)
        rows = [TrackRow(int(t.track_id), np.asarray(t.tlwh, np.float64), float(t.score),
                         int(t.cls)) for t in tracks]
        crops, crop_ids = None, []
        picked = clip_tracks(tracks, self.clip_len, self.clip_every)
        if frame.image is not None and picked:
            crop_ids = [int(t.track_id) for t in picked]
            crops = crop_boxes(frame.image, np.stack([np.asarray(t.tlwh, np.float64)
                                                      for t in picked]), self.crop_size)
        return CameraStep(self.camera, frame.index, frame.timestamp, rows, crops, crop_ids,
                          self.feed.stats()[self.camera],
                          frame.image if self.publish_frames else None)

    def summary(self) -> CameraSummary:
        return CameraSummary(self.camera, self.worker.frames, self.feed.stats()[self.camera],
                             self.detect_s, self.worker.busy_s, _node_id())

    def close(self) -> CameraSummary:
        self.feed.stop()
        return self.summary()


class ReidBatcher:
    """The shared re-ID stage: one ``TrackFeatureBank`` for all cameras."""

    def __init__(self, embedder, clip_len: int, crop_size: tuple[int, int]):
        self.bank = TrackFeatureBank(embedder, clip_len=clip_len, crop_size=crop_size)

    def embed(self, steps: Sequence[CameraStep]) -> dict[TrackKey, np.ndarray]:
        """Add the crops of one tick (camera order), embed the ready clips in one batched call,
        and return ``{(camera, track id): feature (D,)}`` of the tracks whose feature changed."""
        touched: dict[TrackKey, int] = {}
        for s in steps:
            if s.crops is None:
                continue
            for track_id, crop in zip(s.crop_ids, s.crops, strict=True):
                key = (s.camera, track_id)
                st = self.bank.tracks.get(key)
                touched.setdefault(key, st.clips if st is not None else 0)
                self.bank.add(s.camera, track_id, crop)
        self.bank.flush()
        return {k: self.bank.feature(*k) for k, clips in touched.items()
                if self.bank.tracks[k].clips != clips}

    def counters(self) -> dict[str, int]:
        return {"clips": self.bank.embedded_clips, "calls": self.bank.calls}


class GalleryStage:
    """The cross-camera gallery stage: ``MultiCameraMatcher`` over one ``CrossCameraGallery``,
    fed with the batcher's features (kept here so that exits find their last feature)."""

    def __init__(self, config: GalleryConfig, topology: Topology | None, exit_after: int):
        self.gallery = CrossCameraGallery(config, topology)
        self.matcher = MultiCameraMatcher(self.gallery, exit_after=exit_after)
        self.features: dict[TrackKey, np.ndarray] = {}

    def _feature(self, camera: str, track_id: int) -> np.ndarray | None:
        return self.features.get((camera, int(track_id)))

    def update(self, features: Mapping[TrackKey, np.ndarray],
               frames: Sequence[tuple[str, int, float, list[int]]]
               ) -> list[tuple[dict[int, int], list[MatchEvent]]]:
        """``features`` from :meth:`ReidBatcher.embed`; ``frames``: per camera of the tick
        (camera, frame index, time s, track ids), in camera order. Returns per frame
        ``{local id: global id}`` known after that camera's update and the gallery links made
        by it."""
        self.features.update(features)
        out = []
        for camera, index, t, ids in frames:
            events = self.matcher.update(camera, index, t, ids, self._feature)
            out.append(({i: self.matcher.global_id(camera, i) for i in ids}, list(events)))
        return out

    def finish(self) -> int:
        """End of the run: every live track exits; returns the number of gallery matches."""
        self.matcher.finish(self._feature)
        return len(self.gallery.events)

    def events(self) -> list:
        return list(self.gallery.events)


class LocalExecutor:
    """Runs the stages in this process (same code path as Ray, no Ray): ``call`` is eager."""

    def actor(self, cls: type, *args: Any, options: dict | None = None) -> Any:
        return cls(*args)

    def call(self, handle: Any, method: str, *args: Any) -> Any:
        return getattr(handle, method)(*args)

    def get(self, refs: Any) -> Any:
        return refs

    def kill(self, handle: Any) -> None:
        """Stop a camera stage's reader thread (also after an error)."""
        if isinstance(handle, CameraStage):
            handle.feed.stop()


@dataclass
class RayOptions:
    """Where and how the stages run.

    ``address``: None starts a private local Ray (``num_cpus`` CPUs, no dashboard); ``"auto"``
    or ``host:port`` joins a running cluster (``ray start``). ``camera_cpus`` /
    ``reid_cpus``: CPUs each camera / the batcher reserve (0: placed anywhere); ``spread``:
    camera actors use Ray's SPREAD strategy (one per node where possible); ``pin_cameras``:
    camera ``c`` needs the custom resource ``camera:c`` (start the node that has the camera's
    stream or files with ``ray start --resources '{"camera:c": 1}'``); ``gallery_name`` /
    ``namespace``: the named gallery actor."""

    address: str | None = None
    num_cpus: int | None = None
    camera_cpus: float = 0.0
    reid_cpus: float = 0.0
    spread: bool = True
    pin_cameras: bool = False
    gallery_name: str = "fedfr-gallery"
    namespace: str = "fedfr-track"


class RayExecutor:
    """Runs the stages as Ray actors (``ray.init`` on first use unless Ray is already up)."""

    def __init__(self, options: RayOptions | None = None):
        import ray

        self.ray, self.options = ray, options or RayOptions()
        self.started = False
        if not ray.is_initialized():
            o = self.options
            if o.address is None:
                ray.init(address="local", num_cpus=o.num_cpus, include_dashboard=False,
                         namespace=o.namespace, log_to_driver=False)
            else:
                if o.num_cpus is not None:
                    raise ConfigError("ray: num_cpus is set by the cluster when joining one "
                                      f"(address {o.address!r})")
                ray.init(address=o.address, namespace=o.namespace, log_to_driver=False)
            self.started = True

    def actor(self, cls: type, *args: Any, options: dict | None = None) -> Any:
        return self.ray.remote(cls).options(**(options or {})).remote(*args)

    def call(self, handle: Any, method: str, *args: Any) -> Any:
        return getattr(handle, method).remote(*args)

    def get(self, refs: Any) -> Any:
        return self.ray.get(refs)

    def kill(self, handle: Any) -> None:
        self.ray.kill(handle)

    def shutdown(self) -> None:
        """Disconnect (and stop the local Ray) if this executor started it."""
        if self.started:
            self.ray.shutdown()
            self.started = False

    def camera_options(self, camera: str) -> dict:
        o = self.options
        opts: dict[str, Any] = {"num_cpus": o.camera_cpus, "name": f"camera-{camera}",
                                "namespace": o.namespace}
        if o.pin_cameras:
            opts["resources"] = {f"camera:{camera}": 0.001}
        elif o.spread:
            opts["scheduling_strategy"] = "SPREAD"
        return opts

    def reid_options(self) -> dict:
        return {"num_cpus": self.options.reid_cpus}

    def gallery_options(self) -> dict:
        return {"num_cpus": 0, "name": self.options.gallery_name,
                "namespace": self.options.namespace}


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_tracking_staged(sources: Sequence[Source], detector: Detector, embedder,
                        out: str | Path, config: TrackingConfig | None = None,
                        topology: Topology | None = None,
                        ground_truth: Mapping[str, Path] | None = None,
                        global_ground_truth: bool = False,
                        executor: LocalExecutor | RayExecutor | None = None,
                        on_tick: Callable[[list[CameraStep], list[dict[int, int]]], None]
                        | None = None,
                        observers: Sequence[PipelineObserver] = ()) -> StagedTrackingResult:
    """``run_tracking`` with one stage per camera, a shared re-ID batcher and a gallery stage,
    run by ``executor`` (default :class:`LocalExecutor`). Same arguments, files (written by
    the same :class:`ResultWriter`) and result (``report.detect_s`` sums the cameras'
    detector seconds; ``nodes`` maps each camera to its Ray node). ``on_tick(steps, global
    ids)`` sees each tick's output; ``observers`` (the web view) get the same calls as from
    ``run_tracking``: the camera stages then send each frame's image with its tracks, and
    ``stats()`` gives the readers' counters as of their latest frame."""
    cfg = config or TrackingConfig()
    ex = executor or LocalExecutor()
    cameras, rates, exit_after = check_run(sources, cfg)

    def opts(kind: str, *a: str) -> dict | None:
        fn = getattr(ex, f"{kind}_options", None)
        return fn(*a) if fn is not None else None

    outputs = ResultWriter(out, cameras, cfg.aic_pixel_offset)
    publish = bool(observers)
    stages = {s.camera: ex.actor(CameraStage, s, detector, cfg.tracker, cfg.crop_size, cfg.feed,
                                 cfg.clip_len, cfg.clip_every, publish,
                                 options=opts("camera", s.camera)) for s in sources}
    batcher = ex.actor(ReidBatcher, embedder, cfg.clip_len, cfg.crop_size,
                       options=opts("reid"))
    gallery = ex.actor(GalleryStage, cfg.gallery, topology, exit_after,
                       options=opts("gallery"))
    live = list(cameras)
    latest: dict[str, CameraStats] = {}
    error: BaseException | None = None
    try:  # every stage up (Ray starts worker processes lazily), then the clock and the readers
        up = ex.get([ex.call(batcher, "counters"), ex.call(gallery, "events"),
                     *(ex.call(stages[c], "summary") for c in cameras)])
        latest.update({s.camera: s.stats for s in up[2:]})
        for obs in observers:
            obs.on_start(cameras, rates, lambda: dict(latest))
        t0 = time.perf_counter()
        ex.get([ex.call(stages[c], "start") for c in cameras])
        while live:
            got = ex.get([ex.call(stages[c], "step") for c in live])
            steps = [s for s in got if s is not None]
            live = [c for c, s in zip(live, got, strict=True) if s is not None]
            if not steps:
                break
            feats = ex.call(batcher, "embed", steps)  # a reference, resolved by the gallery
            frames = [(s.camera, s.index, s.index / rates[s.camera],
                       [t.track_id for t in s.tracks]) for s in steps]
            updates = ex.get(ex.call(gallery, "update", feats, frames))
            globs = [glob for glob, _ in updates]
            for s, (glob, events) in zip(steps, updates, strict=True):
                latency = outputs.write(s.camera, s.index, s.timestamp, s.tracks, glob)
                if s.stats is not None:
                    latest[s.camera] = s.stats
                for obs in observers:
                    obs.on_frame(FrameUpdate(Frame(s.camera, s.index, s.image, s.timestamp),
                                             s.tracks, glob, latency))
                    for ev in events:
                        obs.on_match(ev)
            if on_tick is not None:
                on_tick(steps, globs)
        matches = ex.get(ex.call(gallery, "finish"))
        wall = time.perf_counter() - t0
        summaries: list[CameraSummary] = ex.get([ex.call(stages[c], "close") for c in cameras])
    except BaseException as exc:
        error = exc
        raise
    finally:
        for obs in observers:
            obs.on_end(error)
        outputs.close()
        for h in [*stages.values(), batcher, gallery]:
            ex.kill(h)

    frames_done = {s.camera: s.frames for s in summaries}
    report = PipelineReport(
        frames=frames_done, readers={s.camera: s.stats for s in summaries}, wall_s=wall,
        detect_s=sum(s.detect_s for s in summaries),
        fps={c: n / wall if wall > 0 else float("nan") for c, n in frames_done.items()},
        latency_p50={c: _pct(v, 50) for c, v in outputs.latencies.items()},
        latency_p95={c: _pct(v, 95) for c, v in outputs.latencies.items()})
    result = StagedTrackingResult(
        report=report, latency_p50=dict(report.latency_p50),
        latency_p95=dict(report.latency_p95), matches=int(matches), results=outputs.results,
        aic=outputs.aic_path, spans=outputs.spans(),
        nodes={s.camera: s.node for s in summaries})
    if ground_truth:
        result.table = evaluate_run(result, sources, ground_truth, global_ground_truth,
                                    cfg.min_visibility)
    return result


def run_tracking_ray(sources: Sequence[Source], detector: Detector, embedder, out: str | Path,
                     config: TrackingConfig | None = None, topology: Topology | None = None,
                     ground_truth: Mapping[str, Path] | None = None,
                     global_ground_truth: bool = False,
                     options: RayOptions | None = None,
                     on_tick: Callable[[list[CameraStep], list[dict[int, int]]], None]
                     | None = None,
                     observers: Sequence[PipelineObserver] = ()) -> StagedTrackingResult:
    """:func:`run_tracking_staged` on Ray: one actor per camera, a shared re-ID batcher actor,
    a named gallery actor. Starts a local Ray (or joins ``options.address``) if Ray is not up,
    and disconnects at the end if it started it."""
    ex = RayExecutor(options)
    try:
        return run_tracking_staged(sources, detector, embedder, out, config, topology,
                                   ground_truth, global_ground_truth, executor=ex,
                                   on_tick=on_tick, observers=observers)
    finally:
        ex.shutdown()
