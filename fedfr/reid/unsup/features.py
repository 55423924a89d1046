"""Per-iteration target features for HSR: the global feature and the upper / lower part features.

One forward pass of the trunk per batch gives the last feature map M (B, C, h, w). From it:

- global: the net's own pooled feature f = GAP(M) (through the optional reduction layer), or
  f_bn = BNNeck(f) (``feature="after"``, the default: the test feature the evaluation uses), the
  vector that clustering and ICM see (the thesis: "the last 2048-d feature vector");
- upper / lower: M split horizontally into rows [0, h // 2) and [h // 2, h) and average-pooled,
  (B, C) each (PBH's local features; for odd h the lower part has the extra row).

``normalize`` L2-normalises each of the three (default on, the usual choice before the
k-reciprocal distance and k-means; the thesis does not say).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fedfr.errors import ConfigError
from fedfr.reid.data.dataset import ReidImageDataset
from fedfr.reid.data.records import ReidImage
from fedfr.reid.data.transforms import ReidTransformConfig, ResizeToTensor, eval_batch
from fedfr.reid.models import ReidNet

GLOBAL_FEATURES = ("after", "before")


@dataclass
class PartFeatures:
    """Features of N images: ``global_`` (N, d), ``upper`` / ``lower`` (N, C), float32 CPU,
    and the records' ``pids`` / ``camids`` (N,) (pids only for diagnostics: never trained on)."""

    global_: Tensor
    upper: Tensor
    lower: Tensor
    pids: Tensor
    camids: Tensor

    def __len__(self) -> int:
        return self.global_.shape[0]


def uint8_dataset(records: Sequence[ReidImage], tcfg: ReidTransformConfig) -> ReidImageDataset:
    """Decoded, resized uint8 (3, H, W) images, cached after the first read."""
    return ReidImageDataset(records, ResizeToTensor(tcfg.height, tcfg.width), cache=True)


@torch.no_grad()
def part_features_of_batch(model: ReidNet, x: Tensor, feature: str = "after"
                           ) -> tuple[Tensor, Tensor, Tensor]:
    """(global (B, d), upper (B, C), lower (B, C)) of normalised images x (B, 3, H, W), eval
    mode; the model's mode is restored."""
    if feature not in GLOBAL_FEATURES:
        raise ConfigError(f"feature: expected one of {GLOBAL_FEATURES}, got {feature!r}")
    was = model.training
    model.eval()
    try:
        if model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        m = model.backbone(x)
        f = torch.flatten(model.pool(m), 1)
        if model.reduction is not None:
            f = model.reduction(f)
        g = model.neck(f) if feature == "after" else f
        h = m.shape[2] // 2
        upper = m[:, :, :h].mean(dim=(2, 3))
        lower = m[:, :, h:].mean(dim=(2, 3))
    finally:
        model.train(was)
    return g.float(), upper.float(), lower.float()


@torch.no_grad()
def extract_part_features(model: ReidNet, dataset: ReidImageDataset, tcfg: ReidTransformConfig,
                          *, batch_size: int = 128, device: str | torch.device = "cpu",
                          feature: str = "after", normalize: bool = True) -> PartFeatures:
    """PartFeatures of every image of ``dataset`` (a ``uint8_dataset``), in order."""
    if len(dataset) == 0:
        raise ConfigError("extract_part_features: no images")
    model.to(device)
    gs, us, ls = [], [], []
    for s in range(0, len(dataset), batch_size):
        x = torch.stack([dataset[i][0] for i in range(s, min(len(dataset), s + batch_size))])
        g, u, low = part_features_of_batch(model, eval_batch(x, tcfg).to(device), feature)
        gs.append(g.cpu())
        us.append(u.cpu())
        ls.append(low.cpu())
    out = [torch.cat(t) for t in (gs, us, ls)]
    if normalize:
        out = [F.normalize(t, dim=1) for t in out]
    return PartFeatures(out[0], out[1], out[2], dataset.pids, dataset.camids)
