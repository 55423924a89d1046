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
from fedfr.face.models.common import (
    build_stages,
    check_input,
    check_sizes,
    init_weights,
    stage_counts,
)

#: depth -> blocks per stage.
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
_CHANNELS = (64, 128, 256, 512)


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
        check_sizes(name, embedding_size, input_size)
        units = stage_counts("iresnet", depth, layers, IRESNET_LAYERS, positive=True,
                             note=" (blocks per stage)")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        self.depth = depth
        self.layers = units
        self.input_size = input_size
        self.embedding_size = embedding_size
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        # Each stage: a stride-2 block, then n - 1 stride-1 blocks.
        self.stages = build_stages(64, _CHANNELS, [n - 1 for n in units],
                                   lambda c_in, c_out: _Block(c_in, c_out, 2),
                                   lambda c: _Block(c, c, 1))
        width, side = _CHANNELS[-1], input_size // 16
        self.head = nn.Sequential(
            nn.BatchNorm2d(width), nn.Dropout(dropout), nn.Flatten(1),
            nn.Linear(width * side * side, embedding_size))
        self.features = nn.BatchNorm1d(embedding_size)
        init_weights(self, linear=False)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) float in [-1, 1] -> (B, embedding_size)."""
        check_input(f"iresnet{self.depth}", x, self.input_size)
        return self.features(self.head(self.stages(self.stem(x))))
