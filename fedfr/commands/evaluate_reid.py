"""``fedfr evaluate reid``: a re-ID checkpoint on any registered dataset's query / gallery.

    fedfr evaluate reid --dataset market1501 --root /data/reid --checkpoint final_model.pt \\
        --out outputs/eval-market [--model small_reid --height 64 --width 32 --ap trapezoid]

The checkpoint is a federation's ``final_model.pt`` (``backbone.*`` keys, ``phi`` ignored), a
pre-trained cache file (``backbone`` / ``phi``), or a plain ReidNet state_dict. Writes
``reid_<dataset>.csv`` (rank-1/5/10/20, mAP in both AP conventions, mINP, query counts),
``reid_<dataset>.md`` and ``reid_<dataset>_cmc.png`` (the CMC curve up to rank 50).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from fedfr.errors import ConfigError

log = logging.getLogger(__name__)


def add_parser(sub) -> None:  # noqa: ANN001 - argparse's private subparsers action
    p = sub.add_parser("reid", help="a re-ID checkpoint on a registered dataset (CMC, mAP, mINP)")
    p.add_argument("--dataset", required=True, help="registered name (market1501, viper, ...)")
    p.add_argument("--root", type=Path, required=True, help="folder holding the dataset")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for CSV / markdown / PNG")
    p.add_argument("--model", default="small_reid", help="reid model name of the checkpoint")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--ap", choices=("noninterp", "trapezoid"), default="noninterp")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--flip", action="store_true", help="sum the flipped image's features")


def load_reid_state(path: Path) -> dict[str, torch.Tensor]:
    """The ReidNet state_dict in a checkpoint (federation, pre-training cache or plain)."""
    from fedfr.checkpoint import safe_load

    obj = safe_load(path)
    if isinstance(obj, dict) and "backbone" in obj and isinstance(obj["backbone"], dict):
        obj = obj["backbone"]
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    tensors = [k for k in obj if k != "phi"]
    if tensors and all(k.startswith("backbone.") for k in tensors):  # a federation's arrays
        obj = {k[len("backbone."):]: v for k, v in obj.items() if k.startswith("backbone.")}
    return obj


def main(args: argparse.Namespace) -> int:
    from fedfr.config import resolve
    from fedfr.face.evaluation.outputs import write_table
    from fedfr.reid import federated as fed
    from fedfr.reid.data.registry import get_dataset
    from fedfr.reid.evaluation.rank import features_to_rank
    from fedfr.reid.workspace import image_tensor

    cfg = resolve({"task": "reid", "reid-model": args.model, "reid-height": args.height,
                   "reid-width": args.width, "reid-ap": args.ap,
                   "eval-batch-size": args.batch_size, "eval-flip": args.flip})
    model = fed.make_model(cfg)
    try:
        model.load_state_dict(load_reid_state(args.checkpoint))
    except RuntimeError as e:
        raise SystemExit(f"{args.checkpoint}: does not fit --model {args.model}: {e}") from e
    split = get_dataset(args.dataset, args.root)
    qf = fed.embed(cfg, model, image_tensor(split.query, args.height, args.width))
    gf = fed.embed(cfg, model, image_tensor(split.gallery, args.height, args.width))
    ids = ([r.pid for r in split.query], [r.pid for r in split.gallery],
           [r.camid for r in split.query], [r.camid for r in split.gallery])
    res = features_to_rank(qf, gf, *ids, ap=args.ap, max_rank=50)
    row = {"dataset": args.dataset, **{f"rank{k}": res.rank(k) for k in (1, 5, 10, 20)
                                       if k <= len(res.cmc)},
           "mAP": res.mAP, **{f"mAP-{k}": v for k, v in res.map_by_convention.items()},
           "mINP": res.mINP, "queries": res.num_queries, "invalid-queries": res.num_invalid}
    args.out.mkdir(parents=True, exist_ok=True)
    md = write_table([row], args.out / f"reid_{args.dataset}.csv", None,
                     f"{args.dataset}: {args.checkpoint.name}",
                     [f"mAP: {args.ap} AP; junk = same identity and camera; distractors kept; "
                      "queries without a valid match counted and skipped"])
    (args.out / f"reid_{args.dataset}.md").write_text(md + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(1, len(res.cmc) + 1), 100 * res.cmc)
    ax.set(xlabel="rank", ylabel="matching rate (%)", title=f"CMC, {args.dataset}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / f"reid_{args.dataset}_cmc.png", dpi=120)
    plt.close(fig)
    log.info("%s", md)
    print(md)
    return 0
