"""Streaming protocols: all-clients == one-by-one == brute force; pair scoring; TAR / TPIR rules
against independent computations (sklearn ROC, brute force) with ties and tiny FAR levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from fedfr.face.evaluation.metrics import (
    TopKImpostorScores,
    identification_metrics,
    tar_at_far,
    threshold_at_far,
)
from fedfr.face.evaluation.protocols import personalized_protocol
from fedfr.face.evaluation.streaming import (
    pair_scores,
    personalized_all_clients,
    stream_cross_topk,
)


def _l2n(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clients(rng, k=4, ids=5, n_tr=6, n_te=4, d=16, noise=0.6):
    centres = _l2n(rng.normal(size=(k * ids, d)))
    te, tey, tr, trl = [], [], [], []
    for c in range(k):
        y = np.repeat(np.arange(c * ids, (c + 1) * ids), n_te)
        te.append(_l2n(centres[y] + noise * rng.normal(size=(y.size, d))))
        tey.append(y)
        y2 = np.repeat(np.arange(c * ids, (c + 1) * ids), n_tr)
        tr.append(_l2n(centres[y2] + noise * rng.normal(size=(y2.size, d))))
        trl.append(y2)
    return te, tey, tr, trl


@pytest.mark.parametrize("chunk_size", [3, 7, 4096])
def test_all_clients_equals_each_client_alone(chunk_size):
    te, tey, tr, trl = _clients(np.random.default_rng(chunk_size))
    fars, fpirs = (1e-3, 1e-2, 0.1), (1e-2, 0.1, 0.3)
    allc = personalized_all_clients(te, tey, tr, trl, fars, fpirs, chunk_size=chunk_size)
    for c in range(len(te)):
        others = np.concatenate([te[o] for o in range(len(te)) if o != c])
        one = personalized_protocol(te[c], tey[c], tr[c], trl[c], others, fars, fpirs,
                                    chunk_size=chunk_size)
        assert one.keys() == allc[c].keys()
        for key, v in one.items():
            w = allc[c][key]
            assert (math.isnan(v) and math.isnan(w)) or v == pytest.approx(w, abs=1e-12), key
        # brute force for this client: every score in memory
        s = te[c] @ te[c].T
        iu = np.triu_indices(len(tey[c]), 1)
        gen = s[iu][tey[c][iu[0]] == tey[c][iu[1]]]
        imp = (te[c] @ others.T).ravel()
        for f, t in tar_at_far(gen, imp, fars).items():
            got = allc[c][f"tar@{f:.0e}"]
            assert (math.isnan(t) and math.isnan(got)) or got == pytest.approx(t)
        gal = _l2n(np.stack([tr[c][trl[c] == g].mean(0) for g in np.unique(trl[c])]))
        ident = identification_metrics(np.concatenate([te[c], others]),
                                       np.concatenate([tey[c], np.full(len(others), -1)]),
                                       gal, np.unique(trl[c]), fpirs)
        for key in ("rank1", "tpir@1e-01", "tpir@3e-01"):
            assert allc[c][key] == pytest.approx(ident[key]), key


def test_all_clients_undefined_levels_are_nan():
    te, tey, tr, trl = _clients(np.random.default_rng(9), k=2, ids=2, n_te=2)
    out = personalized_all_clients(te, tey, tr, trl, fars=(1e-6,), fpirs=(1e-5,))
    assert math.isnan(out[0]["tar@1e-06"]) and math.isnan(out[1]["tpir@1e-05"])
    with pytest.raises(ValueError, match="at least 2 clients"):
        personalized_all_clients(te[:1], tey[:1], tr[:1], trl[:1])


def test_stream_cross_topk_with_ties_equals_full_threshold():
    rng = np.random.default_rng(1)
    a = np.round(rng.normal(size=(37, 4)), 0).astype(np.float32)  # integer features: many ties
    b = np.round(rng.normal(size=(53, 4)), 0).astype(np.float32)
    full = (a @ b.T).ravel()
    top = stream_cross_topk(a, b, max_far=0.05, chunk_size=8)
    assert top.count == full.size
    for far in (1 / full.size / 2, 1e-3, 0.01, 0.05):
        want, got = threshold_at_far(full, far), top.threshold(far)
        assert (math.isnan(want) and math.isnan(got)) or want == got


@pytest.mark.parametrize("seed", [0, 1])
def test_tar_at_far_against_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    gen = np.round(rng.normal(1.0, 1.0, size=300), 1)
    imp = np.round(rng.normal(0.0, 1.0, size=2000), 1)  # heavy ties
    fars = (1e-4, 4e-4, 1e-3, 1e-2, 0.1, 0.5)
    got = tar_at_far(gen, imp, fars)
    fpr, tpr, thr = roc_curve(np.r_[np.ones(300), np.zeros(2000)], np.r_[gen, imp],
                              drop_intermediate=False)
    for f in fars:
        if f * imp.size < 1:
            assert math.isnan(got[f])  # below 1 / #impostors: undefined, not a crash
            continue
        # brute force: best TAR over all thresholds t (accept > t) with FAR <= f
        cands = np.r_[np.unique(np.r_[gen, imp]), -np.inf]
        best = max(np.mean(gen > t) for t in cands if np.mean(imp > t) <= f)
        assert got[f] == pytest.approx(best)
        # sklearn's ROC (accept >= t): best TPR among points with FPR <= f, shifted one step:
        # accept > t equals accept >= the next larger distinct score
        ok = fpr <= f + 1e-15
        assert got[f] == pytest.approx(tpr[ok].max())


def test_topk_floor_filtering_matches_plain_updates():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=50_000).astype(np.float32)
    a = TopKImpostorScores(1e-3, expected_total=scores.size)
    b = TopKImpostorScores(1e-3, expected_total=scores.size)
    for i in range(0, scores.size, 1000):
        blk = scores[i:i + 1000]
        a.update(blk)
        if b.floor > -math.inf:
            b.update_filtered(blk[blk > b.floor], blk.size)
        else:
            b.update(blk)
    for far in (2e-5, 1e-4, 1e-3):
        assert a.threshold(far) == b.threshold(far) == threshold_at_far(scores, far)
    assert b.kept <= math.ceil(1e-3 * scores.size) + 1


@pytest.mark.parametrize("dense_ratio", [0.0, 4.0, 1e9])
def test_pair_scores_any_order(dense_ratio):
    rng = np.random.default_rng(3)
    f = _l2n(rng.normal(size=(50, 8)))
    left = rng.integers(0, 50, size=700)
    right = rng.integers(0, 50, size=700)
    got = pair_scores(f, left, right, rows_per_block=7, dense_ratio=dense_ratio)
    np.testing.assert_allclose(got, np.einsum("ij,ij->i", f[left], f[right]), atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        pair_scores(f, np.array([0]), np.array([50]))


@pytest.mark.parametrize("cap_far", [1e-5, 1e-3, 0.05])
def test_topk_first_large_batch_sampled_bound_is_exact(cap_far):
    rng = np.random.default_rng(4)
    scores = np.round(rng.normal(size=400_000), 2).astype(np.float32)  # ties
    top = TopKImpostorScores(cap_far, expected_total=scores.size)
    top.update(scores[:300_000])  # first batch: >> 64 x capacity for the small levels
    top.update(scores[300_000:])
    for far in sorted({cap_far, cap_far / 2, 2.5e-6}):
        want, got = threshold_at_far(scores, far), top.threshold(far)
        assert (math.isnan(want) and math.isnan(got)) or want == got


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tpir_at_fpir_brute_force_with_ties(seed):
    from fedfr.face.evaluation.metrics import identification_from_matches, level_key

    rng = np.random.default_rng(seed)
    n_mated, n_non = 60, 150
    top_s = np.round(rng.normal(size=n_mated + n_non), 1).astype(np.float32)  # ties
    mated = np.r_[np.ones(n_mated, bool), np.zeros(n_non, bool)]
    labels = rng.integers(0, 5, size=n_mated + n_non)
    top_l = np.where(rng.random(n_mated + n_non) < 0.8, labels, labels + 100)
    fpirs = (1e-3, 1 / 150, 0.02, 0.1, 0.5)
    out = identification_from_matches(top_l[:, None], top_s[:, None], labels, mated, fpirs)
    correct = (top_l == labels)[mated]
    for f in fpirs:
        got = out[level_key("tpir", f)]
        if f * n_non < 1:
            assert math.isnan(got)
            continue
        cands = np.r_[np.unique(top_s), -np.inf]
        best = max(np.mean(correct & (top_s[mated] > t)) for t in cands
                   if np.mean(top_s[~mated] > t) <= f)
        assert got == pytest.approx(best)


def test_pair_scores_banded_pairs_use_column_subsets():
    # each left row pairs with a narrow band of right rows: per-block column subsets
    rng = np.random.default_rng(5)
    f = _l2n(rng.normal(size=(400, 8)))
    left = np.repeat(np.arange(200), 5)
    right = 200 + (left + np.tile(np.arange(5), 200)) % 200
    perm = rng.permutation(left.size)  # not grouped: exercises the sort too
    got = pair_scores(f, left[perm], right[perm], rows_per_block=10, dense_ratio=4.0)
    np.testing.assert_allclose(got, np.einsum("ij,ij->i", f[left[perm]], f[right[perm]]),
                               atol=1e-6)
