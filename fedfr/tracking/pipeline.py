"""The wired multi-camera tracking pipeline of ``fedfr track`` (dissertation Ch. 8), online.

Per tick (at most one frame per camera, only present and past frames are used):

    frames of N cameras -> detector (one batched call) -> per-camera BYTE (camera-local ids)
    -> crops of confirmed tracks into a TrackFeatureBank (one batched embed_clips per tick)
    -> MultiCameraMatcher over one CrossCameraGallery (exits, queries, optional topology)
    -> writers: <out>/<camera>.txt (MOTChallenge, global ids known at that frame),
       <out>/motion-only/<camera>.txt (same tracks, camera-local ids made unique per camera,
       no gallery), <out>/aic.txt (AI City rows with global ids)

The motion-only baseline is written in the same pass from the same tracks (BYTE does not use
appearance here), so both rows of the table use identical detections and tracks and differ only
in the identities. ``run_tracking`` returns a :class:`TrackingResult` with the reader / latency
report and, where ``gt/gt.txt`` exists, per-camera MOTA / IDF1 and multi-camera IDF1 for both.

Observers (:class:`PipelineObserver`, e.g. the web view) get each written camera frame with its
tracks and global ids (:class:`FrameUpdate`), the gallery's match events, and the readers' live
counters; they only read, so results do not depend on them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fedfr.errors import ConfigError
from fedfr.tracking.bytetrack import ByteTrackConfig, ByteTracker, TrackOutput
from fedfr.tracking.detection import Detector
from fedfr.tracking.gallery import (
    CrossCameraGallery,
    GalleryConfig,
    GlobalIdentities,
    MatchEvent,
    MultiCameraMatcher,
    Topology,
)
from fedfr.tracking.sources import CameraStats, FeedConfig, Frame, MultiCameraFeed, Source
from fedfr.tracking.track_features import TrackFeatureBank
from fedfr.tracking.worker import CameraWorker, PipelineReport, run_pipeline
from fedfr.tracking.writers import AicWriter, MotWriter

GALLERY, MOTION_ONLY = "gallery", "motion-only"


@dataclass
class TrackingConfig:
    """Settings of one run. ``exit_after`` (frames a track is unseen before it exits into the
    gallery) defaults to BYTE's ``max_time_lost`` at the camera's frame rate; ``crop_size``
    (H, W) of the re-ID crops; ``clip_len`` the thesis's 4-frame clips; ``aic_pixel_offset`` 1
    turns MOTChallenge's 1-based pixels (det.txt, gt.txt) into AI City's 0-based ones;
    ``clip_every`` N > 1 takes one ``clip_len``-frame clip out of every N * ``clip_len`` frames
    of a track for re-ID (1 = every frame, the thesis; N cuts re-ID work N-fold)."""

    tracker: ByteTrackConfig = field(default_factory=ByteTrackConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    exit_after: int | None = None
    clip_len: int = 4
    clip_every: int = 1
    crop_size: tuple[int, int] = (256, 128)
    feed: FeedConfig = field(default_factory=FeedConfig)
    aic_pixel_offset: float = 1.0
    min_visibility: float = 0.0


@dataclass
class TrackingResult:
    """What a run produced: the worker-loop report, end-to-end latency per camera (capture ->
    written with its global id, seconds), gallery matches, result files, and the evaluation
    table (None without ground truth)."""

    report: PipelineReport
    latency_p50: dict[str, float]
    latency_p95: dict[str, float]
    matches: int
    results: dict[str, dict[str, Path]]
    aic: Path
    spans: dict[str, range] = field(default_factory=dict)
    table: list[dict] | None = None


@dataclass
class FrameUpdate:
    """One camera frame as written: ``frame`` (its ``image`` uint8 (H, W, 3) RGB or None),
    the confirmed ``tracks`` (tlwh in pixels, camera-local ids), ``global_ids`` {local: global}
    at that frame, and ``latency_s`` (capture timestamp -> rows written, seconds)."""

    frame: Frame
    tracks: list[TrackOutput]
    global_ids: dict[int, int]
    latency_s: float


class PipelineObserver:
    """The pipeline's observer hook (displays, monitors); every method is a no-op here.

    Called on the pipeline's thread, in this order: ``on_start`` once (camera names, frame
    rates, and ``stats()``, which returns the readers' live :class:`CameraStats`: read, dropped,
    queue depth), then per tick ``on_frame`` for each camera frame followed by ``on_match`` for
    each gallery link made on it, and ``on_end`` once (``error`` set when the run failed).
    Keep them quick and do not modify what they receive: the image is the pipeline's own."""

    def on_start(self, cameras: Sequence[str], frame_rates: Mapping[str, float],
                 stats: Callable[[], dict[str, CameraStats]]) -> None:
        pass

    def on_frame(self, update: FrameUpdate) -> None:
        pass

    def on_match(self, event: MatchEvent) -> None:
        pass

    def on_end(self, error: BaseException | None = None) -> None:
        pass


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def clip_tracks(tracks: Sequence[TrackOutput], clip_len: int, clip_every: int
                ) -> list[TrackOutput]:
    """The tracks whose crop joins a re-ID clip at this frame: all of them with
    ``clip_every`` 1; else each track's next ``clip_len`` frames, then a pause, out of every
    ``clip_len * clip_every`` frames of the track (its count lives in ``track.extra``)."""
    period = clip_len * clip_every
    if period <= clip_len:
        return list(tracks)
    picked = []
    for t in tracks:
        n = t.track.extra.get("clip_n", 0)
        t.track.extra["clip_n"] = n + 1
        if n % period < clip_len:
            picked.append(t)
    return picked


class ResultWriter:
    """The result files of a run, written online: ``<out>/<camera>.txt`` (global ids),
    ``<out>/motion-only/<camera>.txt`` (camera-local ids made unique per camera) and
    ``<out>/aic.txt``; with the latency of every written frame and each camera's first and
    last frame. Shared by ``run_tracking`` and the staged / Ray runner. ``tracks``: objects
    with ``track_id``, ``tlwh``, ``score``, ``cls`` (``TrackOutput`` or the Ray stage's rows)."""

    def __init__(self, out: str | Path, cameras: Sequence[str], aic_pixel_offset: float):
        out = Path(out)
        (out / MOTION_ONLY).mkdir(parents=True, exist_ok=True)
        self.results = {GALLERY: {c: out / f"{c}.txt" for c in cameras},
                        MOTION_ONLY: {c: out / MOTION_ONLY / f"{c}.txt" for c in cameras}}
        self.writers = {m: {c: MotWriter(p) for c, p in paths.items()}
                        for m, paths in self.results.items()}
        self.aic_path = out / "aic.txt"
        self.aic = AicWriter(self.aic_path, {c: i + 1 for i, c in enumerate(cameras)},
                             aic_pixel_offset)
        self.local_ids = GlobalIdentities()  # motion-only: a fresh id per (camera, local id)
        self.latencies: dict[str, list[float]] = {c: [] for c in cameras}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def write(self, camera: str, index: int, timestamp: float, tracks: Sequence,
              global_ids: Mapping[int, int]) -> float:
        """Write one camera frame; returns its latency (capture -> written, seconds)."""
        self.writers[GALLERY][camera].write(index, tracks, global_ids)
        self.writers[MOTION_ONLY][camera].write(
            index, tracks, {t.track_id: self.local_ids.get(camera, t.track_id) for t in tracks})
        self.aic.write(camera, index, tracks, global_ids)
        latency = time.time() - timestamp
        self.latencies[camera].append(latency)
        self.first.setdefault(camera, index)
        self.last[camera] = index
        return latency

    def spans(self) -> dict[str, range]:
        return {c: range(self.first[c], self.last[c] + 1) for c in self.first}

    def close(self) -> None:
        for ws in self.writers.values():
            for w in ws.values():
                w.close()
        self.aic.close()


def check_run(sources: Sequence, cfg: TrackingConfig
              ) -> tuple[list[str], dict[str, float], int]:
    """(camera names, frame rate per camera, frames unseen before a track exits) of a run;
    ConfigError for no cameras, a repeated camera name or ``clip_every`` < 1. The exit default is
    BYTE's ``max_time_lost`` of the slowest camera."""
    if not sources:
        raise ConfigError("tracking: no cameras given")
    if cfg.clip_every < 1:
        raise ConfigError(f"tracking: clip_every {cfg.clip_every}: expected >= 1")
    cameras = [s.camera for s in sources]
    if len(set(cameras)) != len(cameras):
        raise ConfigError(f"tracking: camera names must be unique, got {cameras}")
    rates = {s.camera: float(s.frame_rate) for s in sources}
    default_exit = int(min(rates.values()) / 30.0 * cfg.tracker.track_buffer)
    return cameras, rates, cfg.exit_after or max(default_exit, 1)


def run_tracking(sources: Sequence[Source], detector: Detector, embedder, out: str | Path,
                 config: TrackingConfig | None = None, topology: Topology | None = None,
                 ground_truth: Mapping[str, Path] | None = None,
                 global_ground_truth: bool = False,
                 observers: Sequence[PipelineObserver] = ()) -> TrackingResult:
    """Run every camera end to end, write the result files under ``out`` and, if
    ``ground_truth`` ({camera: gt.txt}) is given, evaluate (per camera; multi-camera IDF1 only
    when ``global_ground_truth``: one person keeps one id across cameras, as in the synthetic
    scene). ``embedder``: ``embed_clips(uint8 (N, T, H, W, 3)) -> (N, D)``. ``observers`` see
    every written frame and gallery match (:class:`PipelineObserver`)."""
    cfg = config or TrackingConfig()
    cameras, rates, exit_after = check_run(sources, cfg)

    bank = TrackFeatureBank(embedder, clip_len=cfg.clip_len, crop_size=cfg.crop_size)
    gallery = CrossCameraGallery(cfg.gallery, topology)
    matcher = MultiCameraMatcher(gallery, exit_after=exit_after)
    outputs = ResultWriter(out, cameras, cfg.aic_pixel_offset)
    pending: dict[str, list[TrackOutput]] = {}

    def clips(frame: Frame, tracks: list[TrackOutput]) -> None:
        bank.sink(frame, clip_tracks(tracks, cfg.clip_len, cfg.clip_every))

    def collect(frame: Frame, tracks: list[TrackOutput]) -> None:
        pending[frame.camera] = tracks

    def after_tick(batch: list[Frame]) -> None:
        bank.flush()  # one batched re-ID call for the clips of all cameras
        for frame in batch:
            cam = frame.camera
            tracks = pending.pop(cam, [])
            ids = [t.track_id for t in tracks]
            events = matcher.update(cam, frame.index, frame.index / rates[cam], ids,
                                    bank.feature)
            glob = {t: matcher.global_id(cam, t) for t in ids}
            latency = outputs.write(cam, frame.index, frame.timestamp, tracks, glob)
            for obs in observers:
                obs.on_frame(FrameUpdate(frame, tracks, glob, latency))
                for ev in events:
                    obs.on_match(ev)

    workers = {}
    for s in sources:
        tcfg = ByteTrackConfig(**{**asdict(cfg.tracker), "frame_rate": rates[s.camera]})
        workers[s.camera] = CameraWorker(s.camera, ByteTracker(tcfg), sinks=[clips, collect])

    def on_feed(feed: MultiCameraFeed) -> None:
        for obs in observers:
            obs.on_start(cameras, rates, feed.stats)

    error: BaseException | None = None
    try:
        report = run_pipeline(sources, detector, workers, cfg.feed, after_tick=after_tick,
                              on_feed=on_feed if observers else None)
        matcher.finish(bank.feature)
    except BaseException as exc:
        error = exc
        raise
    finally:
        for obs in observers:
            obs.on_end(error)
        outputs.close()

    latencies = outputs.latencies
    result = TrackingResult(
        report=report, latency_p50={c: _pct(v, 50) for c, v in latencies.items()},
        latency_p95={c: _pct(v, 95) for c, v in latencies.items()},
        matches=len(gallery.events), results=outputs.results, aic=outputs.aic_path,
        spans=outputs.spans())
    if ground_truth:
        result.table = evaluate_run(result, sources, ground_truth, global_ground_truth,
                                    cfg.min_visibility)
    return result


def evaluate_run(result: TrackingResult, sources: Sequence[Source],
                 ground_truth: Mapping[str, Path], global_ground_truth: bool,
                 min_visibility: float = 0.0) -> list[dict]:
    """The evaluation table: per method (gallery, motion-only) one row per camera with ground
    truth (frames, FPS, latency ms, drops, MOTA, IDF1, IDP, IDR, switches) and a
    ``multi-camera`` row (IDF1 / IDP / IDR over the concatenated cameras) when the ground truth
    has global ids. Only the frames processed are scored (synchronous mode)."""
    from fedfr.tracking.evaluation import evaluate_mot, evaluate_multicamera

    rep = result.report
    cams = [s.camera for s in sources if s.camera in ground_truth]
    frames = dict(result.spans)  # first..last frame processed (dropped frames count as missed)
    rows: list[dict] = []
    for method, paths in result.results.items():
        pairs = {c: (ground_truth[c], paths[c]) for c in cams}
        df = evaluate_mot(pairs, min_visibility=min_visibility, frames=frames)
        for c in cams:
            m = df.loc[c]
            rows.append({
                "method": method, "camera": c, "frames": rep.frames.get(c, 0),
                "fps": rep.fps.get(c, float("nan")),
                "latency_p50_ms": 1e3 * result.latency_p50.get(c, float("nan")),
                "latency_p95_ms": 1e3 * result.latency_p95.get(c, float("nan")),
                "dropped": rep.readers[c].dropped, "mota": float(m["mota"]),
                "idf1": float(m["idf1"]), "idp": float(m["idp"]), "idr": float(m["idr"]),
                "switches": int(m["num_switches"])})
        if global_ground_truth and len(cams) > 1:
            gt = {c: _clip_frames(ground_truth[c], frames.get(c)) for c in cams}
            mc = evaluate_multicamera(gt, {c: paths[c] for c in cams},
                                      min_visibility=min_visibility)
            rows.append({
                "method": method, "camera": "multi-camera",
                "frames": sum(rep.frames.get(c, 0) for c in cams), "fps": float("nan"),
                "latency_p50_ms": float("nan"), "latency_p95_ms": float("nan"),
                "dropped": sum(rep.readers[c].dropped for c in cams), "mota": mc["mota"],
                "idf1": mc["idf1"], "idp": mc["idp"], "idr": mc["idr"],
                "switches": int(mc["num_switches"])})
    return rows


def _clip_frames(gt_path: Path, frames: range | None) -> np.ndarray | Path:
    """Ground-truth rows of the processed frames only (a camera stopped early is not charged
    for frames it never saw)."""
    if frames is None:
        return gt_path
    from fedfr.tracking.motchallenge import read_ground_truth

    gt = read_ground_truth(gt_path)
    keep = (gt[:, 0] >= frames.start) & (gt[:, 0] < frames.stop)
    return gt[keep]


COLUMNS = ("method", "camera", "frames", "fps", "latency_p50_ms", "latency_p95_ms", "dropped",
           "mota", "idf1", "idp", "idr", "switches")


_ONE_DECIMAL = ("fps", "latency_p50_ms", "latency_p95_ms")


def _fmt(v, key: str = "") -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.1f}" if key in _ONE_DECIMAL else f"{v:.4f}"
    return str(v)


def write_table(rows: Sequence[dict], out: str | Path) -> tuple[Path, Path]:
    """``<out>/evaluation.csv`` and ``<out>/evaluation.md`` (one row per method and camera)."""
    out = Path(out)
    csv_path, md_path = out / "evaluation.csv", out / "evaluation.md"
    lines = [",".join(COLUMNS)] + [",".join(_fmt(r[k], k) for k in COLUMNS) for r in rows]
    csv_path.write_text("\n".join(lines) + "\n")
    md = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(_fmt(r[k], k) for k in COLUMNS) + " |" for r in rows]
    md_path.write_text("\n".join(md) + "\n")
    return csv_path, md_path


def write_report(result: TrackingResult, out: str | Path) -> Path:
    """``<out>/report.json``: frames, FPS, latency, drops and reader errors per camera."""
    rep = result.report
    doc = {
        "wall_s": rep.wall_s, "detect_s": rep.detect_s, "gallery_matches": result.matches,
        "cameras": {c: {"frames": rep.frames[c], "fps": rep.fps[c],
                        "latency_p50_s": result.latency_p50[c],
                        "latency_p95_s": result.latency_p95[c],
                        "read": rep.readers[c].read, "dropped": rep.readers[c].dropped,
                        "error": rep.readers[c].error} for c in rep.frames},
    }
    path = Path(out) / "report.json"
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return path
