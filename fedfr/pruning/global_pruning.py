"""Global filter pruning (Ch. 6, Algorithm 3): CAIE and the constraint-blind Taylor baseline.

Each iteration: (1) estimate every channel's loss impact with Taylor-FO-BN over n mini-batches
(running average 0.9, SGD steps on the same gradients); (2) re-evaluate the objective vector R
from the current network (eq. 6.15, clamped at 0 for satisfied resources) and each group's
resource impact r(f); (3) importance = loss impact / effective impact (6.17, 6.18) for CAIE, or
loss impact alone for ``taylor``; (4) remove the m least important channels network-wide,
keeping at least max(1, floor(min_ratio * C)) channels per group. Stop as soon as every
constraint holds, so the last step is the only one that can overshoot.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fedfr.errors import ConfigError
from fedfr.pruning.constraints import (
    Meter,
    check_constraints,
    effective_impact,
    objective,
    satisfied,
)
from fedfr.pruning.counting import count_resources
from fedfr.pruning.criteria import group_channel_maps, taylor_scores
from fedfr.pruning.groups import PrunableNet, channel_counts
from fedfr.pruning.impact import layer_latencies, resource_impacts
from fedfr.pruning.task import PruningTask, batch_stream, make_sgd

log = logging.getLogger(__name__)

GLOBAL_METHODS = ("caie", "taylor")


@dataclass
class GlobalConfig:
    """Hyper-parameters of Algorithm 3 (defaults: Ch. 6 §6.4.1 and the authors' code)."""

    per_step: int = 25            # m: channels removed per iteration
    n_batches: int = 30           # mini-batches per loss-impact estimate
    ema: float = 0.9              # running-average coefficient of the loss impact
    update_during_estimation: bool = True
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    min_ratio: float = 0.1        # minimum-channels guard per group
    taylor_mode: str = "sq_of_sum"
    convention: str = "full"
    latency_repeats: int = 20
    max_iters: int = 100_000


@dataclass
class PruneResult:
    """Outcome of a pruner: the (in-place) pruned ``model`` and its resource history."""

    model: nn.Module
    method: str
    constraints: dict[str, float]
    initial: dict[str, float]
    final: dict[str, float]
    satisfied: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def remaining(self) -> dict[str, float]:
        """Final / initial per resource (fractions)."""
        return {k: self.final[k] / self.initial[k] for k in self.final if self.initial.get(k)}

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "constraints": self.constraints, "initial": self.initial,
                "final": self.final, "remaining": self.remaining(),
                "satisfied": self.satisfied, "iterations": len(self.history) - 1,
                "seconds": self.seconds, "channels": channel_counts(self.model)}


def prune_global(model: nn.Module, task: PruningTask, constraints: Mapping[str, float],
                 method: str = "caie", config: GlobalConfig | None = None,
                 ignored: list[str] | None = None, progress: bool = True) -> PruneResult:
    """Prune ``model`` in place until FLOPs / params / latency are at most the given fractions
    of the original (``constraints``, e.g. {"flops": 0.5, "params": 0.6})."""
    if method not in GLOBAL_METHODS:
        raise ConfigError(f"method must be one of {GLOBAL_METHODS}, got {method!r}")
    cfg = config or GlobalConfig()
    cons = check_constraints(constraints)
    x = task.example_input
    meter = Meter(x, cfg.convention, "latency" in cons, cfg.latency_repeats)
    # a task may confine the dependency graph to a part of the model (video re-ID: the trunk)
    net = PrunableNet(model, x, ignored, scope=getattr(task, "prune_scope", None))
    t0 = time.perf_counter()
    initial = meter(model)
    targets = {k: v * initial[k] for k, v in cons.items()}
    history: list[dict[str, Any]] = []
    stream = batch_stream(task)
    current = initial
    for it in range(cfg.max_iters + 1):
        history.append({"iteration": it, **current})
        if satisfied(current, targets):
            break
        groups = net.groups()
        room = {g.index: g.size - g.min_channels(cfg.min_ratio) for g in groups}
        groups = [g for g in groups if room[g.index] > 0]
        if not groups:
            log.warning("%s: every group is at its minimum; constraints cannot be met", method)
            break
        # (1) loss impact: Taylor-FO-BN, running average over n mini-batches, with SGD updates
        maps = {g.index: group_channel_maps(net, g) for g in groups}
        opt = make_sgd(model, task, cfg.lr, cfg.momentum, cfg.weight_decay)
        avg: dict[int, torch.Tensor] = {}
        model.train()
        for _ in range(cfg.n_batches):
            loss = task.loss(model, next(stream))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for g in groups:
                s = taylor_scores(maps[g.index], cfg.taylor_mode)
                avg[g.index] = s if g.index not in avg else cfg.ema * avg[g.index] + (
                    1 - cfg.ema) * s
            if cfg.update_during_estimation:
                opt.step()
        opt.zero_grad(set_to_none=True)
        # (2) objective vector and resource impacts from the current network
        R = objective(current, targets)
        if method == "caie":
            res = count_resources(model, x, cfg.convention)
            times = layer_latencies(model, x) if "latency" in cons else None
            impacts = resource_impacts(net, groups, res, times)
        # (3) importance and (4) removal of the m least important channels
        cand: list[tuple[float, int, int]] = []
        for g in groups:
            loss_imp = avg[g.index]
            if method == "caie":
                r_e = effective_impact(impacts[g.index], R)
                scores = loss_imp / r_e if r_e > 0 else torch.full_like(loss_imp, math.inf)
            else:
                scores = loss_imp
            cand += [(float(s), g.index, c) for c, s in enumerate(scores.tolist())]
        cand.sort()
        chosen: dict[int, list[int]] = {}
        taken = 0
        for score, gi, c in cand:
            if taken >= cfg.per_step:
                break
            if math.isinf(score) or len(chosen.get(gi, [])) >= room[gi]:
                continue
            chosen.setdefault(gi, []).append(c)
            taken += 1
        if not taken:
            log.warning("%s: no channel can be removed; stopping", method)
            break
        by_index = {g.index: g for g in groups}
        # remove from the last group first: indices of other groups stay valid
        for gi in sorted(chosen, reverse=True):
            net.remove(by_index[gi], chosen[gi])
        current = meter(model)
        if progress:
            log.info("%s iter %d: removed %d channels; %s", method, it + 1, taken,
                     ", ".join(f"{k} {current[k] / initial[k]:.3f} (target {cons[k]})"
                               for k in cons))
    final = history[-1]
    return PruneResult(model, method, cons, initial,
                       {k: final[k] for k in initial}, satisfied(final, targets), history,
                       time.perf_counter() - t0)
