"""Hard-negative selection (strict threshold, chunking) and mean-feature class proxies."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from fedfr.hard_negatives import max_cosine_similarity, mean_class_features, select_hard_negatives


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_constructed_angles_give_known_index_set() -> None:
    # threshold 0.4 = cos(66.42 deg): a public vector is selected iff it lies within 66.42 deg
    # of a local vector (locals at 0 and 180 deg)
    public_deg = [0.0, 30.0, 66.0, 67.0, 90.0, -60.0, -70.0, 120.0, 113.0, 179.0, 250.0]
    local = torch.tensor([unit(0.0), unit(180.0)])
    public = torch.tensor([unit(d) for d in public_deg]) * 5.0
    got = select_hard_negatives(public, local, threshold=0.4)
    assert got.dtype == torch.long
    assert got.tolist() == [0, 1, 2, 5, 7, 9]
    # with one local vector only the first half-plane neighbours stay
    assert select_hard_negatives(public, local[:1], 0.4).tolist() == [0, 1, 2, 5]


def test_threshold_is_strict() -> None:
    public = torch.tensor([[1.0, 0.0], [0.0, 1.0], unit(40.0)])
    local = torch.tensor([[1.0, 0.0]])
    # cos exactly 1 and exactly 0
    assert select_hard_negatives(public, local, threshold=1.0).tolist() == []
    assert select_hard_negatives(public, local, threshold=0.0).tolist() == [0, 2]
    # exactly at the computed similarity of the 40 deg vector: excluded; just below: included
    sim = float(max_cosine_similarity(public, local)[2])
    assert 2 not in select_hard_negatives(public, local, threshold=sim).tolist()
    assert 2 in select_hard_negatives(public, local, threshold=sim - 1e-6).tolist()


def test_threshold_minus_one_selects_everything() -> None:
    public = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    local = torch.tensor([[1.0, 0.0]])  # cos to the second public vector is exactly -1
    assert select_hard_negatives(public, local, threshold=-1.0).tolist() == [0, 1, 2]
    assert select_hard_negatives(public, local[:0], threshold=-1.0).tolist() == [0, 1, 2]
    assert select_hard_negatives(public, local[:0], threshold=0.4).tolist() == []


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 16, 64, 4096])
def test_chunked_equals_full_matrix(chunk_size: int) -> None:
    gen = torch.Generator().manual_seed(chunk_size)
    queries, keys = torch.randn(53, 8, generator=gen), torch.randn(29, 8, generator=gen) * 3
    full = (F.normalize(queries, dim=1) @ F.normalize(keys, dim=1).t()).amax(dim=1)
    got = max_cosine_similarity(queries, keys, chunk_size=chunk_size)
    assert got.shape == (53,)
    assert torch.allclose(got, full, atol=1e-6)
    expected_idx = torch.nonzero(full > 0.3).flatten()
    assert torch.equal(select_hard_negatives(queries, keys, 0.3, chunk_size=chunk_size),
                       expected_idx)


def test_large_sets_are_fast_with_bounded_chunks() -> None:
    gen = torch.Generator().manual_seed(0)
    public, local = torch.randn(50_000, 64, generator=gen), torch.randn(3_000, 64, generator=gen)
    t0 = time.perf_counter()
    idx = select_hard_negatives(public, local, threshold=0.4, chunk_size=1024)
    assert time.perf_counter() - t0 < 3.0
    # random 64-d Gaussians rarely exceed 0.4 to any of 3000 others; spot-check exactly
    probe = torch.tensor([0, 1, 777, 49_999])
    exact = (F.normalize(public[probe], dim=1) @ F.normalize(local, dim=1).t()).amax(dim=1)
    idx_set = set(idx.tolist())
    for i, sim in zip(probe.tolist(), exact.tolist(), strict=True):
        assert (i in idx_set) == (sim > 0.4)
    assert torch.all(idx[1:] > idx[:-1])


def test_max_cosine_similarity_input_checks() -> None:
    with pytest.raises(ValueError, match="feature size"):
        max_cosine_similarity(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="chunk_size"):
        max_cosine_similarity(torch.randn(2, 3), torch.randn(2, 3), chunk_size=0)
    with pytest.raises(ValueError, match="queries"):
        max_cosine_similarity(torch.randn(3), torch.randn(2, 3))
    assert torch.isneginf(max_cosine_similarity(torch.randn(2, 3), torch.randn(0, 3))).all()


def test_mean_class_features_by_hand() -> None:
    feats = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, -1.0], [-4.0, 0.0], [0.0, -2.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    got = mean_class_features(feats, labels, 2)
    # class 0: normalised (1,0),(0,1) -> mean (0.5,0.5) -> (1,1)/sqrt2
    # class 1: (0,-1),(-1,0),(0,-1) -> mean (-1/3,-2/3) -> (-1,-2)/sqrt5
    expected = torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)],
                             [-1 / math.sqrt(5), -2 / math.sqrt(5)]])
    assert torch.allclose(got, expected, atol=1e-6)


def test_mean_class_features_rejects_empty_class_and_bad_labels() -> None:
    feats = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"1 of 3 classes have no samples: \[1\]"):
        mean_class_features(feats, torch.tensor([0, 2, 2]), 3)
    with pytest.raises(ValueError, match="labels"):
        mean_class_features(feats, torch.tensor([0, 1, 3]), 3)
    with pytest.raises(ValueError, match="labels"):
        mean_class_features(feats, torch.tensor([0, 1]), 3)
