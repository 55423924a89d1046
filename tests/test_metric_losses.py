"""Metric losses against hand-computed values and brute-force loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fedfr.metric_losses import (
    BatchHardTripletLoss,
    LabelSmoothingCE,
    batch_hard_triplet_loss,
    label_smoothing_ce,
    pairwise_distance,
)


def test_label_smoothing_ce_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    z = math.exp(2) + 1 + math.exp(-1)
    logp = [2 - math.log(z), -math.log(z), -1 - math.log(z)]
    eps = 0.1
    q = [1 - eps + eps / 3, eps / 3, eps / 3]
    expected = -sum(qi * li for qi, li in zip(q, logp, strict=True))
    got = label_smoothing_ce(logits, torch.tensor([0]), epsilon=eps)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_ce_matches_torch_and_plain_ce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=g)
    y = torch.randint(0, 5, (7,), generator=g)
    for eps in (0.0, 0.1, 0.3):
        ref = F.cross_entropy(logits, y, label_smoothing=eps)
        assert label_smoothing_ce(logits, y, eps).item() == pytest.approx(ref.item(), rel=1e-6)
    assert LabelSmoothingCE(0.1)(logits, y).item() == pytest.approx(
        F.cross_entropy(logits, y, label_smoothing=0.1).item(), rel=1e-6)


def test_label_smoothing_ce_rejects_bad_input():
    with pytest.raises(ValueError, match="labels"):
        label_smoothing_ce(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="epsilon"):
        label_smoothing_ce(torch.zeros(2, 3), torch.tensor([0, 1]), epsilon=1.0)


def test_pairwise_distance_euclidean_and_cosine():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    d = pairwise_distance(x)
    assert d[0, 1].item() == pytest.approx(5.0, abs=1e-5)
    assert d[1, 2].item() == pytest.approx(math.sqrt(4 + 16), abs=1e-5)
    assert d[1, 1].item() == pytest.approx(0.0, abs=1e-5)
    c = pairwise_distance(x[1:], metric="cosine")
    assert c[0, 1].item() == pytest.approx(1 - 3 / 5, abs=1e-6)
    with pytest.raises(ValueError, match="metric"):
        pairwise_distance(x, metric="manhattan")


def _brute_force(features, labels, margin, metric):
    per = []
    n = len(labels)
    for a in range(n):
        pos = [features[a] - features[p] for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [features[a] - features[q] for q in range(n) if labels[q] != labels[a]]
        if not pos or not neg:
            continue
        if metric == "euclidean":
            d_ap = max(float(v.norm()) for v in pos)
            d_an = min(float(v.norm()) for v in neg)
        else:
            def cos_d(i, j):
                return 1 - float(torch.dot(features[i], features[j])
                                 / (features[i].norm() * features[j].norm()))
            d_ap = max(cos_d(a, p) for p in range(n) if p != a and labels[p] == labels[a])
            d_an = min(cos_d(a, q) for q in range(n) if labels[q] != labels[a])
        gap = d_ap - d_an
        per.append(math.log1p(math.exp(gap)) if margin is None else max(0.0, gap + margin))
    return sum(per) / len(per)


@pytest.mark.parametrize("margin", [None, 0.3])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_batch_hard_triplet_matches_brute_force(margin, metric):
    g = torch.Generator().manual_seed(3)
    for trial in range(5):
        feats = torch.randn(12, 6, generator=g)
        labels = torch.randint(0, 4, (12,), generator=g)
        labels[0] = 9  # an identity with a single image: no positive, left out
        got = batch_hard_triplet_loss(feats, labels, margin=margin, metric=metric)
        ref = _brute_force(feats.double(), labels.tolist(), margin, metric)
        assert got.item() == pytest.approx(ref, rel=1e-4, abs=1e-5), trial


def test_triplet_by_hand_two_identities():
    # 1-D features: id 0 at 0 and 1, id 1 at 3 and 5.
    feats = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchors: d_ap = 1, 1, 2, 2; d_an = 3, 2, 2, 4
    gaps = [1 - 3, 1 - 2, 2 - 2, 2 - 4]
    soft = sum(math.log1p(math.exp(g)) for g in gaps) / 4
    hinge = sum(max(0.0, g + 0.3) for g in gaps) / 4
    assert batch_hard_triplet_loss(feats, labels).item() == pytest.approx(soft, rel=1e-5)
    assert batch_hard_triplet_loss(feats, labels, margin=0.3).item() == pytest.approx(
        hinge, rel=1e-5)
    assert BatchHardTripletLoss(margin=0.3)(feats, labels).item() == pytest.approx(hinge, rel=1e-5)


def test_triplet_without_valid_anchor_is_zero_with_gradient():
    feats = torch.randn(3, 4, requires_grad=True)
    loss = batch_hard_triplet_loss(feats, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert feats.grad is not None and torch.all(feats.grad == 0)


def test_triplet_gradient_pulls_positives_and_pushes_negatives():
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.5, 0.0], [3.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    batch_hard_triplet_loss(feats, labels).backward()
    # anchor 0's positive (x=1) is pulled left, its hardest negative (x=1.5) pushed right
    assert feats.grad[1, 0] > 0 and feats.grad[2, 0] < 0
    assert torch.isfinite(feats.grad).all()


def test_triplet_rejects_bad_margin_and_labels():
    with pytest.raises(ValueError, match="margin"):
        batch_hard_triplet_loss(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), margin=-1.0)
    with pytest.raises(ValueError, match="labels"):
        batch_hard_triplet_loss(torch.zeros(4, 2), torch.tensor([0.0, 0, 1, 1]))
