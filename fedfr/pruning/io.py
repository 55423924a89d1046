"""Saving and loading pruned models without pickled code.

A pruned model is stored as {"format": "fedfr-pruned/1", "spec": how to build the *unpruned*
architecture, "state_dict": the pruned weights, "channels": per-layer output channels, "meta"}.
Loading builds the architecture from ``spec`` and shrinks each conv / linear / BN / PReLU to the
shapes in the state dict, so the file loads with ``torch.load(weights_only=True)``.

Specs: {"kind": "fedfr", "config": {...run config...}} (fedfr.face.models.model_from_config),
{"kind": "torchvision", "name": "resnet50", "kwargs": {...}},
{"kind": "zoo", "name": "small_convnet", "kwargs": {...}} (fedfr.pruning.zoo),
{"kind": "video-reid", "config": VideoReidNet.config} (fedfr.reid.models.video).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedfr.checkpoint import atomic_save, safe_load
from fedfr.errors import DataFormatError
from fedfr.pruning.groups import channel_counts

FORMAT = "fedfr-pruned/1"


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """The unpruned architecture described by ``spec`` (see module doc)."""
    kind = spec.get("kind")
    if kind == "fedfr":
        from fedfr.config import resolve
        from fedfr.face.models import model_from_config
        return model_from_config(resolve(dict(spec["config"])))
    if kind == "torchvision":
        import torchvision
        return getattr(torchvision.models, spec["name"])(weights=None, **spec.get("kwargs", {}))
    if kind == "video-reid":
        from fedfr.reid.models.video import build_video_model
        config = dict(spec["config"])
        return build_video_model(config.pop("name"), **config)
    if kind == "zoo":
        from fedfr.pruning import zoo
        return getattr(zoo, spec["name"])(**spec.get("kwargs", {}))
    raise DataFormatError(f"model spec: unknown kind {kind!r} (fedfr | torchvision | zoo | "
                          f"video-reid)")


def _param(shape: torch.Size) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape))


def shrink_to(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Resize conv / linear / BN / PReLU layers of ``model`` to the shapes in ``state_dict``
    and load it. Raises DataFormatError naming a layer whose shape cannot be matched."""
    for name, m in model.named_modules():
        pre = f"{name}." if name else ""
        w = state_dict.get(pre + "weight")
        if w is None:
            continue
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels
            m.out_channels = int(w.shape[0])
            if depthwise:
                m.groups = m.in_channels = int(w.shape[0])
            else:
                m.in_channels = int(w.shape[1]) * m.groups
            m.weight = _param(w.shape)
            if m.bias is not None:
                m.bias = _param(state_dict[pre + "bias"].shape)
        elif isinstance(m, nn.Linear):
            m.out_features, m.in_features = int(w.shape[0]), int(w.shape[1])
            m.weight = _param(w.shape)
            if m.bias is not None:
                m.bias = _param(state_dict[pre + "bias"].shape)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = int(w.shape[0])
            m.num_features = n
            m.weight, m.bias = _param(w.shape), _param(w.shape)
            m.running_mean = torch.zeros(n)
            m.running_var = torch.ones(n)
        elif isinstance(m, nn.PReLU):
            m.num_parameters = int(w.shape[0])
            m.weight = _param(w.shape)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise DataFormatError(f"pruned state dict does not fit the architecture: {e}") from e
    return model


def save_pruned(path: Path, model: nn.Module, spec: dict[str, Any],
                meta: dict[str, Any] | None = None) -> None:
    """Write the pruned ``model`` (atomically) with the spec of its unpruned architecture."""
    atomic_save({"format": FORMAT, "spec": spec,
                 "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 "channels": channel_counts(model), "meta": meta or {}}, Path(path))


def load_pruned(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, the whole record) from a file written by ``save_pruned``."""
    rec = safe_load(Path(path))
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise DataFormatError(f"{path}: not a pruned model file (expected format {FORMAT!r})")
    model = shrink_to(build_from_spec(rec["spec"]), rec["state_dict"])
    return model.eval(), rec
