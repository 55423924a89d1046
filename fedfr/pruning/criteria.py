"""Filter ranking criteria: sparsity (eq. 5.1/5.2), L1 norm (Li et al.), Taylor-FO-BN (Ch. 6).

Every function returns one score per channel of a group, ordered like the group's channels;
what is removed first is stated per function.
"""

from __future__ import annotations

import torch
from torch import nn

from fedfr.errors import ConfigError
from fedfr.pruning.groups import ChannelGroup, PrunableNet

TAYLOR_MODES = ("sq_of_sum", "sum_of_sq")


def _root_weight(net: PrunableNet, group: ChannelGroup) -> torch.Tensor:
    mod = net._modules[group.root]
    return mod.weight.detach().reshape(mod.weight.shape[0], -1)  # (N, C*H*W) or (N, in)


def sparsity(net: PrunableNet, group: ChannelGroup) -> torch.Tensor:
    """S_i(n) of eq. 5.2 on the group's root layer: the share of filter n's coefficients whose
    magnitude is below the layer mean M_i (eq. 5.1). Higher = more redundant = removed first.
    Shape (N_i,)."""
    w = _root_weight(net, group).abs()
    m_i = w.mean()
    return (w < m_i).float().mean(dim=1)


def l1_norm(net: PrunableNet, group: ChannelGroup) -> torch.Tensor:
    """sum |F_{i,j}| of each filter of the root layer (Li et al.); lowest removed first. (N_i,)"""
    return _root_weight(net, group).abs().sum(dim=1)


def sparsity_order(net: PrunableNet, group: ChannelGroup) -> list[int]:
    """Channels in removal order: descending sparsity, ties broken by lower L1 norm (spec A.3)."""
    s, l1 = sparsity(net, group), l1_norm(net, group)
    return sorted(range(group.size), key=lambda i: (-float(s[i]), float(l1[i])))


def l1_order(net: PrunableNet, group: ChannelGroup) -> list[int]:
    """Channels in removal order: ascending L1 norm."""
    return torch.argsort(l1_norm(net, group)).tolist()


def group_channel_maps(net: PrunableNet, group: ChannelGroup
                       ) -> list[tuple[nn.Module, torch.Tensor, bool]]:
    """(module, channel index per group channel, is_bn) for the group's BN layers - or, if it
    has none, its producer layers (conv/linear out channels)."""
    tpg = net._tp_group(group, list(range(group.size)))
    bns, prods = [], []
    for item in tpg.items:
        mod, fn = item.dep.target.module, item.dep.handler
        if not isinstance(mod, nn.Module) or not net.dg.is_out_channel_pruning_fn(fn):
            continue
        idx = torch.as_tensor([int(i) for i in item.idxs], dtype=torch.long)
        if len(idx) != group.size:
            continue
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d) and mod.affine:
            bns.append((mod, idx, True))
        elif isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Linear):
            prods.append((mod, idx, False))
    seen: set[int] = set()
    out = []
    for entry in bns or prods:
        if id(entry[0]) not in seen:
            seen.add(id(entry[0]))
            out.append(entry)
    return out


def taylor_scores(maps: list[tuple[nn.Module, torch.Tensor, bool]], mode: str = "sq_of_sum"
                  ) -> torch.Tensor:
    """Per-channel loss impact from the gradients now in ``.grad`` (Taylor-FO-BN, [26]).

    BN: v = gamma * dL/dgamma + beta * dL/dbeta per channel. Without BN the first-order term of
    the producer's filter, sum_w w * dL/dw (+ bias). Several layers in a group: ``sq_of_sum`` =
    (sum of v)^2 (the authors' code default) or ``sum_of_sq`` = sum of v^2. Shape (size,).
    """
    if mode not in TAYLOR_MODES:
        raise ConfigError(f"taylor mode must be one of {TAYLOR_MODES}, got {mode!r}")
    vals = []
    for mod, idx, is_bn in maps:
        w, b = mod.weight, getattr(mod, "bias", None)
        if w.grad is None:
            vals.append(torch.zeros(len(idx)))
            continue
        if is_bn:
            v = w.detach() * w.grad
        else:
            v = (w.detach() * w.grad).reshape(w.shape[0], -1).sum(1)
        if b is not None and b.grad is not None:
            v = v + b.detach() * b.grad
        vals.append(v[idx].float())
    if not vals:
        raise ValueError("group has no BN or conv/linear layer to score")
    stacked = torch.stack(vals)
    return stacked.sum(0) ** 2 if mode == "sq_of_sum" else (stacked ** 2).sum(0)
