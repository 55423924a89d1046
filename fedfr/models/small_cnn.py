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

_ACTIVATIONS = ("relu", "prelu")


def _check_sizes(model: str, embedding_size: int, input_size: int) -> None:
    """ConfigError unless embedding_size >= 1 and input_size is a positive multiple of 16."""
    if type(embedding_size) is not int or embedding_size < 1:
        raise ConfigError(f"{model}: embedding_size must be a positive int, got {embedding_size!r}")
    if type(input_size) is not int or input_size < 16 or input_size % 16:
        raise ConfigError(f"{model}: input_size must be a positive multiple of 16 "
                          f"(e.g. 32, 48, 64, 112), got {input_size!r}")


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
        _check_sizes("small_cnn", embedding_size, input_size)
        channels, units = tuple(channels), tuple(units)
        if len(channels) != 4 or not all(isinstance(c, int) and c >= 1 for c in channels):
            raise ConfigError(f"small_cnn: channels must be 4 positive ints, got {channels!r}")
        if len(units) != 4 or not all(isinstance(n, int) and n >= 0 for n in units):
            raise ConfigError(f"small_cnn: units must be 4 non-negative ints, got {units!r}")
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"small_cnn: activation must be one of {_ACTIVATIONS}, "
                              f"got {activation!r}")
        self.input_size = input_size
        self.embedding_size = embedding_size
        self.channels = channels
        self.units = units
        stages: list[nn.Module] = []
        c_in = 3
        for c_out, n in zip(channels, units, strict=True):
            blocks = [_ConvBNAct(c_in, c_out, 2, activation)]
            blocks += [_Unit(c_out, activation) for _ in range(n)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        side = input_size // 16
        self.fc = nn.Linear(c_in * side * side, embedding_size, bias=False)
        self.features = nn.BatchNorm1d(embedding_size)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) float in [-1, 1] -> (B, embedding_size)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, self.input_size, self.input_size):
            raise ValueError(f"small_cnn: expected input (B, 3, {self.input_size}, "
                             f"{self.input_size}), got {tuple(x.shape)}")
        return self.features(self.fc(torch.flatten(self.stages(x), 1)))
