"""Filter pruning (CAIE, Taylor, L1, ...) of a federated image re-ID model for the tracker.

``fedfr prune`` has a face route (``--checkpoint`` + ``--run-config``, which builds the face
model of the run config) and a torchvision route, but no re-ID route: given a re-ID
federation's ``final_model.pt`` and ``task='reid'`` it builds ``small_cnn`` and stops with
"does not fit model 'small_cnn' of the run config". This module is that route, built only on
``fedfr.pruning``'s public pieces (``pipeline.run``, ``ClassificationTask``, the fine-tuning
schedules) and on ``fedfr prune``'s own options, so it prunes exactly as ``fedfr prune`` does:

    python -m fedfr.tracking.reid_pruning --checkpoint RUN/final_model.pt \\
        --run-config "task='reid' ..." --method caie --flops 0.6 --epochs 2 --out DIR

The pruning task is identity classification on the server's public re-ID set (``reid-public``
of the run config, the data the server holds; every image of it, train and test identities,
as the federation's pre-training uses it): the ReidNet plus a bias-free linear classifier on
f_bn (imprinted with the L2-normalised class means of f_bn, scaled by ``--scale``), trained by
cross-entropy; every ``--val-every``-th image of each identity is held out for the accuracy
that CAIE / Taylor watch. Crops are the run's ``reid-height`` x ``reid-width``, ImageNet-
normalised, with flips for training. The classifier is the output layer (kept whole); the
trunk's channels, including the feature width, may be pruned.

Writes ``DIR/pruned_model.pt`` (a :func:`fedfr.tracking.embedders.save_reid_model` file: the
architecture name and the pruned state dict, rebuilt at its pruned widths by
:func:`fedfr.tracking.embedders.load_reid_model`), ``DIR/report.json`` and ``DIR/report.md``
(``fedfr prune``'s report: FLOPs, parameters, latency, channels, accuracy before / after).
"""

from __future__ import annotations

import argparse
import logging

import torch
from torch import nn

from fedfr.errors import ConfigError

log = logging.getLogger("fedfr.tracking.reid_pruning")


class ReidClassifierNet(nn.Module):
    """ReidNet + bias-free identity classifier on f_bn: float (B, 3, H, W) -> logits (B, K)."""

    def __init__(self, net: nn.Module, weight: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.classifier = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.classifier.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.net(x)[1])


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def public_task(cfg, batch_size: int, seed: int, val_every: int = 5):
    """(ClassificationTask on the public set, number of identities)."""
    from fedfr.pruning.task import ClassificationTask
    from fedfr.reid.data.transforms import normalize
    from fedfr.reid.workspace import ReidWorkspace, image_tensor

    if val_every < 2:
        raise ConfigError(f"--val-every {val_every}: expected >= 2")
    recs, labels = ReidWorkspace(cfg).public()
    x = normalize(image_tensor(recs, cfg.reid_height, cfg.reid_width))
    y = torch.tensor(labels)
    seen: dict[int, int] = {}
    val = torch.zeros(len(y), dtype=torch.bool)
    for i, lab in enumerate(labels):
        seen[lab] = seen.get(lab, 0) + 1
        val[i] = seen[lab] % val_every == 0
    task = ClassificationTask(x[~val], y[~val], x[val], y[val], batch_size=batch_size, seed=seed,
                              augment=_flip)
    return task, int(y.max()) + 1


@torch.no_grad()
def imprint(net: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: int, scale: float
            ) -> torch.Tensor:
    """(K, D): ``scale`` x the L2-normalised mean f_bn of each class under ``net`` (eval)."""
    net.eval()
    feats = torch.cat([net(x[i:i + 256])[1] for i in range(0, len(x), 256)])
    feats = nn.functional.normalize(feats, dim=1)
    w = torch.zeros(classes, feats.shape[1]).index_add_(0, y, feats)
    return scale * nn.functional.normalize(w, dim=1)


def main(argv: list[str] | None = None) -> int:
    from fedfr.commands.prune import add_arguments
    from fedfr.config import parse_run_config, resolve
    from fedfr.pruning.cpo import CPOConfig
    from fedfr.pruning.global_pruning import GlobalConfig
    from fedfr.pruning.pipeline import markdown, run, write_report
    from fedfr.pruning.task import FineTuneSchedule
    from fedfr.runtime import configure_threads
    from fedfr.tracking.embedders import load_reid_model, save_reid_model

    ap = argparse.ArgumentParser(prog="python -m fedfr.tracking.reid_pruning",
                                 description=__doc__.splitlines()[0])
    add_arguments(ap)
    ap.add_argument("--val-every", type=int, default=5,
                    help="every N-th image of an identity is held out for the accuracy")
    ap.add_argument("--scale", type=float, default=16.0, help="imprinted classifier row norm")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    configure_threads()
    if args.torchvision:
        raise ConfigError("--torchvision: use fedfr prune; this command prunes a re-ID model")
    if args.checkpoint is None:
        raise ConfigError("--checkpoint: give the re-ID federation's final_model.pt")
    cfg = resolve(parse_run_config(args.run_config) if args.run_config else {})
    if cfg.task != "reid":
        raise ConfigError(f"--run-config: task {cfg.task!r}; expected task='reid' (the run "
                          "the checkpoint came from)")
    constraints = {k: v for k, v in (("flops", args.flops), ("params", args.params),
                                     ("latency", args.latency)) if v is not None}
    if args.method != "cpo" and not constraints:
        raise ConfigError("give at least one of --flops, --params, --latency")
    torch.manual_seed(args.seed)
    net = load_reid_model(args.checkpoint, cfg.reid_model)  # the run's reid-model
    task, classes = public_task(cfg, args.batch_size, args.seed, args.val_every)
    model = ReidClassifierNet(net, imprint(net, task.x_train, task.y_train, classes,
                                           args.scale))
    schedule = FineTuneSchedule.preset(args.schedule, args.epochs, args.lr)
    gcfg = GlobalConfig(per_step=args.per_step, n_batches=args.batches, lr=args.prune_lr,
                        min_ratio=args.min_ratio, convention=args.convention)
    ccfg = CPOConfig(d_exp=args.d_exp, retrain_steps=args.retrain_steps, lr=args.prune_lr,
                     convention=args.convention)
    ignored = list(args.keep) or None
    model, report = run(model, task, args.method, constraints, schedule, gcfg, ccfg,
                        ignored=ignored)
    report["source"] = {"checkpoint": str(args.checkpoint), "task": "reid",
                        "model": cfg.reid_model, "public": cfg.reid_public,
                        "input": [cfg.reid_height, cfg.reid_width]}
    args.out.mkdir(parents=True, exist_ok=True)
    save_reid_model(args.out / "pruned_model.pt", model.net.eval(), cfg.reid_model,
                    meta={"pruned": {"method": args.method, "constraints": constraints},
                          "source": str(args.checkpoint),
                          "input": [cfg.reid_height, cfg.reid_width]})
    write_report(report, args.out)
    print(markdown(report))
    log.info("pruned re-ID model, report.json and report.md written to %s", args.out)
    return 0


if __name__ == "__main__":
    import sys

    from fedfr.errors import run_entry_point

    sys.exit(run_entry_point(lambda: main(), "reid_pruning"))
