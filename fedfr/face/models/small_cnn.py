"""A small face CNN sized for CPU federations (the default model of fedfr's embedded runs).

Four stages halve the resolution: stride-2 conv3x3 + BN + activation, then ``units[k]`` residual
units ``x + act(BN(conv3x3(x)))``. Default channels 32/64/128/256 and units 0/1/1/1. The
(B, C4, S/16, S/16) map is flattened, mapped by a bias-free Linear to the embedding and
batch-normalised (BatchNorm1d). At 32x32 / 512-d: 1,689,248 parameters with ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedfr.errors import ConfigError
from fedfr.face.models.common import (
    build_stages,
    check_counts,
    check_input,
    check_sizes,
    init_weights,
)

_ACTIVATIONS = ("relu", "prelu")


def _act(kind: str, channels: int) -> nn.Module:
    return nn.PReLU(channels) if kind == "prelu" else nn.ReLU(inplace=True)


class _ConvBNAct(nn.Sequential):
    """conv3x3(stride) + BN + activation: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         _act(activation, c_out))


class _Unit(nn.Module):
    """Residual unit x + act(BN(conv3x3(x))); shape preserved."""

    def __init__(self, channels: int, activation: str) -> None:
        super().__init__()
        self.body = _ConvBNAct(channels, channels, 1, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SmallCNN(nn.Module):
    """Small CNN: (B, 3, S, S) in [-1, 1] -> (B, embedding_size) features (not normalised).

    input_size: any multiple of 16 (32, 48, 64, 112, ...). channels: the 4 stage widths;
    units: residual units per stage; activation: "relu" (fastest on CPU) or "prelu".
    """

    def __init__(self, embedding_size: int = 512, input_size: int = 32,
                 channels: Sequence[int] = (32, 64, 128, 256),
                 units: Sequence[int] = (0, 1, 1, 1), activation: str = "relu") -> None:
        super().__init__()
        check_sizes("small_cnn", embedding_size, input_size)
        channels, units = tuple(channels), tuple(units)
        check_counts("small_cnn", "channels", channels, positive=True)
        check_counts("small_cnn", "units", units, positive=False)
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"small_cnn: activation must be one of {_ACTIVATIONS}, "
                              f"got {activation!r}")
        self.input_size = input_size
        self.embedding_size = embedding_size
        self.channels = channels
        self.units = units
        self.stages = build_stages(3, channels, units,
                                   lambda c_in, c_out: _ConvBNAct(c_in, c_out, 2, activation),
                                   lambda c: _Unit(c, activation))
        side = input_size // 16
        self.fc = nn.Linear(channels[-1] * side * side, embedding_size, bias=False)
        self.features = nn.BatchNorm1d(embedding_size)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) float in [-1, 1] -> (B, embedding_size)."""
        check_input("small_cnn", x, self.input_size)
        return self.features(self.fc(torch.flatten(self.stages(x), 1)))
