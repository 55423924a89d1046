"""Face backbones by name: every model maps (B, 3, S, S) floats in [-1, 1] to (B, d) features.

Features are not normalised; each model has ``.input_size`` (S) and ``.embedding_size`` (d).

Names: sphereface20/36/64 (the FedFR paper's backbone is sphereface64 at 112x112, 512-d),
iresnet18/34/50/100, mobilefacenet, small_cnn (the CPU default). Aliases: sphere64, r18, r34, r50,
r100, mbf, small.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from fedfr.errors import ConfigError
from fedfr.face.models.iresnet import IRESNET_LAYERS, IResNet
from fedfr.face.models.mobilefacenet import MobileFaceNet
from fedfr.face.models.small_cnn import SmallCNN
from fedfr.face.models.sphereface import FEDFR_CODE_LAYERS, SPHEREFACE_LAYERS, SphereFaceNet

__all__ = [
    "FEDFR_CODE_LAYERS",
    "IResNet",
    "MobileFaceNet",
    "SmallCNN",
    "SphereFaceNet",
    "count_parameters",
    "get_model",
    "list_models",
    "model_from_config",
    "resolve_model_name",
]

#: canonical name -> (model class, fixed constructor arguments).
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    **{f"sphereface{d}": (SphereFaceNet, {"depth": d}) for d in SPHEREFACE_LAYERS},
    **{f"iresnet{d}": (IResNet, {"depth": d}) for d in IRESNET_LAYERS},
    "mobilefacenet": (MobileFaceNet, {}),
    "small_cnn": (SmallCNN, {}),
}

_ALIASES: dict[str, str] = {
    "sphere20": "sphereface20",
    "sphere36": "sphereface36",
    "sphere64": "sphereface64",
    "r18": "iresnet18",
    "r34": "iresnet34",
    "r50": "iresnet50",
    "r100": "iresnet100",
    "mbf": "mobilefacenet",
    "small": "small_cnn",
}


def list_models() -> list[str]:
    """Canonical model names accepted by ``get_model`` (aliases excluded)."""
    return list(_REGISTRY)


def resolve_model_name(name: str) -> str:
    """Canonical name for a model name or alias (case-insensitive); ConfigError if unknown."""
    key = name.strip().lower() if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ConfigError(f"model: unknown name {name!r}; valid names are {list_models()} "
                          f"(aliases: {sorted(_ALIASES)})")
    return key


def get_model(name: str, embedding_size: int = 512, input_size: int = 112,
              **kwargs: Any) -> nn.Module:
    """Build a freshly initialised backbone (B, 3, S, S) -> (B, embedding_size), S = input_size.

    ``name`` is a canonical name or alias (case-insensitive). Extra ``kwargs`` go to the model
    (sphereface: layers, batch_norm; iresnet: layers, dropout; small_cnn: channels, units,
    activation). Raises ConfigError for an unknown name, an unsupported size or keyword.
    """
    key = resolve_model_name(name)
    cls, fixed = _REGISTRY[key]
    accepted = [p for p in inspect.signature(cls).parameters
                if p not in fixed and p not in ("embedding_size", "input_size")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"model {key}: unsupported option(s) {unknown}; "
                          f"accepted: {accepted or 'none'}")
    return cls(embedding_size=embedding_size, input_size=input_size, **fixed, **kwargs)


def model_from_config(cfg: Any) -> nn.Module:
    """A fresh backbone as a run config names it (``model``, ``embedding-size``, ``image-size``)."""
    return get_model(cfg.model, embedding_size=cfg.embedding_size, input_size=cfg.image_size)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all of them, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
