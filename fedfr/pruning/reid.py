"""The image re-ID route of ``fedfr prune``: a federated re-ID model (``task='reid'``) pruned
for the tracker.

    fedfr prune --checkpoint RUN/final_model.pt --run-config "task='reid' ..." \
        --method caie --flops 0.6 --epochs 2 --out DIR

The pruning task is identity classification on the server's public re-ID set (``reid-public``
of the run config, the data the server holds; every image of it, train and test identities,
as the federation's pre-training uses it): the ReidNet plus a bias-free linear classifier on
f_bn (imprinted with the L2-normalised class means of f_bn, scaled by ``--scale``), trained by
cross-entropy; every ``--val-every``-th image of each identity is held out for the accuracy
that CAIE / Taylor watch. Crops are the run's ``reid-height`` x ``reid-width``, ImageNet-
normalised, with flips for training. The classifier is the output layer (kept whole); the
trunk's channels, including the feature width, may be pruned.

``fedfr prune`` then writes ``DIR/pruned_model.pt`` as a
:func:`fedfr.tracking.embedders.save_reid_model` file (the architecture name and the pruned
state dict, rebuilt at its pruned widths by :func:`fedfr.tracking.embedders.load_reid_model`,
so ``fedfr track --embedder DIR/pruned_model.pt`` loads it), and its usual report.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from fedfr.errors import ConfigError

log = logging.getLogger("fedfr.pruning.reid")


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


def reid_route(args, cfg) -> tuple[nn.Module, object, dict]:
    """``fedfr prune``'s re-ID model and task: (ReidClassifierNet, ClassificationTask, spec)."""
    from fedfr.tracking.embedders import load_reid_model

    if args.checkpoint is None:
        raise ConfigError("--checkpoint: give the re-ID federation's final_model.pt")
    net = load_reid_model(args.checkpoint, cfg.reid_model)  # the run's reid-model
    task, classes = public_task(cfg, args.batch_size, args.seed, args.val_every)
    model = ReidClassifierNet(net, imprint(net, task.x_train, task.y_train, classes,
                                           args.scale))
    spec = {"kind": "reid", "task": "reid", "model": cfg.reid_model, "public": cfg.reid_public,
            "input": [cfg.reid_height, cfg.reid_width]}
    return model, task, spec


def save_pruned_reid(path, model: ReidClassifierNet, cfg, meta: dict) -> None:
    """The pruned trunk (classifier dropped) as the tracker loads it, with its input size."""
    from fedfr.tracking.embedders import save_reid_model

    save_reid_model(path, model.net.eval(), cfg.reid_model,
                    meta={**meta, "input": [cfg.reid_height, cfg.reid_width]})
