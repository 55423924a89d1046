"""Video re-ID models of dissertation Ch. 2 by name (``build_video_model``), on the image re-ID
trunks (ResNet-50 with last stride 1, or the small CPU trunk).

Names (Table 2.1's rows, plus the ablations of Tables 2.3-2.5):

- ``baseline``: no attention, 3D average feature pooling (FPL); ``baseline_max``: max-FPL.
- ``nvan``: 5 full embedded-Gaussian non-local blocks after conv3_3, conv3_4, conv4_4, conv4_5,
  conv4_6 (ResNet-50 ``layer2[2..3]``, ``layer3[3..5]``), FPL, BNNeck.
- ``nvan_spatial``: the same with stripe (spatial-reduction) blocks, ``stripes`` S = 16 (4, 8).
- ``nvan_temporal``: full blocks plus temporal max-pooling after conv3_x and conv4_x (Table 2.5
  "+stage 3"); ``nvan_temporal_stage4``: pooling after conv4_x only ("+stage 4").
- ``ste_nvan``: stripe blocks and both poolings; ``temporal_group=2`` = the authors' code.
- ``cf_aan``: 5 coarse-to-fine axial-attention blocks (S = 4 scales, 2 heads each) at the same
  positions, masked FPL; built for one clip length (6) and input size.

On the small trunk (``backbone="small_reid"``, 3 one-block stages) the blocks go after the
first stage (2 blocks, like conv3) and the second (3 blocks, like conv4); at 128x64 input their
maps are 32x16 and 16x8, ResNet-50's at 256x128.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from fedfr.errors import ConfigError
from fedfr.reid.models import build_reid_model, resolve_reid_model_name
from fedfr.reid.models.video.axial import AxialAttention, CoarseToFineAxialBlock
from fedfr.reid.models.video.net import (
    POOLINGS,
    TemporalMaxPool,
    VideoReidNet,
    block_geometry,
    trunk_parts,
)
from fedfr.reid.models.video.nonlocal_block import NonLocalBlock

__all__ = [
    "AxialAttention",
    "CoarseToFineAxialBlock",
    "NonLocalBlock",
    "POOLINGS",
    "TemporalMaxPool",
    "VIDEO_MODELS",
    "VideoReidNet",
    "attention_positions",
    "block_geometry",
    "build_video_model",
    "default_input_size",
    "list_video_models",
    "trunk_parts",
]

#: name -> (attention kind, temporal pooling, FPL pooling, default clip length)
VIDEO_MODELS: dict[str, tuple[str | None, str, str, int]] = {
    "baseline": (None, "none", "avg", 8),
    "baseline_max": (None, "none", "max", 8),
    "nvan": ("nonlocal", "none", "avg", 8),
    "nvan_spatial": ("stripe", "none", "avg", 8),
    "nvan_temporal": ("nonlocal", "stage3+4", "avg", 8),
    "nvan_temporal_stage4": ("nonlocal", "stage4", "avg", 8),
    "ste_nvan": ("stripe", "stage3+4", "avg", 8),
    "cf_aan": ("cf_aa", "none", "avg", 6),
}
_ALIASES = {"c2d": "baseline", "ste-nvan": "ste_nvan", "cf-aan": "cf_aan",
            "nvan+spatial": "nvan_spatial", "nvan+temporal": "nvan_temporal"}
#: Table 2.3: number of blocks -> which (stage role, k-th from the end) positions
LAYER_SETS = {5: ((0, 2), (1, 3)), 3: ((0, 1), (1, 2)), 1: ((0, 0), (1, 1))}


def list_video_models() -> list[str]:
    """Canonical names accepted by ``build_video_model``."""
    return list(VIDEO_MODELS)


def default_input_size(backbone: str) -> tuple[int, int]:
    """(H, W): 256x128 for the resnets (the thesis), 128x64 for the small trunk."""
    return (128, 64) if resolve_reid_model_name(backbone) == "small_reid" else (256, 128)


def attention_positions(stages: list[list[nn.Module]], layers: int = 5) -> list[tuple[int, int]]:
    """(stage, block) positions: the last blocks of the two stages before the last one (the
    thesis's conv3_x / conv4_x): 2 + 3 for 5 blocks, conv3_4 + conv4_5, conv4_6 for 3, conv4_6
    for 1. A stage with fewer blocks repeats its last block's position."""
    if layers not in LAYER_SETS:
        raise ConfigError(f"video re-ID: attention_layers must be one of {sorted(LAYER_SETS)}, "
                          f"got {layers!r}")
    if len(stages) < 3:
        raise ConfigError("video re-ID: the trunk needs at least 3 stages")
    (k3, k4) = (LAYER_SETS[layers][0][1], LAYER_SETS[layers][1][1])
    pos = []
    for s, k in ((len(stages) - 3, k3), (len(stages) - 2, k4)):
        n = len(stages[s])
        pos += [(s, max(n - k + i, 0) if n >= k else min(i, n - 1)) for i in range(k)]
    return pos


def build_video_model(name: str, *, backbone: str = "resnet50", clip_len: int | None = None,
                      input_size: tuple[int, int] | None = None, stripes: int = 16,
                      temporal_group: int | None = None, attention_layers: int = 5,
                      scales: int = 4, heads: int = 2, pooling: str | None = None,
                      neck: str = "bnneck", last_stride: int = 1,
                      pretrained_path: str | Path | None = None,
                      positions: Sequence[tuple[int, int]] | None = None) -> VideoReidNet:
    """A fresh video re-ID net: (B, T, 3, H, W) -> (f, f_bn).

    backbone: an image re-ID trunk name (resnet50, small_reid, ...); pretrained_path: its local
    state_dict (ImageNet or an image re-ID trunk); clip_len: T (default 8, CF-AAN 6), enforced only
    by CF-AAN; input_size: (H, W) (default 256x128, 128x64 for small_reid), needed by CF-AAN and
    by the stripe check; stripes: S of the stripe blocks (H' of each block's map must be a
    multiple); temporal_group: NL attends within groups of this many frames (None = all);
    attention_layers: 5, 3 or 1 (Table 2.3); scales / heads: CF-AA's S and M; pooling: "avg" /
    "max" FPL (default: the variant's); positions: explicit (stage, block) places of the
    attention blocks (0-based, repeats allowed), overriding ``attention_layers``.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key not in VIDEO_MODELS:
        raise ConfigError(f"video re-ID model: unknown name {name!r}; valid names are "
                          f"{list_video_models()} (aliases: {sorted(_ALIASES)})")
    kind, tpool, fpl, t_default = VIDEO_MODELS[key]
    t = t_default if clip_len is None else clip_len
    if type(t) is not int or t < 1:
        raise ConfigError(f"video re-ID: clip_len must be a positive int, got {clip_len!r}")
    size = tuple(input_size) if input_size is not None else default_input_size(backbone)
    trunk = build_reid_model(backbone, last_stride=last_stride,
                             pretrained_path=pretrained_path).backbone
    _, stages = trunk_parts(trunk)
    geo = block_geometry(trunk, size)
    pool_after = {"none": (), "stage4": (len(stages) - 2,),
                  "stage3+4": (len(stages) - 3, len(stages) - 2)}[tpool]
    attention: dict[tuple[int, int], list[nn.Module]] = {}
    places: list[tuple[int, int]] = []
    if kind is not None:
        places = (attention_positions(stages, attention_layers) if positions is None
                  else [tuple(p) for p in positions])
        for s, b in places:
            if not (0 <= s < len(stages) and 0 <= b < len(stages[s])):
                raise ConfigError(f"video re-ID: no block {b} in stage {s} of {backbone}")
            c, h, w = geo[s][b]
            t_here = t // 2 ** sum(1 for p in pool_after if p < s)
            if kind == "cf_aa":
                block: nn.Module = CoarseToFineAxialBlock(c, (t_here, h, w), scales, heads)
            else:
                s_n = stripes if kind == "stripe" else None
                if s_n is not None and h % s_n:
                    raise ConfigError(f"video re-ID: {s_n} stripes do not divide the {h}-row map "
                                      f"after stage {s} block {b} ({size[0]}x{size[1]} input)")
                block = NonLocalBlock(c, stripes=s_n, temporal_group=temporal_group)
            attention.setdefault((s, b), []).append(block)
    model = VideoReidNet(trunk, name=key, attention=attention, temporal_pool_after=pool_after,
                         pooling=pooling or fpl, neck=neck,
                         clip_len=t if kind == "cf_aa" else None,
                         input_size=size if kind == "cf_aa" else None)
    model.config = {"name": key, "backbone": resolve_reid_model_name(backbone), "clip_len": t,
                    "input_size": list(size), "stripes": stripes if kind == "stripe" else None,
                    "temporal_group": temporal_group, "attention_layers": attention_layers,
                    "scales": scales if kind == "cf_aa" else None,
                    "heads": heads if kind == "cf_aa" else None, "pooling": pooling or fpl,
                    "neck": neck, "last_stride": last_stride,
                    "positions": [list(p) for p in places]}
    return model
