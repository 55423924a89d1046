"""Re-ID image transforms (BoT's recipe), on uint8 tensors with an explicit torch.Generator.

Training: resize to (H, W) (bilinear, once, at load time) -> random horizontal flip (p = 0.5) ->
zero padding of 10 pixels and a random (H, W) crop -> [0, 1] floats normalised with the ImageNet
mean / std -> random erasing (p = 0.5, area 2-40 % of the image, aspect ratio uniform in
[0.3, 1/0.3], filled with 0 in normalised space = the ImageNet mean colour). Test: resize and
normalise. Each augmentation is a switch in ``ReidTransformConfig`` (0 turns it off).

The batch functions work on (B, 3, H, W) tensors so that a training step augments one P x K batch
at once; the per-image callables (``ResizeToTensor``, ``ReidTransform``) serve datasets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from fedfr.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ReidTransformConfig:
    """Input size and augmentation switches; defaults are BoT's / the thesis's values.

    flip: probability of a horizontal flip; pad: padding (pixels) before the random crop (0 = no
    pad-crop); erasing: random-erasing probability; erase_area / erase_ratio: the erased
    rectangle's share of the image and its aspect-ratio range (h / w); erase_value: the fill in
    normalised space, one value or one per channel (0 = the ImageNet mean colour; BoT writes
    (0.485, 0.456, 0.406) here); normalize: ImageNet mean / std (else [0, 1]).
    """

    height: int = 256
    width: int = 128
    flip: float = 0.5
    pad: int = 10
    erasing: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.4)
    erase_ratio: tuple[float, float] = (0.3, 1 / 0.3)
    erase_value: float | tuple[float, float, float] = 0.0
    normalize: bool = True

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if type(v) is not int or v < 4:
                raise ConfigError(f"transform {name}: expected an int >= 4, got {v!r}")
        for name in ("flip", "erasing"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"transform {name}: expected a probability in [0, 1], got {v!r}")
        if type(self.pad) is not int or self.pad < 0:
            raise ConfigError(f"transform pad: expected an int >= 0, got {self.pad!r}")
        lo, hi = self.erase_area
        if not 0.0 < lo <= hi < 1.0:
            raise ConfigError(f"transform erase_area: expected 0 < low <= high < 1, "
                              f"got {self.erase_area!r}")
        rlo, rhi = self.erase_ratio
        if not 0.0 < rlo <= rhi:
            raise ConfigError(f"transform erase_ratio: expected 0 < low <= high, "
                              f"got {self.erase_ratio!r}")


def pil_to_uint8(image: Image.Image, height: int, width: int) -> Tensor:
    """An RGB PIL image -> uint8 (3, height, width), resized bilinearly if needed."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def random_hflip(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    """Flip each image of (B, C, H, W) left-right with probability p (a new tensor if any)."""
    if p <= 0:
        return x
    flip = torch.rand(x.shape[0], generator=generator) < p
    if bool(flip.any()):
        x = x.clone()
        x[flip] = x[flip].flip(-1)
    return x


def random_pad_crop(x: Tensor, pad: int, generator: torch.Generator | None) -> Tensor:
    """Zero-pad (B, C, H, W) by ``pad`` on every side, then crop each image back to (H, W) at a
    uniformly random offset in [0, 2 pad] x [0, 2 pad]."""
    if pad <= 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad))
    offs = torch.randint(0, 2 * pad + 1, (x.shape[0], 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs)])


def normalize(x_u8: Tensor, enabled: bool = True) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1], then (x - mean) / std with ImageNet's values."""
    x = x_u8.float().div_(255.0)
    if enabled:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = x.sub_(mean).div_(std)
    return x


def random_erasing(x: Tensor, p: float, area: tuple[float, float], ratio: tuple[float, float],
                   value: float | tuple[float, ...], generator: torch.Generator | None,
                   attempts: int = 100) -> Tensor:
    """Random erasing (Zhong et al. 2020, BoT's version), in place on a float (B, C, H, W).

    With probability p per image: up to ``attempts`` draws of a target area U(area) * H * W and
    an aspect ratio r ~ U(ratio); the first rectangle h = round(sqrt(A r)), w = round(sqrt(A / r))
    that fits strictly inside the image is filled with ``value`` (a number, or one per channel)
    at a uniform position.
    """
    if p <= 0:
        return x
    if isinstance(value, (tuple, list)):
        if len(value) != x.shape[1]:
            raise ValueError(f"erase value: expected {x.shape[1]} channel values, got {value!r}")
        fill: float | Tensor = torch.tensor(value, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    else:
        fill = float(value)
    b, _, h_img, w_img = x.shape
    chosen = (torch.rand(b, generator=generator) < p).tolist()
    for i in range(b):
        if not chosen[i]:
            continue
        for _ in range(attempts):
            a_frac, r_u = torch.rand(2, generator=generator).tolist()
            target = (area[0] + (area[1] - area[0]) * a_frac) * h_img * w_img
            aspect = ratio[0] + (ratio[1] - ratio[0]) * r_u
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if 0 < h < h_img and 0 < w < w_img:
                y0 = int(torch.randint(0, h_img - h + 1, (1,), generator=generator))
                x0 = int(torch.randint(0, w_img - w + 1, (1,), generator=generator))
                x[i, :, y0:y0 + h, x0:x0 + w] = fill
                break
    return x


def train_batch(x_u8: Tensor, cfg: ReidTransformConfig,
                generator: torch.Generator | None = None) -> Tensor:
    """uint8 (B, 3, H, W) already at (cfg.height, cfg.width) -> augmented normalised floats."""
    _check_size(x_u8, cfg)
    x = random_pad_crop(random_hflip(x_u8, cfg.flip, generator), cfg.pad, generator)
    x = normalize(x, cfg.normalize)
    return random_erasing(x, cfg.erasing, cfg.erase_area, cfg.erase_ratio, cfg.erase_value,
                          generator)


def eval_batch(x_u8: Tensor, cfg: ReidTransformConfig) -> Tensor:
    """uint8 (B, 3, H, W) at (cfg.height, cfg.width) -> normalised floats (no augmentation)."""
    _check_size(x_u8, cfg)
    return normalize(x_u8, cfg.normalize)


def _check_size(x: Tensor, cfg: ReidTransformConfig) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (cfg.height, cfg.width):
        raise ValueError(f"expected images (B, 3, {cfg.height}, {cfg.width}), "
                         f"got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")


class ResizeToTensor:
    """PIL image -> uint8 (3, height, width) (deterministic; the training engine's loader)."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width

    def __call__(self, image: Image.Image) -> Tensor:
        return pil_to_uint8(image, self.height, self.width)


class ReidTransform:
    """PIL image -> float (3, H, W): the training pipeline (``train=True``, drawing from
    ``generator``) or the test pipeline (resize + normalise)."""

    def __init__(self, cfg: ReidTransformConfig, train: bool = False,
                 generator: torch.Generator | None = None) -> None:
        self.cfg, self.train, self.generator = cfg, train, generator

    def __call__(self, image: Image.Image) -> Tensor:
        x = pil_to_uint8(image, self.cfg.height, self.cfg.width)[None]
        out = train_batch(x, self.cfg, self.generator) if self.train else eval_batch(x, self.cfg)
        return out[0]


def build_transform(cfg: ReidTransformConfig | None = None, train: bool = False,
                    generator: torch.Generator | None = None) -> ReidTransform:
    """The per-image transform for ``cfg`` (default: BoT's 256x128 recipe)."""
    return ReidTransform(cfg or ReidTransformConfig(), train=train, generator=generator)
