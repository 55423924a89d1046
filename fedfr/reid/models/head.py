"""The re-ID head: BNNeck (BoT / the thesis) and the identity classifier kept apart from the net.

BNNeck: a BatchNorm1d on the pooled feature f. The triplet loss uses f (before BN); the classifier
and the test feature use f_bn = BN(f). Its bias is frozen at 0 (so f_bn is a scaled, centred f and
the classifier is effectively bias-free); the weight starts at 1 (Kaiming-style BN init of BoT).
The identity classifier is a bias-free Linear initialised N(0, 0.001^2) (std 0.001, as BoT and the
authors' code); it is a separate module because in a federation it never leaves the client.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedfr.errors import ConfigError


class BNNeck(nn.Module):
    """BatchNorm1d with frozen zero bias: (B, d) -> (B, d)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if type(dim) is not int or dim < 1:
            raise ConfigError(f"BNNeck: dim must be a positive int, got {dim!r}")
        self.bn = nn.BatchNorm1d(dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)

    def forward(self, f: Tensor) -> Tensor:
        return self.bn(f)


class IdentityClassifier(nn.Module):
    """Bias-free Linear (B, dim) -> (B, num_classes) logits, weights N(0, std^2), std = 0.001."""

    def __init__(self, dim: int, num_classes: int, std: float = 0.001) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("num_classes", num_classes)):
            if type(value) is not int or value < 1:
                raise ConfigError(f"IdentityClassifier: {name} must be a positive int, "
                                  f"got {value!r}")
        self.dim = dim
        self.num_classes = num_classes
        self.fc = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.fc.weight, mean=0.0, std=std)

    def forward(self, f_bn: Tensor) -> Tensor:
        if f_bn.dim() != 2 or f_bn.shape[1] != self.dim:
            raise ValueError(f"IdentityClassifier: expected input (B, {self.dim}), "
                             f"got {tuple(f_bn.shape)}")
        return self.fc(f_bn)

    @property
    def weight(self) -> torch.Tensor:
        """The class matrix (num_classes, dim)."""
        return self.fc.weight
