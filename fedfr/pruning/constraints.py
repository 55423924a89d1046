"""Resource constraints and measurement: FLOPs, parameters, measured latency."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from fedfr.errors import ConfigError
from fedfr.pruning.counting import count_resources
from fedfr.pruning.impact import measure_latency

RESOURCES = ("flops", "params", "latency")


@dataclass
class Meter:
    """Measures a model: FLOPs / params under ``convention`` on ``example_input`` (batch 1);
    latency = median CPU seconds of ``latency_repeats`` forwards (only when ``latency``)."""

    example_input: torch.Tensor
    convention: str = "full"
    latency: bool = False
    latency_repeats: int = 20

    def __call__(self, model: nn.Module) -> dict[str, float]:
        res = count_resources(model, self.example_input, self.convention)
        out = {"flops": float(res.flops), "params": float(res.params)}
        if self.latency:
            out["latency"] = measure_latency(model, self.example_input, self.latency_repeats)
        return out


def check_constraints(constraints: Mapping[str, float]) -> dict[str, float]:
    """Validate {resource: fraction that may remain in (0, 1]}; drops None entries."""
    out = {}
    for k, v in constraints.items():
        if v is None:
            continue
        if k not in RESOURCES:
            raise ConfigError(f"unknown constraint {k!r}; expected one of {RESOURCES}")
        if not (0.0 < float(v) <= 1.0):
            raise ConfigError(f"constraint {k}={v} (--{k}): expected a remaining fraction in "
                              "(0, 1]")
        out[k] = float(v)
    if not out:
        raise ConfigError("no constraint given (e.g. flops=0.5, params=0.6)")
    return out


def satisfied(current: Mapping[str, float], targets: Mapping[str, float]) -> bool:
    """True when every constrained resource is at or below its target."""
    return all(current[k] <= targets[k] for k in targets)


def objective(current: Mapping[str, float], targets: Mapping[str, float]) -> dict[str, float]:
    """R_i = max((C_i(theta_t) - target_i) / C_i(theta_t), 0), relative to the current net."""
    return {k: max((current[k] - targets[k]) / current[k], 0.0) for k in targets}


def effective_impact(impact: Mapping[str, float], R: Mapping[str, float]) -> float:
    """r_e = sum_i r_i R_i / |R| (eq. 6.17); 0 when every R_i is 0."""
    norm = math.sqrt(sum(v * v for v in R.values()))
    if norm == 0.0:
        return 0.0
    return sum(impact[k] * R[k] for k in R) / norm
