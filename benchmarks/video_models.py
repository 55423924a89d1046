"""Video re-ID models: FLOPs, parameters and clip latency of every variant, measured in one run.

At the Table 8.4 input (one clip of 4 frames, 4 x 3 x 256 x 128, ResNet-50 with last stride 1)
for the no-attention baseline, NVAN, NVAN + spatial (Spatial-NVAN), NVAN + temporal, STE-NVAN
and CF-AAN: MACs and parameters from fedfr's counter, then the inference latency of one clip
(eval mode, no grad; median of ``--repeats`` rounds, each round timing every model ``--reps``
times in turn so that load changes hit all alike) and its ratio to the baseline's in the same run,
beside the thesis's Table 8.4 (6-core CPU, a GPU). Writes ``video_models.json`` and
``video_models.md`` (with the command) to ``--out``.

    FEDFR_NUM_THREADS=1 nice -n 10 python -m benchmarks.video_models --out outputs/video-models
    python -m benchmarks.video_models --device cuda --reps 20          # on a GPU
    python -m benchmarks.video_models --backbone small_reid --input 128x64   # the CPU trunk
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from fedfr.reid.models.video import build_video_model
from fedfr.reid.models.video.cost import cost_table, video_model_cost
from fedfr.runtime import configure_threads

MODELS = ("baseline", "nvan", "nvan_spatial", "nvan_temporal", "ste_nvan", "cf_aan")
#: Table 8.4 (DukeV, T = 4): CPU / GPU latency in seconds (thesis, 6-core CPU and one GPU)
TABLE_8_4 = {"nvan": (0.143, 0.012), "nvan_spatial": (0.101, 0.013),
             "ste_nvan": (0.088, 0.013), "cf_aan": (0.118, 0.015)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(model: torch.nn.Module, x: torch.Tensor, device: str, reps: int) -> float:
    """Seconds per clip batch, mean of ``reps`` calls."""
    _sync(device)
    t = time.perf_counter()
    with torch.inference_mode():
        for _ in range(reps):
            model(x)
    _sync(device)
    return (time.perf_counter() - t) / reps


def run(models: list[str], backbone: str, size: tuple[int, int], clip_len: int, batch: int,
        device: str, repeats: int, reps: int) -> list[dict]:
    """One row per model: cost, latency (median over rounds) and latency / baseline's."""
    torch.manual_seed(0)
    x = torch.randn(batch, clip_len, 3, *size, device=device)
    nets, rows = {}, {}
    for name in models:
        eq = video_model_cost(name, clip_len=clip_len, input_size=size, backbone=backbone)
        full = video_model_cost(name, clip_len=clip_len, input_size=size, backbone=backbone,
                                convention="full")
        net = build_video_model(name, backbone=backbone, clip_len=clip_len,
                                input_size=size).to(device).eval()
        with torch.inference_mode():
            net(x)  # warm-up
        nets[name] = net
        rows[name] = {"model": name, "backbone": backbone, "input": f"{batch}x{clip_len}x3x"
                      f"{size[0]}x{size[1]}", "device": device, "params": full.params,
                      "gmac": eq.flops / 1e9, "gmac_full": full.flops / 1e9, "times": []}
    for _ in range(repeats):
        for name, net in nets.items():
            rows[name]["times"].append(_time(net, x, device, reps))
    base = statistics.median(rows[models[0]]["times"])
    out = []
    for name in models:
        r = rows[name]
        r["latency_s"] = statistics.median(r["times"])
        r[f"latency / {models[0]}"] = r["latency_s"] / base
        r["clips_per_s"] = batch / r["latency_s"]
        cpu, gpu = TABLE_8_4.get(name, (None, None))
        same_setting = backbone == "resnet50" and clip_len == 4 and size == (256, 128)
        r["thesis_latency_s"] = (gpu if device.startswith("cuda") else cpu) if same_setting \
            else None
        out.append(r)
    return out


def to_markdown(rows: list[dict], command: str, threads: int) -> str:
    ref = [k for k in rows[0] if k.startswith("latency / ")][0]
    lines = [f"Command: `{command}`", "",
             f"torch {torch.__version__}, {rows[0]['device']}, {threads} thread(s), "
             f"{platform.processor() or platform.machine()}; input {rows[0]['input']}; "
             f"GMAC = conv + attention multiply-accumulates per clip (eq. 5.7 + attention), "
             f"'full' adds BN, bias and pooling.", "",
             f"| model | params | GMAC | GMAC full | latency (s) | {ref} | clips/s | "
             f"thesis Table 8.4 (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        th = "-" if r["thesis_latency_s"] is None else f"{r['thesis_latency_s']:.3f}"
        lines.append(f"| {r['model']} | {r['params']:,} | {r['gmac']:.2f} | {r['gmac_full']:.2f}"
                     f" | {r['latency_s']:.3f} | {r[ref]:.2f} | {r['clips_per_s']:.2f} | {th} |")
    return "\n".join(lines) + "\n"


def cost_markdown(backbone: str = "resnet50") -> str:
    """Tables 2.1 / 2.4 / 2.5 / 2.8 beside Appendix H and fedfr's counter (no timing)."""
    lines = ["| table | row | T | thesis GFLOPs | Appendix H GMAC | counted GMAC | counted / H |"
             " counted 'full' GMAC | params |", "|---|---|---|---|---|---|---|---|---|"]
    thesis = backbone == "resnet50"  # the thesis's and Appendix H's figures are ResNet-50's
    for r in cost_table(backbone):
        if not thesis:
            r["reported_gflops"] = r["analytic_gmac"] = None
        rep = "-" if r["reported_gflops"] is None else f"{r['reported_gflops']:.3f}"
        ana = "-" if r["analytic_gmac"] is None else f"{r['analytic_gmac']:.2f}"
        rat = ("-" if r["analytic_gmac"] is None
               else f"{r['measured_gmac'] / r['analytic_gmac']:.4f}")
        lines.append(f"| {r['table']} | {r['label']} | {r['T']} | {rep} | {ana} | "
                     f"{r['measured_gmac']:.3f} | {rat} | {r['measured_gmac_full']:.3f} | "
                     f"{r['params']:,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/video-models"))
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated; the first is the latency reference")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--device", default="cpu")
    p.add_argument("--input", default="256x128", help="HxW of each frame")
    p.add_argument("--clip-len", type=int, default=4, help="T (Table 8.4: 4)")
    p.add_argument("--batch", type=int, default=1, help="clips per call")
    p.add_argument("--repeats", type=int, default=3, help="rounds over all models")
    p.add_argument("--reps", type=int, default=3, help="timed calls per model and round")
    p.add_argument("--cost-table", action="store_true",
                   help="only write video_cost.md: the thesis's FLOPs tables beside the counter")
    args = p.parse_args(argv)
    if args.cost_table:
        md = cost_markdown(args.backbone)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "video_cost.md").write_text(md)
        print(md)
        return
    threads = configure_threads()
    size = tuple(int(v) for v in args.input.lower().split("x"))
    rows = run(args.models.split(","), args.backbone, size, args.clip_len, args.batch,
               args.device, args.repeats, args.reps)
    command = "python -m benchmarks.video_models " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"command": command, "threads": threads, "torch": torch.__version__, "rows": rows}
    (args.out / "video_models.json").write_text(json.dumps(meta, indent=1))
    md = to_markdown(rows, command, threads)
    (args.out / "video_models.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
