"""Hard-negative selection from the public set D_g, and mean-feature class proxies.

A public image is a hard negative for a client when its feature under Theta_g^t has cosine
similarity > t_HN to ANY of the client's private images (t_HN = m = 0.4 in the paper). The
similarity matrix is never built whole: both sides are processed in chunks, so memory stays
O(chunk_size^2 + chunk_size*d) for |D_g|, |D_l| in the 100k-1M range.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["max_cosine_similarity", "select_hard_negatives", "mean_class_features"]


def _check_features(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a 2-D feature tensor (N, d), got {got}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")


def _check_chunk(chunk_size: int) -> int:
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    return int(chunk_size)


@torch.no_grad()
def max_cosine_similarity(queries: Tensor, keys: Tensor, chunk_size: int = 4096) -> Tensor:
    """For each query, the largest cosine similarity to any key.

    queries: (Nq,d); keys: (Nk,d); any scale (normalised here, in float32). Returns (Nq,) float32
    on the queries' device; -inf everywhere when there are no keys. At most a
    chunk_size x chunk_size block of similarities exists at any time.
    """
    _check_features("queries", queries)
    _check_features("keys", keys)
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries have feature size {queries.shape[1]} but keys have "
                         f"{keys.shape[1]}")
    chunk = _check_chunk(chunk_size)
    keys = keys.to(queries.device)
    out = torch.full((queries.shape[0],), float("-inf"), dtype=torch.float32,
                     device=queries.device)
    for qs in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[qs:qs + chunk].float(), dim=1)
        best = out[qs:qs + chunk]
        for ks in range(0, keys.shape[0], chunk):
            k = F.normalize(keys[ks:ks + chunk].float(), dim=1)
            torch.maximum(best, (q @ k.t()).amax(dim=1), out=best)
    return out


@torch.no_grad()
def select_hard_negatives(public_feats: Tensor, local_feats: Tensor, threshold: float = 0.4,
                          chunk_size: int = 4096) -> Tensor:
    """Indices of D_HN: public images whose cosine to ANY local image is > threshold (strict).

    public_feats: (Ng,d); local_feats: (Nl,d). Returns sorted (n,) long indices into public_feats.
    threshold <= -1 selects every public image (the paper's t_HN -> -1, "all of D_g"), even
    with no local images; otherwise an empty local set selects nothing.
    """
    _check_features("public_feats", public_feats)
    _check_features("local_feats", local_feats)
    if threshold <= -1.0:
        return torch.arange(public_feats.shape[0], device=public_feats.device)
    sims = max_cosine_similarity(public_feats, local_feats, chunk_size=chunk_size)
    return torch.nonzero(sims > threshold).flatten()


@torch.no_grad()
def mean_class_features(feats: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per-class proxy: the L2-normalised mean of the L2-normalised features of that class.

    feats: (N,d); labels: (N,) integer in 0..num_classes-1. Returns (num_classes, d) float32
    (FedFace's mean-feature initialisation of a class matrix). Raises ValueError if a class has
    no samples.
    """
    _check_features("feats", feats)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != feats.shape[0]:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected a 1-D tensor of length {feats.shape[0]}, got {got}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels: expected an integer tensor, got dtype {labels.dtype}")
    labels = labels.long().to(feats.device)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels: expected values in [0, {num_classes - 1}], got min "
                         f"{int(labels.min())} and max {int(labels.max())}")
    counts = torch.bincount(labels, minlength=num_classes)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        shown = empty[:10] + (["..."] if len(empty) > 10 else [])
        raise ValueError(f"mean_class_features: {len(empty)} of {num_classes} classes have no "
                         f"samples: {shown}")
    sums = torch.zeros(num_classes, feats.shape[1], dtype=torch.float32, device=feats.device)
    sums.index_add_(0, labels, F.normalize(feats.float(), dim=1))
    return F.normalize(sums, dim=1)
