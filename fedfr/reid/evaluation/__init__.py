"""Re-ID evaluation: CMC / mAP / mINP ranking metrics, k-reciprocal re-ranking and the
single-gallery-shot protocol (conventions: docs/reid-evaluation.md); the MARS video protocols
are in ``fedfr.reid.evaluation.mars`` (docs/video-reid.md)."""

from __future__ import annotations

from fedfr.reid.evaluation.rank import (
    AP_CONVENTIONS,
    DEFAULT_AP,
    DistanceBlocks,
    RankResult,
    distance_matrix,
    evaluate_masks,
    evaluate_rank,
    features_to_rank,
)
from fedfr.reid.evaluation.rerank import (
    jaccard_distance_dense,
    kreciprocal_jaccard,
    re_ranking,
    re_ranking_dense,
    reranked_rank,
)
from fedfr.reid.evaluation.single_shot import (
    SingleShotSplit,
    cuhk03_single_gallery_shot,
    evaluate_single_shot,
    evaluate_splits,
    random_single_shot_splits,
    summarise_splits,
)

__all__ = [
    "AP_CONVENTIONS",
    "DEFAULT_AP",
    "DistanceBlocks",
    "RankResult",
    "SingleShotSplit",
    "cuhk03_single_gallery_shot",
    "distance_matrix",
    "evaluate_masks",
    "evaluate_rank",
    "evaluate_single_shot",
    "evaluate_splits",
    "features_to_rank",
    "jaccard_distance_dense",
    "kreciprocal_jaccard",
    "random_single_shot_splits",
    "re_ranking",
    "re_ranking_dense",
    "reranked_rank",
    "summarise_splits",
]
