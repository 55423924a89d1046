"""ReidNet: trunk -> global average pooling -> f -> BNNeck -> f_bn (BoT's head, the thesis's).

``forward(x)`` returns ``(f, f_bn)``: f (B, d) is the pooled feature before BN (the triplet
feature), f_bn (B, d) the BNNeck output (the classifier input and the test feature). The identity
classifier is not part of the net (see ``IdentityClassifier``): the net is what a federation
averages. With ``neck = "none"`` f_bn is f itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.errors import ConfigError
from fedfr.reid.models.head import BNNeck

NECKS = ("bnneck", "none")
TEST_FEATURES = ("after", "before")


class ReidNet(nn.Module):
    """(B, 3, H, W) ImageNet-normalised images -> (f, f_bn), each (B, feature_dim).

    trunk: a conv net with ``out_channels``; embedding_dim: if set, a bias-free Linear maps the
    pooled trunk output (out_channels) to this size (else f is the pooled output itself);
    channels_last: run convolutions in NHWC memory format (input converted in ``forward``).
    """

    def __init__(self, trunk: nn.Module, *, name: str = "reid", neck: str = "bnneck",
                 embedding_dim: int | None = None, channels_last: bool = False) -> None:
        super().__init__()
        if neck not in NECKS:
            raise ConfigError(f"neck must be one of {NECKS}, got {neck!r}")
        c = int(trunk.out_channels)
        if embedding_dim is not None and (type(embedding_dim) is not int or embedding_dim < 1):
            raise ConfigError(f"embedding_dim must be a positive int or None, "
                              f"got {embedding_dim!r}")
        self.name = name
        self.backbone = trunk
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduction: nn.Module | None = None
        if embedding_dim is not None:
            self.reduction = nn.Linear(c, embedding_dim, bias=False)
            nn.init.kaiming_normal_(self.reduction.weight, mode="fan_out")
        self.feature_dim = embedding_dim or c
        self.neck_kind = neck
        self.neck: nn.Module = BNNeck(self.feature_dim) if neck == "bnneck" else nn.Identity()
        self.channels_last = False
        if channels_last:
            self.use_channels_last(True)

    def use_channels_last(self, enabled: bool = True) -> ReidNet:
        """Switch the trunk's weights and the input to NHWC (``torch.channels_last``) or back."""
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.backbone.to(memory_format=fmt)
        self.channels_last = enabled
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, 3, H, W) -> (f, f_bn), each (B, feature_dim)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected input (B, 3, H, W), got {tuple(x.shape)}")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        f = torch.flatten(self.pool(self.backbone(x)), 1)
        if self.reduction is not None:
            f = self.reduction(f)
        return f, self.neck(f)

    @torch.no_grad()
    def embed(self, x: Tensor, *, normalize: bool = False, feature: str = "after") -> Tensor:
        """Test feature in eval mode (the mode is restored): f_bn (``feature="after"``, the
        thesis's and BoT's default) or f (``"before"``), L2-normalised if ``normalize``."""
        if feature not in TEST_FEATURES:
            raise ConfigError(f"feature must be one of {TEST_FEATURES}, got {feature!r}")
        was_training = self.training
        self.eval()
        try:
            f, f_bn = self(x)
        finally:
            self.train(was_training)
        out = f_bn if feature == "after" else f
        return F.normalize(out, dim=1) if normalize else out
