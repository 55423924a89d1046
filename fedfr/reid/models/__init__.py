"""Re-ID models by name: a trunk with last stride 1, global average pooling and a BNNeck head.

Names: ``resnet18``, ``resnet34``, ``resnet50`` (torchvision's, built with ``weights=None``; the
thesis's backbone is resnet50 at 256x128, 2048-d) and ``small_reid`` (about 0.7 M parameters, for
CPU runs at 64x32 or 128x64, 192-d). Aliases: r18, r34, r50, small.
The identity classifier is a separate module (``IdentityClassifier``): it stays on the client.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from fedfr.errors import ConfigError
from fedfr.reid.models.head import BNNeck, IdentityClassifier
from fedfr.reid.models.net import NECKS, ReidNet
from fedfr.reid.models.resnet import ResNetTrunk, load_trunk_weights
from fedfr.reid.models.small import SmallReidTrunk

__all__ = [
    "BNNeck",
    "IdentityClassifier",
    "ReidNet",
    "ResNetTrunk",
    "SmallReidTrunk",
    "NECKS",
    "build_reid_model",
    "list_reid_models",
    "load_trunk_weights",
    "resolve_reid_model_name",
]

_TRUNKS: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": lambda s: ResNetTrunk(18, last_stride=s),
    "resnet34": lambda s: ResNetTrunk(34, last_stride=s),
    "resnet50": lambda s: ResNetTrunk(50, last_stride=s),
    "small_reid": lambda s: SmallReidTrunk(last_stride=s),
}
_ALIASES = {"r18": "resnet18", "r34": "resnet34", "r50": "resnet50", "small": "small_reid"}


def list_reid_models() -> list[str]:
    """Canonical names accepted by ``build_reid_model``."""
    return list(_TRUNKS)


def resolve_reid_model_name(name: str) -> str:
    """Canonical name for a name or alias (case-insensitive); ConfigError if unknown."""
    key = name.strip().lower() if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key not in _TRUNKS:
        raise ConfigError(f"reid model: unknown name {name!r}; valid names are "
                          f"{list_reid_models()} (aliases: {sorted(_ALIASES)})")
    return key


def build_reid_model(name: str, *, last_stride: int = 1, neck: str = "bnneck",
                     embedding_dim: int | None = None, pretrained_path: str | Path | None = None,
                     channels_last: bool = False) -> ReidNet:
    """A fresh ReidNet: ``name``'s trunk (last stride 1 by default), GAP, BNNeck.

    pretrained_path: a local state_dict of the trunk (for resnets: torchvision's ImageNet file,
    its ``fc.*`` keys ignored), loaded before the head is added; DataFormatError naming the file
    and keys if it does not fit. Nothing is downloaded. channels_last: NHWC convolutions (faster
    on CPU for the resnets, see docs/reid-training.md).
    """
    key = resolve_reid_model_name(name)
    trunk = _TRUNKS[key](last_stride)
    if pretrained_path is not None:
        load_trunk_weights(trunk, pretrained_path)
    return ReidNet(trunk, name=key, neck=neck, embedding_dim=embedding_dim,
                   channels_last=channels_last)
