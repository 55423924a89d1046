"""Channel groups and physical filter removal on Torch-Pruning's dependency graph.

A *channel group* is a set of output channels that must be removed together: a conv's filters,
its BN entries, the next layers' input channels, and - through residual additions, projection
shortcuts and depthwise convs - every other layer tied to the same channel index. Torch-Pruning
(``torch_pruning.DependencyGraph``) traces the model and finds these groups; this module adds what
it lacks for Ch. 5-6: a stable per-group view (root layer, BN layers, consumers), masking (zeroing
a group's channels in place, the reference the physically pruned net must equal), a
minimum-channels guard, the default rule that the layer producing the model output keeps its
channels, and a clear error for layers it cannot prune.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from fedfr.errors import ConfigError
from fedfr.pruning.counting import UnsupportedLayerError, check_supported

_PRUNABLE_ROOTS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class ChannelGroup:
    """One group: ``size`` channels; names of the layers whose outputs / inputs it spans.

    ``root``: the conv/linear whose output channels define the group (the first in module order);
    ``producers``: every conv/linear losing output channels; ``bns``: BN layers losing entries;
    ``consumers``: layers losing input channels. ``initial_size``: channels before pruning.
    """

    index: int
    root: str
    size: int
    initial_size: int
    producers: list[str] = field(default_factory=list)
    bns: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)

    def min_channels(self, min_ratio: float) -> int:
        """The guard: at least max(1, floor(min_ratio * initial_size)) channels stay."""
        return max(1, int(min_ratio * self.initial_size))


def output_layers(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the conv/linear layers run last (the ones producing the model's output)."""
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: order.append(n))
             for n, m in model.named_modules() if isinstance(m, _PRUNABLE_ROOTS)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return order[-1:]


def check_prunable(model: nn.Module) -> None:
    """UnsupportedLayerError naming a layer whose channels the pruner cannot rewrite."""
    check_supported(model)
    for name, m in model.named_modules():
        if isinstance(m, (nn.MultiheadAttention, nn.Conv3d, nn.ConvTranspose2d, nn.LSTM, nn.GRU,
                          nn.Embedding)):
            raise UnsupportedLayerError(
                f"layer '{name}' ({type(m).__name__}): filter pruning supports conv1d/2d, linear, "
                f"BN, PReLU, pooling and element-wise layers; exclude this model or layer")


class PrunableNet:
    """A model plus its dependency graph: groups, masking and physical removal (in place).

    ``ignored``: names of layers whose *output* channels are kept (default: the output layer);
    ``example_input``: (B, ...) tensor used for tracing. ``scope``: (sub-module, its example
    input): trace only this part of ``model`` (layer names stay ``model``'s). For a net whose
    other parts the dependency graph cannot follow (a video net's attention blocks on reshaped
    5-D maps), the scope is the 2-D trunk and ``ignored`` must keep every channel that leaves it.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor,
                 ignored: Iterable[str] | None = None,
                 scope: tuple[nn.Module, torch.Tensor] | None = None) -> None:
        graph_model, graph_input = (model, example_input) if scope is None else scope
        check_prunable(graph_model)
        self.model = model
        self.example_input = example_input
        names = dict(model.named_modules())
        self.ignored = list(output_layers(model, example_input) if ignored is None else ignored)
        for n in self.ignored:
            if n not in names:
                raise ConfigError(f"ignored layer '{n}' (--keep) is not a module of the model")
        self._modules = names
        self._names = {id(m): n for n, m in names.items()}
        was = model.training
        # an in-place activation right after a conv hides the conv from the autograd trace
        inplace = [m for m in graph_model.modules() if getattr(m, "inplace", False) is True]
        for m in inplace:
            m.inplace = False
        model.eval()
        try:
            self.dg = tp.DependencyGraph().build_dependency(graph_model,
                                                            example_inputs=graph_input,
                                                            verbose=False)
        finally:
            model.train(was)
            for m in inplace:
                m.inplace = True
        self._initial: dict[str, int] = {}
        self.groups()  # records the initial sizes

    # ------------------------------------------------------------------------------------------
    def _name(self, m: nn.Module) -> str:
        return self._names.get(id(m), type(m).__name__)

    def groups(self) -> list[ChannelGroup]:
        """The current channel groups (roots in module order, ignored layers excluded)."""
        ignored = [self._modules[n] for n in self.ignored]
        out: list[ChannelGroup] = []
        self._roots: dict[str, tuple[nn.Module, object]] = {}
        for g in self.dg.get_all_groups(ignored_layers=ignored, root_module_types=_PRUNABLE_ROOTS):
            producers, bns, consumers = [], [], []
            for item in g.items:
                mod, fn = item.dep.target.module, item.dep.handler
                if not isinstance(mod, nn.Module) or not any(True for _ in mod.parameters(False)):
                    continue
                name = self._name(mod)
                is_out = self.dg.is_out_channel_pruning_fn(fn)
                if isinstance(mod, _BN):
                    bns.append(name)
                elif isinstance(mod, _PRUNABLE_ROOTS):
                    (producers if is_out else consumers).append(name)
                    if isinstance(mod, nn.Conv2d) and mod.groups > 1 and mod.groups == \
                            mod.in_channels:  # depthwise: its filters go with the channel too
                        if name not in producers:
                            producers.append(name)
            root_item = g.items[0]
            root_mod = root_item.dep.target.module
            root = self._name(root_mod)
            if any(n in self.ignored for n in producers):
                continue
            size = len(root_item.idxs)
            self._initial.setdefault(root, size)
            self._roots[root] = (root_mod, root_item.dep.handler)
            out.append(ChannelGroup(len(out), root, size, self._initial[root],
                                    sorted(set(producers), key=producers.index),
                                    sorted(set(bns), key=bns.index),
                                    sorted(set(consumers), key=consumers.index)))
        return out

    def _tp_group(self, group: ChannelGroup, idxs: Sequence[int]):
        if not hasattr(self, "_roots") or group.root not in self._roots:
            self.groups()
        mod, fn = self._roots[group.root]
        bad = [i for i in idxs if not 0 <= int(i) < group.size]
        if bad:
            raise IndexError(f"group '{group.root}' has {group.size} channels; got indices {bad}")
        return self.dg.get_pruning_group(mod, fn, [int(i) for i in idxs])

    def remove(self, group: ChannelGroup, idxs: Sequence[int]) -> None:
        """Physically remove channels ``idxs`` of ``group`` from every layer tied to them."""
        idxs = sorted({int(i) for i in idxs})
        if len(idxs) >= group.size:
            raise ValueError(f"group '{group.root}': cannot remove all {group.size} channels")
        if idxs:
            self._tp_group(group, idxs).prune()

    @torch.no_grad()
    def mask(self, group: ChannelGroup, idxs: Sequence[int]) -> None:
        """Zero channels ``idxs`` of ``group`` in place (weights/bias of producers, BN affine):
        the masked net computes what the physically pruned one computes (in eval mode)."""
        g = self._tp_group(group, idxs)
        for item in g.items:
            mod, fn = item.dep.target.module, item.dep.handler
            if not isinstance(mod, nn.Module) or not self.dg.is_out_channel_pruning_fn(fn):
                continue
            ix = torch.as_tensor([int(i) for i in item.idxs], dtype=torch.long)
            for pname in ("weight", "bias"):
                p = getattr(mod, pname, None)
                if isinstance(p, torch.Tensor) and p.dim() >= 1 and p.shape[0] > int(ix.max()):
                    p[ix] = 0


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels of every conv / linear / BN layer, by name (for reports)."""
    out: dict[str, int] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            out[name] = m.out_channels
        elif isinstance(m, nn.Linear):
            out[name] = m.out_features
    return out


