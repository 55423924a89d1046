"""Config-level evaluation entry points used by the server and the benchmarks."""

from __future__ import annotations

import math

import torch
from torch import nn

from fedfr.face.evaluation.features import embed
from fedfr.face.evaluation.metrics import _as_labels, auto_levels, level_key
from fedfr.face.evaluation.protocols import (
    _normalised_feats,
    average_metrics,
    generic_protocol,
    personalized_protocol,
)
from fedfr.face.evaluation.streaming import personalized_all_clients
from fedfr.face.models import model_from_config

#: levels reported by the personalised protocol (those the data size cannot support are nan)
PERSONAL_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
PERSONAL_FPIRS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def embed_eval(cfg, model: nn.Module, images: torch.Tensor,
               head: nn.Module | None = None) -> torch.Tensor:
    """Evaluation features (N, d), L2-normalised, with the config's batch size and flip rule."""
    return embed(model, images, batch_size=cfg.eval_batch_size, flip=cfg.eval_flip, head=head)


#: (model digest, settings, split digest) -> {client id: its test features}; newest model only
_SHARED_TEST_FEATS: dict[tuple, dict[int, torch.Tensor]] = {}


def embed_other_clients(cfg, ws, model: nn.Module, client_id: int,
                        head: nn.Module | None = None, share: bool = True) -> torch.Tensor:
    """Features of every other client's test images (``ws.other_clients_test`` order), one
    client's images at a time (no concatenated copy of all their images).

    share=True (for a model every client evaluates, Theta_g): each client's images are embedded
    once per model in this process and reused by every client it evaluates, instead of once
    per client; only the newest shared model's features are kept (all clients' test features,
    N x d floats). share=False (a client's own Theta_l / [Theta_l, Pi_l]): nothing is kept."""
    from fedfr.face.evaluation.cache import model_digest

    feats: dict[int, torch.Tensor] = {}
    if share:
        digest = model_digest(model) + (model_digest(head) if head is not None else "")
        key = (digest, cfg.eval_flip, cfg.eval_batch_size, ws.split.digest())
        if key not in _SHARED_TEST_FEATS:
            _SHARED_TEST_FEATS.clear()
            _SHARED_TEST_FEATS[key] = {}
        feats = _SHARED_TEST_FEATS[key]
    parts = []
    for c in range(len(ws.split.clients)):
        if c == client_id:
            continue
        f = feats.get(c)
        if f is None:
            f = embed_eval(cfg, model, ws.client(c).test_images, head)
            if share:
                feats[c] = f
        parts.append(f)
    if not parts:
        return torch.empty(0, cfg.embedding_size)
    return torch.cat(parts)


def personalized_metrics(test_feats: torch.Tensor, test_labels: torch.Tensor,
                         train_feats: torch.Tensor, train_labels: torch.Tensor,
                         other_feats: torch.Tensor) -> dict[str, float]:
    """One client's personalised protocol at the reported levels (PERSONAL_FARS / _FPIRS)."""
    res = personalized_protocol(test_feats, test_labels, train_feats, train_labels, other_feats,
                                fars=PERSONAL_FARS, fpirs=PERSONAL_FPIRS)
    return {k: float(v) for k, v in res.items()}


def evaluate_generic(cfg, ws, backbone: dict[str, torch.Tensor]) -> dict[str, float]:
    """Generic open-set protocol (held-out identities) with model Theta_g (a state_dict)."""
    model = model_from_config(cfg)
    model.load_state_dict(backbone)
    images, labels = ws.generic()
    feats = embed_eval(cfg, model, images)
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


#: a headline level must let at least this many negatives pass (fewer makes TAR/TPIR noise)
HEADLINE_MIN_NEGATIVES = 20


def headline_levels(metrics: dict[str, float], prefix: str, negatives_key: str,
                    count: int = 2) -> list[str]:
    """Keys of the ``count`` smallest reported levels that the data size supports, i.e. with
    level x #negatives >= HEADLINE_MIN_NEGATIVES (all levels stay in report.json)."""
    levels = []
    for key in metrics:
        if key.startswith(prefix + "@"):
            try:
                levels.append(float(key.split("@", 1)[1]))
            except ValueError:
                continue
    n = metrics.get(negatives_key, 0) or 0
    good = auto_levels(int(n), candidates=tuple(sorted(levels)), count=count,
                       min_count=HEADLINE_MIN_NEGATIVES)
    if not good:
        good = sorted(lv for lv in levels
                      if not math.isnan(metrics.get(level_key(prefix, lv), 0)))
        good = good[-count:]
    return [level_key(prefix, lv) for lv in good]


def evaluate_personalized_central(cfg, ws, backbone: dict[str, torch.Tensor]) -> dict[str, float]:
    """The personalised protocol for one shared model (e.g. the central upper bound), every
    client evaluated in this process (each client's images embedded once) and averaged.

    Uses ``personalized_all_clients``: each pair of clients' test images is scored once and
    feeds both clients' impostor streams (same metrics as evaluating the clients one by one)."""
    model = model_from_config(cfg)
    model.load_state_dict(backbone)
    n = len(ws.split.clients)
    test_f, test_y, train_f, train_y = [], [], [], []
    for c in range(n):
        data = ws.client(c)
        test_f.append(_normalised_feats(embed_eval(cfg, model, data.test_images),
                                        f"client {c} test features"))
        test_y.append(_as_labels(data.test_labels, test_f[-1].shape[0], "test_labels"))
        train_f.append(_normalised_feats(embed_eval(cfg, model, data.train_images),
                                         f"client {c} train features"))
        train_y.append(_as_labels(data.train_labels, train_f[-1].shape[0], "train_labels"))
    per_client = personalized_all_clients(test_f, test_y, train_f, train_y,
                                          fars=PERSONAL_FARS, fpirs=PERSONAL_FPIRS)
    out = {k: float(v) for k, v in average_metrics(per_client).items()}
    out["num_clients"] = float(n)
    return out
