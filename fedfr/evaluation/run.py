"""Config-level evaluation entry points used by the server and the benchmarks."""

from __future__ import annotations

import math

import torch

from fedfr.evaluation.features import embed
from fedfr.evaluation.metrics import auto_levels
from fedfr.evaluation.protocols import average_metrics, generic_protocol


def evaluate_generic(cfg, ws, backbone: dict[str, torch.Tensor]) -> dict[str, float]:
    """Generic open-set protocol (held-out identities) with model Theta_g (a state_dict)."""
    from fedfr.models import get_model

    model = get_model(cfg.model, embedding_size=cfg.embedding_size, input_size=cfg.image_size)
    model.load_state_dict(backbone)
    images, labels = ws.generic()
    feats = embed(model, images, batch_size=cfg.eval_batch_size, flip=cfg.eval_flip)
    return {k: float(v) for k, v in generic_protocol(feats, labels, seed=cfg.seed).items()}


def split_by_model(per_client: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Average clients' ``<model>.<metric>`` dicts over clients (ignoring nan) and group them."""
    mean = average_metrics(per_client) if per_client else {}
    out: dict[str, dict[str, float]] = {}
    for key, value in mean.items():
        if "." not in key:
            continue
        model, metric = key.split(".", 1)
        out.setdefault(model, {})[metric] = value
    return out


def headline_levels(metrics: dict[str, float], prefix: str, negatives_key: str,
                    count: int = 2) -> list[str]:
    """Keys of the ``count`` smallest reported levels that the data size supports."""
    levels = []
    for key in metrics:
        if key.startswith(prefix + "@"):
            try:
                levels.append(float(key.split("@", 1)[1]))
            except ValueError:
                continue
    n = metrics.get(negatives_key, 0) or 0
    good = [lv for lv in auto_levels(int(n), candidates=tuple(sorted(levels)), count=count)]
    if not good:
        good = sorted(lv for lv in levels if not math.isnan(metrics.get(_key(prefix, lv), 0)))
        good = good[-count:]
    return [_key(prefix, lv) for lv in good]


def _key(prefix: str, level: float) -> str:
    from fedfr.evaluation.metrics import level_key

    return level_key(prefix, level)
