"""SphereFace / CosFace residual CNN (Liu et al. 2017), the FedFR paper's backbone.

Four stages; each is a stride-2 3x3 conv + PReLU followed by ``n`` residual units
``x + PReLU(conv3x3(PReLU(conv3x3(x))))``; channels 64/128/256/512. The (B, 512, S/16, S/16) map
is flattened and a linear layer gives the embedding.

BatchNorm: the original network and FedFR's ``sphnet.py`` have none (the stage convs carry a bias),
and that is the default here (faithful to the paper). ``batch_norm=True`` puts a BatchNorm2d after
every conv (insightface-style), which trains more stably from scratch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedfr.face.models.common import build_stages, check_input, check_sizes, stage_counts

#: depth -> residual units per stage (paper). FedFR's code uses [3, 7, 16, 3] for its "64".
SPHEREFACE_LAYERS: dict[int, tuple[int, int, int, int]] = {
    20: (1, 2, 4, 1),
    36: (2, 4, 8, 2),
    64: (3, 8, 16, 3),
}
#: the unit counts of FedFR's ``sphnet.py`` (type 64), selectable with ``layers=``.
FEDFR_CODE_LAYERS: tuple[int, int, int, int] = (3, 7, 16, 3)
_CHANNELS = (64, 128, 256, 512)


class _ConvAct(nn.Sequential):
    """3x3 conv (+ BatchNorm2d) + PReLU. (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int, batch_norm: bool, bias: bool) -> None:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.PReLU(c_out))
        super().__init__(*layers)


class _Unit(nn.Module):
    """Residual unit x + f(x), f = two 3x3 convs (each + optional BN + PReLU); shape preserved."""

    def __init__(self, channels: int, batch_norm: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _ConvAct(channels, channels, 1, batch_norm, bias=False),
            _ConvAct(channels, channels, 1, batch_norm, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SphereFaceNet(nn.Module):
    """SphereFace-style residual CNN: (B, 3, S, S) in [-1, 1] -> (B, embedding_size) features.

    depth: 20, 36 or 64 (units per stage [1,2,4,1], [2,4,8,2], [3,8,16,3]); ``layers`` overrides
    the unit counts (e.g. ``FEDFR_CODE_LAYERS`` = [3,7,16,3]). input_size: any multiple of 16 (the
    flattened map is 512 x S/16 x S/16). Outputs are not normalised.
    """

    def __init__(self, depth: int = 64, embedding_size: int = 512, input_size: int = 112,
                 layers: Sequence[int] | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        name = f"sphereface{depth}"
        check_sizes(name, embedding_size, input_size)
        units = stage_counts("sphereface", depth, layers, SPHEREFACE_LAYERS, positive=False,
                             note=" (units per stage)")
        self.depth = depth
        self.layers = units
        self.batch_norm = batch_norm
        self.input_size = input_size
        self.embedding_size = embedding_size
        self.stages = build_stages(
            3, _CHANNELS, units,
            lambda c_in, c_out: _ConvAct(c_in, c_out, 2, batch_norm, bias=not batch_norm),
            lambda c: _Unit(c, batch_norm))
        side = input_size // 16
        self.fc = nn.Linear(_CHANNELS[-1] * side * side, embedding_size)
        self._init_weights()

    def _init_weights(self) -> None:
        # Stage convs and the fc: Xavier-uniform; residual convs: N(0, 0.01) so that, without BN,
        # every unit starts close to the identity. Biases 0, BN affine (1, 0), PReLU slope 0.25.
        for module in self.modules():
            if isinstance(module, _Unit):
                for conv in module.modules():
                    if isinstance(conv, nn.Conv2d):
                        nn.init.normal_(conv.weight, 0.0, 0.01)
        for stage in self.stages:
            nn.init.xavier_uniform_(stage[0][0].weight)
            if stage[0][0].bias is not None:
                nn.init.zeros_(stage[0][0].bias)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) float in [-1, 1] -> (B, embedding_size)."""
        check_input(f"sphereface{self.depth}", x, self.input_size)
        return self.fc(torch.flatten(self.stages(x), 1))
