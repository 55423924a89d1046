"""Tests of fedfr.face.evaluation.metrics against hand-worked cases and brute-force computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from fedfr.face.evaluation.metrics import (
    TopKImpostorScores,
    auto_levels,
    identification_metrics,
    level_key,
    tar_at_far,
    tar_at_far_nearest_roc,
    threshold_at_far,
)


def brute_tar(gen: np.ndarray, imp: np.ndarray, far: float) -> float:
    """Largest TAR over all thresholds t (accept > t) with #imp > t <= far * n; nan if far*n < 1."""
    allowed = far * imp.shape[0] * (1 + 1e-9)
    if allowed < 1:
        return math.nan
    candidates = np.concatenate([[-np.inf], np.unique(np.concatenate([gen, imp]))])
    return max(float(np.mean(gen > t)) for t in candidates if np.sum(imp > t) <= allowed)


def test_threshold_hand_worked():
    imp = np.arange(1, 11) / 10.0  # 0.1 .. 1.0
    gen = np.array([0.75, 0.85, 0.95])
    assert threshold_at_far(imp, 0.2) == pytest.approx(0.8)  # k = 2 -> 3rd largest
    assert tar_at_far(gen, imp, [0.2])[0.2] == pytest.approx(2 / 3)
    assert math.isnan(threshold_at_far(imp, 0.05))  # k = 0: FAR below 1/n
    assert threshold_at_far(imp, 1.0) == -math.inf
    assert tar_at_far(gen, imp, [1.0])[1.0] == 1.0
    # float rounding: 0.29 * 100 = 28.999999999999996 must still give k = 29
    many = np.arange(100, dtype=np.float64)
    assert threshold_at_far(many, 0.29) == 70.0
    assert math.isnan(threshold_at_far(np.empty(0), 0.1))
    with pytest.raises(ValueError, match="far"):
        threshold_at_far(imp, 0.0)
    with pytest.raises(ValueError, match="impostor_scores"):
        threshold_at_far(np.array([0.1, np.nan]), 0.5)


def test_threshold_with_ties_counts():
    imp = np.array([0.5, 0.5, 0.5, 0.5, 0.2, 0.1])
    # k = 1: 2nd largest is 0.5, nothing exceeds it (ties make the measured FAR 0 <= 1/6)
    assert threshold_at_far(imp, 1 / 6) == 0.5
    assert threshold_at_far(imp, 4 / 6) == 0.2  # k = 4: exactly 4 exceed 0.2
    assert tar_at_far(np.array([0.5, 0.2]), imp, [4 / 6])[4 / 6] == 0.5  # strict >


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tar_at_far_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    gen = np.round(rng.normal(0.5, 0.2, 300), 2)
    imp = np.round(rng.normal(0.0, 0.2, 2000), 2)
    fars = [1e-4, 4e-4, 5e-4, 1e-3, 3e-3, 1e-2, 0.05, 0.1, 0.5]
    ours = tar_at_far(gen, imp, fars)
    for far in fars:
        expected = brute_tar(gen, imp, far)
        if math.isnan(expected):
            assert math.isnan(ours[far]), far
        else:
            assert ours[far] == pytest.approx(expected), far
        thr = threshold_at_far(imp, far)
        if not math.isnan(thr):
            k = int(math.floor(far * imp.shape[0] * (1 + 1e-9)))
            assert np.sum(imp > thr) <= k < np.sum(imp >= thr)
    assert math.isnan(ours[1e-4]) and math.isnan(ours[4e-4])  # 1e-4 * 2000 < 1


def test_tar_at_far_matches_sklearn_roc_tie_free():
    rng = np.random.default_rng(3)
    gen = rng.normal(0.4, 0.25, 500)
    imp = rng.normal(0.0, 0.25, 5000)
    y = np.r_[np.ones(500), np.zeros(5000)]
    fpr, tpr, _ = roc_curve(y, np.r_[gen, imp], drop_intermediate=False)
    fars = [2e-4, 1e-3, 1e-2, 0.1, 0.3]
    ours = tar_at_far(gen, imp, fars)
    for far in fars:
        assert ours[far] == pytest.approx(tpr[fpr <= far + 1e-12].max()), far


def test_nearest_roc_rule():
    gen = np.array([0.9, 0.8, 0.3])
    imp = np.array([0.85, 0.5, 0.2, 0.1])
    # sklearn points (fpr, tpr): (0,0) (0,1/3) (1/4,1/3) (1/4,2/3) (1/2,2/3) (1/2,1) ... (1,1);
    # drop_intermediate keeps the corners. Nearest to 0.25 is the first (1/4, 1/3) point.
    out = tar_at_far_nearest_roc(gen, imp, [0.25, 0.5, 1e-3])
    assert out[0.25] == pytest.approx(1 / 3)
    assert out[0.5] == pytest.approx(2 / 3)
    assert out[1e-3] == pytest.approx(0.0)
    assert math.isnan(tar_at_far_nearest_roc(gen, np.empty(0), [0.1])[0.1])


@pytest.mark.parametrize("batch", [1, 7, 100, 5000])
def test_topk_impostor_scores_equals_full_sort(batch):
    rng = np.random.default_rng(batch)
    scores = np.round(rng.normal(size=3000), 1).astype(np.float32)  # many ties
    top = TopKImpostorScores(max_far=0.05, expected_total=scores.size)
    for a in range(0, scores.size, batch):
        top.update(scores[a:a + batch])
    assert top.count == scores.size
    assert top.kept <= math.ceil(0.05 * scores.size) + 1
    for far in [1e-4, 1e-3, 3.3e-3, 1e-2, 0.05]:
        expected = threshold_at_far(scores, far)
        got = top.threshold(far)
        assert (math.isnan(expected) and math.isnan(got)) or got == expected, far
    with pytest.raises(ValueError, match="kept"):
        top.threshold(0.2)


def test_topk_keep_all_when_total_unknown():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=1000).astype(np.float32)
    top = TopKImpostorScores(max_far=0.01)
    top.update(scores[:400])
    top.update(scores[400:].reshape(20, 30))
    assert top.kept == 1000
    for far in [1e-3, 0.01, 0.5, 1.0]:
        assert top.threshold(far) == threshold_at_far(scores, far)


def _tiny_case():
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    gl = np.array([10, 20])
    s = math.sqrt(1 - 0.75**2)
    probes = np.array([
        [1.0, 0.0],     # mated 10: top 10 @ 1.0   correct
        [0.6, 0.8],     # mated 10: top 20 @ 0.8   wrong (rank 2)
        [0.28, 0.96],   # mated 20: top 20 @ 0.96  correct
        [0.8, 0.6],     # mated 20: top 10 @ 0.8   wrong (rank 2)
        [0.75, s],      # mated 10: top 10 @ 0.75  correct
        [0.6, 0.8],     # non-mated: top 0.8
        [0.96, 0.28],   # non-mated: top 0.96
        [math.sqrt(0.5), math.sqrt(0.5)],  # non-mated: top 0.7071
        [-1.0, 0.0],    # non-mated: top 0.0
    ])
    pl = np.array([10, 10, 20, 20, 10, 99, 98, 97, 96])
    return probes, pl, g, gl


def test_identification_hand_worked():
    probes, pl, g, gl = _tiny_case()
    out = identification_metrics(probes, pl, g, gl, fpirs=[0.1, 0.25, 0.5], ranks=(1, 2),
                                 chunk_size=2)
    assert out["num_mated"] == 5 and out["num_nonmated"] == 4
    assert out["rank1"] == pytest.approx(3 / 5)
    assert out["rank2"] == pytest.approx(1.0)
    assert math.isnan(out["tpir@1e-01"])            # k = floor(0.4) = 0
    assert out["tpir@2.5e-01"] == pytest.approx(2 / 5)  # thr 0.8 (2nd largest): 1.0, 0.96
    assert out["tpir@5e-01"] == pytest.approx(3 / 5)    # thr 0.7071: also 0.75


def test_identification_rejects_bad_input():
    probes, pl, g, gl = _tiny_case()
    with pytest.raises(ValueError, match="gallery_labels"):
        identification_metrics(probes, pl, g, np.array([1, 1]), fpirs=[0.1])
    with pytest.raises(ValueError, match="probe_labels"):
        identification_metrics(probes, pl[:3], g, gl, fpirs=[0.1])
    with pytest.raises(ValueError, match="d="):
        identification_metrics(probes, pl, np.ones((2, 3)), gl, fpirs=[0.1])


def brute_identification(pf, pl, gf, gl, fpirs, ranks):
    s = pf.astype(np.float64) @ gf.astype(np.float64).T
    mated = np.array([lab in set(gl.tolist()) for lab in pl])
    order = np.argsort(-s, axis=1)
    out = {}
    for r in ranks:
        hits = [pl[i] in gl[order[i, :r]] for i in range(len(pl)) if mated[i]]
        out[f"rank{r}"] = float(np.mean(hits))
    non_top = np.sort(s[~mated].max(axis=1))[::-1]
    for f in fpirs:
        k = int(math.floor(f * len(non_top) * (1 + 1e-9)))
        if k < 1:
            out[level_key("tpir", f)] = math.nan
            continue
        thr = non_top[k] if k < len(non_top) else -np.inf
        ok = [gl[order[i, 0]] == pl[i] and s[i, order[i, 0]] > thr
              for i in range(len(pl)) if mated[i]]
        out[level_key("tpir", f)] = float(np.mean(ok))
    out["num_mated"] = float(mated.sum())
    out["num_nonmated"] = float((~mated).sum())
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_identification_random_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    d, g = 8, 15
    gl = rng.permutation(40)[:g]
    gf = rng.normal(size=(g, d))
    gf /= np.linalg.norm(gf, axis=1, keepdims=True)
    pl = rng.integers(0, 40, size=120)
    pf = rng.normal(size=(120, d)) * 0.8
    known = np.isin(pl, gl)
    pf[known] += gf[[int(np.flatnonzero(gl == lab)[0]) for lab in pl[known]]]
    pf /= np.linalg.norm(pf, axis=1, keepdims=True)
    fpirs = [0.005, 0.02, 0.1, 0.3]
    out = identification_metrics(pf, pl, gf, gl, fpirs, ranks=(1, 3, 5), chunk_size=17)
    expected = brute_identification(pf, pl, gf, gl, fpirs, (1, 3, 5))
    assert set(out) == set(expected)
    for key, val in expected.items():
        if math.isnan(val):
            assert math.isnan(out[key]), key
        else:
            assert out[key] == pytest.approx(val), key


def test_auto_levels_and_level_key():
    assert auto_levels(1000) == [1e-2, 1e-1]
    assert auto_levels(1_000_000) == [1e-5, 1e-4]
    assert auto_levels(100) == [1e-1]
    assert auto_levels(50) == []
    assert auto_levels(10**9, count=3) == [1e-6, 1e-5, 1e-4]
    assert level_key("tar", 1e-4) == "tar@1e-04"
    assert level_key("tpir", 0.1) == "tpir@1e-01"
    assert level_key("tpir", 2.5e-3) == "tpir@2.5e-03"
