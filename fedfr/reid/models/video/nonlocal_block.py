"""The embedded-Gaussian non-local block (NVAN, thesis Eq. 2.1) and its stripe form (STE-NVAN).

Full form: theta, phi, g are 1x1x1 Conv3d C -> C' (C' = C/2, with bias, as the authors' code);
the affinity softmax_j(theta(x_i)^T phi(x_j)) runs over all T*H*W positions of a tracklet; the
output Z = BN(W_z Y) + X, with W_z a 1x1x1 Conv3d C' -> C whose BatchNorm3d starts at gamma = beta
= 0, so a new block is the identity. Cost O(C' (THW)^2 + C C' THW) MACs.

Stripe form (``stripes = S``, "spatial reduction", Fig. 2.3): each frame's map is average-pooled
into S horizontal stripes (H must be a multiple of S), the same non-local operation runs on the
T*S stripe tokens, and its C x T x S output is repeated back over each stripe's H/S x W pixels
before the residual sum. Cost O(C' (TS)^2 + C C' TS), independent of H and W.

``temporal_group = g``: attend only within groups of g consecutive frames (the authors' STE-NVAN
code uses g = 2; the thesis text attends over all T frames, our default ``None``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedfr.errors import ConfigError
from fedfr.pruning.counting import MatMul


class StripePool(nn.AdaptiveAvgPool2d):
    """(B, C, H, W) -> (B, C, S, 1): the mean of each of S horizontal stripes (H % S == 0).

    Same result as ``nn.AdaptiveAvgPool2d((S, 1))`` (and counted as one by fedfr's counter), but
    written as reshape + mean so that ONNX export does not need static input sizes."""

    def __init__(self, stripes: int) -> None:
        super().__init__((stripes, 1))
        self.stripes = stripes

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, c, self.stripes, h // self.stripes, w).mean(dim=(3, 4)).unsqueeze(-1)


class NonLocalBlock(nn.Module):
    """(B, C, T, H, W) -> (B, C, T, H, W): residual embedded-Gaussian non-local attention."""

    def __init__(self, channels: int, inter_channels: int | None = None, *,
                 stripes: int | None = None, temporal_group: int | None = None) -> None:
        super().__init__()
        if type(channels) is not int or channels < 2:
            raise ConfigError(f"NonLocalBlock: channels must be an int >= 2, got {channels!r}")
        for key, value in (("stripes", stripes), ("temporal_group", temporal_group)):
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigError(f"NonLocalBlock: {key} must be a positive int or None, "
                                  f"got {value!r}")
        inter = inter_channels or channels // 2
        self.channels, self.inter_channels = channels, inter
        self.stripes, self.temporal_group = stripes, temporal_group
        self.theta = nn.Conv3d(channels, inter, 1)
        self.phi = nn.Conv3d(channels, inter, 1)
        self.g = nn.Conv3d(channels, inter, 1)
        self.w_z = nn.Conv3d(inter, channels, 1)
        self.bn = nn.BatchNorm3d(channels)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.affinity = MatMul()
        self.aggregate = MatMul()
        # stripe pooling on the (B', C*T, H, W) view: one average per (H/S x W) block
        self.stripe_pool = StripePool(stripes) if stripes else None

    def _attend(self, tokens: Tensor) -> Tensor:
        """tokens (B', C, t, h, w) -> W_z-projected, BN'd response of the same shape."""
        b, _, t, h, w = tokens.shape
        theta = self.theta(tokens).flatten(2).transpose(1, 2)  # (B', N, C')
        phi = self.phi(tokens).flatten(2)  # (B', C', N)
        g = self.g(tokens).flatten(2).transpose(1, 2)  # (B', N, C')
        attn = torch.softmax(self.affinity(theta, phi), dim=-1)  # (B', N, N)
        y = self.aggregate(attn, g).transpose(1, 2).reshape(b, -1, t, h, w)
        return self.bn(self.w_z(y))

    def forward(self, x: Tensor) -> Tensor:
        c_in = self.theta.in_channels  # read from the layers: a pruned block stays consistent
        if x.dim() != 5 or x.shape[1] != c_in:
            raise ValueError(f"NonLocalBlock: expected (B, {c_in}, T, H, W), "
                             f"got {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        grp = self.temporal_group
        if grp is not None and grp < t:
            if t % grp:
                raise ValueError(f"NonLocalBlock: {t} frames do not split into groups of {grp}")
            x = x.reshape(b, c, t // grp, grp, h, w).transpose(1, 2).reshape(
                b * (t // grp), c, grp, h, w)
        bg, tg = x.shape[0], x.shape[2]
        if self.stripe_pool is None:
            z = self._attend(x)
        else:
            s = self.stripes
            if h % s:
                raise ValueError(f"NonLocalBlock: feature-map height {h} is not a multiple of "
                                 f"the {s} stripes")
            tokens = self.stripe_pool(x.reshape(bg, c * tg, h, w)).reshape(bg, c, tg, s, 1)
            z = self._attend(tokens)  # (B', C, t, S, 1)
            z = z.reshape(bg, c, tg, s, 1, 1).expand(bg, c, tg, s, h // s, w).reshape(
                bg, c, tg, h, w)
        out = x + z
        if grp is not None and grp < t:
            out = out.reshape(b, t // grp, c, grp, h, w).transpose(1, 2).reshape(b, c, t, h, w)
        return out

    def extra_repr(self) -> str:
        return (f"channels={self.theta.in_channels}, inter={self.theta.out_channels}, "
                f"stripes={self.stripes}, temporal_group={self.temporal_group}")
