"""fedfr.reid.semi.pseudo_labels: soft labels (Eq. 3.5), expanded targets and classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedfr.errors import ConfigError
from fedfr.reid.models import IdentityClassifier
from fedfr.reid.semi.pseudo_labels import (
    expand_classifier,
    expanded_targets,
    soft_cross_entropy,
    soft_pseudo_labels,
)


def test_soft_labels_are_a_softmax_of_negative_distances():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.4, 0.0]])
    ex = np.array([[0.0, 0.0], [1.0, 0.0]])
    y = soft_pseudo_labels(x, ex)
    assert torch.allclose(y.sum(1), torch.ones(3))
    assert y[0, 0] > y[0, 1] and y[1, 1] > y[1, 0]
    # row 2: d = 0.16 and 0.36 -> softmax(-0.16, -0.36)
    want = torch.softmax(torch.tensor([-0.16, -0.36]), 0)
    assert torch.allclose(y[2], want, atol=1e-6)
    sharp = soft_pseudo_labels(x, ex, temperature=0.01)
    assert sharp[2, 0] > 0.99
    e = soft_pseudo_labels(x, ex, distance="euclidean")
    assert torch.allclose(e[2], torch.softmax(torch.tensor([-0.4, -0.6]), 0), atol=1e-6)
    with pytest.raises(ConfigError):
        soft_pseudo_labels(x, ex, distance="cosine")


def test_expanded_targets_and_soft_ce():
    pseudo = torch.tensor([[0.7, 0.3], [0.1, 0.9]])
    t = expanded_targets([0, 2], 3, pseudo, smoothing=0.1)
    assert t.shape == (4, 5)
    assert torch.allclose(t.sum(1), torch.ones(4))
    assert t[0, 0] == pytest.approx(0.9 + 0.02) and t[0, 4] == pytest.approx(0.02)
    assert (t[2:, :3] == 0).all() and torch.equal(t[2:, 3:], pseudo)
    logits = torch.randn(4, 5)
    hard = expanded_targets([0, 2, 1, 4], 5, torch.zeros(0, 0), smoothing=0.0)
    assert torch.allclose(soft_cross_entropy(logits, hard),
                          F.cross_entropy(logits, torch.tensor([0, 2, 1, 4])))
    with pytest.raises(ValueError):
        soft_cross_entropy(logits, t[:, :4])


def test_expand_classifier_keeps_the_labelled_rows():
    old = IdentityClassifier(16, 4)
    new = expand_classifier(old, 4, 6)
    assert new.num_classes == 10
    assert torch.equal(new.weight[:4], old.weight)
    fresh = expand_classifier(old, 4, 6, keep_labelled=False)
    assert not torch.equal(fresh.weight[:4], old.weight)
