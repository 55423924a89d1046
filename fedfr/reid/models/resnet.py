"""ResNet-18/34/50 trunks from torchvision (never with downloaded weights), last stride settable.

The trunk keeps torchvision's module names (conv1, bn1, layer1..layer4), so an ImageNet
``state_dict`` saved from ``torchvision.models.resnetXX`` loads into it key for key (its ``fc.*``
entries are ignored). With ``last_stride = 1`` the first block of layer4 keeps the resolution
(the re-ID "last stride" trick): a 256x128 input gives a 16x8 map instead of 8x4.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from fedfr.errors import ConfigError, DataFormatError

#: depth -> (torchvision builder, output channels)
RESNETS = {
    18: (tv_resnet.resnet18, 512),
    34: (tv_resnet.resnet34, 512),
    50: (tv_resnet.resnet50, 2048),
}


class ResNetTrunk(nn.Module):
    """torchvision ResNet without avgpool / fc: (B, 3, H, W) -> (B, C, H/s, W/s).

    s = 16 with last stride 1, 32 with last stride 2; C = 512 (18/34) or 2048 (50).
    """

    def __init__(self, depth: int, last_stride: int = 1) -> None:
        super().__init__()
        if depth not in RESNETS:
            raise ConfigError(f"resnet depth must be one of {sorted(RESNETS)}, got {depth!r}")
        if last_stride not in (1, 2):
            raise ConfigError(f"last_stride must be 1 or 2, got {last_stride!r}")
        builder, self.out_channels = RESNETS[depth]
        net = builder(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (net.layer1, net.layer2, net.layer3,
                                                              net.layer4)
        if last_stride == 1:
            block = self.layer4[0]
            strided = block.conv2 if depth == 50 else block.conv1  # torchvision v1.5 bottleneck
            strided.stride = (1, 1)
            block.downsample[0].stride = (1, 1)
        self.depth = depth
        self.last_stride = last_stride

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def load_trunk_weights(trunk: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...] = (
        "fc.",)) -> None:
    """Load a local ``state_dict`` file (e.g. torchvision's ImageNet ResNet) into ``trunk``.

    Keys starting with ``ignore_prefixes`` (the ImageNet classifier) are skipped; every other key
    must match the trunk's names and shapes exactly. Raises DataFormatError naming the file and
    the missing / unexpected / mis-shaped keys. Nothing is ever downloaded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: pretrained weights file not found (expected a local "
                              f"state_dict saved with torch.save; weights are never downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DataFormatError(f"{path}: cannot read pretrained weights ({exc}); expected a "
                              f"state_dict saved with torch.save") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataFormatError(f"{path}: expected a state_dict (a dict of name -> tensor), got "
                              f"{type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = trunk.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected),
                           ("shape-mismatched", shapes)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{what} keys {keys[:5]}{more}")
        raise DataFormatError(f"{path}: weights do not fit the {type(trunk).__name__}: "
                              + "; ".join(parts))
    trunk.load_state_dict(state, strict=True)
