"""Evaluation protocols of FedFR: generic (held-out identities) and personalised (per client).

All features are L2-normalised (N, d) float tensors or arrays; a score is a dot product (cosine).
Score matrices are built in blocks of at most chunk_size rows, so no block exceeds chunk_size x N.
Thresholds follow the exact-threshold rule of ``fedfr.face.evaluation.metrics``
(accept score > thr).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from fedfr.face.evaluation.metrics import (
    _as_feats,
    _as_labels,
    auto_levels,
    identification_from_matches,
    identification_metrics,
    level_key,
    tar_at_far,
    top_matches,
)
from fedfr.face.evaluation.streaming import genuine_scores, stream_cross_topk, tar_from_stream

_NORM_TOL = 1e-3


def _normalised_feats(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """(N, d) features -> float32 array; raises unless every row has L2 norm 1 (+-1e-3)."""
    arr = _as_feats(x, name)
    if arr.shape[0]:
        norms = np.linalg.norm(arr, axis=1)
        bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOL)
        if bad.size:
            raise ValueError(f"{name}: features must be L2-normalised; row {int(bad[0])} has "
                             f"norm {float(norms[bad[0]]):.4f}")
    return arr


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _check_chunk(chunk_size: int) -> int:
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return int(chunk_size)


def verification_scores(feats: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                        chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Scores of all unordered pairs i < j: (genuine (same label), impostor (different labels)).

    feats (N, d) L2-normalised, labels (N,). Returns two float32 1-D arrays, pairs in row-major
    order of (i, j). Holds O(N^2) scores in total: meant for N up to ~20k.
    """
    f = _normalised_feats(feats, "feats")
    y = _as_labels(labels, f.shape[0], "labels")
    chunk_size = _check_chunk(chunk_size)
    n = f.shape[0]
    gen: list[np.ndarray] = []
    imp: list[np.ndarray] = []
    for a in range(0, n, chunk_size):
        b = min(a + chunk_size, n)
        s = f[a:b] @ f[a:].T  # rows i in [a, b), columns j in [a, n)
        upper = np.arange(a, n)[None, :] > np.arange(a, b)[:, None]
        same = y[a:b, None] == y[None, a:]
        gen.append(s[upper & same])
        imp.append(s[upper & ~same])
    empty = np.empty(0, dtype=np.float32)
    return (np.concatenate(gen) if gen else empty, np.concatenate(imp) if imp else empty)


def _flat(prefix: str, values: dict[float, float]) -> dict[str, float]:
    return {level_key(prefix, k): float(v) for k, v in values.items()}


def generic_protocol(feats: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                     fars: Sequence[float] | None = None, fpirs: Sequence[float] | None = None,
                     gallery_fraction: float = 0.5, seed: int = 0) -> dict[str, float]:
    """Generic protocol on held-out identities (features from the global model Theta_g).

    feats (N, d) L2-normalised, labels (N,).
    1:1: all pairs i < j -> TAR at each FAR (``fars`` None -> ``auto_levels(#impostors)``).
    1:N open-set: the first ceil(gallery_fraction * #ids) identities in sorted label order are
    enrolled; an enrolled identity's gallery entry is the L2-normalised mean of its first
    max(1, n_id // 2) images (in input order), its remaining images are mated probes; every image
    of the other identities is a non-mated probe. Reports rank1 and TPIR at each FPIR (``fpirs``
    None -> ``auto_levels(#non-mated)``).
    The split is deterministic; ``seed`` is accepted for API stability and has no effect.
    Returns a flat dict of floats: tar@.., rank1, tpir@.., num_genuine, num_impostor, num_gallery,
    num_mated, num_nonmated.
    """
    del seed  # deterministic split (sorted label order, first images)
    f = _normalised_feats(feats, "feats")
    y = _as_labels(labels, f.shape[0], "labels")
    if not (0.0 < gallery_fraction <= 1.0):
        raise ValueError(f"gallery_fraction must lie in (0, 1], got {gallery_fraction}")
    if f.shape[0] == 0:
        raise ValueError("feats: no features to evaluate")

    gen, imp = verification_scores(f, y)
    far_levels = list(fars) if fars is not None else auto_levels(imp.shape[0])
    out: dict[str, float] = _flat("tar", tar_at_far(gen, imp, far_levels))

    ids = np.unique(y)
    enrolled = ids[:math.ceil(gallery_fraction * ids.shape[0])]
    gallery, mated_idx = [], []
    for c in enrolled:
        idx = np.flatnonzero(y == c)
        n_g = max(1, idx.shape[0] // 2)
        gallery.append(_l2n(f[idx[:n_g]].mean(axis=0)))
        mated_idx.append(idx[n_g:])
    probe_idx = np.concatenate(mated_idx + [np.flatnonzero(~np.isin(y, enrolled))])
    num_non = int(np.count_nonzero(~np.isin(y, enrolled)))
    fpir_levels = list(fpirs) if fpirs is not None else auto_levels(num_non)
    ident = identification_metrics(f[probe_idx], y[probe_idx], np.stack(gallery), enrolled,
                                   fpir_levels, ranks=(1,))
    out.update({k: float(v) for k, v in ident.items() if k.startswith(("rank", "tpir"))})
    out["num_genuine"] = float(gen.shape[0])
    out["num_impostor"] = float(imp.shape[0])
    out["num_gallery"] = float(enrolled.shape[0])
    out["num_mated"] = ident["num_mated"]
    out["num_nonmated"] = ident["num_nonmated"]
    return out


def personalized_protocol(local_test_feats: np.ndarray | torch.Tensor,
                          local_test_labels: np.ndarray | torch.Tensor,
                          local_train_feats: np.ndarray | torch.Tensor,
                          local_train_labels: np.ndarray | torch.Tensor,
                          other_test_feats: np.ndarray | torch.Tensor,
                          fars: Sequence[float] = (1e-6, 1e-5),
                          fpirs: Sequence[float] = (1e-5, 1e-4),
                          chunk_size: int = 4096) -> dict[str, float]:
    """FedFR's personalised protocol for ONE client (features from e.g. [Theta_l, Pi_l]).

    local_test_feats (n, d) with labels (n,), local_train_feats (m, d) with labels (m,) (the
    client's K_l local identities), other_test_feats (o, d): test images of all other clients'
    identities. All L2-normalised.
    1:1: genuine = every pair i < j of local test images with the same label (sum_id C(n_id, 2));
    impostor = every (local test, other test) pair (n * o), streamed in chunk_size x chunk_size
    blocks through ``TopKImpostorScores`` sized for max(fars), never all held. TAR per far, nan
    where far * n * o < 1.
    1:N: gallery = L2-normalised mean training feature of each local identity (K_l entries);
    probes = local test images (mated) and other clients' test images (non-mated); rank1 and
    TPIR per fpir (nan where fpir * o < 1).
    Returns a flat dict of floats: tar@.., rank1, tpir@.., num_genuine, num_impostor,
    num_gallery, num_mated, num_nonmated.
    """
    lt = _normalised_feats(local_test_feats, "local_test_feats")
    yt = _as_labels(local_test_labels, lt.shape[0], "local_test_labels")
    tr = _normalised_feats(local_train_feats, "local_train_feats")
    ytr = _as_labels(local_train_labels, tr.shape[0], "local_train_labels")
    ot = _normalised_feats(other_test_feats, "other_test_feats")
    chunk_size = _check_chunk(chunk_size)
    d = lt.shape[1]
    for name, arr in (("local_train_feats", tr), ("other_test_feats", ot)):
        if arr.shape[1] != d:
            raise ValueError(f"{name}: feature dim {arr.shape[1]} != local_test_feats dim {d}")
    if tr.shape[0] == 0:
        raise ValueError("local_train_feats: no training features to build the gallery")
    gallery_labels = np.unique(ytr)
    missing = np.setdiff1d(np.unique(yt), gallery_labels)
    if missing.size:
        raise ValueError(f"local_test_labels: identity {int(missing[0])} has test images but no "
                         "training images (local_train_labels)")

    # 1:1: genuine = within-identity pairs; impostors streamed local x other in blocks.
    gen = genuine_scores(lt, yt)
    n, o = lt.shape[0], ot.shape[0]
    far_levels = [float(f) for f in fars]
    out: dict[str, float] = {}
    if far_levels:
        top = stream_cross_topk(lt, ot, max(far_levels), chunk_size)
        out.update(tar_from_stream(gen, top, far_levels))

    # 1:N: K_l gallery entries; local probes mated, other clients' probes non-mated.
    gallery = np.stack([_l2n(tr[ytr == c].mean(axis=0)) for c in gallery_labels])
    s_loc, i_loc = top_matches(lt, gallery, 1, chunk_size)
    s_oth, i_oth = top_matches(ot, gallery, 1, chunk_size)
    non_label = int(gallery_labels.min()) - 1
    probe_labels = np.concatenate([yt, np.full(o, non_label, dtype=np.int64)])
    mated = np.concatenate([np.ones(n, bool), np.zeros(o, bool)])
    ident = identification_from_matches(
        gallery_labels[np.concatenate([i_loc, i_oth])], np.concatenate([s_loc, s_oth]),
        probe_labels, mated, list(fpirs), ranks=(1,))
    out.update({k: float(v) for k, v in ident.items() if k.startswith(("rank", "tpir"))})
    out["num_genuine"] = float(gen.shape[0])
    out["num_impostor"] = float(n * o)
    out["num_gallery"] = float(gallery_labels.shape[0])
    out["num_mated"] = ident["num_mated"]
    out["num_nonmated"] = ident["num_nonmated"]
    return out


def average_metrics(dicts: list[dict]) -> dict[str, float]:
    """Mean over clients of each key (union of keys, first-seen order), ignoring nan and missing
    entries; nan for a key whose values are all nan."""
    keys: list[str] = []
    for d in dicts:
        keys.extend(k for k in d if k not in keys)
    out: dict[str, float] = {}
    for k in keys:
        vals = [float(d[k]) for d in dicts if k in d and not math.isnan(float(d[k]))]
        out[k] = sum(vals) / len(vals) if vals else math.nan
    return out
