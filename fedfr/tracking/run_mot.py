"""Track MOTChallenge sequences with their public detections and score them.

    python -m fedfr.tracking.run_mot --seq DIR [--seq DIR ...] --out DIR

For each sequence folder (``seqinfo.ini``, ``img1/``, ``det/det.txt``, optional ``gt/gt.txt``):
frames from the image folder -> ``det.txt`` detector -> BYTE (frame rate from seqinfo.ini) ->
``<out>/<name>.txt`` (MOTChallenge rows). Sequences with ground truth are evaluated (MOT17
filtering) into ``<out>/metrics.csv``, printed with frames per second. Only frames that have
images are processed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedfr.errors import DataFormatError, run_entry_point
from fedfr.tracking.bytetrack import ByteTrackConfig, ByteTracker
from fedfr.tracking.detection import PrecomputedDetector
from fedfr.tracking.sources import FeedConfig, ImageFolderSource
from fedfr.tracking.worker import CameraWorker, run_pipeline
from fedfr.tracking.writers import MotWriter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fedfr.tracking.run_mot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seq", action="append", required=True, type=Path,
                   help="MOTChallenge sequence folder (repeat for several cameras)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--det-name", default="det/det.txt",
                   help="detections file inside each sequence (default det/det.txt)")
    p.add_argument("--track-thresh", type=float, default=0.5)
    p.add_argument("--low-thresh", type=float, default=0.1)
    p.add_argument("--match-thresh", type=float, default=0.8)
    p.add_argument("--track-buffer", type=int, default=30)
    p.add_argument("--min-box-area", type=float, default=10.0)
    p.add_argument("--aspect-ratio-thresh", type=float, default=1.6)
    p.add_argument("--mot20", action="store_true", help="no score fusion in matching")
    p.add_argument("--realtime", action="store_true",
                   help="real-time mode: paced readers, drop-oldest queues")
    p.add_argument("--queue-size", type=int, default=8)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-images", action="store_true",
                   help="do not decode images (the det.txt detector does not need pixels)")
    p.add_argument("--min-visibility", type=float, default=0.0)
    p.add_argument("--debug", action="store_true")
    return p


def run(args: argparse.Namespace) -> dict:
    """Track, write and evaluate; returns {"report": PipelineReport, "metrics": DataFrame|None,
    "results": {name: path}}."""
    sources, workers, writers, det_files, results = [], {}, [], {}, {}
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for seq in args.seq:
            src = ImageFolderSource(seq, load_images=not args.no_images,
                                    max_frames=args.max_frames)
            if src.camera in workers:
                raise DataFormatError(f"{seq}: sequence name {src.camera} given twice")
            det = seq / args.det_name
            if not det.is_file():
                raise DataFormatError(f"{det}: no detections file (see --det-name)")
            det_files[src.camera] = det
            cfg = ByteTrackConfig(
                track_thresh=args.track_thresh, low_thresh=args.low_thresh,
                match_thresh=args.match_thresh, track_buffer=args.track_buffer,
                frame_rate=src.frame_rate, fuse_score=not args.mot20,
                min_box_area=args.min_box_area, aspect_ratio_thresh=args.aspect_ratio_thresh)
            path = args.out / f"{src.camera}.txt"
            writer = MotWriter(path)
            writers.append(writer)
            results[src.camera] = path
            workers[src.camera] = CameraWorker(
                src.camera, ByteTracker(cfg),
                sinks=[lambda frame, tracks, w=writer: w.write(frame.index, tracks)])
            sources.append(src)
        report = run_pipeline(sources, PrecomputedDetector(det_files), workers,
                              FeedConfig(realtime=args.realtime, queue_size=args.queue_size))
    finally:
        for w in writers:
            w.close()
    metrics = None
    pairs = {s.camera: (s.info.root / "gt" / "gt.txt", results[s.camera]) for s in sources
             if (s.info.root / "gt" / "gt.txt").is_file()}
    if pairs:
        from fedfr.tracking.evaluation import evaluate_mot

        frames = {s.camera: range(s.files[0][0], s.files[-1][0] + 1) for s in sources}
        metrics = evaluate_mot(pairs, min_visibility=args.min_visibility, frames=frames)
        metrics.to_csv(args.out / "metrics.csv", float_format="%.6f")
    return {"report": report, "metrics": metrics, "results": results}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        out = run(args)
        rep = out["report"]
        for cam in rep.frames:
            r = rep.readers[cam]
            print(f"{cam}: {rep.frames[cam]} frames, {rep.fps[cam]:.1f} FPS, dropped {r.dropped}"
                  + (f", error: {r.error}" if r.error else ""))
        if out["metrics"] is not None:
            cols = ["mota", "idf1", "idp", "idr", "num_switches", "num_false_positives",
                    "num_misses"]
            print(out["metrics"][cols].to_string(float_format=lambda v: f"{v:.4f}"))
        print(f"results in {args.out}")
        return 0

    return run_entry_point(go, "run_mot", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
