"""Uniform-ratio baselines: UR (Ch. 5, sparsity ranking) and L1 (Li et al.).

Every prunable group loses the same share r of its original channels, round(C0 * r) (the rule
that reproduces Tables 5.1/5.3), within the minimum-channels guard. ``order``: ``sparsity``
(eq. 5.2, the UR baseline of [29]) or ``l1`` (Li et al.: smallest L1 norm first; their per-layer
choice of counts is replaced by the same ratio everywhere). ``prune_uniform_ratio`` applies a
given r; ``prune_uniform`` bisects r to the smallest value that meets the constraints (to one
channel per group).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping

from torch import nn

from fedfr.errors import ConfigError
from fedfr.pruning.constraints import Meter, check_constraints, satisfied
from fedfr.pruning.criteria import l1_order, sparsity_order
from fedfr.pruning.global_pruning import PruneResult
from fedfr.pruning.groups import PrunableNet

ORDERS = {"sparsity": sparsity_order, "l1": l1_order}


def prune_uniform_ratio(model: nn.Module, example_input, ratio: float, order: str = "sparsity",
                        min_ratio: float = 0.0, ignored: list[str] | None = None,
                        groups: list[str] | None = None) -> nn.Module:
    """Remove round(C0 * ratio) channels of every group (in place); ``groups``: only these roots."""
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {sorted(ORDERS)}, got {order!r}")
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"ratio must lie in [0, 1], got {ratio}")
    net = PrunableNet(model, example_input, ignored)
    for g in net.groups():
        if groups is not None and g.root not in groups:
            continue
        k = min(round(g.initial_size * ratio), g.size - g.min_channels(min_ratio))
        if k > 0:
            net.remove(g, ORDERS[order](net, g)[:k])
    return model


def prune_uniform(model: nn.Module, example_input, constraints: Mapping[str, float],
                  order: str = "sparsity", min_ratio: float = 0.1, convention: str = "full",
                  ignored: list[str] | None = None, latency_repeats: int = 20,
                  max_bisections: int = 14) -> PruneResult:
    """Smallest uniform ratio meeting every constraint; prunes ``model`` in place."""
    cons = check_constraints(constraints)
    t0 = time.perf_counter()
    meter = Meter(example_input, convention, "latency" in cons, latency_repeats)
    initial = meter(model)
    targets = {k: v * initial[k] for k, v in cons.items()}
    history = [{"iteration": 0, "ratio": 0.0, **initial}]
    if satisfied(initial, targets):
        return PruneResult(model, f"uniform-{order}", cons, initial, initial, True, history,
                           time.perf_counter() - t0)

    def trial(r: float) -> dict[str, float]:
        m = prune_uniform_ratio(copy.deepcopy(model), example_input, r, order, min_ratio,
                                ignored)
        res = meter(m)
        history.append({"iteration": len(history), "ratio": r, **res})
        return res

    lo, hi = 0.0, 1.0
    ok_hi = satisfied(trial(hi), targets)
    if ok_hi:
        sizes = [g.initial_size for g in PrunableNet(copy.deepcopy(model), example_input,
                                                     ignored).groups()]
        step = 1.0 / max(max(sizes), 1)
        for _ in range(max_bisections):
            if hi - lo <= step / 2:
                break
            mid = (lo + hi) / 2
            if satisfied(trial(mid), targets):
                hi = mid
            else:
                lo = mid
    prune_uniform_ratio(model, example_input, hi, order, min_ratio, ignored)
    final = meter(model)
    history.append({"iteration": len(history), "ratio": hi, **final})
    return PruneResult(model, "uniform" if order == "sparsity" else "l1", cons, initial, final,
                       satisfied(final, targets), history, time.perf_counter() - t0)
