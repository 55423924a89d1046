"""FLOPs and parameters of the video models from fedfr's counter, beside the thesis's tables.

``video_model_cost`` builds a model on the ``meta`` device (no weights allocated, no arithmetic
done: the counter only needs shapes) and counts it on a (1, T, 3, H, W) clip. ``COST_ROWS`` lists
the rows of Tables 2.1, 2.4, 2.5 and 2.8/2.10 with the thesis's reported GFLOPs and the analytic
GMACs of seed-reid.md Appendix H (conv + attention multiply-accumulates, no bias / BN / pooling:
fedfr's ``"eq5.7"`` convention, which counts attention matrix products in both conventions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from fedfr.pruning.counting import Resources, count_resources


@dataclass(frozen=True)
class CostRow:
    """One table row: the model (name + build kwargs), the clip length, the thesis's figure."""

    table: str
    label: str
    model: str
    clip_len: int
    reported_g: float | None
    analytic_g: float | None
    kwargs: dict[str, Any] = field(default_factory=dict)


#: Tables 2.1 / 2.4 / 2.5 at T = 8 and the CF-AAN comparison at T = 6 (ResNet-50, 256x128).
#: reported = the thesis (GFLOPs as printed); analytic = seed-reid.md Appendix H (GMAC).
COST_ROWS: tuple[CostRow, ...] = (
    CostRow("2.1", "ResNet-50 + FPL", "baseline", 8, 30.4, 32.43),
    CostRow("2.1", "ResNet-50 + max-FPL", "baseline_max", 8, 30.4, 32.43),
    CostRow("2.1", "NVAN", "nvan", 8, 60.0, 63.56),
    CostRow("2.1", "NVAN + Spatial Reduc. (S=16)", "nvan_spatial", 8, 30.4, 33.43),
    CostRow("2.1", "NVAN + Temporal Reduc.", "nvan_temporal", 8, 40.4, 42.63),
    CostRow("2.1", "STE-NVAN", "ste_nvan", 8, 16.5, 17.69),
    CostRow("2.1", "STE-NVAN, 2-frame groups (authors' code)", "ste_nvan", 8, None, 17.67,
            {"temporal_group": 2}),
    CostRow("2.1", "NVAN + Temporal, 2-frame groups", "nvan_temporal", 8, None, 29.34,
            {"temporal_group": 2}),
    CostRow("2.4", "NVAN + stripes S=4", "nvan_spatial", 8, 30.4, None, {"stripes": 4}),
    CostRow("2.4", "NVAN + stripes S=8", "nvan_spatial", 8, 30.4, None, {"stripes": 8}),
    CostRow("2.5", "pooling +stage 4", "nvan_temporal_stage4", 8, 53.6, 55.91),
    CostRow("2.5", "pooling +stage 3 (= NVAN + Temporal)", "nvan_temporal", 8, 40.4, 42.63),
    CostRow("2.10", "C2D (T=6)", "baseline", 6, 24.52, 24.32),
    CostRow("2.8", "C2D + 5 non-local (T=6)", "nvan", 6, 24.52 + 17.213, 24.32 + 19.53),
    CostRow("2.8", "C2D + axial, 1 scale, 8 heads (T=6)", "cf_aan", 6, 24.52 + 0.361,
            24.32 + 29.0, {"scales": 1, "heads": 8}),
    CostRow("2.8", "CF-AAN, 4 scales x 2 heads (T=6)", "cf_aan", 6, 24.52 + 0.126, 24.32 + 6.28),
)


def video_model_cost(name: str, *, clip_len: int | None = None,
                     input_size: tuple[int, int] | None = None, backbone: str = "resnet50",
                     convention: str = "eq5.7", **kwargs: Any) -> Resources:
    """Counter's MACs (per clip, batch 1) and parameters of ``build_video_model(name, ...)`` on
    a clip of ``clip_len`` frames (default: the model's) at ``input_size``, built on ``meta``."""
    from fedfr.reid.models.video import VIDEO_MODELS, build_video_model, default_input_size

    size = tuple(input_size) if input_size is not None else default_input_size(backbone)
    with torch.device("meta"):
        model = build_video_model(name, backbone=backbone, clip_len=clip_len, input_size=size,
                                  **kwargs)
    key = model.name
    t = clip_len if clip_len is not None else VIDEO_MODELS[key][3]
    return count_resources(model, torch.zeros(1, t, 3, *size, device="meta"), convention)


def cost_table(backbone: str = "resnet50", input_size: tuple[int, int] | None = None
               ) -> list[dict[str, Any]]:
    """Every ``COST_ROWS`` row counted: dicts with table, label, model, T, reported / analytic /
    measured GMAC (eq. 5.7 + attention), full-convention GMAC and parameters."""
    out = []
    for row in COST_ROWS:
        eq = video_model_cost(row.model, clip_len=row.clip_len, input_size=input_size,
                              backbone=backbone, **row.kwargs)
        full = video_model_cost(row.model, clip_len=row.clip_len, input_size=input_size,
                                backbone=backbone, convention="full", **row.kwargs)
        out.append({"table": row.table, "label": row.label, "model": row.model,
                    "kwargs": row.kwargs, "T": row.clip_len, "reported_gflops": row.reported_g,
                    "analytic_gmac": row.analytic_g, "measured_gmac": eq.flops / 1e9,
                    "measured_gmac_full": full.flops / 1e9, "params": full.params})
    return out
