"""Prune the federated global face model to a FLOPs target, fine-tune on the public data D_g,
and compare generic metrics and CPU latency before / after (CAIE, Taylor, L1, uniform).

The model comes from ``--checkpoint`` (a federation's final_model.pt) or, by default, from a
small in-process FedFR run on the ORL faces (server/inprocess.py) written to <out>/fedfr-run.
Writes pruning_face.csv / pruning_face.md and per-method report.{json,md} to --out.

    FEDFR_NUM_THREADS=1 python -m benchmarks.pruning_face --out outputs/pruning-face
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path

import pandas as pd
import torch

from fedfr.config import resolve
from fedfr.face.models import model_from_config
from fedfr.face.workspace import open_workspace
from fedfr.pruning.face import FaceTask, load_face_checkpoint
from fedfr.pruning.global_pruning import GlobalConfig
from fedfr.pruning.pipeline import compare_latencies, run, write_report
from fedfr.pruning.task import FineTuneSchedule, finetune
from fedfr.runtime import configure_threads
from server.inprocess import format_run_config, parse_run_config, run_inprocess

log = logging.getLogger("benchmarks.pruning_face")
ORL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "orl"

#: the ORL federation of `make demo-orl`, shortened for CPU
ORL_RUN = {"dataset": "folder", "data-root": str(ORL), "image-size": 32, "num-public-ids": 16,
           "ids-per-client": 4, "train-per-id": 6, "test-per-id": 4, "num-generic-ids": 8,
           "num-clients": 4, "num-server-rounds": 3, "min-train-nodes": 4}


def _schedule(args: argparse.Namespace) -> FineTuneSchedule:
    return FineTuneSchedule(epochs=args.ft_epochs, lr=args.ft_lr,
                            milestones=(max(1, args.ft_epochs * 2 // 3),), gamma=0.1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, help="final_model.pt (default: run FedFR)")
    p.add_argument("--run-config", default="", help="overrides of the ORL run config")
    p.add_argument("--flops", type=float, default=0.75)
    p.add_argument("--methods", nargs="+", default=["caie", "taylor", "l1", "uniform"])
    p.add_argument("--per-step", type=int, default=8)
    p.add_argument("--n-batches", type=int, default=10)
    p.add_argument("--ft-epochs", type=int, default=5)
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--out", type=Path, default=Path("outputs/pruning-face"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    configure_threads()
    args.out = args.out.resolve()  # config paths are otherwise relative to $FEDFR_HOME
    run_config = {**ORL_RUN, "output-dir": str(args.out / "fedfr-run"),
                  "cache-dir": str(args.out / "cache"),
                  **(parse_run_config(args.run_config) if args.run_config else {})}
    cfg = resolve(run_config)
    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = cfg.output_path / "final_model.pt"
        if not ckpt.exists():
            log.info("running FedFR in-process: %s", format_run_config(run_config))
            run_inprocess(run_config)
    backbone, phi = load_face_checkpoint(ckpt)
    ws = open_workspace(cfg)
    rows = []
    # control: the same fine-tuning without pruning (the public-data fine-tuning alone may help)
    model = model_from_config(cfg)
    model.load_state_dict(backbone)
    torch.manual_seed(cfg.seed)
    task = FaceTask(ws.public(), ws.generic(), model, copy.deepcopy(phi), batch_size=32,
                    s=cfg.cosface_s, m=cfg.cosface_m, seed=cfg.seed)
    before = task.evaluate(model)
    unpruned = copy.deepcopy(model)
    finetune(model, task, _schedule(args), progress=False)
    lat_b, lat_a = compare_latencies(unpruned, model, task.example_input)
    after = task.evaluate(model)
    rows.append({"method": "none (fine-tuning only)", "flops_pct": 100.0, "params_pct": 100.0,
                 "metric": task.metric, "before": before[task.metric],
                 "pruned": before[task.metric], "after": after[task.metric],
                 "rank1_before": before.get("rank1"), "rank1_after": after.get("rank1"),
                 "cpu_ms_before": lat_b["cpu_ms"], "cpu_ms_after": lat_a["cpu_ms"]})
    for method in args.methods:
        model = model_from_config(cfg)
        model.load_state_dict(backbone)
        torch.manual_seed(cfg.seed)
        task = FaceTask(ws.public(), ws.generic(), model, copy.deepcopy(phi), batch_size=32,
                        s=cfg.cosface_s, m=cfg.cosface_m, seed=cfg.seed)
        model, report = run(model, task, method, {"flops": args.flops}, _schedule(args),
                            GlobalConfig(per_step=args.per_step, n_batches=args.n_batches))
        report["checkpoint"] = str(ckpt)
        write_report(report, args.out / method)
        mb, ma = report["metrics_before"], report["metrics_after"]
        rows.append({"method": method, "flops_pct": report["flops"]["remaining_pct"],
                     "params_pct": report["params"]["remaining_pct"],
                     "metric": report["metric"], "before": report["metric_before"],
                     "pruned": report["metric_pruned"], "after": report["metric_after"],
                     "rank1_before": mb.get("rank1"), "rank1_after": ma.get("rank1"),
                     "cpu_ms_before": report["latency_before"]["cpu_ms"],
                     "cpu_ms_after": report["latency_after"]["cpu_ms"]})
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "pruning_face.csv", index=False)
    lines = [f"checkpoint: {ckpt}; target: FLOPs <= {args.flops:.0%}; fine-tuning "
             f"{args.ft_epochs} epochs on D_g (CosFace); CPU latency at batch 1 (median of 5 "
             f"alternating before/after rounds of 10), "
             f"{torch.get_num_threads()} thread(s)", "",
             "| method | FLOPs left % | params left % | metric | before | pruned | fine-tuned "
             "| rank-1 before | rank-1 after | CPU ms before | CPU ms after |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['flops_pct']:.1f} | {r['params_pct']:.1f} | "
                     f"{r['metric']} | {r['before']:.3f} | {r['pruned']:.3f} | "
                     f"{r['after']:.3f} | {r['rank1_before']:.3f} | {r['rank1_after']:.3f} | "
                     f"{r['cpu_ms_before']:.2f} | {r['cpu_ms_after']:.2f} |")
    (args.out / "pruning_face.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
