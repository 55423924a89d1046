"""Evaluation: embeddings, 1:1 / 1:N metrics and FedFR's generic and personalised protocols."""

from __future__ import annotations

from fedfr.face.evaluation.features import embed
from fedfr.face.evaluation.metrics import (
    TopKImpostorScores,
    auto_levels,
    identification_metrics,
    level_key,
    tar_at_far,
    tar_at_far_nearest_roc,
    threshold_at_far,
)
from fedfr.face.evaluation.protocols import (
    average_metrics,
    generic_protocol,
    personalized_protocol,
    verification_scores,
)

__all__ = [
    "TopKImpostorScores",
    "auto_levels",
    "average_metrics",
    "embed",
    "generic_protocol",
    "identification_metrics",
    "level_key",
    "personalized_protocol",
    "tar_at_far",
    "tar_at_far_nearest_roc",
    "threshold_at_far",
    "verification_scores",
]
