"""Helpers shared by the face backbones: argument and input checks, stage building, weight init."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from fedfr.errors import ConfigError


def check_sizes(model_name: str, embedding_size: int, input_size: int) -> None:
    """ConfigError (naming ``model_name``) unless embedding_size >= 1 and input_size is a
    positive multiple of 16."""
    if type(embedding_size) is not int or embedding_size < 1:
        raise ConfigError(f"{model_name}: embedding_size must be a positive int, "
                          f"got {embedding_size!r}")
    if type(input_size) is not int or input_size < 16 or input_size % 16:
        raise ConfigError(f"{model_name}: input_size must be a positive multiple of 16 "
                          f"(e.g. 32, 48, 64, 112), got {input_size!r}")


def check_input(model_name: str, x: torch.Tensor, input_size: int) -> None:
    """ValueError (naming ``model_name``) unless x has shape (B, 3, input_size, input_size)."""
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, input_size, input_size):
        raise ValueError(f"{model_name}: expected input (B, 3, {input_size}, {input_size}), "
                         f"got {tuple(x.shape)}")


def check_counts(model_name: str, what: str, values: Sequence[int], positive: bool,
                 note: str = "") -> tuple[int, ...]:
    """``values`` as a tuple; ConfigError (naming ``model_name`` and ``what``) unless it holds
    4 ints, each >= 1 if ``positive`` else >= 0. ``note`` follows the rule in the message."""
    counts = tuple(values)
    minimum = 1 if positive else 0
    if len(counts) != 4 or not all(isinstance(n, int) and n >= minimum for n in counts):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"{model_name}: {what} must be 4 {kind} ints{note}, got {values!r}")
    return counts


def stage_counts(family: str, depth: int, layers: Sequence[int] | None,
                 table: Mapping[int, tuple[int, ...]], positive: bool,
                 note: str) -> tuple[int, ...]:
    """Blocks per stage of ``{family}{depth}``: ``layers`` if given, else ``table[depth]``
    (ConfigError for a depth not in ``table``), checked by ``check_counts`` as "layers"."""
    if layers is None:
        if depth not in table:
            raise ConfigError(f"{family} depth must be one of {sorted(table)}, got {depth!r}")
        layers = table[depth]
    return check_counts(f"{family}{depth}", "layers", layers, positive, note)


def build_stages(c_in: int, channels: Sequence[int], units: Sequence[int],
                 first: Callable[[int, int], nn.Module],
                 unit: Callable[[int], nn.Module]) -> nn.Sequential:
    """Sequential of stages: stage k is ``first(c_in, channels[k])`` then ``units[k]`` blocks
    ``unit(channels[k])``; channels[k] is the next stage's c_in. Modules are built in that order."""
    stages: list[nn.Module] = []
    for c_out, n in zip(channels, units, strict=True):
        stages.append(nn.Sequential(first(c_in, c_out), *[unit(c_out) for _ in range(n)]))
        c_in = c_out
    return nn.Sequential(*stages)


def init_weights(module: nn.Module, linear: bool = True) -> None:
    """Initialise ``module`` and its submodules in order: every Conv2d weight Kaiming-normal
    (fan_out, relu), and every Linear weight Xavier-uniform unless ``linear`` is False (then the
    Linear layers keep PyTorch's default init). Biases and other parameters are left as they are.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif linear and isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
