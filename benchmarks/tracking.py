"""Tracking benchmark (issue 16): FPS per stream for 1, 2 and 3 streams, end-to-end latency,
drops, and IDF1 / multi-camera IDF1 in one table, for the wired pipeline of ``fedfr track``.

    python -m benchmarks.tracking --out outputs/bench-tracking [--quick] [--threads 2]

Cases (each one online pass of ``run_tracking``; the motion-only baseline, camera-local ids
and no gallery, is written in the same pass from the same detections and tracks):

* the synthetic scene (overlapping and disjoint set-ups, 3 cameras of 640 x 480 at 25 FPS),
  public ``det.txt``, with the colour-histogram embedder and the small re-ID model
  (``small_reid``, random initialisation: its speed is what is measured, not its accuracy),
  re-ID clips on every frame (``clip_every`` 1, the thesis) or one 4-frame clip out of every
  16 frames of a track (``clip_every`` 4); synchronous mode (every frame, as fast as the
  machine allows: FPS is capacity) for 1, 2 and 3 streams, and real-time mode (readers paced
  at 25 FPS, drop-oldest queues) for 3 streams, where latency and drops are the live ones;
* the same with the web view's observer attached (no browser connected);
* ``shared/data/mot/MOT17-mini`` (real frames, public FRCNN detections; 4 and 8 frames);
* a real detector on the CPU (torchvision's Faster R-CNN MobileNetV3-320, untrained: speed
  only), 1 and 3 streams.

FPS per stream = frames processed / wall time of the run (JPEG decoding included); on a
shared machine it depends on the load, so ``cpu_fps`` = frames per stream / CPU seconds of the
whole process during the pass (all threads) is reported too: the FPS per stream one fully
available core would give (a lower bound for 2 cores; the readers and torch run in parallel
threads). Latency =
capture timestamp -> rows written with the global id (p50 / p95 over the cameras' frames; in
synchronous mode it includes the wait in the full 8-frame queue). The machine's load average
is recorded before and after each case. Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from fedfr.tracking.detection import PrecomputedDetector
from fedfr.tracking.pipeline import TrackingConfig, evaluate_run, run_tracking
from fedfr.tracking.scene import SceneSpec, write_scene
from fedfr.tracking.sources import FeedConfig, ImageFolderSource

ROOT = Path(__file__).resolve().parents[1]
MOT17_MINI = ROOT.parent / "shared" / "data" / "mot" / "MOT17-mini"
COLUMNS = ("data", "detector", "embedder", "clip_every", "mode", "streams", "fps", "cpu_fps",
           "lat_p50_ms", "lat_p95_ms", "dropped", "matches", "idf1", "mc_idf1", "mc_idf1_motion",
           "load")


def scene(work: Path, setup: str, frames: int, fps: float = 25.0,
          size: tuple[int, int] = (640, 480)) -> Path:
    """The synthetic scene (3 cameras), written once under ``work`` and reused."""
    out = work / f"scene-{setup}-{frames}f-{fps:g}fps-{size[0]}x{size[1]}"
    if not (out / "c001" / "seqinfo.ini").is_file():
        write_scene(SceneSpec(setup=setup, frames=frames, frame_rate=fps, width=size[0],
                              height=size[1]), out)
    return out


MODELS: dict[str, Path] = {}  # --model NAME=PATH: re-ID model files (fedfr track --embedder)
MODEL_SIZE = [(64, 32)]  # --model-size: input of a model file that records none


def embedder(name: str):
    """(embedder, crop size (H, W)): colour-hist, a ``--model`` file by its name (crops at
    its stored input size), or a randomly initialised architecture."""
    if name in MODELS:
        from fedfr.tracking.embedders import ReidModelEmbedder, stored_input_size

        size = stored_input_size(MODELS[name]) or MODEL_SIZE[0]
        emb = ReidModelEmbedder.from_path(MODELS[name], "small_reid", size=size)
        return emb, emb.size
    if name == "colour-hist":
        from fedfr.tracking.embedders import ColourHistogramEmbedder

        return ColourHistogramEmbedder(), (128, 64)
    import torch

    from fedfr.reid.models import build_reid_model
    from fedfr.tracking.embedders import ReidModelEmbedder

    torch.manual_seed(0)
    fuse = name.endswith("+fuse-bn")
    net = build_reid_model(name.removesuffix("+fuse-bn"))
    return ReidModelEmbedder(net, size=(128, 64), fuse_bn=fuse), (128, 64)


def run_case(seqs: list[Path], out: Path, *, emb: str, realtime: bool = False,
             detector: str = "det", global_gt: bool = True, max_frames: int | None = None,
             clip_every: int = 1, web: bool = False, topology: Path | None = None) -> dict:
    """One pass over ``seqs``; the table row (means over cameras)."""
    sources = [ImageFolderSource(s, max_frames=max_frames) for s in seqs]
    if detector == "det":
        det = PrecomputedDetector({s.camera: s.info.root / "det" / "det.txt" for s in sources})
    else:
        import torch

        from fedfr.tracking.detection import TorchvisionDetector

        torch.manual_seed(0)
        det = TorchvisionDetector(detector)
    model, crop = embedder(emb)
    gt = {s.camera: s.info.root / "gt" / "gt.txt" for s in sources
          if (s.info.root / "gt" / "gt.txt").is_file()}
    cfg = TrackingConfig(crop_size=crop, feed=FeedConfig(realtime=realtime),
                         clip_every=clip_every)
    observers = []
    if web:  # the web view's observer attached (no client connected): its cost on the run
        from fedfr.tracking.web import LiveView

        observers.append(LiveView())
    load0, cpu0 = os.getloadavg()[0], time.process_time()
    topo = None
    if topology is not None:
        from fedfr.tracking.gallery import Topology

        topo = Topology.load(topology)
    res = run_tracking(sources, det, model, out, cfg, topo, observers=observers)
    cpu_s = time.process_time() - cpu0
    load1 = os.getloadavg()[0]
    if gt:
        res.table = evaluate_run(res, sources, gt, global_gt)
    rep = res.report
    cams = list(rep.frames)
    row = {
        "streams": len(cams), "mode": "real-time" if realtime else "sync",
        "frames": sum(rep.frames.values()), "wall_s": rep.wall_s,
        "fps": float(np.mean([rep.fps[c] for c in cams])),
        "fps_min": float(min(rep.fps[c] for c in cams)),
        "cpu_s": cpu_s, "cpu_fps": max(rep.frames.values()) / cpu_s,
        "lat_p50_ms": 1e3 * float(np.mean([res.latency_p50[c] for c in cams])),
        "lat_p95_ms": 1e3 * float(np.max([res.latency_p95[c] for c in cams])),
        "dropped": int(sum(rep.readers[c].dropped for c in cams)),
        "detect_s": rep.detect_s, "matches": res.matches, "load": f"{load0:.1f}/{load1:.1f}",
        "idf1": float("nan"), "mc_idf1": float("nan"), "mc_idf1_motion": float("nan"),
    }
    for r in res.table or []:
        if r["camera"] == "multi-camera":
            row["mc_idf1" if r["method"] == "gallery" else "mc_idf1_motion"] = r["idf1"]
    per_cam = [r["idf1"] for r in res.table or [] if r["method"] == "gallery"
               and r["camera"] != "multi-camera"]
    if per_cam:
        row["idf1"] = float(np.mean(per_cam))
    return row


def _fmt(v, key: str) -> str:
    if isinstance(v, float):
        if np.isnan(v):
            return ""
        return f"{v:.1f}" if key in ("fps", "cpu_fps", "lat_p50_ms", "lat_p95_ms") \
            else f"{v:.3f}"
    return str(v)


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r.get(k, ""), k) for k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench-tracking")
    ap.add_argument("--work", type=Path, default=None, help="scene cache (default OUT/scenes)")
    ap.add_argument("--frames", type=int, default=250, help="synthetic frames per camera")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--quick", action="store_true",
                    help="60 frames, no real detector (a smoke run, numbers not for docs)")
    ap.add_argument("--no-detector", action="store_true", help="skip the torchvision rows")
    ap.add_argument("--detector-frames", type=int, default=20)
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="a re-ID model file (federated, pruned, ...) for --only models")
    ap.add_argument("--model-size", default="64x32",
                    help="HxW input of a --model file that records none (a federation's "
                         "final_model.pt; the re-ID workload's default reid-height x width)")
    ap.add_argument("--only", choices=("all", "speed", "gallery", "target", "models"),
                    default="all",
                    help="speed: the FPS rows; gallery: appearance vs motion-only rows; "
                         "target: the 3-stream small_reid rows (clip_every 1 and 4, sync)")
    args = ap.parse_args(argv)
    import torch

    for item in args.model:
        name, _, path = item.partition("=")
        if not name or not path or not Path(path).is_file():
            ap.error(f"--model {item!r}: expected NAME=PATH of an existing model file")
        MODELS[name] = Path(path)
    h, _, w = args.model_size.partition("x")
    MODEL_SIZE[0] = (int(h), int(w))
    if args.only == "models" and not MODELS:
        ap.error("--only models needs --model NAME=PATH")

    if args.threads:
        torch.set_num_threads(args.threads)
    frames = 60 if args.quick else args.frames
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out / "scenes"
    t0 = time.time()
    rows: list[dict] = []

    def add(label: dict, seqs, name, **kw):
        row = {**label, **run_case(seqs, args.out / "runs" / name, **kw)}
        rows.append(row)
        print(markdown([row]).splitlines()[-1], flush=True)

    print(markdown([]), end="")
    if args.only == "models":  # colour histograms vs the given models vs motion only
        model_rows(add, work, 300, ["colour-hist", *MODELS], frames)
        return finish(args, rows, frames, t0)
    if args.only in ("all", "gallery"):
        gallery_rows(add, work, 100 if args.quick else 300)
    if args.only == "gallery":
        return finish(args, rows, frames, t0)
    over = scene(work, "overlapping", frames)
    cams = ["c001", "c002", "c003"]
    det_label = {"detector": "det.txt"}
    if args.only == "target":  # the target: 3 streams, det.txt, the small re-ID model
        for emb in ("small_reid", "small_reid+fuse-bn"):  # + BatchNorms folded into the convs
            for clip in (1, 4):
                add({"data": "synthetic overlapping", **det_label, "embedder": emb,
                     "clip_every": clip}, [over / c for c in cams], f"over-{emb}-{clip}-3",
                    emb=emb, clip_every=clip)
        return finish(args, rows, frames, t0)
    disj = scene(work, "disjoint", frames)
    for emb in ("colour-hist", "small_reid"):
        for clip in (4, 1):  # 4: one 4-frame clip per 16 frames of a track; 1: every frame
            lab = {**det_label, "embedder": emb, "clip_every": clip}
            for n in ((1, 2, 3) if clip == 4 else (3,)):
                add({"data": "synthetic overlapping", **lab}, [over / c for c in cams[:n]],
                    f"over-{emb}-{clip}-{n}", emb=emb, clip_every=clip)
            add({"data": "synthetic overlapping", **lab}, [over / c for c in cams],
                f"over-{emb}-{clip}-rt", emb=emb, realtime=True, clip_every=clip)
            add({"data": "synthetic disjoint", **lab}, [disj / c for c in cams],
                f"disj-{emb}-{clip}-3", emb=emb, clip_every=clip)
    add({"data": "synthetic overlapping + web view observer", **det_label,
         "embedder": "small_reid", "clip_every": 4}, [over / c for c in cams], "over-web",
        emb="small_reid", clip_every=4, web=True)
    mot = sorted(p for p in MOT17_MINI.glob("MOT17-*") if (p / "seqinfo.ini").is_file())
    for n in range(1, len(mot) + 1):
        add({"data": "MOT17-mini", "detector": "public FRCNN", "embedder": "small_reid",
             "clip_every": 4}, mot[:n], f"mot17-{n}", emb="small_reid", global_gt=False,
            clip_every=4)
    if not (args.quick or args.no_detector):
        arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
        for n in (1, 3):
            add({"data": "synthetic overlapping", "detector": f"{arch} (untrained)",
                 "embedder": "small_reid", "clip_every": 4}, [over / c for c in cams[:n]],
                f"frcnn-{n}", emb="small_reid", detector=arch,
                max_frames=args.detector_frames, clip_every=4)
    return finish(args, rows, frames, t0)


def gallery_rows(add, work: Path, frames: int) -> None:
    """Appearance matching against the motion-only baseline (same pass, same detections) on
    the disjoint corridor at 10 FPS (the set-up the thesis's exit-gallery is made for; people
    take 1-16 s between cameras), with and without its topology file."""
    disj = scene(work, "disjoint", frames, fps=10.0, size=(480, 360))
    seqs = [disj / c for c in ("c001", "c002", "c003")]
    for emb in ("colour-hist", "small_reid"):
        for topo in (True, False):
            add({"data": "disjoint corridor 10 FPS" + (" + topology" if topo else ""),
                 "detector": "det.txt", "embedder": emb, "clip_every": 1}, seqs,
                f"corridor-{emb}-{int(topo)}", emb=emb,
                topology=disj / "topology.json" if topo else None)


def model_rows(add, work: Path, corridor_frames: int, embedders: list[str],
               frames: int) -> None:
    """Each embedder (clip_every 1, the thesis) on the disjoint corridor at 10 FPS (480 x 360,
    with and without its topology) and on the overlapping 25 FPS scene (3 x 640 x 480);
    the motion-only baseline is the same pass's ``mc_idf1_motion``."""
    disj = scene(work, "disjoint", corridor_frames, fps=10.0, size=(480, 360))
    over = scene(work, "overlapping", frames)
    cams = ("c001", "c002", "c003")
    for emb in embedders:
        for topo in (True, False):
            add({"data": "disjoint corridor 10 FPS" + (" + topology" if topo else ""),
                 "detector": "det.txt", "embedder": emb, "clip_every": 1},
                [disj / c for c in cams], f"models-corridor-{emb}-{int(topo)}", emb=emb,
                topology=disj / "topology.json" if topo else None)
        add({"data": "synthetic overlapping", "detector": "det.txt", "embedder": emb,
             "clip_every": 1}, [over / c for c in cams], f"models-over-{emb}", emb=emb)


def web_view_cost(frames: int = 250, tracks: int = 8) -> dict:
    """CPU cost of the web view: ``LiveView.on_frame`` on the pipeline's thread (per camera
    frame with ``tracks`` tracks, 3 cameras of 640 x 480) and one annotated JPEG (drawn and
    encoded when a client asks), microseconds / milliseconds of process CPU time."""
    from fedfr.tracking.bytetrack import Track, TrackOutput
    from fedfr.tracking.pipeline import FrameUpdate
    from fedfr.tracking.sources import Frame
    from fedfr.tracking.web import LiveView

    view = LiveView()
    view.on_start(["a", "b", "c"], {c: 25.0 for c in "abc"}, dict)
    img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    outs = [TrackOutput(i, np.array([10.0 + 70 * i, 50, 40, 100]), 0.9, 0,
                        Track(np.array([1.0, 1, 1, 1]), 0.9)) for i in range(1, tracks + 1)]
    ups = [FrameUpdate(Frame(c, k, img, time.time()), outs, {i: i + 100 * j for i in
                                                             range(1, tracks + 1)}, 0.05)
           for k in range(1, frames + 1) for j, c in enumerate("abc")]
    t = time.process_time()
    for u in ups:
        view.on_frame(u)
    per_frame_us = 1e6 * (time.process_time() - t) / len(ups)
    t = time.process_time()
    for _ in range(20):
        view.cameras["a"].jpeg = None
        view.jpeg("a")
    return {"on_frame_us": per_frame_us, "jpeg_ms": 1e3 * (time.process_time() - t) / 20}


def finish(args, rows: list[dict], frames: int, t0: float) -> int:
    import torch

    env = {"time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "load_end": list(os.getloadavg()), "wall_s": time.time() - t0,
           "command": "python -m benchmarks.tracking " + " ".join(sys.argv[1:]),
           "frames": frames, "web_view": web_view_cost()}
    (args.out / "results.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1,
                                                      default=float) + "\n")
    (args.out / "results.md").write_text(markdown(rows))
    print(f"web view: LiveView.on_frame {env['web_view']['on_frame_us']:.0f} us of CPU per "
          f"camera frame (8 tracks); annotated 640 x 480 JPEG {env['web_view']['jpeg_ms']:.1f}"
          " ms per frame and viewed camera")
    print(f"torch threads {env['torch_threads']}, load average at the end "
          f"{env['load_end'][0]:.1f}; {env['wall_s']:.0f} s; {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
