"""Table 2.1's layout measured: the no-attention baseline, NVAN, NVAN + spatial, NVAN + temporal,
STE-NVAN and CF-AAN, each trained and evaluated in one run.

Per model and seed: train (``fedfr.reid.video.training.train_video``), extract the test
features once, evaluate the named MARS protocol (``--protocol``; the other uncleaned MARS
protocols are computed from the same features and kept in the CSV). Beside them: FLOPs and
parameters of the ResNet-50 variant at the paper's input (256 x 128, T = 8, CF-AAN T = 6) from
fedfr's counter, the thesis's GFLOPs and seed-reid.md Appendix H's analytic GMACs; the trained
(small-trunk) model's GMACs at the run's input; and clip features per second on this CPU,
measured in the same run (every model timed in turn, ``--rounds`` rounds, median).

Synthetic default (CPU, ~14 min per seed on this 2-core machine at load average ~18):
``synth-mars`` with 48 identities (24 train / 24 test), 64 x 32 frames (the generator's native
size), T = 4, the small trunk, 16 epochs of 3 P x K = 8 x 4 batches, Adam lr 1e-3 (x0.1 at
epoch 12), seed 0 (``--seeds 0,1`` for mean +- sd, as in docs/video-reid.md). At 64 x 32 the
small trunk's attention maps are 16 x 8 and 8 x 4, so S = 8 stripes and 3 CF-AA scales keep the
thesis's geometry (2 and 1 rows per stripe, a 2 x 1 coarsest axial map).

    FEDFR_NUM_THREADS=1 nice -n 10 python -m benchmarks.video_table21 --out outputs/video-table21 \
        --seeds 0,1
    python -m benchmarks.video_table21 --paper mars --data-root DATA --device cuda   # thesis run

``--paper mars|dukev`` uses the thesis's schedule (ResNet-50, 256 x 128, T = 8, Adam 1e-4,
x0.1 every 50 epochs, 200 epochs; CF-AAN: T = 6, 220 epochs, warm-up, random erasing, all-clips
test, L2-normalised features) on ``DATA/mars`` or ``DATA/dukemtmc-vidreid``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.models.video.cost import COST_ROWS, video_model_cost
from fedfr.reid.video.training import (
    VideoTrainConfig,
    evaluate_video_features,
    extract_tracklet_features,
    train_video,
)
from fedfr.runtime import configure_threads

ROWS = (("baseline", "ResNet-50 + FPL (no attention)"), ("nvan", "NVAN"),
        ("nvan_spatial", "NVAN + Spatial Reduc."), ("nvan_temporal", "NVAN + Temporal Reduc."),
        ("ste_nvan", "STE-NVAN"), ("cf_aan", "CF-AAN"))
#: thesis R1 / mAP (MARS, DukeV): Table 2.1; CF-AAN: Table 2.9 (with DL)
THESIS = {"baseline": (87.3, 79.1, 95.0, 92.7), "nvan": (90.0, 82.8, 96.3, 94.9),
          "nvan_spatial": (89.7, 82.5, 96.3, 94.7), "nvan_temporal": (89.2, 81.2, 95.6, 93.7),
          "ste_nvan": (88.9, 81.2, 95.2, 93.5), "cf_aan": (91.3, 86.5, 96.7, 96.2)}
ATTENTION = ("nvan", "nvan_spatial", "nvan_temporal", "ste_nvan", "cf_aan")
PAPER_DATA = {"mars": ("mars", "mars-official"), "dukev": ("dukemtmcvidreid", "query-gallery")}


def geometry_kwargs(name: str, backbone: str, height: int) -> dict[str, int]:
    """Stripes / CF-AA scales that keep the thesis's map geometry at ``height`` (S = 16 and
    4 scales at the backbone's default input height, halved / one fewer per halving)."""
    ref = 128 if backbone == "small_reid" else 256
    if height > ref or ref % height or (ref // height) & (ref // height - 1):
        raise ConfigError(f"--input height {height}: expected {ref} / 2^k for {backbone}")
    k = int(math.log2(ref // height))
    if name in ("nvan_spatial", "ste_nvan"):
        return {"stripes": 16 >> k}
    if name == "cf_aan":
        return {"scales": 4 - k}
    return {}


def paper_cost(name: str) -> dict[str, Any]:
    """Counted GMAC / params of the ResNet-50 variant at the thesis's input beside the thesis's
    GFLOPs and Appendix H's GMAC (``COST_ROWS``' first plain row of the model)."""
    row = next(r for r in COST_ROWS if r.model == name and not r.kwargs)
    res = video_model_cost(name, clip_len=row.clip_len)  # Appendix H's convention (eq5.7)
    full = video_model_cost(name, clip_len=row.clip_len, convention="full")  # every parameter
    return {"paper_T": row.clip_len, "thesis_gflops": row.reported_g,
            "appendix_h_gmac": row.analytic_g, "resnet50_gmac": res.flops / 1e9,
            "resnet50_params": full.params}


def clips_per_second(models: dict[str, torch.nn.Module], x: torch.Tensor, rounds: int,
                     reps: int) -> dict[str, float]:
    """Clip features per second of each model on ``x`` (B clips): every round times every model
    in turn (``reps`` calls each); the median over rounds."""
    times: dict[str, list[float]] = {n: [] for n in models}
    with torch.inference_mode():
        for m in models.values():
            m.eval()(x)  # warm-up
        for _ in range(rounds):
            for name, m in models.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    m(x)
                times[name].append((time.perf_counter() - t0) / reps)
    return {n: x.shape[0] / statistics.median(t) for n, t in times.items()}


def config_for(name: str, args: argparse.Namespace) -> VideoTrainConfig:
    if args.paper:
        base: dict[str, Any] = {"backbone": "resnet50", "clip_len": 8, "epochs": 200,
                                "lr": 1e-4, "milestones": [50, 100, 150]}
        if name == "cf_aan":
            base.update(clip_len=6, epochs=220, milestones=[50, 100, 150, 200],
                        warmup_epochs=10, warmup_factor=0.01, erasing=0.5, test_mode="all",
                        test_normalize=True)
        if args.pretrained:
            base["model_kwargs"] = {"pretrained_path": str(args.pretrained)}
    else:
        h, w = args.input
        base = {"backbone": "small_reid", "height": h, "width": w, "clip_len": args.clip_len,
                "epochs": args.epochs, "lr": args.lr,
                "milestones": [max(1, round(args.epochs * 0.75))],
                "model_kwargs": geometry_kwargs(name, "small_reid", h)}
    base.update(model=name, p=args.p, k=args.k, protocol=args.protocol)
    if args.epochs_override is not None:
        base["epochs"] = args.epochs_override
    return VideoTrainConfig.from_mapping(base)


def load_data(args: argparse.Namespace):
    if args.paper:
        from fedfr.reid.data.video import get_video_dataset

        name = PAPER_DATA[args.paper][0]
        if args.data_root is None or not Path(args.data_root).is_dir():
            raise DataFormatError(f"--paper {args.paper}: data folder {args.data_root} not "
                                  f"found (expected the folder holding "
                                  f"{'mars/' if args.paper == 'mars' else 'dukemtmc-vidreid/'})")
        return get_video_dataset(name, args.data_root)
    from fedfr.reid.data.tracklets import synthetic_tracklets

    return synthetic_tracklets(args.data, args.cache, num_ids=args.num_ids)


def summarise(runs: list[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    out = []
    for name, label in ROWS:
        rows = [r for r in runs if r["model"] == name]
        if not rows:
            continue
        s: dict[str, Any] = {"model": name, "row": label, "seeds": len(rows)}
        for key in ("R1", "mAP"):
            vals = [r[f"{protocol}:{key}"] for r in rows]
            s[f"{key}_mean"] = statistics.fmean(vals)
            s[f"{key}_sd"] = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        s["train_s_mean"] = statistics.fmean(r["train_s"] for r in rows)
        out.append(s)
    return out


def _pm(m: float, sd: float) -> str:
    return f"{m:.1f}" if math.isnan(sd) else f"{m:.1f} ± {sd:.1f}"


def markdown(summary: list[dict[str, Any]], costs: dict[str, dict[str, Any]],
             speed: dict[str, float], small: dict[str, float], meta: dict[str, Any]) -> str:
    p = meta["protocol"]
    lines = [f"Command: `{meta['command']}`", "",
             f"Data: {meta['data']}; {meta['setting']}; seeds {meta['seeds']}; protocol "
             f"`{p}` ({meta['metric']}, test mode `{meta['test_mode']}`); torch "
             f"{torch.__version__}, {meta['threads']} thread(s); load average at start / end "
             f"{meta['load_start']} / {meta['load_end']}; {meta['minutes']:.1f} min.", "",
             f"| row | R1 ({p}) | mAP ({p}) | thesis MARS R1 / mAP | thesis GFLOPs | "
             f"Appendix H GMAC | counted GMAC (ResNet-50, paper input) | params (ResNet-50) | "
             f"GMAC trained model | clips/s CPU | clips/s / baseline |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = speed.get("baseline")
    for s in summary:
        n = s["model"]
        c = costs[n]
        th = THESIS[n]
        ratio = f"{speed[n] / base:.2f}" if base else "-"
        lines.append(
            f"| {s['row']} | {_pm(s['R1_mean'], s['R1_sd'])} | {_pm(s['mAP_mean'], s['mAP_sd'])}"
            f" | {th[0]} / {th[1]} | {c['thesis_gflops']:.1f} (T={c['paper_T']}) | "
            f"{c['appendix_h_gmac']:.2f} | {c['resnet50_gmac']:.2f} | "
            f"{c['resnet50_params'] / 1e6:.2f} M | {small[n]:.3f} | {speed[n]:.1f} | {ratio} |")
    lines += ["", *meta["checks"]]
    return "\n".join(lines) + "\n"


def ordering_checks(summary: list[dict[str, Any]], costs: dict[str, dict[str, Any]],
                    protocol: str) -> list[str]:
    """One line each: the cost ordering (STE-NVAN cheapest attention model, NVAN dearest) and
    the measured accuracy order beside the thesis's."""
    att = {n: costs[n]["resnet50_gmac"] for n in ATTENTION if n in costs}
    out = []
    if {"nvan", "ste_nvan"} <= set(att):
        holds = min(att, key=att.get) == "ste_nvan" and max(att, key=att.get) == "nvan"
        ranked = ", ".join(f"{n} {g:.2f}" for n, g in sorted(att.items(), key=lambda kv: kv[1]))
        out.append(f"- Cost ordering (counted, ResNet-50): STE-NVAN cheapest attention model and "
                   f"NVAN dearest: {'holds' if holds else 'DOES NOT HOLD'} ({ranked} GMAC).")
    measured = [s["model"] for s in sorted(summary, key=lambda s: -s["R1_mean"])]
    thesis = sorted(measured, key=lambda n: -THESIS[n][0])
    out.append(f"- R1 order measured ({protocol}): {' > '.join(measured)}; thesis (MARS): "
               f"{' > '.join(thesis)}.")
    measured_map = [s["model"] for s in sorted(summary, key=lambda s: -s["mAP_mean"])]
    out.append(f"- mAP order measured: {' > '.join(measured_map)}; thesis (MARS): "
               f"{' > '.join(sorted(measured_map, key=lambda n: -THESIS[n][1]))}.")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.video_table21",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("outputs/video-table21"))
    ap.add_argument("--cache", type=Path, default=Path("outputs/video-table21/data"))
    ap.add_argument("--data", default="synth-mars", help="synthetic set (synth-mars | "
                    "synth-dukev)")
    ap.add_argument("--num-ids", type=int, default=48)
    ap.add_argument("--models", default=",".join(n for n, _ in ROWS))
    ap.add_argument("--seeds", default="0", help="comma-separated (docs: 0,1, ~28 min)")
    ap.add_argument("--input", default="64x32", help="HxW of each frame (synthetic default)")
    ap.add_argument("--clip-len", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--epochs-override", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--p", type=int, default=8)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--protocol", default=None, help="default: mars-official (MARS layout), "
                    "query-gallery for --paper dukev")
    ap.add_argument("--paper", choices=sorted(PAPER_DATA), default=None)
    ap.add_argument("--data-root", type=Path, default=None, help="--paper: folder holding "
                    "mars/ or dukemtmc-vidreid/")
    ap.add_argument("--pretrained", type=Path, default=None, help="--paper: ImageNet ResNet-50 "
                    "state dict")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=5, help="throughput rounds")
    ap.add_argument("--speed-batch", type=int, default=8, help="clips per timed call")
    args = ap.parse_args(argv)
    if args.protocol is None:
        args.protocol = PAPER_DATA[args.paper][1] if args.paper else "mars-official"
    args.input = tuple(int(v) for v in args.input.lower().split("x"))
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in THESIS]
    if unknown:
        raise ConfigError(f"--models: unknown {unknown}; expected some of {list(THESIS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    command = "python -m benchmarks.video_table21 " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    threads = configure_threads()
    load_start = " ".join(f"{v:.1f}" for v in os.getloadavg())
    t_start = time.perf_counter()
    split = load_data(args)
    costs = {n: paper_cost(n) for n in models}
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    trained: dict[str, torch.nn.Module] = {}
    protocols = [args.protocol] if args.protocol == "query-gallery" else \
        [args.protocol] + [p for p in ("mars-official", "mars-bot", "mars-cfaan")
                           if p != args.protocol]
    for seed in seeds:
        for name in models:
            cfg = config_for(name, args)
            t0 = time.perf_counter()
            net, _, stats = train_video(split, cfg, seed=seed, device=args.device)
            train_s = time.perf_counter() - t0
            feats = extract_tracklet_features(
                net, split.test if args.protocol != "query-gallery" else
                list(split.query) + list(split.gallery), cfg, device=args.device)
            row: dict[str, Any] = {"model": name, "seed": seed, "train_s": train_s,
                                   "epochs": cfg.epochs, "steps": stats["steps"],
                                   "final_loss": stats["loss"],
                                   "final_accuracy": stats["accuracy"]}
            for p in protocols:
                res = evaluate_video_features(feats, split, cfg, protocol=p)
                row.update({f"{p}:{k}": res[k] for k in ("R1", "R5", "R10", "mAP")})
            runs.append(row)
            trained[name] = net.cpu()
            print(f"seed {seed} {name}: R1 {row[f'{args.protocol}:R1']:.1f} mAP "
                  f"{row[f'{args.protocol}:mAP']:.1f} ({train_s:.0f} s)", flush=True)
    cfg0 = config_for(models[0], args)
    x = torch.randn(args.speed_batch, cfg0.clip_len, 3, cfg0.height, cfg0.width)
    speed_models = {}
    for n in models:  # CF-AAN is built for its clip length
        c = config_for(n, args)
        speed_models[n] = _Embed(trained[n]) if c.clip_len == cfg0.clip_len else None
    speed = clips_per_second({n: m for n, m in speed_models.items() if m is not None}, x,
                             args.rounds, 3)
    small = {}
    for n in models:
        c = config_for(n, args)
        small[n] = video_model_cost(n, clip_len=c.clip_len, input_size=(c.height, c.width),
                                    backbone=c.backbone, **c.model_kwargs).flops / 1e9 \
            if not c.model_kwargs.get("pretrained_path") else float("nan")
    summary = summarise(runs, args.protocol)
    checks = ordering_checks(summary, costs, args.protocol)
    minutes = (time.perf_counter() - t_start) / 60
    meta = {"command": command, "protocol": args.protocol, "seeds": seeds,
            "metric": "Euclidean on f_bn" if not cfg0.test_normalize else "Euclidean, L2",
            "test_mode": cfg0.test_mode, "threads": threads, "load_start": load_start,
            "load_end": " ".join(f"{v:.1f}" for v in os.getloadavg()), "minutes": minutes,
            "data": (f"{args.paper} ({args.data_root})" if args.paper else
                     f"{args.data} num_ids={args.num_ids} ({len(split.train)} train / "
                     f"{len(split.test)} test tracklets, {len(split.query_index)} queries)"),
            "setting": (f"{cfg0.backbone}, {cfg0.height}x{cfg0.width}, T={cfg0.clip_len}, "
                        f"{cfg0.epochs} epochs, Adam lr {cfg0.lr}, P x K = {cfg0.p} x {cfg0.k}"),
            "checks": checks}
    with open(args.out / "table21_runs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(runs[0]))
        w.writeheader()
        w.writerows(runs)
    with open(args.out / "table21.csv", "w", newline="") as fh:
        keys = ["model", "row", "seeds", "R1_mean", "R1_sd", "mAP_mean", "mAP_sd",
                "train_s_mean", "paper_T", "thesis_gflops", "appendix_h_gmac", "resnet50_gmac",
                "resnet50_params", "small_gmac", "clips_per_s"]
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for s in summary:
            w.writerow({**s, **costs[s["model"]], "small_gmac": small[s["model"]],
                        "clips_per_s": speed.get(s["model"], float("nan"))})
    md = markdown(summary, costs, {n: speed.get(n, float("nan")) for n in models}, small, meta)
    (args.out / "table21.md").write_text(md)
    (args.out / "table21.json").write_text(json.dumps({"meta": meta, "runs": runs,
                                                       "summary": summary, "costs": costs,
                                                       "clips_per_s": speed,
                                                       "small_gmac": small}, indent=1))
    print(md)
    return 0


class _Embed(torch.nn.Module):
    """A model's test feature f_bn (eval mode), what the throughput measures."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[1]


if __name__ == "__main__":
    from fedfr.errors import run_entry_point

    raise SystemExit(run_entry_point(main, "python -m benchmarks.video_table21"))
