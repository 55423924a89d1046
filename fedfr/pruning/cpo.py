"""Layer-wise pruning by Computation-Performance Optimization (Ch. 5, Algorithm 2).

The pruning unit is a channel group (a plain conv layer, or - in residual nets - the layers
Torch-Pruning ties together; this replaces §5.4.4's hand rules of shared shortcut indices and
zero-padded identities, since the whole residual group shrinks together). Inside a group, filters
go in descending sparsity (eq. 5.2). The performance drop D is the validation metric of the
original minus that of the current model (positive = worse), in the task's metric units.

Phase 1 probes each group at r = 0.5 (retrain, measure D, restore) and computes the performance
sensitivity PS = dD / (dr * W * H * C) (eq. 5.6 as printed: kernel size times the root layer's
current input channels C). Phase 2 takes the least sensitive group and raises r in binary-search
order 0.5, 0.75, 0.875, ... (retraining each time) until (1) D > D_exp, (2) its updated PS exceeds
the runner-up's, or (3) no filter is left to remove; on (1) it bisects back between the last
acceptable r and the failing one (``max_halvings`` times), on (2) it tries the midpoint once
(``cond2="midpoint"``, the literal reading) or keeps the previous r (``cond2="previous"``).
Then the remaining groups' PS are recomputed with their new input-channel counts (the
C_{i+1} update) and the list is re-sorted.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from torch import nn

from fedfr.errors import ConfigError
from fedfr.pruning.constraints import Meter
from fedfr.pruning.criteria import sparsity_order
from fedfr.pruning.global_pruning import PruneResult
from fedfr.pruning.groups import PrunableNet
from fedfr.pruning.task import PruningTask, batch_stream, make_sgd, train_steps

log = logging.getLogger(__name__)


@dataclass
class CPOConfig:
    """CPO settings. ``d_exp``: acceptable drop (metric units, e.g. accuracy points);
    ``retrain_steps``: SGD steps after every pruning trial ("a few epochs" in the text);
    ``ps_denominator``: ``eq5.6`` (dr*W*H*C, as printed) or ``flops`` (true FLOPs share)."""

    d_exp: float = 1.0
    retrain_steps: int = 100
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    probe_ratio: float = 0.5
    max_halvings: int = 3
    cond2: str = "midpoint"
    ps_denominator: str = "eq5.6"
    convention: str = "full"


def _remove_to_ratio(model: nn.Module, x, root: str, initial: int, ratio: float,
                     ignored: list[str] | None) -> int:
    """Prune group ``root`` of ``model`` so that round(initial * ratio) channels are gone;
    returns the number removed (capped so one channel stays)."""
    net = PrunableNet(model, x, ignored)
    g = next(g for g in net.groups() if g.root == root)
    target = min(round(initial * ratio), initial - 1)
    k = g.size - (initial - target)
    if k > 0:
        net.remove(g, sparsity_order(net, g)[:k])
    return target


class _Evaluator:
    def __init__(self, task: PruningTask, cfg: CPOConfig, base: float) -> None:
        self.task, self.cfg, self.base = task, cfg, base
        self.stream = batch_stream(task, start_epoch=500)
        self.trials = 0

    def retrain_drop(self, model: nn.Module) -> float:
        if self.cfg.retrain_steps > 0:
            opt = make_sgd(model, self.task, self.cfg.lr, self.cfg.momentum,
                           self.cfg.weight_decay)
            train_steps(model, self.task, self.stream, self.cfg.retrain_steps, opt)
        self.trials += 1
        return self.base - self.task.evaluate(model)[self.task.metric]


def _retrain_at(model: nn.Module, x, root: str, initial: int, ratio: float, ignored,
                ev: _Evaluator) -> tuple[nn.Module, float]:
    """A copy of ``model`` with ``ratio`` of group ``root``'s filters removed, and its
    accuracy drop after the short retrain."""
    trial = copy.deepcopy(model)
    _remove_to_ratio(trial, x, root, initial, ratio, ignored)
    return trial, ev.retrain_drop(trial)


def _denominator(model: nn.Module, root: str, dr: float, cfg: CPOConfig, x,
                 flops_share: float | None = None) -> float:
    mod = dict(model.named_modules())[root]
    if cfg.ps_denominator == "flops" and flops_share is not None:
        return max(dr * flops_share, 1e-12)
    k = mod.weight[0, 0].numel() if mod.weight.dim() > 2 else 1
    c = mod.in_channels if isinstance(mod, nn.Conv1d | nn.Conv2d) else mod.in_features
    return max(dr * k * c, 1e-12)


def prune_cpo(model: nn.Module, task: PruningTask, config: CPOConfig | None = None,
              ignored: list[str] | None = None, progress: bool = True) -> PruneResult:
    """Run Algorithm 2 on ``model``; returns the pruned (retrained) model in the result.

    ``model`` itself is replaced: use ``result.model``.
    """
    cfg = config or CPOConfig()
    if cfg.cond2 not in ("midpoint", "previous"):
        raise ConfigError(f"cond2 must be 'midpoint' or 'previous', got {cfg.cond2!r}")
    if cfg.ps_denominator not in ("eq5.6", "flops"):
        raise ConfigError(f"ps_denominator must be 'eq5.6' or 'flops', got {cfg.ps_denominator!r}")
    t0 = time.perf_counter()
    x = task.example_input
    meter = Meter(x, cfg.convention)
    initial = meter(model)
    base = task.evaluate(model)[task.metric]
    ev = _Evaluator(task, cfg, base)
    groups = PrunableNet(model, x, ignored).groups()
    sizes = {g.root: g.initial_size for g in groups}
    history: list[dict[str, Any]] = [{"phase": 0, "iteration": 0, "drop": 0.0, **initial}]

    def flops_share(m: nn.Module, root: str) -> float:
        probe = copy.deepcopy(m)
        _remove_to_ratio(probe, x, root, sizes[root], 1.0 / sizes[root], ignored)
        return (meter(m)["flops"] - meter(probe)["flops"]) * sizes[root] / meter(m)["flops"]

    # phase 1: probe every group at r = 0.5, retrain, measure, restore
    probe: dict[str, tuple[float, float]] = {}  # root -> (D, dr)
    ps: dict[str, float] = {}
    for g in groups:
        if sizes[g.root] < 2:
            continue
        _, d = _retrain_at(model, x, g.root, sizes[g.root], cfg.probe_ratio, ignored, ev)
        probe[g.root] = (d, cfg.probe_ratio)
        share = flops_share(model, g.root) if cfg.ps_denominator == "flops" else None
        ps[g.root] = d / _denominator(model, g.root, cfg.probe_ratio, cfg, x, share)
        history.append({"phase": 1, "group": g.root, "ratio": cfg.probe_ratio, "drop": d,
                        "ps": ps[g.root]})
        if progress:
            log.info("CPO phase 1: %s r=%.2f drop %.3f PS %.3g", g.root, cfg.probe_ratio, d,
                     ps[g.root])
    # phase 2: greedy, least sensitive first
    cur, d_cur = model, 0.0
    ratios: dict[str, float] = {}
    while ps:
        order = sorted(ps, key=ps.get)
        root = order[0]
        runner_up = ps[order[1]] if len(order) > 1 else math.inf
        n0 = sizes[root]
        r_prev, d_prev, accepted = 0.0, d_cur, cur
        k = 1
        while True:
            r_k = 1.0 - 2.0 ** (-k)
            if round(n0 * r_k) <= round(n0 * r_prev) or round(n0 * r_prev) >= n0 - 1:
                break  # condition 3: no more filters to remove at this resolution
            trial, d = _retrain_at(cur, x, root, n0, r_k, ignored, ev)
            share = flops_share(cur, root) if cfg.ps_denominator == "flops" else None
            ps_k = (d - d_prev) / _denominator(cur, root, r_k - r_prev, cfg, x, share)
            history.append({"phase": 2, "group": root, "ratio": r_k, "drop": d, "ps": ps_k})
            cond1, cond2 = d > cfg.d_exp, ps_k > runner_up
            if cond1 or cond2:
                lo, hi = r_prev, r_k
                if cond1:
                    for _ in range(cfg.max_halvings):
                        mid = (lo + hi) / 2
                        if round(n0 * mid) in (round(n0 * lo), round(n0 * hi)):
                            break
                        t, dm = _retrain_at(cur, x, root, n0, mid, ignored, ev)
                        history.append({"phase": 2, "group": root, "ratio": mid, "drop": dm,
                                        "stepback": True})
                        if dm <= cfg.d_exp:
                            lo, r_prev, d_prev, accepted = mid, mid, dm, t
                        else:
                            hi = mid
                elif cfg.cond2 == "midpoint":
                    mid = (lo + hi) / 2
                    if round(n0 * mid) not in (round(n0 * lo), round(n0 * hi)):
                        t, dm = _retrain_at(cur, x, root, n0, mid, ignored, ev)
                        history.append({"phase": 2, "group": root, "ratio": mid, "drop": dm,
                                        "stepback": True})
                        if dm <= cfg.d_exp:
                            r_prev, d_prev, accepted = mid, dm, t
                break
            r_prev, d_prev, accepted = r_k, d, trial
            k += 1
        cur, d_cur = accepted, d_prev
        ratios[root] = r_prev
        if progress:
            log.info("CPO phase 2: %s fixed at r=%.4f (drop %.3f)", root, r_prev, d_cur)
        del ps[root]
        for other in ps:  # C_{i+1} update: PS with the current input channels
            d, dr = probe[other]
            share = flops_share(cur, other) if cfg.ps_denominator == "flops" else None
            ps[other] = d / _denominator(cur, other, dr, cfg, x, share)
    final = meter(cur)
    history.append({"phase": 3, "drop": d_cur, "ratios": ratios, "trials": ev.trials, **final})
    return PruneResult(cur, "cpo", {}, initial, final, d_cur <= cfg.d_exp, history,
                       time.perf_counter() - t0)
