"""Bootstrap intervals of the personalised protocol (fedfr/face/evaluation/uncertainty.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedfr.face.evaluation.protocols import personalized_protocol
from fedfr.face.evaluation.uncertainty import (
    _rows,
    bootstrap,
    client_metrics,
    client_scores,
    paired_difference,
)

FARS, FPIRS = (1e-2, 1e-1), (1e-1,)


def _client(rng: np.random.Generator, k: int = 6, per: int = 5, others: int = 12,
            spread: float = 0.6, d: int = 16):
    """Features of one client: k local identities, ``others`` other identities (per images)."""
    def ids(n: int) -> tuple[np.ndarray, np.ndarray]:
        centres = rng.normal(size=(n, d))
        f = np.repeat(centres, per, axis=0) + spread * rng.normal(size=(n * per, d))
        return f / np.linalg.norm(f, axis=1, keepdims=True), np.repeat(np.arange(n), per)

    test, yt = ids(k)
    train = test + 0.1 * rng.normal(size=test.shape)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    other, yo = ids(others)
    return test.astype(np.float32), yt, train.astype(np.float32), yt.copy(), \
        other.astype(np.float32), yo


def test_rows_keeps_repeats_in_pick_order() -> None:
    groups = np.array([1, 0, 1, 2, 0])
    assert _rows(groups, np.array([1, 1, 0])).tolist() == [0, 2, 0, 2, 1, 4]


def test_point_estimate_equals_the_personalised_protocol() -> None:
    rng = np.random.default_rng(0)
    te, yt, tr, ytr, ot, yo = _client(rng)
    sc = client_scores(te, yt, tr, ytr, ot, yo)
    ours = client_metrics(sc, FARS, FPIRS)
    ref = personalized_protocol(te, yt, tr, ytr, ot, fars=FARS, fpirs=FPIRS)
    for key, value in ours.items():
        assert math.isclose(value, ref[key], abs_tol=1e-9), key


def test_interval_brackets_the_estimate_and_shrinks_with_more_clients() -> None:
    rng = np.random.default_rng(1)
    few = [client_scores(*_client(rng)) for _ in range(2)]
    many = few + [client_scores(*_client(rng)) for _ in range(14)]
    width = {}
    for name, clients in (("few", few), ("many", many)):
        iv, _ = bootstrap({"m": [clients]}, FARS, FPIRS, num_samples=150, seed=3)
        tar = iv["m"]["tar@1e-01"]
        assert tar.low <= tar.estimate <= tar.high
        width[name] = tar.high - tar.low
    assert width["many"] < width["few"]


def test_paired_difference_is_zero_for_one_model_and_separates_a_better_one() -> None:
    rng = np.random.default_rng(2)
    raw = [_client(rng, spread=0.9) for _ in range(4)]
    worse = [client_scores(*r) for r in raw]
    # the same clients with tighter identities (test features pulled to their identity's mean)
    better = []
    for te, yt, tr, ytr, ot, yo in raw:
        means = np.stack([te[yt == c].mean(axis=0) for c in np.unique(yt)])
        te2 = te + 3.0 * means[yt]
        te2 /= np.linalg.norm(te2, axis=1, keepdims=True)
        better.append(client_scores(te2, yt, tr, ytr, ot, yo))
    same = paired_difference({"a": [worse], "b": [worse]}, "a", "b", FARS, FPIRS, 50)
    assert same["tar@1e-02"].low == same["tar@1e-02"].high == 0.0
    diff = paired_difference({"a": [better], "b": [worse]}, "a", "b", FARS, FPIRS, 100)
    assert diff["tar@1e-02"].low > 0.0


def test_seeds_are_a_resampled_level() -> None:
    rng = np.random.default_rng(4)
    seeds = [[client_scores(*_client(rng)) for _ in range(3)] for _ in range(3)]
    iv, _ = bootstrap({"m": seeds}, FARS, FPIRS, num_samples=50)
    per_seed = [bootstrap({"m": [s]}, FARS, FPIRS, num_samples=1)[0]["m"]["tar@1e-02"].estimate
                for s in seeds]
    assert math.isclose(iv["m"]["tar@1e-02"].estimate, float(np.mean(per_seed)))


def test_mismatched_models_are_refused() -> None:
    rng = np.random.default_rng(5)
    a = [client_scores(*_client(rng, k=4))]
    b = [client_scores(*_client(rng, k=5))]
    with pytest.raises(ValueError, match="paired resampling"):
        bootstrap({"a": [a], "b": [b]}, FARS, FPIRS, num_samples=2)
