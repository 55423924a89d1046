"""Position-sensitive axial attention (Axial-DeepLab, thesis Eq. 2.5) and the coarse-to-fine
axial-attention block of CF-AAN (Sec. 2.5.2, Eq. 2.6), following the authors' released recipe
(seed-reid.md C.3).

AxialAttention along one axis of length L (H, W or T) of a (B, C, T, H, W) map, M heads:
a bias-free Conv1d C -> 2C + BN1d gives per head q, k (C/(2M) each) and v (C/M); learned
relative embeddings r (2C/M x (2L - 1)), shared across heads, give r^q, r^k, r^v; the logits
q^T k + q^T r^q + k^T r^k are stacked, BN2d'd per (term, head), summed and soft-maxed over the
keys; the output sum_p a (v_p) and sum_p a (r^v) are stacked, BN1d'd and summed.

CoarseToFineAxialBlock: the channels split into S scales; scale s (0-based) is max-pooled to
(T, H/2^s, W/2^s), runs axial attention along H, then W, then T, and is upsampled back (nearest);
the scales are concatenated, projected by a bias-free 1x1x1 Conv3d C -> C whose BatchNorm3d
starts at gamma = beta = 0, and added to the input. Relative embeddings fix the sizes, so a block
is built for one (T, H, W).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.errors import ConfigError
from fedfr.pruning.counting import Einsum

AXES = {"t": 2, "h": 3, "w": 4}


class AxialAttention(nn.Module):
    """(B, C, T, H, W) -> (B, C, T, H, W): multi-head position-sensitive attention along ``axis``
    (one of "t", "h", "w", whose length must be ``length``)."""

    def __init__(self, channels: int, length: int, axis: str, heads: int = 2) -> None:
        super().__init__()
        if axis not in AXES:
            raise ConfigError(f"AxialAttention: axis must be one of {sorted(AXES)}, got {axis!r}")
        if heads < 1 or channels % heads or (channels // heads) % 2:
            raise ConfigError(f"AxialAttention: {channels} channels do not split into {heads} "
                              f"heads of an even width")
        if length < 1:
            raise ConfigError(f"AxialAttention: length must be positive, got {length!r}")
        self.channels, self.length, self.axis, self.heads = channels, length, axis, heads
        self.head_dim = channels // heads
        self.qkv = nn.Conv1d(channels, 2 * channels, 1, bias=False)
        self.bn_qkv = nn.BatchNorm1d(2 * channels)
        self.bn_logits = nn.BatchNorm2d(3 * heads)
        self.bn_out = nn.BatchNorm1d(2 * channels)
        self.relative = nn.Parameter(torch.randn(2 * self.head_dim, 2 * length - 1)
                                     * math.sqrt(1.0 / self.head_dim))
        pos = torch.arange(length)
        self.register_buffer("rel_index", (pos[:, None] - pos[None, :] + length - 1).reshape(-1),
                             persistent=False)
        self.qk = Einsum("bgci,bgcj->bgij")
        self.qr = Einsum("bgci,cij->bgij")
        self.kr = Einsum("bgci,cij->bgij")
        self.av = Einsum("bgij,bgcj->bgci")
        self.ar = Einsum("bgij,cij->bgci")
        nn.init.normal_(self.qkv.weight, 0.0, math.sqrt(1.0 / channels))

    def forward(self, x: Tensor) -> Tensor:
        a = AXES[self.axis]
        if x.dim() != 5 or x.shape[1] != self.channels or x.shape[a] != self.length:
            raise ValueError(f"AxialAttention({self.axis}): expected (B, {self.channels}, T, H, W)"
                             f" with {self.axis.upper()} = {self.length}, got {tuple(x.shape)}")
        others = [d for d in (2, 3, 4) if d != a]
        perm = (0, *others, 1, a)
        xp = x.permute(perm)
        lead = xp.shape[:3]
        n, c, m, d, length = lead[0] * lead[1] * lead[2], self.channels, self.heads, \
            self.head_dim, self.length
        seq = xp.reshape(n, c, length)
        qkv = self.bn_qkv(self.qkv(seq)).reshape(n, m, 2 * d, length)
        q, k, v = torch.split(qkv, [d // 2, d // 2, d], dim=2)
        emb = self.relative[:, self.rel_index].reshape(2 * d, length, length)
        rq, rk, rv = torch.split(emb, [d // 2, d // 2, d], dim=0)
        logits = torch.cat([self.qk(q, k), self.qr(q, rq), self.kr(k, rk).transpose(2, 3)], dim=1)
        logits = self.bn_logits(logits).reshape(n, 3, m, length, length).sum(dim=1)
        attn = torch.softmax(logits, dim=3)
        out = torch.stack([self.av(attn, v), self.ar(attn, rv)], dim=3)  # (n, M, d, 2, L)
        out = self.bn_out(out.reshape(n, 2 * c, length)).reshape(n, c, 2, length).sum(dim=2)
        inv = [0] * 5
        for i, p in enumerate(perm):
            inv[p] = i
        return out.reshape(*lead, c, length).permute(inv)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, axis={self.axis}, length={self.length}, " \
               f"heads={self.heads}"


class CoarseToFineAxialBlock(nn.Module):
    """(B, C, T, H, W) -> same: CF-AA module with ``scales`` channel groups at resolutions
    H/2^s x W/2^s and ``heads`` heads per axial attention (the thesis: S = 4, M = 2)."""

    def __init__(self, channels: int, size: tuple[int, int, int], scales: int = 4,
                 heads: int = 2) -> None:
        super().__init__()
        t, h, w = size
        if scales < 1 or channels % scales:
            raise ConfigError(f"CF-AA: {channels} channels do not split into {scales} scales")
        f = 2 ** (scales - 1)
        if h % f or w % f:
            raise ConfigError(f"CF-AA: a {h}x{w} map cannot be halved {scales - 1} times "
                              f"(needs multiples of {f}); choose fewer scales or another input")
        self.channels, self.size, self.scales = channels, (t, h, w), scales
        cs = channels // scales
        self.pools = nn.ModuleList()
        self.branches = nn.ModuleList()
        for s in range(scales):
            hs, ws = h // 2 ** s, w // 2 ** s
            k = (1, 2 ** s, 2 ** s)  # = adaptive max-pooling to (T, H/2^s, W/2^s): sizes divide
            self.pools.append(nn.MaxPool3d(k, stride=k) if s else nn.Identity())
            self.branches.append(nn.Sequential(AxialAttention(cs, hs, "h", heads),
                                               AxialAttention(cs, ws, "w", heads),
                                               AxialAttention(cs, t, "t", heads)))
        self.conv_up = nn.Conv3d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm3d(channels)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or tuple(x.shape[1:]) != (self.channels, *self.size):
            t, h, w = self.size
            raise ValueError(f"CF-AA: expected (B, {self.channels}, {t}, {h}, {w}) (T, H, W are "
                             f"fixed when the block is built), got {tuple(x.shape)}")
        parts = torch.chunk(x, self.scales, dim=1)
        outs = []
        for part, pool, branch in zip(parts, self.pools, self.branches, strict=True):
            y = branch(pool(part))
            if y.shape[3] != self.size[1]:
                y = F.interpolate(y, size=self.size, mode="nearest")
            outs.append(y)
        return x + self.bn(self.conv_up(torch.cat(outs, dim=1)))
