"""CMC / mAP / mINP against plainly written brute force, on random cases with many ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedfr.errors import ConfigError
from fedfr.reid.evaluation.rank import (
    distance_matrix,
    evaluate_rank,
    features_to_rank,
)


def brute_force(dist, q_pids, g_pids, q_cams, g_cams, max_rank, junk_pids=(-1,)):
    """Per query: order the gallery by (distance, index), drop junk, read off the hits."""
    cmcs, ap_non, ap_trap, inps = [], [], [], []
    invalid = 0
    for i in range(len(q_pids)):
        order = sorted(range(len(g_pids)), key=lambda g: (dist[i][g], g))
        hits = []
        for g in order:
            if g_pids[g] in junk_pids:
                continue
            if g_pids[g] == q_pids[i] and g_cams[g] == q_cams[i]:
                continue
            hits.append(1 if g_pids[g] == q_pids[i] else 0)
        n = sum(hits)
        if n == 0:
            invalid += 1
            continue
        positions = [r + 1 for r, h in enumerate(hits) if h]  # 1-based ranks of the matches
        cmcs.append([1.0 if positions[0] <= k else 0.0 for k in range(1, max_rank + 1)])
        ap_non.append(sum((j + 1) / r for j, r in enumerate(positions)) / n)
        # Market-1501's MATLAB compute_AP, walked position by position
        ap, old_recall, old_prec, found = 0.0, 0.0, 1.0, 0
        for pos, h in enumerate(hits, start=1):
            found += h
            recall, prec = found / n, found / pos
            ap += (recall - old_recall) * (old_prec + prec) / 2
            old_recall, old_prec = recall, prec
            if found == n:
                break
        ap_trap.append(ap)
        inps.append(n / positions[-1])
    if not cmcs:
        return None, None, None, None, invalid
    return (np.mean(cmcs, axis=0), np.mean(ap_non), np.mean(ap_trap), np.mean(inps), invalid)


def random_case(rng, nq, ng, n_ids, n_cams, levels, junk=True, distractors=True):
    q_pids = rng.integers(1, n_ids + 3, nq)  # some query ids absent from the gallery
    g_pids = rng.integers(1, n_ids + 1, ng)
    if distractors:
        g_pids[rng.random(ng) < 0.15] = 0
    if junk:
        g_pids[rng.random(ng) < 0.1] = -1
    q_cams = rng.integers(0, n_cams, nq)
    g_cams = rng.integers(0, n_cams, ng)
    dist = rng.integers(0, levels, (nq, ng)).astype(np.float64)  # integer values: many ties
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    nq, ng = int(rng.integers(1, 25)), int(rng.integers(1, 80))
    levels = int(rng.choice([2, 3, 5, 50]))
    dist, qp, gp, qc, gc = random_case(rng, nq, ng, int(rng.integers(1, 9)),
                                       int(rng.integers(2, 5)), levels)
    cmc, m_non, m_trap, minp, invalid = brute_force(dist, qp, gp, qc, gc, 10)
    if m_non is not None:
        assert m_trap <= m_non + 1e-15  # the trapezoid never exceeds the non-interpolated AP
    for ap, want in (("noninterp", m_non), ("trapezoid", m_trap)):
        for chunk in (1, 7, 512):
            r = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10, ap=ap, chunk=chunk)
            assert r.num_queries == nq and r.num_invalid == invalid
            assert r.num_valid == nq - invalid
            assert r.ap_convention == ap
            if r.num_valid == 0:
                assert np.isnan(r.mAP) and np.isnan(r.cmc).all()
                continue
            np.testing.assert_allclose(r.cmc, cmc, atol=1e-12)
            assert r.mAP == pytest.approx(want, abs=1e-12)
            assert r.mINP == pytest.approx(minp, abs=1e-12)
            assert r.map_by_convention == pytest.approx({"noninterp": m_non,
                                                         "trapezoid": m_trap}, abs=1e-12)


def test_float32_and_torch_inputs_agree_with_float64():
    rng = np.random.default_rng(3)
    dist, qp, gp, qc, gc = random_case(rng, 40, 300, 12, 3, levels=20)
    want = brute_force(dist, qp, gp, qc, gc, 20)
    for d in (dist.astype(np.float32), torch.from_numpy(dist), dist.astype(np.int64)):
        r = evaluate_rank(d, qp, gp, qc, gc, max_rank=20, chunk=16)
        np.testing.assert_allclose(r.cmc, want[0], atol=1e-12)
        assert r.mAP == pytest.approx(want[1], abs=1e-12)


def test_features_to_rank_equals_evaluate_rank_on_its_distances():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30, 500)
    centres = rng.standard_normal((30, 16)).astype(np.float32)
    feats = centres[ids] + 0.8 * rng.standard_normal((500, 16)).astype(np.float32)
    cams = rng.integers(0, 4, 500)
    qf, gf = feats[:100], feats[100:]
    args = (ids[:100], ids[100:], cams[:100], cams[100:])
    for metric, norm in (("euclidean", False), ("euclidean", True), ("cosine", False)):
        d = distance_matrix(qf, gf, metric, norm).numpy()
        want = brute_force(d, *args, 50)
        for chunk in (1, 33, 1000):
            r = features_to_rank(qf, gf, *args, metric=metric, normalize=norm, chunk=chunk)
            np.testing.assert_allclose(r.cmc, want[0], atol=1e-12)
            assert r.mAP == pytest.approx(want[1], abs=1e-12)
            assert r.mINP == pytest.approx(want[3], abs=1e-12)
    # the ranking is meaningful on these features (not a chance-level sanity pass)
    assert r.rank(1) > 0.5


def test_metric_definitions():
    q = np.array([[1.0, 0.0], [0.0, 2.0]])
    g = np.array([[3.0, 4.0], [1.0, 0.0]])
    np.testing.assert_allclose(distance_matrix(q, g, "euclidean").numpy(),
                               [[20.0, 0.0], [13.0, 5.0]])
    np.testing.assert_allclose(distance_matrix(q, g, "cosine").numpy(),
                               [[0.4, 0.0], [0.2, 1.0]], atol=1e-12)


def test_golden_small_case():
    # gallery: 0 junk (same cam), 1 distractor, 2 match, 3 other id, 4 match, 5 pid -1
    d = np.array([[0.0, 0.1, 0.2, 0.3, 0.5, 0.05]])
    r = evaluate_rank(d, [7], [7, 0, 7, 3, 7, -1], [0], [0, 1, 1, 2, 2, 1], max_rank=5)
    # ranking without junk: distractor, match, other, match -> hits at 2 and 4
    np.testing.assert_allclose(r.cmc, [0, 1, 1, 1, 1])
    assert r.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(2 / 4)
    rt = evaluate_rank(d, [7], [7, 0, 7, 3, 7, -1], [0], [0, 1, 1, 2, 2, 1], ap="trapezoid")
    # precision just before each hit (0/1 at rank 1, 1/3 at rank 3) averaged with the one at it
    assert rt.mAP == pytest.approx(0.5 * ((0 + 1 / 2) / 2 + (1 / 3 + 2 / 4) / 2))
    # without the junk list, pid -1 is an ordinary negative at rank 1
    r2 = evaluate_rank(d, [7], [7, 0, 7, 3, 7, -1], [0], [0, 1, 1, 2, 2, 1], junk_pids=())
    assert r2.first_rank[0] == 3


def test_tie_rule_is_gallery_order():
    # the match (index 1) ties with a negative before it (index 0) and one after it (index 2)
    r = evaluate_rank(np.zeros((1, 3)), [1], [2, 1, 3], [0], [1, 1, 1], max_rank=3)
    np.testing.assert_allclose(r.cmc, [0, 1, 1])
    assert r.first_rank[0] == 2


def test_invalid_queries_are_counted_and_skipped():
    d = np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.6]])
    # query 1's only same-id image is in its own camera; query 2's id is absent
    r = evaluate_rank(d, [1, 2, 9], [1, 2], [0, 1, 0], [1, 1], max_rank=2)
    assert (r.num_queries, r.num_valid, r.num_invalid) == (3, 1, 2)
    np.testing.assert_allclose(r.cmc, [1, 1])
    assert np.isnan(r.per_query_ap[1:]).all() and list(r.first_rank) == [1, 0, 0]
    none = evaluate_rank(d, [5, 6, 7], [1, 2], [0, 0, 0], [1, 1])
    assert none.num_valid == 0 and np.isnan(none.mAP)


def test_summary_names_the_ap_convention():
    r = evaluate_rank(np.array([[0.1, 0.2]]), [1], [1, 2], [0], [1, 1], max_rank=10)
    s = r.summary()
    assert s["ap"] == "noninterp" and s["R1"] == 1.0 and s["invalid"] == 0


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(ConfigError, match="ap='11point'"):
        evaluate_rank(np.zeros((1, 1)), [1], [1], [0], [1], ap="11point")
    with pytest.raises(ValueError, match="g_pids: 1 labels for 2"):
        evaluate_rank(np.zeros((1, 2)), [1], [1], [0], [1, 1])
    with pytest.raises(ValueError, match="query 1 holds NaN"):
        evaluate_rank(np.array([[0.0], [np.nan]]), [1, 1], [1], [0, 0], [1])
    with pytest.raises(ConfigError, match="metric='l1'"):
        features_to_rank(np.zeros((1, 2)), np.zeros((1, 2)), [1], [1], [0], [1], metric="l1")
