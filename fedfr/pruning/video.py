"""Filter pruning (CAIE, Ch. 6) of video re-ID nets (NVAN, STE-NVAN, ...; Ch. 2 and 8).

Torch-Pruning's dependency graph cannot follow a video net: the trunk's (B*T, C, H, W) maps are
reshaped to (B, C, T, H, W) for the attention blocks, the graph does not tie the trunk channels
that enter a non-local block to its theta / phi / g inputs, and it does not couple theta with
phi (their channels meet in the affinity product). The scheme here is sound by construction:

* the dependency graph is built on the **2-D trunk alone** (``PrunableNet(scope=...)``), traced
  on T frames;
* only **channel groups local to one residual block** are pruned: the inner channels of each
  bottleneck (conv1 -> conv2 and conv2 -> conv3 of ResNet-50) or basic block (conv1 -> conv2 of
  the small trunk);
* every group that leaves a block (the residual stream after each block, which the attention
  blocks and the pooled feature read, the projection shortcuts and the stem) is an ignored
  layer: its channels stay, so the attention blocks (theta / phi / g / W_z, CF-AA's projections),
  the block boundaries, the BNNeck and any classifier keep their shapes and weights.

Resources are counted on the whole video net (attention and temporal pooling included), so
``--flops 0.75`` means 75 % of the clip's FLOPs; the per-group impact counts each trunk layer
once per frame it runs on (T, or T/2, T/4 after STE-NVAN's temporal pooling). The task is the
video re-ID loss (CE + batch-hard triplet on P x K RRS clips) with mAP of a named protocol as
the metric (``fedfr.reid.video.training``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fedfr.errors import ConfigError
from fedfr.pruning.groups import PrunableNet
from fedfr.reid.data.records import VideoSplit
from fedfr.reid.data.sampler import video_pk_sampler
from fedfr.reid.models import IdentityClassifier
from fedfr.reid.models.video.net import VideoReidNet, trunk_parts
from fedfr.reid.video.training import (
    VideoTrainConfig,
    build_video_classifier,
    clip_dataset,
    evaluate_video,
    tracklet_labels,
    train_clips,
    video_loss,
)


def trunk_scope(model: VideoReidNet, cfg: VideoTrainConfig | None = None,
                frames: int | None = None) -> tuple[nn.Module, torch.Tensor]:
    """(model.backbone, an example input of ``frames`` frames (default the clip length) at the
    model's / cfg's input size): where the dependency graph is traced."""
    size = (cfg.height, cfg.width) if cfg is not None else tuple(model.config["input_size"])
    t = frames or (cfg.clip_len if cfg is not None else int(model.config["clip_len"]))
    dev = next(model.parameters()).device
    return model.backbone, torch.zeros(t, 3, *size, device=dev)


def block_local_ignored(model: VideoReidNet, scope: tuple[nn.Module, torch.Tensor]
                        ) -> list[str]:
    """Names of the trunk layers whose output channels must stay: the producers of every channel
    group that is not confined to one residual block, or that no trunk layer consumes (the
    trunk's output); see the module doc."""
    names = {id(m): n for n, m in model.named_modules()}
    _, stages = trunk_parts(model.backbone)
    blocks = [names[id(b)] + "." for stage in stages for b in stage]

    def block_of(layer: str) -> str | None:
        return next((b for b in blocks if layer.startswith(b)), None)

    probe = PrunableNet(model, scope[1], ignored=[], scope=scope)
    keep: list[str] = []
    for g in probe.groups():
        layers = g.producers + g.bns + g.consumers
        owners = {block_of(n) for n in layers}
        # no consumer inside the trunk: the channels leave it (the last block's output)
        if len(owners) != 1 or None in owners or not g.consumers:
            keep += [n for n in g.producers if n not in keep]
    return keep


class VideoReidTask:
    """``PruningTask`` of a video re-ID net: P x K RRS training clips of ``split.train``, loss
    CE + batch-hard triplet (``video_loss``), metric ``mAP`` (%) of ``protocol`` on the split's
    test part (``evaluate_video``; R1 / R5 / R10 / mINP reported too). ``classifier``: the
    identity classifier to train along (default: a new one); ``prune_scope``: the trunk."""

    metric = "mAP"

    def __init__(self, model: VideoReidNet, split: VideoSplit, cfg: VideoTrainConfig, *,
                 protocol: str | None = None, classifier: IdentityClassifier | None = None,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        if not split.train:
            raise ConfigError(f"{split.name}: no training tracklets for the pruning task")
        self.model, self.split, self.cfg = model, split, cfg
        self.protocol = protocol or cfg.protocol
        self.labels, mapping = tracklet_labels(split.train)
        self.classifier = (classifier if classifier is not None
                           else build_video_classifier(model, len(mapping))).to(device)
        if self.classifier.num_classes != len(mapping):
            raise ConfigError(f"classifier has {self.classifier.num_classes} classes, the "
                              f"training tracklets {len(mapping)} identities")
        self.seed, self.device = int(seed), torch.device(device)
        self.dataset = clip_dataset(split.train, cfg, "train", seed=seed)
        self.sampler = video_pk_sampler(split.train, cfg.p, cfg.k, seed=seed,
                                        epoch=cfg.sampler_epoch, replace=cfg.sampler_replace)
        self.y = torch.as_tensor(self.labels, dtype=torch.long)
        self.example_input = torch.zeros(1, cfg.clip_len, 3, cfg.height, cfg.width,
                                         device=self.device)
        self.prune_scope = trunk_scope(model, cfg)

    def train_batches(self, epoch: int):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        for idx in self.sampler.batches():
            x = train_clips(torch.stack([self.dataset[i][0] for i in idx]), self.cfg, gen)
            yield x.to(self.device), self.y[idx].to(self.device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        f, f_bn = model(x)
        return video_loss(self.cfg, self.classifier(f_bn), f, y)[0]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        res = evaluate_video(model, self.split, self.cfg, protocol=self.protocol,
                             device=self.device)
        return {k: float(v) for k, v in res.items() if k in ("R1", "R5", "R10", "mAP", "mINP")}

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.classifier.parameters())


def pruned_video_spec(model: VideoReidNet) -> dict[str, Any]:
    """``fedfr.pruning.io`` spec of the unpruned architecture (``build_video_model`` config)."""
    return {"kind": "video-reid", "config": dict(model.config)}
