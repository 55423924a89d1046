"""PBH (silhouette, the mean - 3 std rule, the K = 2 split table), ICM (mutual cross-camera
top-K) and HSR's weighted triplet losses, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedfr.reid.unsup.icm import (
    ICMSampler,
    buddies,
    icm_stats,
    inter_camera_rank,
    mutual_mask,
    mutual_pairs,
)
from fedfr.reid.unsup.losses import (
    icm_masks,
    weighted_soft_triplet,
    weighted_triplet_from_labels,
)
from fedfr.reid.unsup.pbh import (
    cluster_mean_silhouette,
    imperfect_clusters,
    pbh_refine,
    silhouette_samples_chunked,
    split_table,
)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_silhouette_matches_sklearn(metric):
    from sklearn.metrics import silhouette_samples

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g)
    y = torch.randint(0, 5, (60,), generator=g)
    y[0] = 5  # a singleton cluster: silhouette 0
    ours = silhouette_samples_chunked(x, y, metric=metric, chunk=7)
    ref = silhouette_samples(x.numpy(), y.numpy(), metric=metric)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)


def test_mean_minus_3_std_rule():
    msil = torch.tensor([0.5] * 20 + [-0.5])
    sizes = torch.tensor([4] * 20 + [6])
    bad, lam = imperfect_clusters(msil, sizes)
    m = msil.double()
    assert lam == pytest.approx(float(m.mean() - 3 * m.std(unbiased=False)))
    assert bad == [20]
    assert imperfect_clusters(msil, torch.tensor([4] * 20 + [1]))[0] == []  # too small
    assert imperfect_clusters(torch.full((5,), 0.3), torch.full((5,), 4))[0] == []


def test_split_table():
    yu = np.array([0, 1, 1, 0, 1])
    yl = np.array([1, 1, 0, 1, 1])
    new, rows, nxt = split_table(yu, yl, cluster=3, next_label=10)
    # pairs present: (0,1), (1,0), (1,1) -> 3 (keeps the id), 10, 11
    np.testing.assert_array_equal(new, [3, 11, 10, 3, 11])
    assert nxt == 12
    assert [(r["y_u"], r["y_l"], r["label"], r["size"]) for r in rows] == [
        (0, 1, 3, 2), (1, 0, 10, 1), (1, 1, 11, 2)]


def test_pbh_splits_a_merged_cluster_by_parts():
    g = torch.Generator().manual_seed(0)
    n_good, per = 20, 6
    centres = 3 * torch.randn(n_good, 8, generator=g)
    glob = centres.repeat_interleave(per, 0) + 0.1 * torch.randn(n_good * per, 8, generator=g)
    labels = np.repeat(np.arange(n_good), per)
    # cluster 20: two people whose global features overlap with cluster 0 and 1 (a bad cluster)
    bad = torch.cat([centres[0] + 0.1 * torch.randn(4, 8, generator=g),
                     centres[1] + 0.1 * torch.randn(4, 8, generator=g)])
    glob = torch.cat([glob, bad])
    labels = np.concatenate([labels, np.full(8, n_good), [-1]])
    glob = torch.cat([glob, torch.zeros(1, 8)])
    parts = torch.randn(glob.shape[0], 4, generator=g)
    upper, lower = parts.clone(), parts.clone()
    upper[-9:-5], upper[-5:-1] = 5.0, -5.0  # person A's top differs from person B's
    lower[-9:-1] = 1.0  # same trousers
    res = pbh_refine(labels, glob, upper, lower, seed=0)
    assert res.imperfect == [n_good]
    assert (res.labels[-1] == -1) and (res.labels[:-9] == labels[:-9]).all()
    a, b = res.labels[-9:-5], res.labels[-5:-1]
    assert len(set(a)) == 1 and len(set(b)) == 1 and a[0] != b[0]
    assert {a[0], b[0]} == {n_good, n_good + 1}
    assert res.stats()["pbh_split"] == 1
    msil = cluster_mean_silhouette(
        silhouette_samples_chunked(glob[:-1], torch.from_numpy(labels[:-1])),
        torch.from_numpy(labels[:-1]))
    np.testing.assert_allclose(res.msil, msil.numpy())


def test_icm_rank_and_mutual_pairs_by_hand():
    # 1-D features; cameras alternate
    x = torch.tensor([[0.0], [0.1], [1.0], [1.05], [5.0], [9.0]])
    cam = torch.tensor([0, 1, 0, 1, 0, 0])
    rank = inter_camera_rank(x, cam, k=1)
    assert rank[:, 0].tolist() == [1, 0, 3, 2, 3, 3]
    assert mutual_pairs(rank).tolist() == [[0, 1], [2, 3]]
    rank2 = inter_camera_rank(x, cam, k=2)
    assert rank2[0].tolist() == [1, 3] and rank2[1].tolist() == [0, 2]
    m = mutual_mask(rank2)
    assert rank2[3].tolist() == [2, 0] and m[0].tolist() == [True, True]
    assert rank2[4].tolist() == [3, 1] and m[4].tolist() == [False, False]
    cam1 = torch.tensor([0, 0, 0])
    assert (inter_camera_rank(x[:3], cam1, k=2) == -1).all()  # no other camera
    pids = torch.tensor([1, 1, 2, 2, 3, 4])
    st = icm_stats(rank, pids, np.array([0, 1, 2, 2, -1, -1]))
    assert st["icm_pairs"] == 2 and st["icm_pair_precision"] == 1.0
    # rank precision: rows 0-3 correct, 4 and 5 wrong -> 4/6; hard: row 0 and 1 (diff labels)
    assert st["icm_rank_precision"] == pytest.approx(4 / 6)
    assert st["icm_hard_positive_share"] == pytest.approx(2 / 6)


def test_icm_sampler_batches():
    friends = [np.array([1]), np.array([0, 2]), np.array([1]), np.array([], dtype=np.int64)]
    s = ICMSampler(friends, p=2, k=4, seed=0)
    assert s.usable and s.anchors.tolist() == [0, 1, 2]
    (idx, grp), = s.batches(0)
    assert grp == [0] * 4 + [1] * 4
    for slot in range(2):
        a, rest = idx[4 * slot], idx[4 * slot + 1:4 * slot + 4]
        assert set(rest) <= set(friends[a].tolist())
    assert not ICMSampler(friends, p=4, k=4).usable
    assert buddies(torch.tensor([[1], [0], [0]]))[2].size == 0


def _brute(x, pos, neg):
    d = torch.cdist(x, x)
    out = []
    for a in range(len(x)):
        p = [j for j in range(len(x)) if pos[a, j] and j != a]
        n = [j for j in range(len(x)) if neg[a, j] and j != a and not pos[a, j]]
        if not p or not n:
            continue
        wp = torch.softmax(d[a, p], 0)
        wn = torch.softmax(-d[a, n], 0)
        out.append(F.softplus((wp * d[a, p]).sum() - (wn * d[a, n]).sum()))
    return torch.stack(out).mean()


def test_weighted_triplet_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4])
    got = weighted_triplet_from_labels(x, y)
    same = y[:, None] == y[None, :]
    assert got.item() == pytest.approx(_brute(x.float(), same, ~same).item(), rel=1e-5)
    x.requires_grad_(True)
    weighted_triplet_from_labels(x, y).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # no valid anchor: zero with a graph
    z = weighted_soft_triplet(x, torch.zeros(12, 12, dtype=torch.bool),
                              torch.ones(12, 12, dtype=torch.bool))
    assert z.item() == 0.0 and z.requires_grad


def test_icm_masks_exclude_rank_and_same_label():
    batch = torch.tensor([0, 1, 2, 3])
    groups = torch.tensor([0, 0, 1, 1])
    pseudo = torch.tensor([5, 6, 5, 7])
    rank = torch.tensor([[3, -1], [2, -1], [1, -1], [0, -1]])
    pos, neg = icm_masks(batch, groups, pseudo, rank)
    assert pos.tolist()[0] == [True, True, False, False]
    # anchor 0: 2 has its pseudo-label, 3 is in Rank(0) -> no negative
    assert neg[0].tolist() == [False, False, False, False]
    # anchor 1 (label 6): 2 is in Rank(1); 3 (label 7) is a negative
    assert neg[1].tolist() == [False, False, False, True]
