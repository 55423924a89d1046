"""``fedfr track``: online multi-camera tracking with re-ID and a cross-camera gallery.

    fedfr track --scene DIR | --seq DIR [--seq DIR ...] | --synthetic  --out DIR
                [--detector det|gt-noise|PATH] [--embedder colour-hist|CKPT]
                [--topology FILE] [--realtime] [--backend threads|ray [--ray-address A]]
                [--serve [--host H] [--port P] [--linger S]]

Cameras: ``--scene`` (a folder of MOTChallenge sequences, e.g. written by
``python -m fedfr.tracking.scene``; its gt ids are global), ``--seq`` (sequence folders; gt ids
per sequence, so no multi-camera score) or ``--synthetic`` (first writes the synthetic 3-camera
scene into ``<out>/scene``). Writes ``<out>/<camera>.txt`` (global ids),
``<out>/motion-only/<camera>.txt``, ``<out>/aic.txt``, ``<out>/report.json`` and, with ground
truth, ``<out>/evaluation.csv`` / ``evaluation.md`` (gallery vs motion-only baseline).
``--serve`` shows the run live in a browser (``fedfr.tracking.web``; 127.0.0.1 by default).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from fedfr.errors import ConfigError, DataFormatError

log = logging.getLogger("fedfr.track")


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("cameras (one of)")
    src.add_argument("--scene", type=Path, help="folder of MOTChallenge sequences (one per "
                     "camera, global gt ids), e.g. a synthetic scene")
    src.add_argument("--seq", type=Path, action="append", help="MOTChallenge sequence folder "
                     "(repeat per camera)")
    src.add_argument("--synthetic", action="store_true",
                     help="write the synthetic scene into OUT/scene first, then track it")
    syn = p.add_argument_group("--synthetic scene")
    syn.add_argument("--setup", default="overlapping", choices=("overlapping", "disjoint"))
    syn.add_argument("--cameras", type=int, default=3)
    syn.add_argument("--people", type=int, default=12)
    syn.add_argument("--frames", type=int, default=200)
    syn.add_argument("--fps", type=float, default=10.0)
    syn.add_argument("--size", default="640x480", help="WxH")
    syn.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--detector", default="det",
                   help="det (each sequence's det/det.txt), gt-noise (ground truth + noise, "
                        "for tests), or a detector file: train_detector checkpoint (.pt with "
                        "'arch'), TorchScript (.pt) or ONNX (.onnx)")
    p.add_argument("--det-name", default="det/det.txt", help="detections file in a sequence")
    p.add_argument("--embedder", default="colour-hist",
                   help="colour-hist or a re-ID model file (fedfr reid / fedfr prune)")
    p.add_argument("--reid-name", default=None, help="model name for a bare state-dict file")
    p.add_argument("--fuse-bn", action="store_true",
                   help="re-ID model: fold BatchNorms into the convolutions (faster; features "
                        "differ by ~1e-7)")
    p.add_argument("--crop-size", default=None,
                   help="re-ID crop HxW (default 128x64 colour-hist, 256x128 a model)")
    p.add_argument("--clip-every", type=int, default=1,
                   help="re-ID: one 4-frame clip per N*4 frames of a track (1: every frame)")
    p.add_argument("--topology", type=Path, help="camera topology JSON (links, transit windows)")
    p.add_argument("--realtime", action="store_true",
                   help="real-time mode: paced readers, drop-oldest queues, drops counted")
    p.add_argument("--queue-size", type=int, default=8)
    p.add_argument("--max-frames", type=int, default=None, help="frames per camera at most")
    g = p.add_argument_group("tracker and gallery")
    g.add_argument("--track-thresh", type=float, default=0.5)
    g.add_argument("--match-thresh", type=float, default=0.8)
    g.add_argument("--track-buffer", type=int, default=30)
    g.add_argument("--gallery-threshold", type=float, default=0.3, help="max cosine distance")
    g.add_argument("--query-interval", type=int, default=40, help="frames between queries")
    g.add_argument("--ttl", type=float, default=120.0, help="gallery entry lifetime, seconds")
    g.add_argument("--exit-after", type=int, default=None,
                   help="frames unseen before a track exits (default: BYTE's max_time_lost)")
    g.add_argument("--live-matching", action="store_true",
                   help="also match tracks in view across cameras with overlapping views "
                        "(not in the thesis; docs/tracking.md, Overlapping views)")
    g.add_argument("--no-exit-matching", action="store_true",
                   help="tracks do not query the exited tracks (with --live-matching: live "
                        "matching alone)")
    g.add_argument("--live-threshold", type=float, default=None,
                   help="max cosine distance of a live match (default --gallery-threshold)")
    g.add_argument("--live-interval", type=int, default=None,
                   help="frames between live queries (default --query-interval)")
    p.add_argument("--min-visibility", type=float, default=0.0, help="evaluation")
    p.add_argument("--hota", action="store_true",
                   help="also HOTA per camera and multi-camera (needs the package trackeval), "
                        "written to OUT/hota.md")
    r = p.add_argument_group("backend")
    r.add_argument("--backend", default="threads", choices=("threads", "ray"),
                   help="threads (one process) or ray: one actor per camera, a shared re-ID "
                        "batcher, a named gallery actor (docs/tracking.md, Ray)")
    r.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (auto or host:port; default: a local Ray)")
    r.add_argument("--ray-num-cpus", type=int, default=None, help="CPUs of a local Ray")
    r.add_argument("--ray-pin-cameras", action="store_true",
                   help="camera C runs on a node with the custom resource camera:C")
    w = p.add_argument_group("web view")
    w.add_argument("--serve", action="store_true",
                   help="serve the live web view (MJPEG, events, gallery, /metrics) during the run")
    w.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default loopback only; anything else exposes frames)")
    w.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    w.add_argument("--linger", type=float, default=None,
                   help="seconds to keep serving after the run (default: until Ctrl-C)")
    w.add_argument("--ring-size", type=int, default=8, help="frames kept per camera")
    w.add_argument("--stream-fps", type=float, default=15.0, help="MJPEG frames/s per client")


def _size(text: str, what: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected AxB, e.g. 640x480") from None
    if a < 1 or b < 1:
        raise ConfigError(f"{what} {text!r}: expected positive sizes")
    return a, b


def _sequences(args) -> tuple[list[Path], bool]:
    """(sequence folders, ground-truth ids are global)."""
    given = sum(bool(x) for x in (args.scene, args.seq, args.synthetic))
    if given != 1:
        raise ConfigError("fedfr track: give exactly one of --scene, --seq, --synthetic")
    if args.synthetic:
        from fedfr.tracking.scene import SceneSpec, write_scene

        w, h = _size(args.size, "--size")
        spec = SceneSpec(setup=args.setup, seed=args.seed, num_cameras=args.cameras,
                         num_people=args.people, frames=args.frames, frame_rate=args.fps,
                         width=w, height=h)
        args.scene = write_scene(spec, args.out / "scene")
        log.info("synthetic scene written to %s", args.scene)
    if args.scene:
        if not args.scene.is_dir():
            raise DataFormatError(f"{args.scene}: no such scene folder")
        seqs = sorted(d for d in args.scene.iterdir() if (d / "seqinfo.ini").is_file())
        if not seqs:
            raise DataFormatError(f"{args.scene}: no sequence folders with seqinfo.ini")
        return seqs, True
    return list(args.seq), False


def _detector(args, sources):
    from fedfr.tracking import detection

    spec = args.detector
    if spec == "det":
        paths = {}
        for s in sources:
            p = s.info.root / args.det_name
            if not p.is_file():
                raise DataFormatError(f"{p}: no detections file (see --det-name)")
            paths[s.camera] = p
        return detection.PrecomputedDetector(paths), 1.0
    if spec == "gt-noise":
        paths = {}
        for s in sources:
            p = s.info.root / "gt" / "gt.txt"
            if not p.is_file():
                raise DataFormatError(f"{p}: --detector gt-noise needs ground truth")
            paths[s.camera] = p
        size = (sources[0].info.width, sources[0].info.height)
        return detection.GroundTruthNoiseDetector(paths, seed=args.seed, image_size=size), 1.0
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--detector {spec!r}: expected det, gt-noise or a detector file")
    if path.suffix == ".onnx":
        return detection.ExportedDetector(path), 0.0
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a state dict: try TorchScript
        state = None
    if isinstance(state, dict) and "arch" in state:
        return detection.TorchvisionDetector(state["arch"], int(state.get("num_classes", 2)),
                                             checkpoint=path), 0.0
    return detection.ExportedDetector(path), 0.0


def main(args: argparse.Namespace) -> int:
    from fedfr.tracking.bytetrack import ByteTrackConfig
    from fedfr.tracking.embedders import build_embedder
    from fedfr.tracking.gallery import GalleryConfig, Topology
    from fedfr.tracking.pipeline import TrackingConfig, run_tracking
    from fedfr.tracking.sources import FeedConfig, ImageFolderSource

    if args.backend != "ray" and (args.ray_address or args.ray_num_cpus
                                  or args.ray_pin_cameras):
        raise ConfigError("--ray-address / --ray-num-cpus / --ray-pin-cameras need "
                          "--backend ray")
    if args.hota:
        from fedfr.tracking.hota import require_trackeval

        require_trackeval()  # before the run, not after it
    args.out.mkdir(parents=True, exist_ok=True)
    seqs, global_gt = _sequences(args)
    names = set()
    sources = []
    for seq in seqs:
        src = ImageFolderSource(seq, max_frames=args.max_frames)
        if src.camera in names:
            raise DataFormatError(f"{seq}: camera name {src.camera} given twice")
        names.add(src.camera)
        sources.append(src)
    detector, aic_offset = _detector(args, sources)
    crop = _size(args.crop_size, "--crop-size") if args.crop_size else None
    kwargs = {"name": args.reid_name} if args.reid_name else {}
    if args.embedder in ("colour-hist", "color-hist", "colour", "hist"):
        embedder = build_embedder(args.embedder)
        crop = crop or (128, 64)
    else:  # a re-ID model: the crops are its input (--crop-size, else stored, else 256 x 128)
        embedder = build_embedder(args.embedder, size=crop, fuse_bn=args.fuse_bn, **kwargs)
        crop = embedder.size
    topology = Topology.load(args.topology) if args.topology else None
    config = TrackingConfig(
        tracker=ByteTrackConfig(track_thresh=args.track_thresh, match_thresh=args.match_thresh,
                                track_buffer=args.track_buffer),
        gallery=GalleryConfig(threshold=args.gallery_threshold, ttl=args.ttl,
                              query_interval=args.query_interval, live=args.live_matching,
                              exits=not args.no_exit_matching,
                              live_threshold=args.live_threshold,
                              live_interval=args.live_interval),
        exit_after=args.exit_after, crop_size=crop, clip_every=args.clip_every,
        feed=FeedConfig(realtime=args.realtime, queue_size=args.queue_size),
        aic_pixel_offset=aic_offset, min_visibility=args.min_visibility)
    gt = {s.camera: s.info.root / "gt" / "gt.txt" for s in sources
          if (s.info.root / "gt" / "gt.txt").is_file()}
    server, observers = _serve(args, sources) if args.serve else (None, [])
    try:
        if args.backend == "ray":
            from fedfr.tracking.ray_pipeline import RayOptions, run_tracking_ray

            options = RayOptions(address=args.ray_address, num_cpus=args.ray_num_cpus,
                                 pin_cameras=args.ray_pin_cameras)
            result = run_tracking_ray(sources, detector, embedder, args.out, config, topology,
                                      ground_truth=gt, global_ground_truth=global_gt,
                                      options=options, observers=observers)
        else:
            result = run_tracking(sources, detector, embedder, args.out, config, topology,
                                  ground_truth=gt, global_ground_truth=global_gt,
                                  observers=observers)
        _report(args, result, gt, global_gt)
        if server is not None:
            _linger(server, args.linger)
    finally:
        if server is not None:
            server.stop()
    return 0


def _serve(args, sources):
    """Start the web view before the run: (server, [its LiveView])."""
    from fedfr.tracking.optional import optional_import

    for mod in ("fastapi", "uvicorn"):
        optional_import(mod, "fedfr track --serve", "tracking")
    from fedfr.tracking.web.app import create_app
    from fedfr.tracking.web.server import WebServer
    from fedfr.tracking.web.state import LiveView

    if args.stream_fps <= 0:
        raise ConfigError(f"--stream-fps {args.stream_fps}: expected > 0")
    view = LiveView(ring_size=args.ring_size)
    view.on_start([s.camera for s in sources], {s.camera: s.frame_rate for s in sources}, dict)
    server = WebServer(create_app(view, max_fps=args.stream_fps), args.host, args.port).start()
    print(f"web view: {server.url}/  (gallery {server.url}/gallery, metrics "
          f"{server.url}/metrics)", flush=True)
    return server, [view]


def _linger(server, seconds: float | None) -> None:
    import time

    if seconds is not None and seconds <= 0:
        return
    print(f"run finished; web view still at {server.url}/ "
          + ("until Ctrl-C" if seconds is None else f"for {seconds:g} s"), flush=True)
    try:
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def _report(args, result, gt, global_gt: bool) -> None:
    from fedfr.tracking.pipeline import write_report, write_table

    write_report(result, args.out)
    rep = result.report
    for c in rep.frames:
        r = rep.readers[c]
        print(f"{c}: {rep.frames[c]} frames, {rep.fps[c]:.1f} FPS, latency p50 "
              f"{1e3 * result.latency_p50[c]:.0f} ms p95 {1e3 * result.latency_p95[c]:.0f} ms, "
              f"dropped {r.dropped}" + (f", error: {r.error}" if r.error else ""))
    print(f"gallery matches: {result.matches}; wall {rep.wall_s:.1f} s")
    if result.table:
        _, md = write_table(result.table, args.out)
        print(md.read_text(), end="")
    if args.hota and gt:
        from fedfr.tracking.hota import hota_table, write_hota_table

        rows = hota_table(result.results, gt, result.spans, global_gt, args.min_visibility)
        print(write_hota_table(rows, args.out).read_text(), end="")
    if any(math.isnan(v) for v in rep.fps.values()):
        log.warning("some cameras processed no frames")
    print(f"results in {args.out}")
