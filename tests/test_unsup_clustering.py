"""HSR's DBSCAN on the streamed k-reciprocal Jaccard graph equals the dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedfr.errors import ConfigError
from fedfr.reid.evaluation import jaccard_distance_dense
from fedfr.reid.unsup.clustering import (
    cluster_stats,
    dbscan_dense,
    dbscan_labels,
    eps_dense,
    eps_from_smallest,
    jaccard_graph,
    relabel,
)


def _blobs(n_ids=12, per=8, dim=16, noise=0.25, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_ids, dim, generator=g)
    x = centres.repeat_interleave(per, 0) + noise * torch.randn(n_ids * per, dim, generator=g)
    return x, torch.arange(n_ids).repeat_interleave(per)


def test_eps_heuristic_by_hand():
    # 5 items -> 10 pairs; rho 0.3 -> m = 3 smallest of the given values, the rest at 1
    assert eps_from_smallest(np.array([0.5, 0.1, 0.2, 0.9]), 5, 0.3) == pytest.approx(
        (0.1 + 0.2 + 0.5) / 3)
    assert eps_from_smallest(np.array([0.2]), 5, 0.3) == pytest.approx((0.2 + 1 + 1) / 3)
    with pytest.raises(ConfigError):
        eps_from_smallest(np.array([0.2]), 5, 0.0)


@pytest.mark.parametrize("chunk", [16, 256])
def test_streamed_graph_matches_dense(chunk):
    x, _ = _blobs()
    dense = jaccard_distance_dense(torch.cdist(x.double(), x.double()).numpy(), k1=6, k2=3)
    rho = 0.02
    g = jaccard_graph(x.double(), rho=rho, k1=6, k2=3, chunk=chunk)
    assert g.eps == pytest.approx(eps_dense(dense, rho), rel=1e-9)
    # the graph holds exactly the upper-triangle pairs within eps
    iu = np.triu_indices(len(x), 1)
    want = {(int(i), int(j)) for i, j, d in zip(*iu, dense[iu], strict=True) if d <= g.eps}
    assert set(zip(g.rows.tolist(), g.cols.tolist(), strict=True)) == want
    np.testing.assert_allclose(g.dist, dense[g.rows, g.cols], atol=1e-9)
    # memory bound: never more than the rho share of pairs (plus one chunk's worth) held
    assert g.pairs_kept_max <= round(rho * len(x) * (len(x) - 1) / 2) + chunk * len(x)
    # DBSCAN on the sparse graph equals DBSCAN on the dense matrix
    np.testing.assert_array_equal(dbscan_labels(g, 4), dbscan_dense(dense, g.eps, 4))


def test_dbscan_recovers_blobs_and_drops_outliers():
    x, y = _blobs(noise=0.1)
    far = 50 * torch.randn(3, x.shape[1], generator=torch.Generator().manual_seed(1))
    feats = torch.cat([x, far])
    g = jaccard_graph(feats, rho=0.06, k1=6, k2=3)
    labels = dbscan_labels(g, 4)
    assert (labels[-3:] == -1).all()
    from sklearn.metrics import v_measure_score
    kept = labels[:-3] >= 0
    assert kept.mean() > 0.6
    assert v_measure_score(y.numpy()[kept], labels[:-3][kept]) > 0.95
    s = cluster_stats(labels)
    assert s["outliers"] >= 3 and s["clusters"] >= 10


def test_fixed_eps_and_relabel():
    x, _ = _blobs()
    g = jaccard_graph(x, eps=0.5, k1=6, k2=3)
    assert g.eps == 0.5 and (g.dist <= 0.5).all()
    with pytest.raises(ConfigError, match="eps=1.0"):
        jaccard_graph(x, eps=1.0)
    np.testing.assert_array_equal(relabel(np.array([5, -1, 5, 2, -3, 2, 7])),
                                  [0, -1, 0, 1, -1, 1, 2])
