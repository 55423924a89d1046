"""Re-ID models: parameters, FLOPs and CPU / GPU throughput, NCHW against channels-last.

For every model in ``--models``: parameters and multiply-accumulates (fedfr's counter, "full"
convention, batch 1) at 256x128 and 128x64, then images/s of inference (``embed``, eval mode) and
of training steps (forward + BNNeck + CE + soft triplet + backward + Adam, P x K batch) in NCHW
and in channels-last, measured in one run with the two formats interleaved, and their ratio.
Writes ``reid_models.json`` and ``reid_models.md`` to ``--out``.

    FEDFR_NUM_THREADS=2 python -m benchmarks.reid_models --out outputs/reid-models
    python -m benchmarks.reid_models --device cuda --models resnet50 --batch 64   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from fedfr.metric_losses import batch_hard_triplet_loss, label_smoothing_ce
from fedfr.pruning.counting import count_resources
from fedfr.reid.models import IdentityClassifier, build_reid_model
from fedfr.runtime import configure_threads

SIZES = {"256x128": (256, 128), "128x64": (128, 64)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_infer(model, x, device, reps) -> float:
    model.embed(x)  # warm-up
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        model.embed(x)
    _sync(device)
    return reps * len(x) / (time.perf_counter() - t)


def _time_train(model, clf, opt, x, y, device, reps) -> float:
    def step():
        f, f_bn = model(x)
        loss = label_smoothing_ce(clf(f_bn), y) + batch_hard_triplet_loss(f, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.train()
    step()  # warm-up
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        step()
    _sync(device)
    return reps * len(x) / (time.perf_counter() - t)


def measure(name: str, size: tuple[int, int], batch: int, device: str, repeats: int,
            reps: int) -> dict:
    torch.manual_seed(0)
    h, w = size
    x = torch.randn(batch, 3, h, w, device=device)
    y = torch.arange(batch, device=device) // 4
    row: dict = {"model": name, "input": f"{h}x{w}", "batch": batch, "device": device}
    for label, (sh, sw) in SIZES.items():
        r = count_resources(build_reid_model(name), torch.zeros(1, 3, sh, sw))
        row["params"] = r.params
        row[f"gmac@{label}"] = r.flops / 1e9
    nets = {}
    for fmt in ("nchw", "channels_last"):
        m = build_reid_model(name, channels_last=fmt == "channels_last").to(device)
        c = IdentityClassifier(m.feature_dim, int(y.max()) + 1).to(device)
        opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad]
                               + list(c.parameters()), lr=3.5e-4)
        nets[fmt] = (m, c, opt)
    res: dict[str, dict[str, list[float]]] = {f: {"infer": [], "train": []} for f in nets}
    for _ in range(repeats):  # interleaved so that load changes hit both formats alike
        for fmt, (m, c, opt) in nets.items():
            res[fmt]["infer"].append(_time_infer(m, x, device, reps))
            res[fmt]["train"].append(_time_train(m, c, opt, x, y, device, reps))
    for fmt in nets:
        for kind in ("infer", "train"):
            row[f"{kind} img/s {fmt}"] = statistics.median(res[fmt][kind])
    for kind in ("infer", "train"):
        row[f"{kind} CL/NCHW"] = row[f"{kind} img/s channels_last"] / row[f"{kind} img/s nchw"]
    return row


def to_markdown(rows: list[dict]) -> str:
    cols = ["model", "params", "gmac@256x128", "gmac@128x64", "input", "batch",
            "infer img/s nchw", "infer img/s channels_last", "infer CL/NCHW",
            "train img/s nchw", "train img/s channels_last", "train CL/NCHW"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"{v:,}" if isinstance(v, int) else f"{v:.2f}" if isinstance(v, float)
                         else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/reid-models"))
    p.add_argument("--models", default="small_reid,resnet18,resnet50")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16, help="images per step (a multiple of 4)")
    p.add_argument("--input", default=None, help="HxW for the throughput (default: 128x64 for "
                   "small_reid, 256x128 for the resnets)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reps", type=int, default=2, help="timed batches per repeat")
    args = p.parse_args(argv)
    threads = configure_threads()
    rows = []
    for name in args.models.split(","):
        size = (tuple(int(v) for v in args.input.split("x")) if args.input else
                (128, 64) if name == "small_reid" else (256, 128))
        row = measure(name, size, args.batch, args.device, args.repeats, args.reps)
        row["threads"] = threads
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reid_models.json").write_text(json.dumps(rows, indent=1))
    md = to_markdown(rows)
    (args.out / "reid_models.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
