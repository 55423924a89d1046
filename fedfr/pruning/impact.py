"""Per-group resource impact (Ch. 6 §6.3.3): the share of FLOPs / parameters / latency that
removing ONE channel of a group saves, r_i(f) = (C_i(theta) - C_i(theta minus f)) / C_i(theta).

The paper probes by removing one channel and recounting. We compute the same difference exactly
and much faster from the layer shapes of one counting pass: for every layer the group touches,
the saving is (units removed) x (cost per unit), where Torch-Pruning's index mapping gives the
units (1 filter, 1 BN entry, H*W inputs of a linear layer after a flatten, ...). A test checks it
equals physically removing the channel and recounting. Latency impact uses a measured per-layer
latency table: each touched layer's time scaled by the share of its FLOPs that goes.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from fedfr.pruning.counting import Resources
from fedfr.pruning.groups import ChannelGroup, PrunableNet


def _spatial(out_shape: tuple[int, ...]) -> int:
    n = 1
    for s in out_shape[1:]:
        n *= s
    return n


def _cost(mod: nn.Module, c_out: int, c_in: int, spatial: int, rows: int, full: bool
          ) -> tuple[int, int]:
    """(flops, params) of a conv / linear / BN / PReLU with the given channel counts."""
    if isinstance(mod, nn.Conv1d | nn.Conv2d):
        k = mod.weight[0, 0].numel()
        depthwise = mod.groups > 1 and mod.groups == mod.in_channels
        per_group_in = 1 if depthwise else c_in // mod.groups
        p = c_out * per_group_in * k
        b = c_out if (full and mod.bias is not None) else 0
        return (p + b) * spatial, p + b
    if isinstance(mod, nn.Linear):
        p = c_out * c_in
        b = c_out if (full and mod.bias is not None) else 0
        return (p + b) * rows, p + b
    if not full:
        return 0, 0
    if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
        return c_out * spatial, (2 * c_out if mod.affine else 0)
    if isinstance(mod, nn.PReLU):
        return c_out * spatial, (c_out if mod.num_parameters > 1 else 1)
    return 0, 0


def _channels(mod: nn.Module) -> tuple[int, int]:
    if isinstance(mod, nn.Conv1d | nn.Conv2d):
        return mod.out_channels, mod.in_channels
    if isinstance(mod, nn.Linear):
        return mod.out_features, mod.in_features
    if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
        return mod.num_features, mod.num_features
    if isinstance(mod, nn.PReLU):
        return mod.num_parameters, mod.num_parameters
    return 0, 0


def group_savings(net: PrunableNet, group: ChannelGroup, res: Resources
                  ) -> dict[str, tuple[int, int]]:
    """{layer name: (flops, params)} saved by removing one channel of ``group``.

    Exact for conv, linear, BN and PReLU under both conventions; parameter-free layers
    (pooling, counted only by the "full" convention) are not credited (< 0.5 % of FLOPs).
    """
    by_name = {lc.name: lc for lc in res.layers}
    tp_group = net._tp_group(group, [0])
    removed: dict[str, list] = {}  # name -> [module, units out, units in]
    for item in tp_group.items:
        mod, fn = item.dep.target.module, item.dep.handler
        if not isinstance(mod, nn.Module) or net._name(mod) not in by_name:
            continue
        entry = removed.setdefault(net._name(mod), [mod, set(), set()])
        entry[1 if net.dg.is_out_channel_pruning_fn(fn) else 2].update(int(i) for i in item.idxs)
    out: dict[str, tuple[int, int]] = {}
    full = res.convention == "full"
    for name, (mod, u_out, u_in) in removed.items():
        lc = by_name[name]
        c_out, c_in = _channels(mod)
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d | nn.PReLU) or (
                isinstance(mod, nn.Conv1d | nn.Conv2d) and mod.groups > 1
                and mod.groups == mod.in_channels):
            u_out = u_in = u_out | u_in  # one channel = one entry / one depthwise filter
            c_in = c_out
        rows = 1
        if isinstance(mod, nn.Linear) and len(lc.out_shape) > 1:
            for s in lc.out_shape[:-1]:
                rows *= s
        spatial = _spatial(lc.out_shape)
        f0, p0 = _cost(mod, c_out, c_in, spatial, rows, full)
        f1, p1 = _cost(mod, c_out - len(u_out), c_in - len(u_in), spatial, rows, full)
        # calls per example input: 1 for an image net; a video net's 2-D layers run on every
        # frame of the clip (T, or fewer after temporal pooling), and the count is per clip
        calls = max(1, round(lc.flops / f0)) if f0 else 1
        out[name] = ((f0 - f1) * calls, p0 - p1)
    return out


def resource_impacts(net: PrunableNet, groups: list[ChannelGroup], res: Resources,
                     layer_times: dict[str, float] | None = None
                     ) -> dict[int, dict[str, float]]:
    """{group index: {"flops": r_f, "params": r_p[, "latency": r_l]}} relative to ``res``."""
    layer_flops = {lc.name: lc.flops for lc in res.layers}
    total_time = sum(layer_times.values()) if layer_times else 0.0
    out: dict[int, dict[str, float]] = {}
    for g in groups:
        sav = group_savings(net, g, res)
        f = sum(v[0] for v in sav.values())
        p = sum(v[1] for v in sav.values())
        d = {"flops": f / max(res.flops, 1), "params": p / max(res.params, 1)}
        if layer_times:
            t = sum(layer_times.get(n, 0.0) * v[0] / layer_flops[n]
                    for n, v in sav.items() if layer_flops.get(n))
            d["latency"] = t / max(total_time, 1e-12)
        out[g.index] = d
    return out


@torch.no_grad()
def measure_latency(model: nn.Module, example_input: torch.Tensor, repeats: int = 20,
                    warmup: int = 3) -> float:
    """Median wall time (seconds) of one forward of ``example_input`` in eval mode on CPU."""
    was = model.training
    model.eval()
    for _ in range(warmup):
        model(example_input)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(example_input)
        times.append(time.perf_counter() - t0)
    model.train(was)
    return statistics.median(times)


@torch.no_grad()
def layer_latencies(model: nn.Module, example_input: torch.Tensor, repeats: int = 5
                    ) -> dict[str, float]:
    """Median seconds spent in each leaf module (forward pre/post hooks), in eval mode."""
    starts: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    hooks = []
    for name, m in model.named_modules():
        if any(True for _ in m.children()):
            continue
        hooks.append(m.register_forward_pre_hook(
            lambda m, i, n=name: starts.__setitem__(n, time.perf_counter())))
        hooks.append(m.register_forward_hook(
            lambda m, i, o, n=name: samples.setdefault(n, []).append(
                time.perf_counter() - starts[n])))
    was = model.training
    model.eval()
    try:
        model(example_input)
        samples.clear()
        for _ in range(repeats):
            model(example_input)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return {n: statistics.median(v) for n, v in samples.items()}
