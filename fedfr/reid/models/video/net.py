"""VideoReidNet: a 2D re-ID trunk run on B*T frames, attention blocks after chosen blocks,
optional temporal max-pooling after chosen stages, 3D feature pooling and a BNNeck head.

The trunk is the image re-ID trunk unchanged (``ResNetTrunk`` or ``SmallReidTrunk``, kept under
``backbone`` with its own parameter names, so an image re-ID or ImageNet checkpoint loads into it);
attention blocks live in ``attention`` (a ModuleDict keyed ``s<stage>b<block>``, each a ModuleList
run in order after that block) and see the frames as (B, C, T, H, W).
Temporal max-pooling (``TemporalMaxPool``) halves T after a stage with a max over frame pairs
(0, 1), (2, 3), ... (the authors' code). Feature pooling (FPL) is a 3D average over (T, H, W)
(``"avg"``) or a 3D max (``"max"``, Table 2.1's max-FPL); with a padding mask (CF-AAN after DL)
each frame is averaged over its unpadded cells only, then the frames are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.errors import ConfigError
from fedfr.reid.models.head import BNNeck
from fedfr.reid.models.net import NECKS, TEST_FEATURES
from fedfr.reid.models.resnet import ResNetTrunk
from fedfr.reid.models.small import SmallReidTrunk

POOLINGS = ("avg", "max")


def trunk_parts(trunk: nn.Module) -> tuple[list[nn.Module], list[list[nn.Module]]]:
    """(stem modules, stages as lists of blocks) of a ResNetTrunk or SmallReidTrunk."""
    if isinstance(trunk, ResNetTrunk):
        stem = [trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool]
        return stem, [list(layer) for layer in (trunk.layer1, trunk.layer2, trunk.layer3,
                                                trunk.layer4)]
    if isinstance(trunk, SmallReidTrunk):
        return [trunk.stem], [[block] for block in trunk.stages]
    raise ConfigError(f"video re-ID: unsupported trunk {type(trunk).__name__} (expected a "
                      f"ResNetTrunk or SmallReidTrunk)")


def block_geometry(trunk: nn.Module, input_size: tuple[int, int]
                   ) -> list[list[tuple[int, int, int]]]:
    """(C, H, W) after every block of every stage for an input of ``input_size`` (H, W)."""
    h, w = input_size
    geo: list[list[tuple[int, int, int]]] = []
    if isinstance(trunk, ResNetTrunk):
        h, w = _down(h, 4), _down(w, 4)
        strides = (1, 2, 2, trunk.last_stride)
        for layer, stride in zip((trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4),
                                 strides, strict=True):
            h, w = _down(h, stride), _down(w, stride)
            c = [getattr(b, "conv3", None) or b.conv2 for b in layer]
            geo.append([(int(conv.out_channels), h, w) for conv in c])
        return geo
    if isinstance(trunk, SmallReidTrunk):
        h, w = _down(h, 2), _down(w, 2)
        for block, stride in zip(trunk.stages, (2, 2, trunk.last_stride), strict=True):
            h, w = _down(h, stride), _down(w, stride)
            geo.append([(int(block.conv2.out_channels), h, w)])
        return geo
    trunk_parts(trunk)  # raises
    return geo


def _down(n: int, stride: int) -> int:
    return (n - 1) // stride + 1


class TemporalMaxPool(nn.Module):
    """(B, C, T, H, W) -> (B, C, T/2, H, W): max over frame pairs (0, 1), (2, 3), ..."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] % 2:
            raise ValueError(f"temporal max-pooling needs an even number of frames, got "
                             f"{x.shape[2]} (use a clip length divisible by 2^pools)")
        return self.pool(x)


class VideoReidNet(nn.Module):
    """(B, T, 3, H, W) ImageNet-normalised clips -> (f, f_bn), each (B, feature_dim).

    attention: {(stage, block): [modules on (B, C, T, H, W)]} run after that block (0-based
    indices into the trunk's stages); temporal_pool_after: stages after which T is halved;
    clip_len: if set, the only T accepted (CF-AAN's relative embeddings fix T).
    """

    def __init__(self, trunk: nn.Module, *, name: str = "video_reid",
                 attention: dict[tuple[int, int], Sequence[nn.Module]] | None = None,
                 temporal_pool_after: Sequence[int] = (), pooling: str = "avg",
                 neck: str = "bnneck", clip_len: int | None = None,
                 input_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"video re-ID: pooling must be one of {POOLINGS}, got {pooling!r}")
        if neck not in NECKS:
            raise ConfigError(f"video re-ID: neck must be one of {NECKS}, got {neck!r}")
        _, stages = trunk_parts(trunk)
        self.name = name
        self.backbone = trunk
        self.attention = nn.ModuleDict()
        for (s, b), mods in (attention or {}).items():
            if not (0 <= s < len(stages) and 0 <= b < len(stages[s])):
                raise ConfigError(f"video re-ID: no block {b} in stage {s} of {name}'s trunk")
            self.attention[f"s{s}b{b}"] = nn.ModuleList(mods)
        bad = [s for s in temporal_pool_after if not 0 <= s < len(stages)]
        if bad:
            raise ConfigError(f"video re-ID: temporal pooling after unknown stages {bad}")
        self.temporal_pool_after = tuple(sorted(set(temporal_pool_after)))
        self.temporal_pool = TemporalMaxPool()
        self.pooling = pooling
        self.fpl = nn.AdaptiveAvgPool3d(1) if pooling == "avg" else nn.AdaptiveMaxPool3d(1)
        self.feature_dim = int(trunk.out_channels)
        self.neck_kind = neck
        self.neck: nn.Module = BNNeck(self.feature_dim) if neck == "bnneck" else nn.Identity()
        self.clip_len = clip_len
        self.input_size = input_size
        #: how the model was built (``build_video_model`` fills it; export writes it out)
        self.config: dict = {"name": name}

    @staticmethod
    def _to5d(x: Tensor, b: int) -> Tensor:
        bt, c, h, w = x.shape
        return x.reshape(b, bt // b, c, h, w).transpose(1, 2)

    @staticmethod
    def _to4d(x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        return x.transpose(1, 2).reshape(b * t, c, h, w)

    def feature_maps(self, x: Tensor) -> Tensor:
        """x (B, T, 3, H, W) -> the last stage's maps (B, C, T', H', W'), T' after pooling."""
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"{self.name}: expected input (B, T, 3, H, W), got "
                             f"{tuple(x.shape)}")
        b, t = x.shape[0], x.shape[1]
        if self.clip_len is not None and t != self.clip_len:
            raise ValueError(f"{self.name}: built for clips of {self.clip_len} frames, got {t}")
        if self.input_size is not None and tuple(x.shape[3:]) != tuple(self.input_size):
            raise ValueError(f"{self.name}: built for {self.input_size[0]}x{self.input_size[1]} "
                             f"frames, got {x.shape[3]}x{x.shape[4]}")
        y = x.reshape(b * t, *x.shape[2:])
        stem, stages = trunk_parts(self.backbone)  # looked up each call: pruning swaps modules
        for m in stem:
            y = m(y)
        for s, blocks in enumerate(stages):
            for i, block in enumerate(blocks):
                y = block(y)
                key = f"s{s}b{i}"
                if key in self.attention:
                    z = self._to5d(y, b)
                    for attn in self.attention[key]:
                        z = attn(z)
                    y = self._to4d(z)
            if s in self.temporal_pool_after:
                y = self._to4d(self.temporal_pool(self._to5d(y, b)))
        return self._to5d(y, b)

    def pool_features(self, maps: Tensor, mask: Tensor | None = None) -> Tensor:
        """maps (B, C, T, H, W) -> f (B, C); mask (B, T, h, w), 1 = real pixel, any h x w (it
        is area-resized to H x W and thresholded at 0.5; a frame with no cell left uses all)."""
        if mask is None:
            return torch.flatten(self.fpl(maps), 1)
        b, c, t, h, w = maps.shape
        if mask.dim() != 4 or tuple(mask.shape[:2]) != (b, t):
            raise ValueError(f"{self.name}: mask must be (B, T, h, w) = ({b}, {t}, h, w) (T after "
                             f"temporal pooling), got {tuple(mask.shape)}")
        if self.pooling != "avg":
            raise ConfigError(f"{self.name}: masked pooling needs pooling='avg'")
        m = F.interpolate(mask.reshape(b * t, 1, *mask.shape[2:]).float(), size=(h, w),
                          mode="area").reshape(b, 1, t, h, w) > 0.5
        m = torch.where(m.flatten(3).any(-1)[..., None, None], m, torch.ones_like(m)).float()
        per_frame = (maps * m).sum((3, 4)) / m.sum((3, 4))  # (B, C, T)
        return per_frame.mean(2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, 3, H, W) [, mask (B, T, h, w)] -> (f, f_bn), each (B, feature_dim)."""
        f = self.pool_features(self.feature_maps(x), mask)
        return f, self.neck(f)

    @torch.no_grad()
    def embed(self, x: Tensor, *, normalize: bool = False, feature: str = "after",
              mask: Tensor | None = None) -> Tensor:
        """Test feature in eval mode (mode restored): f_bn ("after") or f ("before"),
        L2-normalised if ``normalize``."""
        if feature not in TEST_FEATURES:
            raise ConfigError(f"feature must be one of {TEST_FEATURES}, got {feature!r}")
        was_training = self.training
        self.eval()
        try:
            f, f_bn = self(x, mask)
        finally:
            self.train(was_training)
        out = f_bn if feature == "after" else f
        return F.normalize(out, dim=1) if normalize else out
