"""Single-gallery-shot protocols: random splits, their summary, and CUHK03's classic CMC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedfr.errors import ConfigError
from fedfr.reid.evaluation.rank import distance_matrix, evaluate_rank, features_to_rank
from fedfr.reid.evaluation.single_shot import (
    cuhk03_single_gallery_shot,
    evaluate_single_shot,
    random_single_shot_splits,
    summarise_splits,
)


def viper_like(rng, n_ids=40, dim=8, noise=1.0):
    """Two cameras, one image per identity per camera (VIPeR's layout), plus 5 distractors."""
    centres = rng.standard_normal((n_ids + 1, dim)) * 2
    pids = np.concatenate([np.repeat(np.arange(1, n_ids + 1), 2), np.zeros(5, np.int64)])
    cams = np.concatenate([np.tile([0, 1], n_ids), np.ones(5, np.int64)])
    feats = centres[pids] + noise * rng.standard_normal((pids.size, dim))
    return feats.astype(np.float32), pids, cams


def test_splits_follow_the_protocol_and_are_seeded():
    rng = np.random.default_rng(0)
    _, pids, cams = viper_like(rng)
    splits = random_single_shot_splits(pids, cams, num_splits=10, seed=3, query_cam=0,
                                       gallery_cam=1)
    again = random_single_shot_splits(pids, cams, num_splits=10, seed=3, query_cam=0,
                                      gallery_cam=1)
    other = random_single_shot_splits(pids, cams, num_splits=10, seed=4, query_cam=0,
                                      gallery_cam=1)
    assert all((a.query == b.query).all() for a, b in zip(splits, again, strict=True))
    assert any((a.query != b.query).any() for a, b in zip(splits, other, strict=True))
    for s in splits:
        assert s.query.size == 20 and (cams[s.query] == 0).all()
        test_ids = set(pids[s.query].tolist())
        assert test_ids == set(pids[s.gallery][pids[s.gallery] > 0].tolist())
        assert (pids[s.gallery] == 0).sum() == 5  # distractors in every gallery
        assert (cams[s.gallery][pids[s.gallery] > 0] == 1).all()
        assert not test_ids & set(pids[s.train].tolist()) and s.train.size == 40
    assert len({tuple(s.query) for s in splits}) > 1  # the splits differ


def test_random_cameras_keep_query_and_gallery_apart():
    rng = np.random.default_rng(1)
    pids = np.repeat(np.arange(1, 31), 4)
    cams = rng.integers(0, 3, pids.size)
    for s in random_single_shot_splits(pids, cams, num_splits=5, num_test_ids=8, seed=0):
        assert s.query.size == 8
        for q, g in zip(s.query, s.gallery, strict=True):
            assert pids[q] == pids[g] and cams[q] != cams[g]


def test_single_shot_summary_is_mean_and_std_of_the_splits():
    rng = np.random.default_rng(2)
    feats, pids, cams = viper_like(rng, noise=1.5)
    splits = random_single_shot_splits(pids, cams, seed=0, query_cam=0, gallery_cam=1)
    results, summary = evaluate_single_shot(feats, pids, cams, splits, max_rank=20)
    r1 = [features_to_rank(feats[s.query], feats[s.gallery], pids[s.query], pids[s.gallery],
                           cams[s.query], cams[s.gallery], max_rank=20).rank(1) for s in splits]
    assert summary["splits"] == 10 and summary["ap"] == "noninterp"
    assert summary["R1"] == pytest.approx(np.mean(r1))
    assert summary["R1_std"] == pytest.approx(np.std(r1, ddof=1))
    assert summary["mAP"] == pytest.approx(np.mean([r.mAP for r in results]))
    # one true match per query: AP = 1 / rank, so mAP >= R1 (the anchors' consistency check)
    assert all(r.mAP >= r.rank(1) for r in results) and summary["R1_std"] > 0


def test_summary_refuses_mixed_conventions_and_empty_input():
    r = evaluate_rank(np.array([[0.1, 0.2]]), [1], [1, 2], [0], [1, 1])
    t = evaluate_rank(np.array([[0.1, 0.2]]), [1], [1, 2], [0], [1, 1], ap="trapezoid")
    with pytest.raises(ValueError, match="different AP conventions"):
        summarise_splits([r, t])
    with pytest.raises(ValueError, match="no split results"):
        summarise_splits([])
    one = summarise_splits([r])
    assert one["R1"] == 1.0 and one["R1_std"] == 0.0


def test_splits_refuse_impossible_sizes():
    with pytest.raises(ConfigError, match="num_test_ids=50"):
        random_single_shot_splits(np.repeat(np.arange(1, 11), 2), np.tile([0, 1], 10),
                                  num_test_ids=50)


def test_cuhk03_equals_standard_cmc_when_each_identity_has_one_image():
    rng = np.random.default_rng(3)
    d = rng.integers(0, 6, (15, 30)).astype(float)  # ties included
    g_pids = np.concatenate([np.arange(1, 21), np.full(10, -1)])  # + 10 junk (-1) images
    g_cams = np.where(np.arange(30) < 20, 1, 0)
    q_pids = rng.integers(1, 21, 15)
    q_cams = np.zeros(15, np.int64)
    std = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    c3 = cuhk03_single_gallery_shot(d, q_pids, g_pids, q_cams, g_cams, max_rank=10, repeats=3)
    np.testing.assert_allclose(c3.cmc, std.cmc)
    assert c3.mAP == std.mAP


def test_cuhk03_cmc_matches_the_exact_expectation():
    """Exact expected CMC by enumerating every draw (one image per identity) on a tiny case."""
    rng = np.random.default_rng(4)
    g_pids = np.array([1, 1, 1, 2, 2, 3, 3, 3, 4])
    g_cams = np.array([1, 2, 0, 1, 2, 1, 1, 2, 1])  # pid 1 at camera 0: junk for the query
    d = rng.integers(0, 4, (1, g_pids.size)).astype(float)
    q_pids, q_cams = np.array([1]), np.array([0])
    keep = [g for g in range(g_pids.size) if not (g_pids[g] == 1 and g_cams[g] == 0)]
    groups = [[g for g in keep if g_pids[g] == p] for p in (1, 2, 3, 4)]
    want = np.zeros(4)
    combos = list(itertools.product(*groups))
    for combo in combos:
        order = sorted(combo, key=lambda g: (d[0, g], g))
        rank = [g_pids[g] for g in order].index(1) + 1
        want += rank <= np.arange(1, 5)
    want /= len(combos)
    got = cuhk03_single_gallery_shot(d, q_pids, g_pids, q_cams, g_cams, max_rank=4,
                                     repeats=40000, seed=0)
    np.testing.assert_allclose(got.cmc, want, atol=0.01)
    same = cuhk03_single_gallery_shot(d, q_pids, g_pids, q_cams, g_cams, max_rank=4,
                                      repeats=50, seed=7)
    again = cuhk03_single_gallery_shot(d, q_pids, g_pids, q_cams, g_cams, max_rank=4,
                                       repeats=50, seed=7)
    np.testing.assert_array_equal(same.cmc, again.cmc)  # seeded


def test_cuhk03_on_features_beats_chance():
    rng = np.random.default_rng(5)
    feats, pids, cams = viper_like(rng, n_ids=30, noise=1.0)
    q = np.flatnonzero((cams == 0) & (pids > 0))
    g = np.flatnonzero(cams == 1)
    d = distance_matrix(feats[q], feats[g])
    r = cuhk03_single_gallery_shot(d, pids[q], pids[g], cams[q], cams[g], max_rank=10)
    assert r.num_valid == 30 and r.rank(1) > 0.3 and r.ap_convention == "noninterp"
