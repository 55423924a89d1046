"""MobileFaceNet (Chen et al. 2018): a ~1M-parameter face backbone for mobile devices.

Layout (Table 1 of the paper; t = expansion, c = channels, n = repeats, s = first stride):
conv3x3 64 s2 -> depthwise conv3x3 64 -> bottlenecks (2,64,5,2) (4,128,1,2) (2,128,6,1)
(4,128,1,2) (2,128,2,1) -> conv1x1 512 -> global depthwise conv (S/16 x S/16, linear) -> linear
1x1 to the embedding + BatchNorm1d. Bottleneck: 1x1 expand + BN + PReLU, depthwise 3x3 + BN +
PReLU, 1x1 linear projection + BN, with a residual when stride 1 and shapes match. PReLU everywhere,
as in the paper. The paper's 128-d embedding gives 0.99M params; 512-d gives ~1.2M.
"""

from __future__ import annotations

import torch
from torch import nn

from fedfr.face.models.common import check_input, check_sizes, init_weights

#: (expansion t, output channels c, repeats n, first stride s), from the paper.
BOTTLENECKS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class _ConvBN(nn.Sequential):
    """conv(k, stride, padding, groups) + BN (+ PReLU unless linear)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 linear: bool = False, padding: int | None = None) -> None:
        pad = kernel // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, pad, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if not linear:
            layers.append(nn.PReLU(c_out))
        super().__init__(*layers)


class _Bottleneck(nn.Module):
    """Inverted residual: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.body = nn.Sequential(
            _ConvBN(c_in, hidden, 1),
            _ConvBN(hidden, hidden, 3, stride, groups=hidden),
            _ConvBN(hidden, c_out, 1, linear=True),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """MobileFaceNet: (B, 3, S, S) in [-1, 1] -> (B, embedding_size) features (not normalised).

    input_size: any multiple of 16 (the global depthwise conv spans the S/16 x S/16 map).
    """

    def __init__(self, embedding_size: int = 512, input_size: int = 112) -> None:
        super().__init__()
        check_sizes("mobilefacenet", embedding_size, input_size)
        self.input_size = input_size
        self.embedding_size = embedding_size
        layers: list[nn.Module] = [_ConvBN(3, 64, 3, 2), _ConvBN(64, 64, 3, 1, groups=64)]
        c_in = 64
        for t, c, n, s in BOTTLENECKS:
            for i in range(n):
                layers.append(_Bottleneck(c_in, c, t, s if i == 0 else 1))
                c_in = c
        layers.append(_ConvBN(c_in, 512, 1))
        side = input_size // 16
        layers.append(_ConvBN(512, 512, side, groups=512, linear=True, padding=0))  # GDConv
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(512, embedding_size, bias=False)
        self.features = nn.BatchNorm1d(embedding_size)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) float in [-1, 1] -> (B, embedding_size)."""
        check_input("mobilefacenet", x, self.input_size)
        return self.features(self.fc(torch.flatten(self.body(x), 1)))
