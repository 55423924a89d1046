"""Tests of fedfr.face.evaluation.protocols and .features on synthetic features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fedfr.face.data.transforms import to_float
from fedfr.face.evaluation.features import embed
from fedfr.face.evaluation.metrics import identification_metrics, tar_at_far
from fedfr.face.evaluation.protocols import (
    average_metrics,
    generic_protocol,
    personalized_protocol,
    verification_scores,
)


def l2n(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng, counts, d=64, noise=0.05, centres=None):
    """Features = identity centre + noise, labels 0.. in blocks -> (feats, labels, centres)."""
    if centres is None:
        centres = l2n(rng.normal(size=(len(counts), d)))
    labels = np.repeat(np.arange(len(counts)), counts)
    feats = l2n(centres[labels] + noise * rng.normal(size=(labels.size, d)))
    return feats, labels, centres


def test_verification_scores_brute_force():
    rng = np.random.default_rng(0)
    feats = l2n(rng.normal(size=(31, 6)))
    labels = rng.integers(0, 5, size=31)
    gen, imp = verification_scores(torch.from_numpy(feats), labels, chunk_size=7)
    exp_gen, exp_imp = [], []
    for i in range(31):
        for j in range(i + 1, 31):
            (exp_gen if labels[i] == labels[j] else exp_imp).append(feats[i] @ feats[j])
    np.testing.assert_allclose(gen, exp_gen, atol=1e-6)
    np.testing.assert_allclose(imp, exp_imp, atol=1e-6)


def test_generic_protocol_perfect_separation_and_counts():
    rng = np.random.default_rng(1)
    feats, labels, _ = clustered(rng, [10] * 20)
    out = generic_protocol(feats, labels)
    assert out["num_genuine"] == 20 * 45
    assert out["num_impostor"] == 200 * 199 / 2 - 900
    # auto levels: 19000 impostors -> 1e-3, 1e-2; 100 non-mated probes -> 1e-1 only
    assert {k for k in out if k.startswith(("tar", "tpir"))} == {
        "tar@1e-03", "tar@1e-02", "tpir@1e-01"}
    assert out["tar@1e-03"] == 1.0 and out["tar@1e-02"] == 1.0
    assert out["rank1"] == 1.0 and out["tpir@1e-01"] == 1.0
    assert out["num_gallery"] == 10  # first 10 of 20 ids enrolled, gallery = 5 images each
    assert out["num_mated"] == 50 and out["num_nonmated"] == 100


def test_generic_protocol_uneven_identities():
    rng = np.random.default_rng(2)
    # labels out of order: ids 7 (1 image), 3 (3 images), 5 (4 images), 9 (2 images)
    feats, labels, _ = clustered(rng, [1, 3, 4, 2])
    labels = np.array([7, 3, 3, 3, 5, 5, 5, 5, 9, 9])[np.argsort(np.argsort(labels))]
    out = generic_protocol(feats, labels, fars=[0.1], fpirs=[0.5], gallery_fraction=0.5)
    # enrolled = sorted ids [3, 5]: gallery 1 of 3 and 2 of 4 images -> 2 + 2 mated probes;
    # non-mated = ids 7 and 9 -> 3 probes
    assert out["num_gallery"] == 2
    assert out["num_mated"] == 4 and out["num_nonmated"] == 3
    assert out["num_genuine"] == 0 + 3 + 6 + 1
    assert out["rank1"] == 1.0


def test_generic_protocol_noise_is_poor():
    rng = np.random.default_rng(3)
    feats = l2n(rng.normal(size=(200, 64)))
    labels = np.repeat(np.arange(20), 10)
    out = generic_protocol(feats, labels, fars=[1e-3, 1e-2], fpirs=[0.1])
    assert out["tar@1e-03"] < 0.05 and out["tar@1e-02"] < 0.1
    assert out["rank1"] < 0.3 and out["tpir@1e-01"] < 0.2


def test_generic_protocol_rejects_unnormalised():
    with pytest.raises(ValueError, match="L2-normalised; row 1"):
        generic_protocol(np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([0, 1]))


def _client(rng, noise, n_local=5, n_other=30, d=32):
    centres = l2n(rng.normal(size=(n_local + n_other, d)))
    lt, yt, _ = clustered(rng, [6] * n_local, d, noise, centres[:n_local])
    tr, ytr, _ = clustered(rng, [8] * n_local, d, noise, centres[:n_local])
    ot, _, _ = clustered(rng, [6] * n_other, d, noise, centres[n_local:])
    return lt, yt, tr, ytr, ot


def test_personalized_protocol_perfect_and_counts():
    rng = np.random.default_rng(4)
    lt, yt, tr, ytr, ot = _client(rng, noise=0.05)
    out = personalized_protocol(lt, yt, tr, ytr, ot, fars=(1e-4, 1e-3, 1e-2),
                                fpirs=(1e-3, 1e-2, 1e-1), chunk_size=7)
    assert out["num_genuine"] == 5 * 15
    assert out["num_impostor"] == 30 * 180
    assert out["num_gallery"] == 5
    assert out["num_mated"] == 30 and out["num_nonmated"] == 180
    assert math.isnan(out["tar@1e-04"])  # 1e-4 * 5400 < 1
    assert out["tar@1e-03"] == 1.0 and out["tar@1e-02"] == 1.0
    assert math.isnan(out["tpir@1e-03"])  # 1e-3 * 180 < 1
    assert out["rank1"] == 1.0 and out["tpir@1e-02"] == 1.0 and out["tpir@1e-01"] == 1.0


def test_personalized_protocol_noise_is_poor():
    rng = np.random.default_rng(5)
    lt, yt, tr, ytr, ot = _client(rng, noise=0.05)
    lt, tr, ot = (l2n(rng.normal(size=a.shape)) for a in (lt, tr, ot))
    out = personalized_protocol(lt, yt, tr, ytr, ot, fars=(1e-3, 1e-2), fpirs=(1e-2, 1e-1))
    assert out["tar@1e-02"] < 0.15 and out["tpir@1e-01"] < 0.2 and out["rank1"] < 0.5


@pytest.mark.parametrize("chunk_size", [4, 13, 4096])
def test_personalized_streaming_equals_brute_force(chunk_size):
    rng = np.random.default_rng(6)
    lt, yt, tr, ytr, ot = _client(rng, noise=0.25)  # overlap: metrics strictly in (0, 1)
    fars, fpirs = (1e-3, 5e-3, 2e-2), (1e-2, 5e-2, 0.2)
    out = personalized_protocol(torch.from_numpy(lt), torch.from_numpy(yt), tr, ytr, ot,
                                fars=fars, fpirs=fpirs, chunk_size=chunk_size)
    # brute force: every score in memory
    s_ll = lt @ lt.T
    iu = np.triu_indices(len(yt), k=1)
    gen = s_ll[iu][yt[iu[0]] == yt[iu[1]]]
    imp = (lt @ ot.T).ravel()
    tars = tar_at_far(gen, imp, fars)
    gallery = l2n(np.stack([tr[ytr == c].mean(0) for c in range(5)]))
    ident = identification_metrics(np.concatenate([lt, ot]),
                                   np.concatenate([yt, np.full(len(ot), -1)]),
                                   gallery, np.arange(5), fpirs)
    for far in fars:
        assert out[f"tar@{far:.0e}"] == pytest.approx(tars[far])
    for key in ("rank1", "tpir@1e-02", "tpir@5e-02", "tpir@2e-01", "num_mated", "num_nonmated"):
        assert out[key] == pytest.approx(ident[key]), key
    assert 0.0 < out["tar@1e-03"] < 1.0 and 0.0 < out["tpir@5e-02"] < 1.0 and out["rank1"] < 1.0


def test_personalized_protocol_rejects_identity_without_training():
    rng = np.random.default_rng(7)
    lt, yt, tr, ytr, ot = _client(rng, noise=0.05)
    keep = ytr != 2
    with pytest.raises(ValueError, match="identity 2 has test images but no training"):
        personalized_protocol(lt, yt, tr[keep], ytr[keep], ot)


def test_average_metrics_ignores_nan():
    out = average_metrics([{"a": 1.0, "b": math.nan, "c": math.nan},
                           {"a": 3.0, "b": 2.0, "c": math.nan},
                           {"a": 5.0, "d": 4.0}])
    assert out["a"] == 3.0 and out["b"] == 2.0 and math.isnan(out["c"]) and out["d"] == 4.0
    assert list(out) == ["a", "b", "c", "d"]
    assert average_metrics([]) == {}


class ModeProbe(nn.Module):
    """Tiny model: flatten -> linear; records whether it ran in training mode."""

    def __init__(self, size: int = 4, d: int = 5):
        super().__init__()
        self.fc = nn.Linear(3 * size * size, d)
        self.seen_training: list[bool] = []

    def forward(self, x):
        self.seen_training.append(self.training)
        return self.fc(x.flatten(1))


def test_embed_normalised_flip_head_and_mode():
    torch.manual_seed(0)
    model, head = ModeProbe(), nn.Linear(5, 5)
    model.train()
    head.train()
    images = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8)
    feats = embed(model, images, batch_size=3, flip=True, head=head)
    assert feats.shape == (7, 5) and feats.dtype == torch.float32
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(7))
    with torch.no_grad():
        x = to_float(images)
        manual = head(model(x)) + head(model(x.flip(-1)))
        manual = manual / manual.norm(dim=1, keepdim=True)
    torch.testing.assert_close(feats, manual)
    assert model.training and head.training  # modes restored
    assert model.seen_training[:6] == [False] * 6  # 3 batches x (image, flip), all in eval
    model.eval()
    plain = embed(model, images.numpy(), batch_size=100)
    assert not model.training
    with torch.no_grad():
        ref = model(to_float(images))
    torch.testing.assert_close(plain, ref / ref.norm(dim=1, keepdim=True))


def test_embed_rejects_bad_images():
    with pytest.raises(ValueError, match="uint8"):
        embed(ModeProbe(), torch.zeros(2, 3, 4, 4))
