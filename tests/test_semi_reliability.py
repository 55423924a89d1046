"""fedfr.reid.semi.reliability: tau_l from labelled distance distributions, reliable subsets."""

from __future__ import annotations

import numpy as np
import pytest

from fedfr.errors import ConfigError
from fedfr.reid.semi.reliability import (
    exemplar_distances,
    labelled_tau,
    pair_distances,
    select_reliable,
    tau_from_distances,
    threshold,
)


def test_tau_is_where_the_two_distributions_cross():
    rng = np.random.default_rng(0)
    pos = rng.normal(2.0, 0.5, 4000).clip(0)
    neg = rng.normal(6.0, 1.0, 40000)
    # equal-variance crossing would be at 4; with these widths it is a bit below
    for rule in ("histogram", "balanced"):
        tau = tau_from_distances(pos, neg, rule, bins=200)
        assert 3.0 < tau < 4.2, rule
    hist, bal = (tau_from_distances(pos, neg, r, 200) for r in ("histogram", "balanced"))
    assert abs(hist - bal) < 0.3
    with pytest.raises(ConfigError, match="positive pairs"):
        tau_from_distances(pos[:0], neg)
    with pytest.raises(ConfigError, match="rule"):
        tau_from_distances(pos, neg, "kde")


def test_labelled_tau_on_features_and_sampled_pairs():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 3, (12, 8))
    y = np.repeat(np.arange(12), 10)
    x = centres[y] + rng.normal(0, 0.3, (120, 8))
    pos, neg = pair_distances(x, y)
    assert pos.size == 12 * 45 and neg.size == 120 * 119 // 2 - 12 * 45
    tau = labelled_tau(x, y)
    assert pos.max() < tau * 3 and np.mean(pos < tau) > 0.95 and np.mean(neg < tau) < 0.05
    ps, ns = pair_distances(x, y, max_pairs=2000, seed=0)
    assert ps.size + ns.size == 2000
    assert abs(labelled_tau(x, y, max_pairs=3000) - tau) < 0.5 * tau


def test_exemplar_tau_measures_member_to_exemplar_distances():
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 1.0, (10, 16))
    y = np.repeat(np.arange(10), 12)
    x = centres[y] + rng.normal(0, 0.4, (120, 16))
    pos, neg = exemplar_distances(x, y + 100)  # any integer ids
    assert pos.shape == neg.shape == (120,) and (pos <= neg).mean() > 0.95
    # the exemplar is the member nearest the mean: closer than a typical other member
    pp, _ = pair_distances(x, y)
    assert np.median(pos) < 0.9 * np.median(pp)
    t_ex, t_pw = labelled_tau(x, y, pairs="exemplar"), labelled_tau(x, y)
    assert t_ex < t_pw and np.mean(pos < t_ex) > 0.8
    with pytest.raises(ConfigError, match="pairs"):
        labelled_tau(x, y, pairs="medoid")
    with pytest.raises(ConfigError, match="2\\+ identities"):
        exemplar_distances(x[:5], np.zeros(5, int))


def test_threshold_grows_with_the_iterations():
    assert threshold(5.0, 1) == 5.0
    assert threshold(5.0, 3) == 7.0  # d_t = (t - 1) x 1
    assert threshold(5.0, 3, 0.1, "tau_l") == pytest.approx(6.0)
    with pytest.raises(ConfigError):
        threshold(5.0, 0)


def test_select_reliable_per_cluster():
    x = np.array([[0.0], [0.5], [3.0], [10.0], [10.2], [20.0]])
    labels = np.array([0, 0, 0, 1, 1, -1])
    ex = np.array([0, 3])
    sel = select_reliable(x, labels, ex, tau=1.0)
    assert sel.mask.tolist() == [True, True, False, True, True, False]
    assert sel.distance[2] == pytest.approx(9.0) and np.isinf(sel.distance[5])
    assert sel.share == pytest.approx(4 / 6)
    assert select_reliable(x, labels, ex, tau=0.0).mask.tolist() == [True, False, False, True,
                                                                      False, False]
