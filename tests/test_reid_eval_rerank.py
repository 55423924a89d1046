"""k-reciprocal re-ranking: the sparse implementation equals the dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedfr.errors import ConfigError
from fedfr.reid.evaluation.rank import distance_matrix, evaluate_rank
from fedfr.reid.evaluation.rerank import (
    jaccard_distance_dense,
    kreciprocal_jaccard,
    re_ranking,
    re_ranking_dense,
    reranked_rank,
)


def clustered(rng, n, ids, dim, noise, integer=False):
    labels = rng.integers(0, ids, n)
    centres = rng.standard_normal((ids, dim)) * 3
    x = centres[labels] + noise * rng.standard_normal((n, dim))
    if integer:
        x = np.round(x)  # integer features: exact distances and many exact ties
    return x, labels


def dense_inputs(x, nq, metric="euclidean"):
    """The three blocks the reference takes, as *base* (already squared) distances."""
    d = np.maximum(distance_matrix(x, x, metric).numpy(), 0)
    d = (d + d.T) / 2  # exactly symmetric, as the reference assumes
    if metric == "cosine":
        d = d ** 2
    return d[:nq, nq:], d[:nq, :nq], d[nq:, nq:]


@pytest.mark.parametrize("seed,k1,k2,integer", [(0, 20, 6, False), (1, 20, 6, True),
                                                (2, 7, 3, True), (3, 5, 1, False),
                                                (4, 12, 4, True)])
def test_sparse_equals_dense_reference(seed, k1, k2, integer):
    rng = np.random.default_rng(seed)
    x, _ = clustered(rng, 90, 9, 6, 1.2, integer)
    nq = 25
    ref = re_ranking_dense(*dense_inputs(x, nq), k1=k1, k2=k2, lambda_value=0.3, square=False)
    for chunk in (7, 512):
        got = re_ranking(x[:nq], x[nq:], k1=k1, k2=k2, lambda_value=0.3, chunk=chunk)
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)
    if integer:  # float32 path (composite-key top-k) on exactly representable distances
        got32 = re_ranking(x[:nq].astype(np.float32), x[nq:].astype(np.float32), k1=k1, k2=k2)
        np.testing.assert_allclose(got32.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_reference_squares_euclidean_inputs():
    rng = np.random.default_rng(5)
    x, _ = clustered(rng, 40, 4, 5, 1.0)
    qg, qq, gg = dense_inputs(x, 10)
    a = re_ranking_dense(np.sqrt(qg), np.sqrt(qq), np.sqrt(gg), k1=6, k2=3)
    b = re_ranking_dense(qg, qq, gg, k1=6, k2=3, square=False)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_cosine_metric_equals_reference():
    rng = np.random.default_rng(6)
    x, _ = clustered(rng, 60, 6, 8, 1.0)
    ref = re_ranking_dense(*dense_inputs(x, 20, "cosine"), k1=8, k2=3, square=False)
    got = re_ranking(x[:20], x[20:], k1=8, k2=3, metric="cosine")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)


def test_one_set_jaccard_dense_and_sparse():
    rng = np.random.default_rng(7)
    x, _ = clustered(rng, 70, 7, 6, 1.0, integer=True)
    d = np.maximum(distance_matrix(x, x).numpy(), 0)
    ref = jaccard_distance_dense(d, k1=10, k2=4, square=False)
    got = kreciprocal_jaccard(x, k1=10, k2=4, chunk=16)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)
    sp = kreciprocal_jaccard(x, k1=10, k2=4, chunk=16, sparse=True)
    dense_from_sparse = np.ones_like(ref)
    idx = sp.indices().numpy()
    dense_from_sparse[idx[0], idx[1]] = sp.values().numpy()
    np.testing.assert_allclose(dense_from_sparse, ref, rtol=1e-9, atol=1e-12)
    assert (ref[idx[0], idx[1]] < 1).all() and np.allclose(np.diag(ref), 0)


def test_re_ranking_improves_a_noisy_ranking():
    rng = np.random.default_rng(8)
    x, labels = clustered(rng, 400, 20, 16, 3.5)
    x = x.astype(np.float32)
    cams = rng.integers(0, 3, 400)
    q, g = slice(0, 100), slice(100, 400)
    base = evaluate_rank(distance_matrix(x[q], x[g]), labels[q], labels[g], cams[q], cams[g])
    rr = evaluate_rank(re_ranking(x[q], x[g]), labels[q], labels[g], cams[q], cams[g])
    assert rr.mAP > base.mAP + 0.02  # the method's point: mAP goes up on clustered data


def test_options_are_checked():
    with pytest.raises(ConfigError, match="lambda_value=1.5"):
        re_ranking(np.zeros((2, 2)), np.zeros((3, 2)), lambda_value=1.5)
    with pytest.raises(ConfigError, match="k1=0"):
        kreciprocal_jaccard(np.zeros((2, 2)), k1=0)
    with pytest.raises(ValueError, match="qf has 2 dims, gf has 3"):
        re_ranking(torch.zeros(2, 2), torch.zeros(3, 3))


def test_reranked_rank_equals_ranking_the_reranked_matrix():
    rng = np.random.default_rng(9)
    x, labels = clustered(rng, 300, 15, 12, 3.0)
    cams = rng.integers(0, 3, 300)
    q, g = slice(0, 80), slice(80, 300)
    lab = (labels[q], labels[g], cams[q], cams[g])
    for ap in ("noninterp", "trapezoid"):
        want = evaluate_rank(re_ranking(x[q], x[g], k1=10, k2=4), *lab, ap=ap)
        got = reranked_rank(x[q], x[g], *lab, k1=10, k2=4, chunk=17, ap=ap)
        np.testing.assert_allclose(got.cmc, want.cmc)
        assert got.mAP == pytest.approx(want.mAP, abs=1e-12) and got.ap_convention == ap
        assert got.mINP == pytest.approx(want.mINP, abs=1e-12)
