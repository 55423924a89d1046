"""Improved ResNet (IResNet), the insightface / ArcFace family of face backbones.

Stem: conv3x3(3->64, stride 1) + BN + PReLU at full resolution. Four stages (64/128/256/512
channels) each open with a stride-2 block. Block (pre-activation style):
BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the input, passed through a 1x1
conv(stride) + BN when the shape changes. Head: BN2d -> dropout -> flatten -> Linear ->
BatchNorm1d (its scale fixed to 1 and frozen, as in insightface).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedfr.errors import ConfigError

#: depth -> blocks per stage.
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
_CHANNELS = (64, 128, 256, 512)


def _check_sizes(model: str, embedding_size: int, input_size: int) -> None:
    """ConfigError unless embedding_size >= 1 and input_size is a positive multiple of 16."""
    if type(embedding_size) is not int or embedding_size < 1:
        raise ConfigError(f"{model}: embedding_size must be a positive int, got {embedding_size!r}")
    if type(input_size) is not int or input_size < 16 or input_size % 16:
        raise ConfigError(f"{model}: input_size must be a positive multiple of 16 "
                          f"(e.g. 32, 48, 64, 112), got {input_size!r}")


def _check_input(model: str, x: torch.Tensor, input_size: int) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, input_size, input_size):
        raise ValueError(f"{model}: expected input (B, 3, {input_size}, {input_size}), "
                         f"got {tuple(x.shape)}")


class _Block(nn.Module):
    """IResNet basic block: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class IResNet(nn.Module):
    """IResNet-18/34/50/100: (B, 3, S, S) in [-1, 1] -> (B, embedding_size) features.

    ``layers`` overrides the blocks per stage. input_size: any multiple of 16 (the flattened map is
    512 x S/16 x S/16; 112 -> 7x7 as in insightface). Outputs are not normalised.
    """

    def __init__(self, depth: int = 50, embedding_size: int = 512, input_size: int = 112,
                 layers: Sequence[int] | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        name = f"iresnet{depth}"
        _check_sizes(name, embedding_size, input_size)
        if layers is None:
            if depth not in IRESNET_LAYERS:
                raise ConfigError(f"iresnet depth must be one of {sorted(IRESNET_LAYERS)}, "
                                  f"got {depth!r}")
            layers = IRESNET_LAYERS[depth]
        units = tuple(layers)
        if len(units) != 4 or not all(isinstance(n, int) and n >= 1 for n in units):
            raise ConfigError(f"{name}: layers must be 4 positive ints (blocks per stage), "
                              f"got {layers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        self.depth = depth
        self.layers = units
        self.input_size = input_size
        self.embedding_size = embedding_size
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        stages: list[nn.Module] = []
        c_in = 64
        for c_out, n in zip(_CHANNELS, units, strict=True):
            blocks = [_Block(c_in, c_out, 2)] + [_Block(c_out, c_out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        side = input_size // 16
        self.head = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.Dropout(dropout), nn.Flatten(1),
            nn.Linear(c_in * side * side, embedding_size))
        self.features = nn.BatchNorm1d(embedding_size)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) float in [-1, 1] -> (B, embedding_size)."""
        _check_input(f"iresnet{self.depth}", x, self.input_size)
        return self.features(self.head(self.stages(self.stem(x))))
