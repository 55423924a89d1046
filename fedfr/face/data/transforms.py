"""Preprocessing as in the paper: resize to the model input, pixels to [-1, 1], horizontal flip."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_uint8_chw(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Stack of images -> uint8 tensor (N, 3, size, size).

    Accepts (N, H, W, 3) or (N, H, W) uint8 arrays (grey becomes 3 channels). Resizing uses
    bilinear interpolation with antialiasing and happens once, at load time.
    """
    x = torch.as_tensor(np.asarray(images))
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {x.dtype}")
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected (N, H, W[, 1|3]) images, got shape {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
        x = x.round().clamp_(0, 255).to(torch.uint8)
    return x.contiguous()


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) in [0, 255] -> float32 in [-1, 1] ((x - 127.5) / 127.5, as the paper)."""
    return x.float().sub_(127.5).div_(127.5)


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5
                 ) -> torch.Tensor:
    """Flip each image of a (N, C, H, W) batch left-right with probability p."""
    flip = torch.rand(x.shape[0], generator=generator) < p
    if flip.any():
        x = x.clone()
        x[flip] = x[flip].flip(-1)
    return x
