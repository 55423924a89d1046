"""Resource counting on a (physically pruned) network: FLOPs as multiply-accumulates and parameters.

Counts come from one forward pass with hooks on the leaf modules, so they describe the network as
it is (pruned layers have fewer channels). Two conventions (``convention=``):

- ``"eq5.7"`` (dissertation eq. 5.7, Ch. 5): only the weights of convolutions and linear layers.
  FLOPs = sum_i N_i * (W_i H_i C_i / groups) * (X_i Y_i) with X_i, Y_i the *output* map size;
  parameters = the same sum without X_i Y_i. No bias, no BN, no pooling, no activations.
  (This convention reproduces VDSR's 664,704 / 1.117e9 and Table 5.3's VGG-19 percentages.)
- ``"full"`` (default): every parameter of the model; FLOPs = the eq. 5.7 MACs plus one MAC per
  output element for conv/linear biases, BN/LayerNorm (affine folded into one scale-and-shift),
  PReLU, and pooling (one operation per window element of every output). Element-wise residual
  additions and parameter-free activations are not counted (as thop / fvcore do not).

Attention (``nn.MultiheadAttention``, sequence-first or batch-first) counts, in both conventions,
the q/k/v and output projections (4 L E^2 for self-attention) and the two matrix products
Q K^T and A V (2 L S E), per batch element. Hand-written attention counts, in both conventions,
through the parameter-free leaf modules ``MatMul`` (a @ b: one MAC per output element and
contracted index) and ``Einsum`` (a two-operand contraction: the product of the sizes of all its
indices); softmax, like other activations, is not counted. 3D pooling (``nn.AvgPool3d``,
``nn.MaxPool3d``, their adaptive forms, e.g. a video net's temporal max-pooling and 3D average
feature pooling) counts like 2D pooling, in the "full" convention only.

Each call's count covers its whole output; the sum is divided by the example input's batch size,
so FLOPs are per example input even where a layer's leading dimension is not that batch (a video
net folds B x T frames into one batch of 2D convolutions: its count is per clip of T frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fedfr.errors import ConfigError, FedFRError

CONVENTIONS = ("eq5.7", "full")

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
         nn.InstanceNorm1d, nn.InstanceNorm2d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
         nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
         nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_ADAPTIVE_POOL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                  nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
#: leaf modules that hold parameters and that the counter understands
COUNTED_WITH_PARAMS = _CONV + (nn.Linear, nn.PReLU, nn.MultiheadAttention) + _NORM


class UnsupportedLayerError(FedFRError, ValueError):
    """A layer the counter or the pruner cannot handle (the message names it)."""


class MatMul(nn.Module):
    """``a @ b`` (torch.matmul semantics) as a leaf module, so that the counter sees it:
    MACs = output elements x the contracted size ``a.shape[-1]``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class Einsum(nn.Module):
    """``torch.einsum(equation, a, b)`` as a leaf module: MACs = product of the sizes of every
    index in ``equation`` (each output element sums over the contracted indices)."""

    def __init__(self, equation: str) -> None:
        super().__init__()
        lhs = equation.replace(" ", "").split("->")[0].split(",")
        if len(lhs) != 2 or "..." in equation:
            raise ConfigError(f"Einsum: expected a two-operand equation without '...', "
                              f"got {equation!r}")
        self.equation = equation.replace(" ", "")

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.einsum(self.equation, a, b)

    def macs(self, a: torch.Tensor, b: torch.Tensor) -> int:
        """Multiply-accumulates of one call on ``a`` and ``b``."""
        sizes: dict[str, int] = {}
        for spec, t in zip(self.equation.split("->")[0].split(","), (a, b), strict=True):
            for ch, n in zip(spec, t.shape, strict=True):
                sizes[ch] = max(sizes.get(ch, 1), int(n))  # broadcast size-1 axes
        return _numel(tuple(sizes.values()))

    def extra_repr(self) -> str:
        return repr(self.equation)


@dataclass
class LayerCount:
    """One leaf module's share: ``flops`` (MACs, batch 1) and ``params`` under a convention."""

    name: str
    kind: str
    flops: int
    params: int
    out_shape: tuple[int, ...]


@dataclass
class Resources:
    """Totals of a network: ``flops`` (MACs at batch 1), ``params``; per-layer detail."""

    flops: int
    params: int
    convention: str
    layers: list[LayerCount] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"flops": self.flops, "params": self.params, "convention": self.convention}


def _numel(shape: torch.Size | tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _conv_weight_macs(m: nn.Module, out: torch.Tensor) -> int:
    positions = _numel(out.shape[2:]) * int(out.shape[0]) if out.dim() > 2 else int(
        out.shape[-1])  # unbatched Conv1d input (C, L)
    return int(m.weight.numel()) * positions  # N * (C/groups) * k..k * output positions


def _layer_count(m: nn.Module, inputs: tuple, out: Any, convention: str) -> tuple[int, int]:
    """(flops, params) of one leaf call, flops for the call's whole output."""
    full = convention == "full"
    if isinstance(m, MatMul):
        a = inputs[0]
        return _numel(out.shape) * int(a.shape[-1]), 0
    if isinstance(m, Einsum):
        return m.macs(inputs[0], inputs[1]), 0
    if isinstance(m, _CONV):
        flops = _conv_weight_macs(m, out)
        params = int(m.weight.numel())
        if m.bias is not None and full:
            flops += _numel(out.shape)
            params += int(m.bias.numel())
        return flops, params
    if isinstance(m, nn.Linear):
        rows = _numel(out.shape[:-1])
        flops = int(m.weight.numel()) * rows
        params = int(m.weight.numel())
        if m.bias is not None and full:
            flops += rows * m.out_features
            params += int(m.bias.numel())
        return flops, params
    if isinstance(m, nn.MultiheadAttention):
        q, k = inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
        seq_dim = 1 if m.batch_first else 0
        if q.dim() == 2:  # unbatched (L, E)
            seq_dim, nb = 0, 1
        else:
            nb = int(q.shape[0 if m.batch_first else 1])
        lq, lk, e = q.shape[seq_dim], k.shape[seq_dim], m.embed_dim
        # q, k, v projections; output projection; Q K^T and A V
        flops = lq * e * e + lk * e * m.kdim + lk * e * m.vdim
        flops = nb * (flops + lq * e * e + 2 * lq * lk * e)
        params = sum(int(p.numel()) for n, p in m.named_parameters(recurse=False)
                     if full or "bias" not in n)
        return flops, params
    if not full:
        return 0, 0
    params = sum(int(p.numel()) for p in m.parameters(recurse=False))
    if isinstance(m, _NORM) or isinstance(m, nn.PReLU):
        return _numel(out.shape), params
    if isinstance(m, _POOL):
        x = inputs[0]
        if isinstance(m, _ADAPTIVE_POOL):
            return _numel(x.shape), params
        n_spatial = {nn.MaxPool1d: 1, nn.AvgPool1d: 1, nn.MaxPool2d: 2, nn.AvgPool2d: 2,
                     nn.MaxPool3d: 3, nn.AvgPool3d: 3}[type(m)]
        ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * n_spatial
        return _numel(out.shape) * _numel(ks), params
    return 0, params


def check_supported(model: nn.Module) -> None:
    """Raise UnsupportedLayerError naming the first leaf module with parameters of unknown type."""
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            continue
        if any(True for _ in m.children()):
            continue
        if any(True for _ in m.parameters(recurse=False)) and not isinstance(
                m, COUNTED_WITH_PARAMS):
            raise UnsupportedLayerError(
                f"layer '{name}' ({type(m).__name__}) holds parameters but is not a supported "
                f"layer type (conv, linear, batch/layer/group norm, PReLU, multi-head attention)")


@torch.no_grad()
def count_resources(model: nn.Module, example_input: torch.Tensor,
                    convention: str = "full") -> Resources:
    """FLOPs (MACs, batch 1) and parameters of ``model`` on ``example_input`` (B, ...).

    Raises UnsupportedLayerError for a leaf layer with parameters of an unknown type, and
    ValueError for an unknown convention.
    """
    if convention not in CONVENTIONS:
        raise ConfigError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    check_supported(model)
    layers: list[LayerCount] = []
    seen: set[int] = set()
    hooks = []

    batch = max(1, int(example_input.shape[0]))

    def make_hook(name: str):
        def hook(m: nn.Module, inputs: tuple, out: Any) -> None:
            out_t = out[0] if isinstance(out, tuple) else out
            flops, params = _layer_count(m, inputs, out_t, convention)
            flops = round(flops / batch)
            if id(m) in seen:  # a module called twice: count its compute again, params once
                params = 0
            seen.add(id(m))
            layers.append(LayerCount(name, type(m).__name__, flops, params,
                                     tuple(int(s) for s in out_t.shape[1:])))
        return hook

    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention) or not any(True for _ in m.children()):
            hooks.append(m.register_forward_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    try:
        model(example_input)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    # attention's inner out_proj (a Linear child) is counted by the attention hook
    attn = {n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    layers = [lc for lc in layers if not any(lc.name.startswith(a + ".") for a in attn)]
    if convention == "full":
        params = sum(int(p.numel()) for p in model.parameters())
    else:
        params = sum(lc.params for lc in layers)
    flops = sum(lc.flops for lc in layers)
    return Resources(flops=int(flops), params=int(params), convention=convention, layers=layers)
