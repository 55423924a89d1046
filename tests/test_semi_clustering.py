"""fedfr.reid.semi.clustering: AP (dense, k-NN graph) against scikit-learn, the SR preference,
the SG-AP search and its stop rules, DBSCAN."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import AffinityPropagation
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import fedfr.reid.semi.clustering as cl
from fedfr.errors import ConfigError

SK = {"damping": 0.5, "max_iter": 200, "convergence_iter": 15}


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(240, centers=8, cluster_std=0.6, random_state=0)


def test_dense_ap_matches_scikit_learn(blobs):
    x, _ = blobs
    s = cl.similarity_matrix(x)
    for pref in (np.median(s[np.triu_indices(len(x), 1)]), cl.preferences(x, -60.0)):
        ref = AffinityPropagation(affinity="precomputed", preference=pref, random_state=0,
                                  **SK).fit(s)
        ours = cl.affinity_propagation(x, pref, **SK)
        assert ours.converged
        assert adjusted_rand_score(ref.labels_, ours.labels) > 0.97
    ours = cl.affinity_propagation(x, np.median(s[np.triu_indices(len(x), 1)]), **SK)
    assert set(ours.exemplars) == set(ref.cluster_centers_indices_) or ours.num_clusters == 8


def test_knn_graph_ap_agrees_with_dense(blobs):
    x, y = blobs
    pref = cl.preferences(x, cl.median_similarity(x))
    dense = cl.affinity_propagation(x, pref, **SK)
    full = cl.affinity_propagation(x, pref, k=len(x) - 1, **SK)
    assert np.array_equal(dense.labels, full.labels)
    sparse = cl.affinity_propagation(x, pref, k=25, chunk=64, **SK)
    assert adjusted_rand_score(y, sparse.labels) > 0.9
    g = cl.knn_graph(x, pref, 25, chunk=64)
    assert g.idx.shape == (240, 26) and (g.idx[:, 0] == np.arange(240)).all()
    assert g.nbytes < cl.dense_graph(cl.similarity_matrix(x), pref).nbytes / 8


def test_message_assignment_rule(blobs):
    x, y = blobs
    res = cl.affinity_propagation(x, -60.0, assign="messages", **SK)
    assert adjusted_rand_score(y, res.labels) > 0.9
    assert (res.labels[res.exemplars] == np.arange(res.num_clusters)).all()


def test_similarity_ranking_coefficient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4))
    x[0] = 0.0  # the most central point
    x[1] = 8.0  # an outlier
    s = cl.similarity_matrix(x)
    assert np.allclose(cl.similarity_row_sums(x), s.sum(1))
    sr = cl.sr_coefficients(x)
    assert sr.mean() == pytest.approx(1.0)
    assert sr.argmax() == 1 and sr[0] < 1
    pref = cl.preferences(x, -10.0)
    assert pref[0] > pref[1]  # the central point is the likelier exemplar (Eq. 3.3)
    assert (cl.preferences(x, -10.0, "uniform") == -10.0).all()
    with pytest.raises(ConfigError):
        cl.preferences(x, -1.0, "median")


def test_sg_ap_finds_the_labelled_count_and_clusters_the_unlabelled(blobs):
    x, y = make_blobs(300, centers=10, cluster_std=0.5, center_box=(-20, 20), random_state=3)
    lab = y < 5
    res = cl.sg_ap(x[lab], 5, x[~lab], cl.SGAPConfig(k=40, **SK))
    assert res.stop == "match" and res.trace[-1]["count"] == 5
    assert res.trace[0]["p"] == pytest.approx(float(np.median(
        cl.pair_similarities(x[lab]))), rel=0.05)
    assert res.result.num_clusters == 5
    assert adjusted_rand_score(y[~lab], res.result.labels) > 0.9


def test_sg_ap_stops_on_a_stable_count(monkeypatch, blobs):
    x, _ = blobs
    calls = []

    def constant(feats, pref, **kw):
        calls.append(len(feats))
        n = len(feats)
        return cl.APResult(np.arange(n) % 3, np.arange(3), 1, True)

    monkeypatch.setattr(cl, "affinity_propagation", constant)
    res = cl.sg_ap(x[:60], 7, x[60:], cl.SGAPConfig(patience=5))
    assert res.stop == "stable" and len(res.trace) == 5
    assert calls[:5] == [240] * 5 and calls[5] == 180  # joint search, then X^u alone
    res = cl.sg_ap(x[:60], 7, x[60:], cl.SGAPConfig(patience=5, search_on="labelled"))
    assert calls[-2] == 60


def test_dbscan_variants(blobs):
    x, y = blobs
    d = cl.dbscan_default(x * 100)  # eps 0.5 on a raw feature scale: nothing is dense
    assert d.num_clusters == 0 and d.info["noise"] == len(x)
    x, y = make_blobs(300, centers=6, cluster_std=1.5, n_features=16, random_state=0)
    # SSG's eps: the mean of the smallest rho share of the Jaccard distances (upper triangle)
    from fedfr.reid.evaluation.rerank import kreciprocal_jaccard

    jd = kreciprocal_jaccard(x.astype(np.float32), k1=20, k2=6).numpy()
    jd = np.clip(np.maximum(jd, jd.T), 0, None)
    tri = np.sort(jd[np.triu_indices(300, 1)])
    ssg = cl.dbscan_ssg(x, rho=0.05)
    assert ssg.info["eps"] == pytest.approx(tri[:int(round(0.05 * tri.size))].mean(), rel=1e-5)
    ok = ssg.labels >= 0
    assert ssg.num_clusters >= 5 and ok.mean() > 0.5
    assert adjusted_rand_score(y[ok], ssg.labels[ok]) > 0.9
    assert (ssg.labels[ssg.exemplars] == np.arange(ssg.num_clusters)).all()
    # with SSG's own rho (1.6e-3) a set this small is mostly noise (documented)
    assert (cl.dbscan_ssg(x).labels < 0).mean() > 0.5


def test_sg_ap_binary_search_moves_p_the_right_way(monkeypatch, blobs):
    x, _ = blobs

    def fake(feats, pref, **kw):  # more negative p -> fewer clusters, like AP
        count = int(np.clip(3000.0 / -np.mean(pref), 1, 60))
        n = len(feats)
        return cl.APResult(np.arange(n) % count, np.arange(count), 1, True)

    monkeypatch.setattr(cl, "affinity_propagation", fake)
    res = cl.sg_ap(x[:60], 10, x[60:], cl.SGAPConfig(max_pairs=10**6))
    assert res.stop == "match" and res.trace[-1]["count"] == 10
    for a, b in zip(res.trace, res.trace[1:], strict=False):
        assert (b["p"] < a["p"]) == (a["count"] > 10)
    assert 3000 / 11 < -res.p_star <= 3000 / 10
