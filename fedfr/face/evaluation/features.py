"""Embedding extraction for evaluation: uint8 images -> L2-normalised feature vectors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.errors import ConfigError
from fedfr.face.data.transforms import to_float


def _forward(model: nn.Module, head: nn.Module | None, x: Tensor) -> Tensor:
    f = model(x)
    if not isinstance(f, Tensor) or f.ndim != 2 or f.shape[0] != x.shape[0]:
        shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
        raise ValueError(f"embed: model must return (B, d) features for a batch of {x.shape[0]}, "
                         f"got {shape}")
    return head(f) if head is not None else f


@torch.no_grad()
def embed(model: nn.Module, images: Tensor | np.ndarray, batch_size: int = 256,
          flip: bool = False, head: nn.Module | None = None,
          device: str | torch.device = "cpu") -> Tensor:
    """Features of uint8 images (N, 3, S, S) -> float32 CPU tensor (N, d), rows of L2 norm 1.

    Each batch is scaled to [-1, 1] with ``to_float``, run through ``model`` in eval mode, then
    through ``head`` (e.g. the DFC converter Pi, applied to the raw backbone output) if given.
    flip=True sums the final features of each image and its left-right mirror before the L2
    normalisation. ``model`` and ``head`` must already live on ``device``; their train/eval
    modes are restored afterwards.
    """
    x_all = torch.as_tensor(images)
    if x_all.dtype != torch.uint8 or x_all.ndim != 4 or x_all.shape[1] != 3:
        raise ValueError(f"embed: expected uint8 images (N, 3, S, S), got dtype {x_all.dtype} "
                         f"shape {tuple(x_all.shape)}")
    if x_all.shape[0] == 0:
        raise ValueError("embed: no images to embed (N = 0)")
    if batch_size < 1:
        raise ConfigError(f"embed: batch size (--batch-size) must be >= 1, got {batch_size}")
    modules = [m for m in (model, head) if m is not None]
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        out = []
        for a in range(0, x_all.shape[0], batch_size):
            x = to_float(x_all[a:a + batch_size].to(device))
            f = _forward(model, head, x).float()
            if flip:
                f = f + _forward(model, head, x.flip(-1)).float()
            out.append(F.normalize(f, dim=1).cpu())
        return torch.cat(out)
    finally:
        for m, mode in zip(modules, was_training, strict=True):
            m.train(mode)
