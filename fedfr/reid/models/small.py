"""A small re-ID trunk for CPU runs (inputs such as 64x32 or 128x64), about 0.7 M parameters.

A stride-2 conv3x3 stem, then three stages of one residual block each (conv3x3 s + BN + ReLU,
conv3x3 + BN, plus a 1x1 conv shortcut; ReLU after the sum) with strides 2, 2 and ``last_stride``.
Default widths 32 / 48 / 96 / 192: (B, 3, H, W) -> (B, 192, H/8, W/8) with last stride 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from fedfr.errors import ConfigError


class _Block(nn.Module):
    """Residual block (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + self.shortcut(x))


class SmallReidTrunk(nn.Module):
    """Small CNN trunk: (B, 3, H, W) -> (B, channels[-1], H/s, W/s), s = 8 (last stride 1)."""

    def __init__(self, channels: Sequence[int] = (32, 48, 96, 192), last_stride: int = 1) -> None:
        super().__init__()
        channels = tuple(channels)
        if len(channels) != 4 or not all(type(c) is int and c > 0 for c in channels):
            raise ConfigError(f"small_reid: channels must be 4 positive ints, got {channels!r}")
        if last_stride not in (1, 2):
            raise ConfigError(f"last_stride must be 1 or 2, got {last_stride!r}")
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        strides = (2, 2, last_stride)
        self.stages = nn.Sequential(*[_Block(channels[i], channels[i + 1], strides[i])
                                      for i in range(3)])
        self.out_channels = channels[-1]
        self.last_stride = last_stride
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))
